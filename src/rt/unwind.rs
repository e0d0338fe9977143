//! The two payloads a coroutine that did not return ends with: [`Unwound`] (its
//! runtime shut down) and [`Cancelled`] (it was cancelled). Defined here, since the
//! scheduler raises and reports them; public as `stackweave::{Unwound, Cancelled}`.
//!
//! Invariant: the scheduler raises [`Cancelled`] only in a coroutine whose task was
//! marked cancelled, and [`Unwound`] only in one it unwinds (or completes unrun)
//! for its runtime's shutdown; `join` hands either on as its `Err` payload.

use std::fmt;

/// The panic payload [`JoinHandle::join`](crate::JoinHandle::join) returns for a coroutine that the runtime
/// unwound (or never started) because the runtime was shut down or dropped.
///
/// # Examples
///
/// ```
/// use stackweave::{Runtime, Unwound};
///
/// let rt = Runtime::builder().workers(1).build()?;
/// let blocked = rt.spawn(|| loop { stackweave::park() });
/// drop(rt); // unwinds `blocked` on its worker
/// let payload = blocked.join().unwrap_err();
/// assert!(payload.is::<Unwound>());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwound;

impl fmt::Display for Unwound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("coroutine unwound by its runtime's shutdown")
    }
}

/// The panic payload of a coroutine that was [cancelled](crate::JoinHandle::cancel): its
/// [`join`](crate::JoinHandle::join) returns `Err` with this (distinguishable from a panic's
/// payload with `is::<Cancelled>()`).
///
/// # Examples
///
/// ```
/// use stackweave::Cancelled;
///
/// let h = stackweave::spawn(|| loop { stackweave::park() });
/// h.cancel();
/// assert!(h.join().unwrap_err().is::<Cancelled>());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("coroutine cancelled")
    }
}
