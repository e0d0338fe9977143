//! Suspending with a deadline: the timed wait every timeout of the public layers
//! (`time`, `sync`, `io`, `net`) is built on.
//!
//! Invariant: the timer a wait arms is disarmed however the wait ends (return, or an
//! unwind out of the suspension), and the wait re-checks `done()` and the clock
//! after every wakeup, so a spurious or early wakeup never ends it early.

use super::scheduler::{self, Why};
use super::timer_queue::TimerKey;
use std::time::Instant;

/// Suspends the running coroutine until `done()` returns true (checked first, and
/// after every wakeup) or `deadline` passes. Returns the last `done()` (`Some(false)`
/// on timeout), or `None` at once when not called from a coroutine.
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
        return Some(false);
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

/// Disarms its timer when dropped (on return, or when the coroutine is unwound).
struct Timer(TimerKey);

impl Drop for Timer {
    fn drop(&mut self) {
        scheduler::cancel_timer(self.0);
    }
}
