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
