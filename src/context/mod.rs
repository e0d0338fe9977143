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
//! * `Context::new(stack, entry, data)`: prepares `stack` so that the first
//!   `resume(v)` calls `entry(v, data, suspender)` on it;
//! * `Context::resume(&mut self, v) -> usize`: runs the context until it suspends
//!   (returning the value it passed to `suspend`) or until `entry` returns (returning
//!   `entry`'s value; the context must not be resumed again);
//! * `Context::stack_size(&self)`: the usable size of its stack;
//! * `Context::into_stack(self)`: the stack back, once `entry` has returned or if the
//!   context never started;
//! * `Suspender::suspend(self, v) -> usize`: from inside the context, hands `v` to the
//!   resumer and waits for the next `resume`, returning its value.
//!
//! Invariant: values cross a switch as one `usize`; anything bigger travels through
//! memory that both sides can see (the generator's slot). Panics never cross a
//! switch: `entry` must not unwind (the backends abort if it does).

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

/// The entry function of a context: receives the first resume's value, the data
/// pointer given to `Context::new`, and the suspender; returns the final value.
///
/// It must not unwind.
pub(crate) type Entry = unsafe fn(value: usize, data: *mut (), suspender: Suspender) -> usize;

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
