//! The hand-written x86_64 System V switch (`arch/x86_64.S`).
//!
//! The top of every coroutine stack holds the words the assembly uses: `SAVED_SP`
//! (the coroutine's stack pointer while it is suspended), `LINK` (the resumer's
//! stack pointer while the coroutine runs), and for a fresh context the entry and
//! its data. A fresh context is a stack whose `SAVED_SP` points at a hand-built
//! frame that "resumes" into `stackweave_trampoline`. See `arch/x86_64.S` for the
//! frame diagram and the register contract.

use super::Entry;
use crate::stack::Stack;
use std::arch::{asm, global_asm};

global_asm!(include_str!("../../arch/x86_64.S"), options(raw));

/// Name of this backend, for benchmarks and diagnostics.
pub(crate) const BACKEND: &str = "hand-written x86_64";

/// `top - SAVED_SP_OFFSET` holds the suspended coroutine's stack pointer
/// (`SW_SAVED_SP` in the assembly).
const SAVED_SP_OFFSET: usize = 8;
/// `top - LINK_OFFSET` holds the resumer's stack pointer (`SW_LINK`).
const LINK_OFFSET: usize = 16;
/// `top - ENTRY_OFFSET` holds the entry of a fresh context (`SW_ENTRY`).
const ENTRY_OFFSET: usize = 24;
/// `top - DATA_OFFSET` holds the entry's data pointer (`SW_DATA`); the trampoline
/// runs with rsp here.
const DATA_OFFSET: usize = 32;
/// Words in a saved frame: rbx, rbp and the resume address (`SW_FRAME` bytes).
const FRAME_WORDS: usize = 3;
const FRAME_BYTES: usize = FRAME_WORDS * 8;
/// Word indices inside a saved frame, lowest address first.
const FRAME_RBX: usize = 0;
const FRAME_RBP: usize = 1;
const FRAME_PC: usize = 2;

// The slots are distinct words below the top.
const _: () = assert!(SAVED_SP_OFFSET == 8 && LINK_OFFSET == SAVED_SP_OFFSET + 8);
const _: () = assert!(ENTRY_OFFSET == LINK_OFFSET + 8 && DATA_OFFSET == ENTRY_OFFSET + 8);
// The trampoline calls the shim with rsp = top - DATA_OFFSET: 16-byte aligned as the
// ABI requires at a call (top itself is 16-byte aligned).
const _: () = assert!(DATA_OFFSET % 16 == 0);
// The frame's words are in the order the assembly pushes them.
const _: () = assert!(FRAME_RBX < FRAME_RBP && FRAME_RBP < FRAME_PC && FRAME_PC == FRAME_WORDS - 1);

extern "C" {
    /// The first resume address of every context (never called from Rust).
    fn stackweave_trampoline();
    /// `[SW_SAVED_SP, SW_LINK, SW_ENTRY, SW_DATA, SW_FRAME]` as assembled.
    #[cfg(test)]
    static stackweave_x86_64_layout: [usize; 5];
}

/// A context on a stack of its own (see the module docs of `context`).
pub(crate) struct Context {
    stack: Stack,
    /// `stack.top()`, kept at hand for the switch.
    top: *mut u8,
}

/// The coroutine side's handle for switching back: the top of its stack.
#[derive(Clone, Copy)]
pub(crate) struct Suspender {
    top: *mut u8,
}

impl Context {
    /// Prepares `stack` to run `entry(value, data, suspender)` on the first resume.
    ///
    /// # Safety
    ///
    /// * `data` must stay valid for as long as `entry` may use it.
    pub(crate) unsafe fn new(stack: Stack, entry: Entry, data: *mut ()) -> Context {
        let top = stack.top();
        // SAFETY: the stack has at least MIN_STACK_SIZE / 2 usable bytes below `top`
        // (reserve_top keeps half), far more than the four slots and one frame
        // written here; `top` is 16-byte aligned.
        unsafe {
            let word = |offset: usize| top.sub(offset).cast::<usize>();
            let frame = top.sub(DATA_OFFSET + FRAME_BYTES).cast::<usize>();
            frame.add(FRAME_RBX).write(shim as *const () as usize);
            frame.add(FRAME_RBP).write(0);
            frame
                .add(FRAME_PC)
                .write(stackweave_trampoline as *const () as usize);
            word(DATA_OFFSET).write(data as usize);
            word(ENTRY_OFFSET).write(entry as usize);
            word(LINK_OFFSET).write(0);
            word(SAVED_SP_OFFSET).write(frame as usize);
        }
        Context { stack, top }
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
        // SAFETY: per this function's contract the stack holds a suspended frame
        // (built by `new` or saved by `stackweave_suspend`) at SAVED_SP.
        // `stackweave_resume` saves rbx, rbp and rsp and comes back here (through the
        // `ret` in `stackweave_suspend`) with them restored and the coroutine's value
        // in rax; r12-r15 and the caller-saved registers are declared clobbered, so
        // the compiler preserves whatever it keeps in them. The asm block is entered
        // with a 16-byte aligned rsp and pushes below it (no `nostack`).
        unsafe {
            asm!(
                "call stackweave_resume",
                in("rdi") value,
                in("rsi") self.top,
                lateout("rax") result,
                lateout("r12") _,
                lateout("r13") _,
                lateout("r14") _,
                lateout("r15") _,
                clobber_abi("C"),
            );
        }
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
    /// Hands `value` to the resumer and waits to be resumed; returns the value the
    /// next `resume` passes.
    ///
    /// # Safety
    ///
    /// * Must be called on the context's own stack, while it runs.
    #[inline(always)]
    pub(crate) unsafe fn suspend(self, value: usize) -> usize {
        let resumed: usize;
        // SAFETY: we run on the context's stack (contract), so `top` holds the LINK
        // slot written by the resume that started this run. `stackweave_suspend`
        // saves rbx, rbp, rsp and the resume address, and comes back to label 2 with
        // them restored and the next resume's value in rax; r12-r15 and every
        // caller-saved register are declared clobbered. The return-stack buffer stays
        // balanced because we `jmp` in and the resumer's `call` is matched by the
        // `ret` in stackweave_suspend.
        unsafe {
            asm!(
                "lea rax, [rip + 2f]",
                "jmp stackweave_suspend",
                "2:",
                in("rdi") value,
                in("rsi") self.top,
                lateout("rax") resumed,
                lateout("r12") _,
                lateout("r13") _,
                lateout("r14") _,
                lateout("r15") _,
                clobber_abi("C"),
            );
        }
        resumed
    }
}

/// Called by the trampoline on the new stack: runs the entry, then hands its value to
/// the resumer for the last time. Never returns (the trampoline has nowhere to go).
extern "C" fn shim(value: usize, data: *mut (), top: *mut u8, entry: usize) -> ! {
    // SAFETY: `entry` was written into the frame by `Context::new` from an `Entry`.
    let entry: Entry = unsafe { std::mem::transmute::<usize, Entry>(entry) };
    let suspender = Suspender { top };
    // SAFETY: the entry runs on its own stack with the data pointer it was given;
    // `Context::new`'s caller promised that data stays valid.
    let last = unsafe { entry(value, data, suspender) };
    // SAFETY: we are on the context's stack; after this final switch the resumer
    // treats the context as finished and never resumes it.
    unsafe { suspender.suspend(last) };
    // Resuming a finished context is a bug in this crate; fail loudly.
    std::process::abort()
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
                SAVED_SP_OFFSET,
                LINK_OFFSET,
                ENTRY_OFFSET,
                DATA_OFFSET,
                FRAME_BYTES
            ]
        );
    }
}
