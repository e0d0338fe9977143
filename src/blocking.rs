//! [`spawn_blocking`]: running a blocking call on the engine's thread pool
//! (`rt::blocking`) while only the calling coroutine waits.
//!
//! Invariant: the calling coroutine stays parked until the job has put its result
//! in the slot (a wakeup that finds the slot empty parks again); the job owns
//! everything it uses, so a coroutine unwound while it waits leaves nothing
//! dangling.

use crate::coroutine;
use crate::rt::blocking;
use crate::rt::scheduler::{self, WaitKind, Why};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// Runs `f` on the blocking thread pool and suspends the calling coroutine until it
/// returns its value; outside a coroutine, runs `f` on the calling thread. Use it
/// for whatever would block a worker thread: file I/O, CPU-heavy work, DNS, a
/// foreign library's blocking call.
///
/// The pool is shared by the whole process. It starts threads on demand, up to 16
/// (or what [`runtime::Builder::blocking_threads`](crate::runtime::Builder::blocking_threads)
/// last set); past that limit, jobs wait in a FIFO queue (unbounded) and their
/// coroutines stay suspended until a thread is free. A thread idle for 10 s exits.
///
/// A panic in `f` continues in the caller. If the calling coroutine is cancelled or
/// its runtime shuts down while it waits, `f` still runs to completion on the pool
/// and its result is dropped.
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| {
///     // Reading a file blocks the OS thread: do it on the pool.
///     stackweave::spawn_blocking(|| std::fs::read_to_string("Cargo.toml"))
/// });
/// assert!(h.join().unwrap().unwrap().contains("stackweave"));
/// ```
pub fn spawn_blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if scheduler::current_task().is_none() {
        return f();
    }
    let slot = Arc::new(Mutex::new(None));
    let me = crate::current();
    let job_slot = slot.clone();
    blocking::submit(Box::new(move || {
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        *job_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        me.unpark();
    }));
    loop {
        if let Some(result) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return result.unwrap_or_else(|payload| panic::resume_unwind(payload));
        }
        coroutine::park_for(Why::new(WaitKind::Blocking));
    }
}
