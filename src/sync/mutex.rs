//! [`Mutex`]: `std::sync::Mutex` whose `lock` suspends only the calling coroutine.
//!
//! Invariant: the state word holds `LOCKED` while a guard exists (or while the lock
//! is on its way to a woken waiter: `HANDED`), and `WAITERS` whenever the wait list
//! is not empty. `WAITERS`, `HANDOFF` and `HANDED` change only under the list's lock
//! (`WAITERS` is set by a waiter just before it queues, in the same critical
//! section, and cleared by an unlock that finds the list empty). `WOKEN` is owned by
//! the one waiter an unlock took off the list to retry: set (under the list's lock)
//! only when it is clear, cleared only by that waiter (when it takes the lock, when
//! it queues again, or, unwound, passed on to the next waiter if the lock is free).
//! Lock and unlock without waiters are one atomic compare-and-swap each; every
//! waiter is taken off the list and notified under the list's lock, and an unlock
//! skips waking only while a woken waiter is still retrying, so no wakeup is lost.
//!
//! A woken waiter competes with newcomers for the lock (like `std`'s mutex, it is
//! not FIFO-fair): a coroutine retries a few times, yielding in between (the holder
//! may be a coroutine of its own worker, so it never busy-spins), while unlocks
//! leave the lock to it rather than wake others. If newcomers keep taking the lock
//! first, it queues again at the front and sets `HANDOFF`, and the next unlock hands
//! the lock over to it directly (keeps `LOCKED` set, adds `HANDED`, and wakes it),
//! so barging is bounded. A waiter unwound (cancelled) after it was woken passes on
//! what it got: the lock itself if it was handed over (it never held a guard, so
//! this does not poison), otherwise the wakeup.

use super::poison::{poison_result, Panicking, Poison};
use super::waiter::{self, WaitList, Waiter};
use crate::rt::{self, Request};
use crate::rt::{WaitKind, Why};
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::sync::{LockResult, TryLockError, TryLockResult};

/// Set while the mutex is locked.
const LOCKED: u8 = 1;
/// Set while the wait list may hold waiters (always, when it does).
const WAITERS: u8 = 2;
/// Set (with `WAITERS`) while a woken waiter that kept losing the lock to newcomers
/// waits again, first in line: the next unlock hands the lock over to it.
const HANDOFF: u8 = 4;
/// Set (with `LOCKED`) while the lock was handed over to a woken waiter that has not
/// collected it yet.
const HANDED: u8 = 8;
/// Set while a waiter that an unlock woke is retrying (off the list); unlocks then
/// leave the lock to it instead of waking another. Never set with `HANDED`.
const WOKEN: u8 = 16;
/// How many times a woken coroutine retries (yielding in between) before it queues
/// again and asks for a hand-over.
const WOKEN_SPINS: u32 = 8;

/// A mutual exclusion primitive for coroutines and threads, with the API of
/// [`std::sync::Mutex`].
///
/// [`lock`](Mutex::lock) on a locked mutex suspends only the calling coroutine (other
/// coroutines of its worker keep running), or blocks the calling thread outside a
/// coroutine; so coroutines and threads can share one mutex. Because a coroutine never
/// changes OS thread, a [`MutexGuard`] may be held across a suspension
/// ([`yield_now`](crate::yield_now), a socket read, a nested lock…).
///
/// Locking the mutex again from the coroutine that holds it deadlocks that coroutine.
/// An unlock wakes the longest waiter, which then competes with newcomers for the lock
/// (not FIFO-fair, like std's mutex: an uncontended lock and unlock stay one atomic
/// operation each); a woken waiter that loses once is handed the lock by the next
/// unlock, so none waits forever behind newcomers.
///
/// # Poisoning
///
/// As in `std`: a guard dropped while its coroutine (or thread) is unwinding from a
/// panic poisons the mutex, and every later [`lock`](Mutex::lock) or
/// [`try_lock`](Mutex::try_lock) returns an error that still carries the guard
/// ([`PoisonError::into_inner`](std::sync::PoisonError::into_inner)).
/// [`clear_poison`](Mutex::clear_poison) resets the flag.
///
/// **Cancellation poisons too.** A coroutine that is
/// [cancelled](crate::JoinHandle::cancel) or unwound by its runtime's shutdown while
/// it holds a guard is unwound (with the [`Cancelled`](crate::Cancelled) or
/// [`Unwound`](crate::Unwound) payload) from its next blocking point, and that point
/// may be in the middle of a critical section: between two updates that must go
/// together, with a `yield_now`, a nested lock or a socket write between them. The
/// data may be half-updated exactly as after a panic, and the mutex cannot tell the
/// difference, so it treats the unwind like any other one: it poisons. Code that knows its data is
/// consistent at every blocking point takes the data back with
/// [`PoisonError::into_inner`](std::sync::PoisonError::into_inner) or
/// [`clear_poison`](Mutex::clear_poison).
///
/// A coroutine cannot suspend while it unwinds (the runtime aborts the process if it
/// tries), so a destructor that runs during an unwind must not wait for a contended
/// mutex: use [`try_lock`](Mutex::try_lock) there.
///
/// # Examples
///
/// ```
/// use stackweave::sync::{Arc, Mutex};
///
/// let counter = Arc::new(Mutex::new(0));
/// let handles: Vec<_> = (0..10)
///     .map(|_| {
///         let counter = counter.clone();
///         stackweave::spawn(move || {
///             let mut n = counter.lock().unwrap();
///             stackweave::yield_now(); // still holding the lock
///             *n += 1;
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*counter.lock().unwrap(), 10);
/// ```
pub struct Mutex<T: ?Sized> {
    state: AtomicU8,
    poison: Poison,
    waiters: std::sync::Mutex<WaitList>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex owns its `T` and hands out access to it to one guard at a time,
// whatever thread that guard is on; moving the mutex moves the `T`, so `T: Send` is
// what both need (as for `std::sync::Mutex`).
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: `&Mutex<T>` gives `&mut T` to one guard at a time (the state word's
// `LOCKED` bit), possibly on another thread: `T: Send` suffices, as in std.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

// As in std: poisoning is how a mutex reports an unwind, so it is unwind safe.
impl<T: ?Sized> UnwindSafe for Mutex<T> {}
impl<T: ?Sized> RefUnwindSafe for Mutex<T> {}

/// The access to a [`Mutex`]'s data, as in `std`: unlocks the mutex when dropped
/// (poisoning it if dropped during an unwind).
///
/// Like `std::sync::MutexGuard` it is not `Send`; within a coroutine it may be held
/// across suspensions, since a coroutine never changes thread.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let m = stackweave::sync::Mutex::new(0);
/// send(m.lock().unwrap()); // error: `MutexGuard` is not `Send`
/// ```
///
/// # Examples
///
/// ```
/// use stackweave::sync::Mutex;
///
/// let m = Mutex::new(vec![1]);
/// {
///     let mut guard = m.lock().unwrap();
///     guard.push(2); // DerefMut
/// } // unlocked here
/// assert_eq!(*m.lock().unwrap(), [1, 2]);
/// ```
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized + 'a> {
    pub(super) mutex: &'a Mutex<T>,
    panicking: Panicking,
    /// Not `Send`, like std's guard.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only gives out `&T`, so sharing it across threads is sharing
// `&T`: `T: Sync`, as for std's guard.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// Creates an unlocked mutex holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Mutex;
    ///
    /// static COUNT: Mutex<u32> = Mutex::new(0);
    /// *COUNT.lock().unwrap() += 1;
    /// assert_eq!(*COUNT.lock().unwrap(), 1);
    /// ```
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU8::new(0),
            poison: Poison::new(),
            waiters: std::sync::Mutex::new(WaitList::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns its data; `Err` (still holding the data) if it
    /// is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Mutex;
    ///
    /// let m = Mutex::new(String::from("data"));
    /// assert_eq!(m.into_inner().unwrap(), "data");
    /// ```
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.poison.get();
        let data = self.data.into_inner();
        poison_result(poisoned, data)
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, suspending the calling coroutine (or blocking the calling
    /// thread) until it is free; like [`std::sync::Mutex::lock`].
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned (a holder unwound, see [Poisoning](Mutex#poisoning));
    /// the error still holds the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Mutex};
    ///
    /// let m = Arc::new(Mutex::new(0));
    /// let m2 = m.clone();
    /// stackweave::spawn(move || *m2.lock().unwrap() = 10).join().unwrap();
    /// assert_eq!(*m.lock().unwrap(), 10);
    /// ```
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        MutexGuard::new(self)
    }

    #[cold]
    fn lock_contended(&self) {
        if self.try_barge(false) {
            return;
        }
        let mut list = waiter::lock(&self.waiters);
        if self.acquire_or_announce(false) {
            return;
        }
        let mut starving = false;
        loop {
            let waiter = Waiter::current();
            if starving {
                list.push_front(waiter.clone());
            } else {
                list.push(waiter.clone());
            }
            drop(list);
            let leave = Leave {
                mutex: self,
                waiter: &waiter,
            };
            waiter.block(None, Why::new(WaitKind::Mutex));
            // Notified: an unlock (or a waiter passing its notification on) took us
            // off the list, under the list's lock, and either handed us the lock or
            // set `WOKEN` for us.
            if self.state.load(Ordering::Relaxed) & HANDED != 0 {
                list = waiter::lock(&self.waiters);
                if self.take_handed() {
                    std::mem::forget(leave);
                    return;
                }
                drop(list);
            }
            // Woken: retry, yielding in between (a coroutine only: the holder may be
            // a coroutine of this worker, which must get to run), while unlocks
            // leave us (`WOKEN`) to it rather than wake another waiter.
            let mut spins = 0;
            while spins < WOKEN_SPINS {
                if self.try_barge(true) {
                    std::mem::forget(leave);
                    return;
                }
                if !rt::suspend_current(Request::Yield) {
                    break;
                }
                spins += 1;
            }
            std::mem::forget(leave);
            // Newcomers kept taking it first: wait again, at the front, and ask for
            // the next unlock to hand the lock over.
            list = waiter::lock(&self.waiters);
            starving = true;
            if self.acquire_or_announce(true) {
                return;
            }
        }
    }

    /// Without the list's lock: takes the lock if it is free (clearing `WOKEN` when
    /// the caller is the woken waiter). Returns whether it took it.
    fn try_barge(&self, woken: bool) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & LOCKED == 0 {
            let next = if woken {
                (state | LOCKED) & !WOKEN
            } else {
                state | LOCKED
            };
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
        false
    }

    /// Under the list's lock: takes the lock if it is free, or announces a waiter
    /// (`WAITERS`, and `HANDOFF` if `starving`), which the caller then queues before
    /// releasing the list's lock. A `starving` caller is the woken waiter: either
    /// way it clears `WOKEN`. Returns whether it took the lock.
    fn acquire_or_announce(&self, starving: bool) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = if state & LOCKED == 0 {
                state | LOCKED
            } else if starving {
                state | WAITERS | HANDOFF
            } else {
                state | WAITERS
            };
            let next = if starving { next & !WOKEN } else { next };
            if next == state {
                return false;
            }
            match self
                .state
                .compare_exchange(state, next, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return next & LOCKED != state & LOCKED,
                Err(actual) => state = actual,
            }
        }
    }

    /// Under the list's lock, by a waiter taken off the list: whether an unlock
    /// handed it the lock (`HANDED`); then it holds it now.
    fn take_handed(&self) -> bool {
        // `Acquire`: the hand-over is the previous holder's unlock.
        if self.state.load(Ordering::Acquire) & HANDED == 0 {
            return false;
        }
        // Only under the list's lock can `HANDED` (or `WAITERS`, `HANDOFF`) change,
        // and `LOCKED` stays set: a plain clear is enough.
        self.state.fetch_and(!HANDED, Ordering::Relaxed);
        true
    }

    /// Locks the mutex if it is free, without waiting; like
    /// [`std::sync::Mutex::try_lock`].
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is locked, [`TryLockError::Poisoned`] (with
    /// the guard) if it was free but is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Mutex, TryLockError};
    ///
    /// let m = Mutex::new(1);
    /// let guard = m.try_lock().unwrap();
    /// assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    /// drop(guard);
    /// assert_eq!(*m.try_lock().unwrap(), 1);
    /// ```
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & LOCKED != 0 {
                return Err(TryLockError::WouldBlock);
            }
            match self.state.compare_exchange_weak(
                state,
                state | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(MutexGuard::new(self)?),
                Err(actual) => state = actual,
            }
        }
    }

    /// Whether the mutex is poisoned; like [`std::sync::Mutex::is_poisoned`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Mutex};
    ///
    /// let m = Arc::new(Mutex::new(0));
    /// let m2 = m.clone();
    /// let result = stackweave::spawn(move || {
    ///     let _guard = m2.lock().unwrap();
    ///     panic!("while holding the lock");
    /// })
    /// .join();
    /// assert!(result.is_err());
    /// assert!(m.is_poisoned());
    /// ```
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poisoned state; like [`std::sync::Mutex::clear_poison`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Mutex};
    ///
    /// let m = Arc::new(Mutex::new(0));
    /// let m2 = m.clone();
    /// let _ = stackweave::spawn(move || {
    ///     let _guard = m2.lock().unwrap();
    ///     panic!();
    /// })
    /// .join();
    /// assert!(m.is_poisoned());
    /// let guard = m.lock().unwrap_or_else(|e| {
    ///     m.clear_poison();
    ///     e.into_inner()
    /// });
    /// drop(guard);
    /// assert!(!m.is_poisoned());
    /// ```
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the data, without locking (the `&mut` proves nobody
    /// else can); like [`std::sync::Mutex::get_mut`].
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned; the error holds the reference.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Mutex;
    ///
    /// let mut m = Mutex::new(0);
    /// *m.get_mut().unwrap() = 10;
    /// assert_eq!(*m.lock().unwrap(), 10);
    /// ```
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.poison.get();
        poison_result(poisoned, self.data.get_mut())
    }

    /// Unlocks: clears `LOCKED`, and wakes the first waiter if there is one.
    fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_contended();
        }
    }

    #[cold]
    fn unlock_contended(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        // A woken waiter is retrying: just unlock; it takes the lock (or a newcomer
        // does, and unlocks it in turn).
        while state & WOKEN != 0 {
            match self.state.compare_exchange_weak(
                state,
                state & !LOCKED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
        let mut list = waiter::lock(&self.waiters);
        self.release(&mut list);
    }

    /// Under the list's lock, by the holder: releases the lock. Unless a woken
    /// waiter is retrying already (`WOKEN`: then it just unlocks), it takes the
    /// first waiter off the list and either hands the lock over to it, if it asked
    /// for that (`HANDOFF`: `LOCKED` stays set, with `HANDED`, so that no newcomer
    /// can take it first), or wakes it to retry (`WOKEN`).
    fn release(&self, list: &mut WaitList) {
        // `LOCKED` is ours, so nobody changes the state but under the list's lock,
        // which we hold: a plain store is enough.
        let state = self.state.load(Ordering::Relaxed);
        let waiting = |n: usize| if list.len() > n { WAITERS } else { 0 };
        let (next, wake) = if state & WOKEN != 0 {
            (WOKEN | waiting(0), false)
        } else if list.is_empty() {
            (0, false)
        } else if state & HANDOFF != 0 {
            (LOCKED | HANDED | waiting(1), true)
        } else {
            (WOKEN | waiting(1), true)
        };
        self.state.store(next, Ordering::Release);
        if wake {
            let first = list.pop_front().expect("a waiter is queued");
            let notified = first.notify();
            debug_assert!(notified, "a queued waiter is not notified yet");
        }
    }

    /// Under the list's lock, by the woken waiter (`WOKEN` is its own) that stops
    /// retrying without the lock (it is unwound): passes `WOKEN` on to the next
    /// waiter if the lock is free now (else the holder's unlock wakes one).
    fn pass_on_woken(&self, list: &mut WaitList) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let wake = state & LOCKED == 0 && !list.is_empty();
            let next = if wake { state } else { state & !WOKEN };
            if next == state && !wake {
                return;
            }
            match self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if wake {
                        let first = list.pop_front().expect("a waiter is queued");
                        let notified = first.notify();
                        debug_assert!(notified, "a queued waiter is not notified yet");
                    }
                    return;
                }
                Err(actual) => state = actual,
            }
        }
    }
}

/// On an unwind out of a wait or a retry (cancellation, shutdown): take the waiter
/// off the list; or, if it was taken off already (notified), pass on what it got:
/// the lock itself if it was handed over (it never held a guard, so this does not
/// poison), else the wakeup (`WOKEN`).
struct Leave<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    waiter: &'a Arc<Waiter>,
}

impl<T: ?Sized> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let mut list = waiter::lock(&self.mutex.waiters);
        if list.remove(self.waiter) || !self.waiter.is_notified() {
            return;
        }
        if self.mutex.take_handed() {
            self.mutex.release(&mut list);
        } else {
            self.mutex.pass_on_woken(&mut list);
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(err)) => d.field("data", &&**err.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.poison.get());
        d.finish_non_exhaustive()
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Wraps a lock just taken.
    fn new(mutex: &'a Mutex<T>) -> LockResult<MutexGuard<'a, T>> {
        let guard = MutexGuard {
            mutex,
            panicking: Panicking::now(),
            _not_send: PhantomData,
        };
        poison_result(mutex.poison.get(), guard)
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock (`LOCKED`), so no `&mut T` exists
        // elsewhere; the reference lives no longer than the guard.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, the only way to the data, and `&mut self`
        // makes this the only reference through the guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.poison.poison_if_unwinding(self.panicking);
        self.mutex.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(all(test, stackweave_loom))]
#[path = "mutex_loom.rs"]
mod loom_models;
