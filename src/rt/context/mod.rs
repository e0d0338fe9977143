//! The context switch: one execution on its own stack, resumed and suspended.
//!
//! This is the only module that knows how a switch is made. It offers one small
//! interface, implemented by two backends:
//!
//! * `x86_64` — the hand-written switch in `arch/x86_64.S` (x86_64 Linux), the default;
//! * `portable` — the `corosensei` crate, selected by the `corosensei-backend`
//!   feature or automatically on targets without a file in `arch/`.
//!
//! Every backend provides:
//!
//! * `Context::new::<E>(stack, data)`: prepares `stack` so that the first
//!   `resume(v)` runs `E::run(v, data, suspender)` on it;
//! * `Context::resume(&mut self, v) -> usize`: runs the context until it suspends
//!   (returning the value it passed to `suspend`) or until `E::run` returns (returning
//!   its value; the context must not be resumed again);
//! * `Context::is_started(&self)` / `Context::is_finished(&self)`: whether it has
//!   been resumed at least once / whether `E::run` has returned (then it must not be
//!   resumed again);
//! * `Context::stack_size(&self)`: the usable size of its stack;
//! * `Context::into_stack(self)`: the stack back, once `E::run` has returned or if the
//!   context never started;
//! * `Suspender::suspend(self, v) -> usize`: from inside the context, hands `v` to the
//!   resumer and waits for the next `resume`, returning its value;
//! * `Suspender::is_current(self) -> bool`: whether the caller runs on the context's
//!   own stack (the only place where `suspend` may be called).
//!
//! Invariant: values cross a switch as one `usize`; anything bigger travels through
//! memory that both sides can see (the generator's slot). Panics never cross a
//! switch: `E::run` must not unwind (the backends abort if it does).
//!
//! The entry is a type rather than a function pointer so that a backend can inline
//! it into its own first function on the new stack, together with the final switch:
//! no `call` that never returns on the coroutine stack, which would leave the CPU's
//! return-stack buffer misaligned for the switches that follow.

#[cfg(not(any(
    all(
        target_arch = "x86_64",
        target_os = "linux",
        not(feature = "corosensei-backend")
    ),
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
)))]
compile_error!(
    "stackweave has no context switch for this target: arch/ has no file for it and \
     corosensei does not support it. Supported: x86_64 (hand-written), and via \
     corosensei: aarch64, arm, riscv64, loongarch64."
);

#[cfg(not(unix))]
compile_error!("stackweave supports Unix targets only (stacks are reserved with mmap)");

pub(crate) mod asan;

/// The entry of a context.
pub(crate) trait Entry {
    /// Runs on the context's stack: receives the first resume's value, the data
    /// pointer given to `Context::new`, and the suspender; returns the final value.
    /// It must not unwind.
    ///
    /// # Safety
    ///
    /// Called once per context, on its stack, with the data pointer it was made for.
    unsafe fn run(value: usize, data: *mut (), suspender: Suspender) -> usize;
}

#[cfg(all(
    target_arch = "x86_64",
    target_os = "linux",
    not(feature = "corosensei-backend")
))]
#[path = "x86_64.rs"]
mod backend;

#[cfg(not(all(
    target_arch = "x86_64",
    target_os = "linux",
    not(feature = "corosensei-backend")
)))]
#[path = "portable.rs"]
mod backend;

pub(crate) use backend::{Context, Suspender, BACKEND};

/// The bare switch of the compiled-in backend, with no `Generator` around it: a
/// context that counts up and suspends with the count, resumed by hand. Only for
/// the switch benchmark (`benches/switch.rs`, "bare switch" group), which cannot
/// reach the crate's private context otherwise; re-exported hidden as
/// `stackweave::__BareSwitch`.
pub struct BareSwitch {
    /// Never finished (the entry loops forever), so never dropped: its stack is
    /// leaked rather than freed under a suspended frame (Counter holds nothing that
    /// needs dropping).
    context: std::mem::ManuallyDrop<Context>,
}

/// The entry of a [`BareSwitch`]: suspends with 1, 2, 3, ... forever.
struct Counter;

impl Entry for Counter {
    unsafe fn run(_: usize, _: *mut (), suspender: Suspender) -> usize {
        let mut i = 0usize;
        loop {
            i = i.wrapping_add(1);
            // SAFETY: on this context's own stack, while it runs.
            unsafe { suspender.suspend(std::hint::black_box(i)) };
        }
    }
}

impl BareSwitch {
    /// A counting context on a fresh 64 KiB stack.
    pub fn new() -> std::io::Result<BareSwitch> {
        let stack = crate::rt::stack::Stack::new(64 * 1024)?;
        // SAFETY: Counter ignores its data pointer.
        let context = unsafe { Context::new::<Counter>(stack, std::ptr::null_mut()) };
        Ok(BareSwitch {
            context: std::mem::ManuallyDrop::new(context),
        })
    }

    /// One round trip: switches into the context and back; the count it suspended
    /// with (1 after the first call).
    #[inline]
    pub fn resume(&mut self) -> usize {
        // SAFETY: Counter never finishes, and the context is not running: only it
        // could call this while it runs, and it never sees `self`.
        unsafe { self.context.resume(0) }
    }
}
