//! Poisoning, shared by [`Mutex`](super::Mutex) and [`RwLock`](super::RwLock):
//! std's rule and std's `PoisonError`.
//!
//! Invariant: a lock is poisoned exactly when one of its guards, created while
//! its thread was not unwinding, was dropped while it was (a coroutine unwinds on
//! its worker's thread, so a coroutine's unwind counts), and it stays poisoned
//! until `clear_poison`. The flag is `Relaxed`: a guard sets it before it unlocks,
//! so the lock's own release/acquire orders it for the next holder.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, PoisonError};
use std::thread;

/// The poison flag of a lock, with std's rule: a guard created while not unwinding
/// and dropped while unwinding poisons.
pub(super) struct Poison(AtomicBool);

/// Whether the thread was unwinding when a guard was created.
#[derive(Clone, Copy)]
pub(super) struct Panicking(bool);

impl Panicking {
    pub(super) fn now() -> Panicking {
        Panicking(thread::panicking())
    }
}

impl Poison {
    pub(super) const fn new() -> Poison {
        Poison(AtomicBool::new(false))
    }

    pub(super) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(super) fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// Called by a guard's drop (before it unlocks).
    pub(super) fn poison_if_unwinding(&self, at_creation: Panicking) {
        if !at_creation.0 && thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// `Ok(value)`, or `Err` carrying it when poisoned.
pub(super) fn poison_result<T>(poisoned: bool, value: T) -> LockResult<T> {
    if poisoned {
        Err(PoisonError::new(value))
    } else {
        Ok(value)
    }
}
