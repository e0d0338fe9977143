//! The hand-written x86_64 System V switch in `arch/x86_64.S`, reached from
//! one-instruction inline-assembly blocks that declare what the routines clobber.
//!
//! The top of every coroutine stack holds the words the assembly uses: `LINK` (the
//! resumer's saved frame while the coroutine runs), `SIZE` (the bytes usable below
//! the top, for `Suspender::is_current`) and, for a fresh context, the entry shim and
//! its data. A suspended coroutine is a saved frame on its stack (rbx, rbp, resume
//! address) whose address the `Context` keeps (`sp`); a fresh context is a hand-built
//! frame that "resumes" into `stackweave_trampoline`. See `arch/x86_64.S` for the
//! frame diagram and the register contract.
//!
//! A resume is `call stackweave_resume`, which jumps into the coroutine; the
//! coroutine's next suspend `jmp`s to `stackweave_suspend`, whose `ret` pops the
//! return address of that `call` (one matched call/ret pair per round trip). The
//! entry slot holds `shim::<E>`, which the trampoline enters with a `jmp` (after
//! pushing a return address into itself, for unwinders): the shim inlines `E::run`
//! and ends with the final switch, so the coroutine's first run makes no `call` that
//! is still pending when it suspends, and every suspend's `ret` finds the resumer's
//! return address on top of the return-stack buffer, provided the coroutine's own
//! calls and returns between a resume and the next suspend pair up: each function
//! left out of line between a blocking call and the switch costs two mispredicted
//! returns per round trip (why the scheduler's suspension points are `#[inline]`).

use super::asan::{Fiber, FiberPtr, Resumer};
use super::Entry;
use crate::rt::stack::Stack;
use std::arch::{asm, global_asm};

global_asm!(include_str!("../../../arch/x86_64.S"), options(raw));

/// Name of this backend, for benchmarks and diagnostics.
pub(crate) const BACKEND: &str = "hand-written x86_64";

/// `top - LINK_OFFSET` holds the resumer's stack pointer (`SW_LINK`).
const LINK_OFFSET: usize = 8;
/// `top - SIZE_OFFSET` holds the number of bytes usable below `top` (`SW_SIZE`).
const SIZE_OFFSET: usize = 16;
/// `top - ENTRY_OFFSET` holds the entry shim of a fresh context (`SW_ENTRY`).
const ENTRY_OFFSET: usize = 24;
/// `top - DATA_OFFSET` holds the entry's data pointer (`SW_DATA`).
const DATA_OFFSET: usize = 32;
/// `top - START_OFFSET` is the stack pointer with which the trampoline enters the
/// shim (`SW_START`); the fresh frame sits right below it. The shim may overwrite
/// DATA and ENTRY (read before it runs), never LINK or SIZE, which lie above its
/// caller's area.
const START_OFFSET: usize = 32;
/// Words in a saved frame: rbx, rbp and the resume address (`SW_FRAME` bytes).
const FRAME_WORDS: usize = 3;
const FRAME_BYTES: usize = FRAME_WORDS * 8;
/// Word indices inside a saved frame, lowest address first.
const FRAME_RBX: usize = 0;
const FRAME_RBP: usize = 1;
const FRAME_PC: usize = 2;

// The slots are distinct words below the top, above the fresh frame; the ones that
// live as long as the context (LINK, SIZE) lie above START.
const _: () = assert!(LINK_OFFSET == 8 && SIZE_OFFSET == LINK_OFFSET + 8);
const _: () = assert!(ENTRY_OFFSET == SIZE_OFFSET + 8 && DATA_OFFSET == ENTRY_OFFSET + 8);
const _: () = assert!(START_OFFSET >= DATA_OFFSET && START_OFFSET >= SIZE_OFFSET + 16);
// The trampoline enters the shim as if called with rsp = top - START_OFFSET: 16-byte
// aligned as the ABI requires at a call (top itself is 16-byte aligned).
const _: () = assert!(START_OFFSET % 16 == 0);
// The frame's words are in the order the assembly pops them: rbx, rbp, then the
// resume address.
const _: () = assert!(FRAME_RBX == 0 && FRAME_RBP == 1 && FRAME_PC == 2 && FRAME_WORDS == 3);

extern "C" {
    /// The first resume address of every context (never called from Rust).
    fn stackweave_trampoline();
    /// `[SW_LINK, SW_SIZE, SW_ENTRY, SW_DATA, SW_START, SW_FRAME]` as assembled.
    #[cfg(test)]
    static stackweave_x86_64_layout: [usize; 6];
}

/// A context on a stack of its own (see the module docs of `context`).
pub(crate) struct Context {
    stack: Stack,
    /// `stack.top()`, kept at hand for the switch.
    top: *mut u8,
    /// The suspended coroutine's saved frame (its stack pointer); `FINISHED` once the
    /// entry has returned.
    sp: usize,
}

// Without `--cfg stackweave_asan` the fiber pointer is zero-sized: the suspender is
// the one word that `Yielder` keeps in a register across a switch.
#[cfg(not(stackweave_asan))]
const _: () = assert!(std::mem::size_of::<Suspender>() == 8);

/// `Context::sp` of a context whose entry has returned: the shim's final switch hands
/// it back instead of a frame.
const FINISHED: usize = 0;
// `stackweave_finish` hands back a literal 0 (`xor edx, edx`).
const _: () = assert!(FINISHED == 0);

/// The coroutine side's handle for switching back: the top of its stack.
#[derive(Clone, Copy)]
pub(crate) struct Suspender {
    top: *mut u8,
    /// The context's ASan fiber record, in the shim's frame (zero-sized without
    /// `--cfg stackweave_asan`).
    fiber: FiberPtr,
}

impl Context {
    /// Prepares `stack` to run `E::run(value, data, suspender)` on the first resume.
    ///
    /// # Safety
    ///
    /// * `data` must stay valid for as long as `E::run` may use it.
    #[inline]
    pub(crate) unsafe fn new<E: Entry>(stack: Stack, data: *mut ()) -> Context {
        let top = stack.top();
        let frame = top.wrapping_sub(START_OFFSET + FRAME_BYTES).cast::<usize>();
        // SAFETY: the stack has at least MIN_STACK_SIZE / 2 usable bytes below `top`
        // (reserve_top keeps half), far more than the slots and the frame written
        // here; `top` is 16-byte aligned.
        unsafe {
            let word = |offset: usize| top.sub(offset).cast::<usize>();
            frame
                .add(FRAME_PC)
                .write(stackweave_trampoline as *const () as usize);
            frame.add(FRAME_RBX).write(0);
            frame.add(FRAME_RBP).write(0);
            word(DATA_OFFSET).write(data as usize);
            word(ENTRY_OFFSET).write(shim::<E> as *const () as usize);
            word(SIZE_OFFSET).write(top as usize - stack.limit() as usize);
            word(LINK_OFFSET).write(0);
        }
        Context {
            stack,
            top,
            sp: frame as usize,
        }
    }

    /// Whether the context has been resumed at least once: its frame is no longer the
    /// fresh one built by `new` (a suspended frame always lies deeper in the stack).
    pub(crate) fn is_started(&self) -> bool {
        self.sp != self.top.wrapping_sub(START_OFFSET + FRAME_BYTES) as usize
    }

    /// Whether the entry has returned.
    #[inline(always)]
    pub(crate) fn is_finished(&self) -> bool {
        self.sp == FINISHED
    }

    /// Runs the context until it suspends or its entry returns.
    ///
    /// # Safety
    ///
    /// * The context must not have returned from its entry yet.
    /// * It must not be running (no resume of a context from inside itself).
    #[inline(always)]
    pub(crate) unsafe fn resume(&mut self, value: usize) -> usize {
        let result: usize;
        let asan = Resumer::leave(|| {
            let limit = self.stack.limit();
            (limit, self.top as usize - limit as usize)
        });
        // SAFETY: per this function's contract `sp` is a suspended frame (built by
        // `new` or saved by `stackweave_suspend`) that resumes into the trampoline or
        // the label after a suspend's `jmp`, both of which expect rdi = value and
        // rsi = top. `stackweave_resume` saves rbx, rbp and rsp in a frame on this
        // stack (recorded in LINK) and the coroutine comes back through the `ret` of
        // `stackweave_suspend` or `stackweave_finish`, with them restored, its value
        // in rdi and its new frame in rdx (FINISHED from the final switch). r12-r15
        // and the caller-saved registers are declared clobbered, so the compiler
        // preserves whatever it keeps in them. The call pushes below rsp (no
        // `nostack`); the asm block is entered with rsp 16-byte aligned.
        unsafe {
            asm!(
                "call stackweave_resume",
                inlateout("rdi") value => result,
                in("rsi") self.top,
                inlateout("rdx") self.sp => self.sp,
                lateout("r12") _,
                lateout("r13") _,
                lateout("r14") _,
                lateout("r15") _,
                clobber_abi("C"),
            );
        }
        asan.back();
        result
    }

    /// Usable size of the stack this context runs on.
    pub(crate) fn stack_size(&self) -> usize {
        self.stack.size()
    }

    /// The stack back.
    ///
    /// # Safety
    ///
    /// * The entry must have returned, or the context must never have been resumed:
    ///   nothing may live on the stack any more.
    pub(crate) unsafe fn into_stack(self) -> Stack {
        self.stack
    }
}

impl Suspender {
    /// Hands `value`, the entry's result, to the resumer for the last time and marks
    /// the context finished.
    ///
    /// # Safety
    ///
    /// * Must be called on the context's own stack, while it runs, once the entry has
    ///   returned: nothing on the stack may be used again.
    #[inline(always)]
    unsafe fn finish(self, value: usize) -> ! {
        // SAFETY: the context's fiber, on its stack (contract); the switch follows.
        unsafe { Fiber::finish(self.fiber) };
        // SAFETY: as in `suspend`, without saving a frame: `stackweave_finish`
        // hands rdx = FINISHED (0) to the resumer, which then never resumes this
        // context, and its `ret` pops the return address of the resumer's `call`.
        unsafe {
            asm!(
                "jmp stackweave_finish",
                in("rdi") value,
                in("rsi") self.top,
                options(noreturn),
            );
        }
    }

    /// Hands `value` to the resumer and waits to be resumed; returns the value the
    /// next `resume` passes.
    ///
    /// # Safety
    ///
    /// * Must be called on the context's own stack, while it runs.
    #[inline(always)]
    pub(crate) unsafe fn suspend(self, value: usize) -> usize {
        let resumed: usize;
        // SAFETY: the context's fiber, on its stack (contract); the switch follows.
        unsafe { Fiber::leave(self.fiber) };
        // SAFETY: we run on the context's stack (contract), so `top - LINK_OFFSET`
        // holds the frame that the resumer's `stackweave_resume` saved when this run
        // began. `stackweave_suspend` saves rbx, rbp and the resume address (label
        // 2) in a frame of the layout `Context::resume` expects, hands its address
        // to the resumer in rdx and `ret`s into it: that `ret` pops exactly the
        // return address its `call` pushed, so the return-stack buffer stays
        // balanced. The next `stackweave_resume` restores rbx, rbp and rsp and jumps
        // to label 2 with the new value in rdi. r12-r15 and every caller-saved
        // register are declared clobbered.
        unsafe {
            asm!(
                "lea rax, [rip + 2f]",
                "jmp stackweave_suspend",
                "2:",
                inlateout("rdi") value => resumed,
                in("rsi") self.top,
                lateout("r12") _,
                lateout("r13") _,
                lateout("r14") _,
                lateout("r15") _,
                clobber_abi("C"),
            );
        }
        // SAFETY: as above, right after landing back on the context's stack.
        unsafe { Fiber::back(self.fiber) };
        resumed
    }

    /// Whether the caller runs on this suspender's context, i.e. its stack pointer
    /// lies in the context's stack, `(top - SIZE, top]`. (A stack pointer equal to
    /// `top` would point into this stack's own mapping, the owner's area above it,
    /// so no other stack can have it.)
    #[inline(always)]
    pub(crate) fn is_current(self) -> bool {
        // SAFETY: a suspender is only reachable from code that its context runs
        // (directly, or through contexts it resumes), so its stack is alive; SIZE
        // was written by `new` and is never overwritten.
        let size = unsafe { self.top.sub(SIZE_OFFSET).cast::<usize>().read() };
        let depth: usize;
        // SAFETY: register arithmetic on rsp; touches no memory or stack.
        unsafe {
            asm!(
                "sub {depth}, rsp",
                depth = inout(reg) self.top as usize => depth,
                options(nomem, nostack),
            );
        }
        depth <= size
    }

    /// Whether `addr` lies in this suspender's stack, `(top - SIZE, top]`.
    pub(crate) fn contains(self, addr: usize) -> bool {
        // SAFETY: as in `is_current`: the stack is alive and SIZE never changes.
        let size = unsafe { self.top.sub(SIZE_OFFSET).cast::<usize>().read() };
        (self.top as usize).wrapping_sub(addr) <= size
    }

    /// Bytes left below the caller's frame on this stack (0 if the caller does not
    /// run on it).
    #[inline(always)]
    pub(crate) fn headroom(self) -> usize {
        // SAFETY: as in `is_current`.
        let size = unsafe { self.top.sub(SIZE_OFFSET).cast::<usize>().read() };
        let here = 0u8;
        let sp = std::hint::black_box(&here) as *const u8 as usize;
        let depth = (self.top as usize).wrapping_sub(sp);
        size.saturating_sub(depth)
    }
}

/// Entered by the trampoline on the new stack (with a `jmp`, as if called from it):
/// runs the entry, inlined, then hands its value to the resumer for the last time.
/// Never returns (the trampoline has nowhere to go).
extern "C" fn shim<E: Entry>(value: usize, data: *mut (), top: *mut u8) -> ! {
    // Lives in this frame, which never returns, for as long as the context runs.
    let mut fiber = Fiber::entered();
    let suspender = Suspender {
        top,
        fiber: fiber.as_ptr(),
    };
    // SAFETY: the entry runs once, on its own stack, with the data pointer it was made
    // for (`Context::new::<E>` wrote both); its caller promised that data stays valid.
    let last = unsafe { E::run(value, data, suspender) };
    // SAFETY: we are on the context's stack and the entry has returned; the resumer
    // sees FINISHED and never resumes the context.
    unsafe { suspender.finish(last) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembly_layout_matches_rust_constants() {
        // SAFETY: a read-only table defined in arch/x86_64.S.
        let table = unsafe { stackweave_x86_64_layout };
        assert_eq!(
            table,
            [
                LINK_OFFSET,
                SIZE_OFFSET,
                ENTRY_OFFSET,
                DATA_OFFSET,
                START_OFFSET,
                FRAME_BYTES
            ]
        );
    }
}
