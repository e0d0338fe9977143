//! Suspending with a deadline: the timed wait every timeout of the public layers
//! (`time`, `sync`, `io`, `net`) is built on.
//!
//! Invariant: the timer a wait arms is disarmed however the wait ends (return, or an
//! unwind out of the suspension), and the wait re-checks `done()` and the clock
//! after every wakeup, so a spurious or early wakeup never ends it early; a wait
//! whose deadline has already passed still yields once (`turn_after_expiry`)
//! before it reports the timeout.

use super::scheduler::{self, Why};
use super::timer_queue::TimerKey;
use std::time::Instant;

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
struct Timer(TimerKey);

impl Drop for Timer {
    fn drop(&mut self) {
        scheduler::cancel_timer(self.0);
    }
}
