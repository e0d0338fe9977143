//! Time: sleeping, and the deadlines behind every timeout.
//!
//! Invariant: a coroutine's timers live on its home worker (the worker it runs on),
//! which fires them from its loop and sleeps in its reactor no longer than until the
//! earliest one; a timer wakes its coroutine no earlier than its deadline, and every
//! waiting function re-checks the clock after each wakeup, so a spurious or early
//! wakeup never ends a wait early. Outside a coroutine, these functions block the
//! calling thread like their `std` counterparts.

mod scope;

pub(crate) use scope::outside_coroutine;
pub use scope::{deadline, timeout, Elapsed};

pub(crate) use crate::rt::suspend::{suspend_until, turn_after_expiry};
use crate::rt::{WaitKind, Why};
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
