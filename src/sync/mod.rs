//! Coroutine-aware synchronization with the API of `std::sync`.
//!
//! Every blocking call here suspends only the calling coroutine, and works from a
//! plain thread too (blocking that thread), so coroutines and threads can
//! coordinate with each other. Blocking goes through one internal mechanism (a list
//! of waiters per primitive, see `waiter.rs`) whose invariant is that a wakeup is
//! never lost, even when a waiter times out or is unwound.

pub(crate) mod waiter;

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
