//! Time: sleeping, and the deadlines behind every timeout.
//!
//! Invariant: a coroutine's timers live on its home worker (the worker it runs on),
//! which fires them from its loop and sleeps in its reactor no longer than until the
//! earliest one; a timer wakes its coroutine no earlier than its deadline, and every
//! waiting function re-checks the clock after each wakeup, so a spurious or early
//! wakeup never ends a wait early. Outside a coroutine, these functions block the
//! calling thread like their `std` counterparts.

pub(crate) mod queue;
mod scope;

pub(crate) use scope::outside_coroutine;
pub use scope::{deadline, timeout, Elapsed};

use crate::scheduler;
use crate::scheduler::{WaitKind, Why};
use std::time::{Duration, Instant};

/// Puts the running coroutine to sleep for at least `duration`, like
/// [`std::thread::sleep`]; other coroutines run on its worker meanwhile. Outside a
/// coroutine, sleeps the thread.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let h = stackweave::spawn(|| {
///     let start = Instant::now();
///     stackweave::time::sleep(Duration::from_millis(20));
///     start.elapsed()
/// });
/// assert!(h.join().unwrap() >= Duration::from_millis(20));
/// ```
pub fn sleep(duration: Duration) {
    match Instant::now().checked_add(duration) {
        Some(deadline) => sleep_until(deadline),
        // Further than the clock can count: forever.
        None => loop {
            sleep(Duration::from_secs(60 * 60 * 24 * 365));
        },
    }
}

/// Puts the running coroutine to sleep until `deadline`; if it has passed, only
/// yields (lets the worker's other ready coroutines run once). Outside a coroutine,
/// sleeps the thread.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let deadline = Instant::now() + Duration::from_millis(10);
/// stackweave::spawn(move || stackweave::time::sleep_until(deadline)).join().unwrap();
/// assert!(Instant::now() >= deadline);
/// ```
pub fn sleep_until(deadline: Instant) {
    if suspend_until(deadline, Why::new(WaitKind::Sleep), || false).is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
    }
}

/// Suspends the running coroutine until `done()` returns true (checked first, and
/// after every wakeup) or `deadline` passes. Returns the last `done()` (`Some(false)`
/// on timeout), or `None` at once when not called from a coroutine.
///
/// A wait whose deadline has already passed (a zero timeout, a loop that polls
/// with short ones) still gives up the worker for one turn, as a yield, before it
/// reports: otherwise such a loop would never let the worker's other coroutines
/// run (nothing in it would block). Every timed wait of the runtime comes here.
pub(crate) fn suspend_until(
    deadline: Instant,
    why: Why,
    mut done: impl FnMut() -> bool,
) -> Option<bool> {
    let task = scheduler::current_task()?;
    if done() {
        return Some(true);
    }
    if Instant::now() >= deadline {
        drop(task);
        turn_after_expiry();
        return Some(done());
    }
    let _timer = scheduler::add_timer(deadline, task).map(Timer);
    let why = why.until(deadline);
    loop {
        scheduler::wait_current(why);
        if done() {
            return Some(true);
        }
        if Instant::now() >= deadline {
            return Some(false);
        }
    }
}

/// A timed wait found its deadline passed before it would suspend: give up the
/// worker for one turn (a yield; nothing outside a coroutine), so that a loop of
/// such waits lets the worker's other coroutines run (see [`suspend_until`]).
/// Callers hold no lock across it. A blocking point: it may unwind, as the wait
/// would have.
pub(crate) fn turn_after_expiry() {
    scheduler::suspend_current(scheduler::Request::Yield);
}

/// Disarms its timer when dropped (on return, or when the coroutine is unwound).
struct Timer(queue::TimerKey);

impl Drop for Timer {
    fn drop(&mut self) {
        scheduler::cancel_timer(self.0);
    }
}
