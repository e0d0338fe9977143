//! Coroutine-aware synchronization with the API of `std::sync`.
//!
//! Every blocking call here suspends only the calling coroutine, and works from a
//! plain thread too (blocking that thread), so coroutines and threads can
//! coordinate with each other. Blocking goes through one internal mechanism (a list
//! of waiters per primitive, see `waiter.rs`) whose invariant is that a wakeup is
//! never lost, even when a waiter times out or is unwound.

pub(crate) mod waiter;
pub(crate) mod wake;

/// The iterator impls of a channel module's `Receiver<T>` (with `recv` and
/// `try_recv`) and its `Iter`, `TryIter` and `IntoIter` (each holding the receiver,
/// or a reference to it, in a field `rx`): `mpsc` and `mpmc` have the same ones.
macro_rules! receiver_iterators {
    () => {
        impl<T> Iterator for Iter<'_, T> {
            type Item = T;
            fn next(&mut self) -> Option<T> {
                self.rx.recv().ok()
            }
        }

        impl<T> Iterator for TryIter<'_, T> {
            type Item = T;
            fn next(&mut self) -> Option<T> {
                self.rx.try_recv().ok()
            }
        }

        impl<T> Iterator for IntoIter<T> {
            type Item = T;
            fn next(&mut self) -> Option<T> {
                self.rx.recv().ok()
            }
        }

        impl<'a, T> IntoIterator for &'a Receiver<T> {
            type Item = T;
            type IntoIter = Iter<'a, T>;
            fn into_iter(self) -> Iter<'a, T> {
                self.iter()
            }
        }

        impl<T> IntoIterator for Receiver<T> {
            type Item = T;
            type IntoIter = IntoIter<T>;
            fn into_iter(self) -> IntoIter<T> {
                IntoIter { rx: self }
            }
        }
    };
}
use receiver_iterators;

mod channel;
pub mod select;

pub mod mpmc;
pub mod mpsc;

mod barrier;
mod condvar;
mod mutex;
mod rwlock;
mod semaphore;
mod wait_group;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use std::sync::{Arc, LockResult, PoisonError, TryLockError, TryLockResult, Weak};
pub use wait_group::WaitGroup;
