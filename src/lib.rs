//! stackweave: a stackful coroutine runtime.
//!
//! Write plain, blocking-style code — one coroutine per task, ordinary loops and
//! function calls — and run it with the efficiency of an event loop. Each coroutine
//! has its own stack and is switched by hand-written assembly (`arch/`).
//!
//! This release provides the foundation layer:
//!
//! * [`generator`] — standalone stackful generators that suspend from any call depth,
//!   usable without a runtime;
//! * [`stack`] — the configuration of coroutine stacks (lazily committed, guarded,
//!   pooled; an overflow is reported by name and aborts, never silently corrupts).
//!
//! ```
//! use stackweave::generator::{Generator, GeneratorState, Yielder};
//!
//! let mut g = Generator::new(|y: &Yielder<u32>| {
//!     y.suspend(1);
//!     y.suspend(2);
//!     "done"
//! });
//! assert_eq!(g.resume(), GeneratorState::Yielded(1));
//! assert_eq!(g.resume(), GeneratorState::Yielded(2));
//! assert_eq!(g.resume(), GeneratorState::Complete("done"));
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod context;
mod coroutine;
pub mod generator;
pub mod runtime;
mod scheduler;
pub mod stack;

pub use coroutine::local::LocalKey;
pub use coroutine::{
    current, park, spawn, yield_now, Builder, Coroutine, CoroutineId, JoinHandle, Unwound,
};
pub use runtime::Runtime;

/// The context-switch backend compiled in: `"hand-written x86_64"` or
/// `"corosensei"` (with the `corosensei-backend` feature, or on targets without a
/// file in `arch/`).
///
/// # Examples
///
/// ```
/// println!("stackweave switches with {}", stackweave::SWITCH_BACKEND);
/// ```
pub const SWITCH_BACKEND: &str = context::BACKEND;

/// The code blocks of README.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
