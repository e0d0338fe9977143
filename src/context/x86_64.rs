//! The hand-written x86_64 System V switch (`arch/x86_64.S`).
//!
//! The top of every coroutine stack holds two words the assembly uses: `SAVED_SP`
//! (the coroutine's stack pointer while it is suspended) and `LINK` (the resumer's
//! stack pointer while the coroutine runs). A fresh context is a stack whose
//! `SAVED_SP` points at a hand-built frame that "resumes" into
//! `stackweave_trampoline`. See `arch/x86_64.S` for the frame diagram.

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
/// Words in a saved frame: six callee-saved registers and the resume address.
const FRAME_WORDS: usize = 7;
/// Bytes in a saved frame (`SW_FRAME`).
const FRAME_BYTES: usize = FRAME_WORDS * 8;
/// Word indices inside a saved frame, lowest address first.
const FRAME_R12: usize = 3;
const FRAME_R13: usize = 2;
const FRAME_RBX: usize = 4;
const FRAME_RBP: usize = 5;
const FRAME_PC: usize = 6;
/// Bytes at the top of the stack used by the two slots.
const TOP_RESERVED: usize = 16;

// The slots fit in the reserved area, and the trampoline starts with rsp at the LINK
// slot, which must be 16-byte aligned so that its `call` meets the ABI.
const _: () = assert!(SAVED_SP_OFFSET <= TOP_RESERVED && LINK_OFFSET <= TOP_RESERVED);
const _: () = assert!(LINK_OFFSET == TOP_RESERVED && LINK_OFFSET % 16 == 0);
const _: () = assert!(SAVED_SP_OFFSET != LINK_OFFSET);
// The frame's words are distinct and in range.
const _: () = assert!(FRAME_PC == FRAME_WORDS - 1 && FRAME_RBP < FRAME_PC);
const _: () = assert!(FRAME_R13 < FRAME_R12 && FRAME_R12 < FRAME_RBX && FRAME_RBX < FRAME_RBP);

extern "C" {
    /// Saves the resumer, switches to the coroutine whose stack top is `top`, and
    /// returns the value it suspends with.
    fn stackweave_resume(value: usize, top: *mut u8) -> usize;
    /// The first resume address of every context.
    fn stackweave_trampoline();
    /// `[SW_SAVED_SP, SW_LINK, SW_FRAME]` as assembled.
    #[cfg(test)]
    static stackweave_x86_64_layout: [usize; 3];
}

/// A context on a stack of its own (see the module docs of `context`).
pub(crate) struct Context {
    stack: Stack,
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
        // SAFETY: the stack has at least MIN_STACK_SIZE usable bytes below `top`, far
        // more than the two slots and one frame written here; `top` is 16-aligned.
        unsafe {
            let frame = top.sub(TOP_RESERVED + FRAME_BYTES).cast::<usize>();
            for i in 0..FRAME_WORDS {
                frame.add(i).write(0);
            }
            frame
                .add(FRAME_PC)
                .write(stackweave_trampoline as *const () as usize);
            frame.add(FRAME_RBX).write(entry as usize);
            frame.add(FRAME_R12).write(data as usize);
            frame.add(FRAME_R13).write(shim as *const () as usize);
            frame.add(FRAME_RBP).write(0);
            top.sub(SAVED_SP_OFFSET)
                .cast::<usize>()
                .write(frame as usize);
        }
        Context { stack }
    }

    /// Runs the context until it suspends or its entry returns.
    ///
    /// # Safety
    ///
    /// * The context must not have returned from its entry yet.
    /// * It must not be running (no resume of a context from inside itself).
    #[inline(always)]
    pub(crate) unsafe fn resume(&mut self, value: usize) -> usize {
        // SAFETY: per this function's contract the stack holds a suspended frame
        // (built by `new` or saved by `stackweave_suspend`) at SAVED_SP.
        unsafe { stackweave_resume(value, self.stack.top()) }
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
        // saves every callee-saved register and the stack pointer and comes back to
        // label 2 with rsp unchanged and the next resume's value in rax; every other
        // register is clobbered, as clobber_abi("C") declares. The return-stack
        // buffer stays balanced because we `jmp` in and the resumer's `call` is
        // matched by the `ret` in stackweave_suspend.
        unsafe {
            asm!(
                "lea rax, [rip + 2f]",
                "jmp stackweave_suspend",
                "2:",
                in("rdi") value,
                in("rsi") self.top,
                lateout("rax") resumed,
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
        assert_eq!(table, [SAVED_SP_OFFSET, LINK_OFFSET, FRAME_BYTES]);
    }
}
