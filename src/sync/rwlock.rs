//! [`RwLock`]: `std::sync::RwLock` whose waits suspend only the calling coroutine.
//!
//! Invariant: the state (under a `std::sync::Mutex` held only briefly) has either one
//! writer or any number of readers. Writers do not starve: from a writer's first
//! failed attempt until it gets the lock or leaves, it counts in `writers_waiting`,
//! and while that is non-zero new readers queue. Readers do not starve either: a
//! writer that unlocks with readers queued wakes them all and gives them that many
//! passes past the waiting writers (`read_pass`); the last reader out wakes a writer.
//! Every transition that can let a queued waiter in wakes it (the unlocks, and a
//! waiter that leaves by unwinding calls `wake_waiters`), so no wakeup is lost.

use super::poison::{poison_result, Panicking, Poison};
use super::waiter::{self, WaitList};
use crate::rt::{WaitKind, Why};
use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{LockResult, TryLockError, TryLockResult};

/// A reader-writer lock for coroutines and threads, with the API of
/// [`std::sync::RwLock`]: any number of readers, or one writer.
///
/// Waiting suspends only the calling coroutine (or blocks the calling thread outside
/// a coroutine), and guards may be held across suspensions. Once a writer waits, new
/// readers queue behind it, so a stream of readers cannot starve writers; and a
/// writer that unlocks lets the readers queued behind it in before the next writer.
/// So, as with std's writer-preferring locks, a coroutine that holds a read lock and
/// asks for another may deadlock: the second `read` queues behind a waiting writer,
/// which waits for the first.
///
/// # Poisoning
///
/// As in std: a write guard dropped during an unwind (a panic, a cancellation or a
/// runtime shutdown; see [`Mutex`](super::Mutex#poisoning) for why cancellation
/// counts) poisons the lock; read guards never do.
///
/// # Examples
///
/// ```
/// use stackweave::sync::{Arc, RwLock};
///
/// let config = Arc::new(RwLock::new(String::from("v1")));
/// let readers: Vec<_> = (0..4)
///     .map(|_| {
///         let config = config.clone();
///         stackweave::spawn(move || config.read().unwrap().len())
///     })
///     .collect();
/// *config.write().unwrap() = String::from("v2");
/// for r in readers {
///     assert_eq!(r.join().unwrap(), 2);
/// }
/// ```
pub struct RwLock<T: ?Sized> {
    state: std::sync::Mutex<State>,
    poison: Poison,
    data: UnsafeCell<T>,
}

struct State {
    readers: usize,
    writer: bool,
    /// Writers that failed an attempt and are still trying.
    writers_waiting: usize,
    /// Woken readers that may still go in ahead of the waiting writers.
    read_pass: usize,
    read_waiters: WaitList,
    write_waiters: WaitList,
}

impl State {
    /// Wakes whoever the state lets in: the queued readers if no writer holds or
    /// waits (or passes are left), a writer if nobody holds the lock.
    fn wake_waiters(&mut self) {
        if self.writer {
            return;
        }
        if self.writers_waiting == 0 || self.read_pass > 0 {
            self.read_waiters.notify_all();
        }
        if self.readers == 0 && self.writers_waiting > 0 {
            self.write_waiters.notify_one();
        }
    }
}

// SAFETY: the lock owns its `T`; moving it moves the `T` (`T: Send`).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: `&RwLock<T>` hands out `&mut T` to one writer at a time, possibly on another
// thread (`T: Send`), and `&T` to many readers at once on many threads (`T: Sync`), as
// for std's `RwLock`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

// As in std: poisoning is how the lock reports an unwind.
impl<T: ?Sized> UnwindSafe for RwLock<T> {}
impl<T: ?Sized> RefUnwindSafe for RwLock<T> {}

/// Shared access to an [`RwLock`]'s data, released when dropped.
///
/// # Examples
///
/// ```
/// use stackweave::sync::RwLock;
///
/// let lock = RwLock::new(5);
/// let r1 = lock.read().unwrap();
/// let r2 = lock.read().unwrap(); // many readers at once
/// assert_eq!(*r1 + *r2, 10);
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    /// Not `Send`, like std's guard.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared read guard gives out `&T` only (`T: Sync`), as for std's guard.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

/// Exclusive access to an [`RwLock`]'s data, released when dropped (poisoning the
/// lock if dropped during an unwind).
///
/// # Examples
///
/// ```
/// use stackweave::sync::RwLock;
///
/// let lock = RwLock::new(vec![1]);
/// lock.write().unwrap().push(2);
/// assert_eq!(*lock.read().unwrap(), [1, 2]);
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    panicking: Panicking,
    /// Not `Send`, like std's guard.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared write guard gives out `&T` only (`T: Sync`), as for std's guard.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// Creates an unlocked lock holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::RwLock;
    ///
    /// static TABLE: RwLock<Vec<u32>> = RwLock::new(Vec::new());
    /// TABLE.write().unwrap().push(1);
    /// assert_eq!(TABLE.read().unwrap().len(), 1);
    /// ```
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: std::sync::Mutex::new(State {
                readers: 0,
                writer: false,
                writers_waiting: 0,
                read_pass: 0,
                read_waiters: WaitList::new(),
                write_waiters: WaitList::new(),
            }),
            poison: Poison::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns its data; `Err` (still holding the data) if it
    /// is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::RwLock;
    ///
    /// let lock = RwLock::new(7);
    /// assert_eq!(lock.into_inner().unwrap(), 7);
    /// ```
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.poison.get();
        poison_result(poisoned, self.data.into_inner())
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, waiting (suspending only the calling coroutine) while a
    /// writer holds the lock or waits for it; like [`std::sync::RwLock::read`].
    ///
    /// # Errors
    ///
    /// If the lock is poisoned; the error holds the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, RwLock};
    ///
    /// let lock = Arc::new(RwLock::new(1));
    /// let lock2 = lock.clone();
    /// let n = stackweave::spawn(move || *lock2.read().unwrap()).join().unwrap();
    /// assert_eq!(n, 1);
    /// ```
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let mut woken = false;
        let leave = Leave {
            lock: self,
            waiting_writer: None,
        };
        waiter::wait_for(
            &self.state,
            |state| &mut state.read_waiters,
            None,
            Why::new(WaitKind::RwLock),
            |state| {
                // Only a reader that was queued may use a pass.
                let retry = std::mem::replace(&mut woken, true);
                if state.writer {
                    return None;
                }
                if state.writers_waiting > 0 {
                    if !retry || state.read_pass == 0 {
                        return None;
                    }
                    state.read_pass -= 1;
                }
                state.readers += 1;
                Some(())
            },
        );
        std::mem::forget(leave);
        self.read_guard()
    }

    /// Locks for reading if no writer holds the lock or waits for it, without waiting;
    /// like [`std::sync::RwLock::try_read`].
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it cannot, [`TryLockError::Poisoned`] (with the
    /// guard) if it could but the lock is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{RwLock, TryLockError};
    ///
    /// let lock = RwLock::new(0);
    /// let w = lock.write().unwrap();
    /// assert!(matches!(lock.try_read(), Err(TryLockError::WouldBlock)));
    /// drop(w);
    /// assert!(lock.try_read().is_ok());
    /// ```
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        {
            let mut state = waiter::lock(&self.state);
            if state.writer || state.writers_waiting > 0 {
                return Err(TryLockError::WouldBlock);
            }
            state.readers += 1;
        }
        Ok(self.read_guard()?)
    }

    /// Locks for writing, waiting (suspending only the calling coroutine) until no
    /// reader or writer holds the lock; like [`std::sync::RwLock::write`].
    ///
    /// # Errors
    ///
    /// If the lock is poisoned; the error holds the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, RwLock};
    ///
    /// let lock = Arc::new(RwLock::new(0));
    /// let lock2 = lock.clone();
    /// stackweave::spawn(move || *lock2.write().unwrap() += 1).join().unwrap();
    /// assert_eq!(*lock.read().unwrap(), 1);
    /// ```
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let waiting = Cell::new(false);
        let leave = Leave {
            lock: self,
            waiting_writer: Some(&waiting),
        };
        waiter::wait_for(
            &self.state,
            |state| &mut state.write_waiters,
            None,
            Why::new(WaitKind::RwLock),
            |state| {
                if state.writer || state.readers > 0 {
                    if !waiting.replace(true) {
                        state.writers_waiting += 1;
                    }
                    return None;
                }
                if waiting.get() {
                    state.writers_waiting -= 1;
                }
                state.writer = true;
                state.read_pass = 0;
                Some(())
            },
        );
        std::mem::forget(leave);
        self.write_guard()
    }

    /// Locks for writing if nobody holds the lock, without waiting; like
    /// [`std::sync::RwLock::try_write`].
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held, [`TryLockError::Poisoned`] (with
    /// the guard) if it was free but is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{RwLock, TryLockError};
    ///
    /// let lock = RwLock::new(0);
    /// let r = lock.read().unwrap();
    /// assert!(matches!(lock.try_write(), Err(TryLockError::WouldBlock)));
    /// drop(r);
    /// *lock.try_write().unwrap() = 1;
    /// ```
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        {
            let mut state = waiter::lock(&self.state);
            if state.writer || state.readers > 0 {
                return Err(TryLockError::WouldBlock);
            }
            state.writer = true;
            state.read_pass = 0;
        }
        Ok(self.write_guard()?)
    }

    /// Whether the lock is poisoned; like [`std::sync::RwLock::is_poisoned`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, RwLock};
    ///
    /// let lock = Arc::new(RwLock::new(0));
    /// let lock2 = lock.clone();
    /// let _ = stackweave::spawn(move || {
    ///     let _w = lock2.write().unwrap();
    ///     panic!("while writing");
    /// })
    /// .join();
    /// assert!(lock.is_poisoned());
    /// ```
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poisoned state; like [`std::sync::RwLock::clear_poison`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, RwLock};
    ///
    /// let lock = Arc::new(RwLock::new(0));
    /// let lock2 = lock.clone();
    /// let _ = stackweave::spawn(move || {
    ///     let _w = lock2.write().unwrap();
    ///     panic!();
    /// })
    /// .join();
    /// lock.clear_poison();
    /// assert!(lock.read().is_ok());
    /// ```
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the data, without locking; like
    /// [`std::sync::RwLock::get_mut`].
    ///
    /// # Errors
    ///
    /// If the lock is poisoned; the error holds the reference.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::RwLock;
    ///
    /// let mut lock = RwLock::new(0);
    /// *lock.get_mut().unwrap() = 3;
    /// assert_eq!(*lock.read().unwrap(), 3);
    /// ```
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.poison.get();
        poison_result(poisoned, self.data.get_mut())
    }

    /// Wraps a read lock just taken.
    fn read_guard(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let guard = RwLockReadGuard {
            lock: self,
            _not_send: PhantomData,
        };
        poison_result(self.poison.get(), guard)
    }

    /// Wraps a write lock just taken.
    fn write_guard(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let guard = RwLockWriteGuard {
            lock: self,
            panicking: Panicking::now(),
            _not_send: PhantomData,
        };
        poison_result(self.poison.get(), guard)
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(err)) => d.field("data", &&**err.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.poison.get());
        d.finish_non_exhaustive()
    }
}

/// On an unwind out of a wait: the writer stops counting as waiting, and whoever the
/// state now lets in is woken.
struct Leave<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    waiting_writer: Option<&'a Cell<bool>>,
}

impl<T: ?Sized> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let mut state = waiter::lock(&self.lock.state);
        if self.waiting_writer.is_some_and(Cell::get) {
            state.writers_waiting -= 1;
        }
        state.wake_waiters();
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard counts in `readers`, so no writer (no `&mut T`) exists
        // until it is dropped; the reference lives no longer than the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        let mut state = waiter::lock(&self.lock.state);
        state.readers -= 1;
        if state.readers == 0 && state.writers_waiting > 0 {
            state.write_waiters.notify_one();
        }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard is the lock's only writer and no readers exist while it
        // does; the reference lives no longer than the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and `&mut self` makes this the only reference
        // through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.poison.poison_if_unwinding(self.panicking);
        let mut state = waiter::lock(&self.lock.state);
        state.writer = false;
        if state.read_waiters.is_empty() {
            if state.writers_waiting > 0 {
                state.write_waiters.notify_one();
            }
        } else {
            // The queued readers go next, ahead of the waiting writers.
            state.read_pass = state.read_waiters.len();
            state.read_waiters.notify_all();
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
