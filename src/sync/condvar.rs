//! [`Condvar`]: `std::sync::Condvar` for our [`Mutex`](super::Mutex), and the
//! [`Ticket`]s it (and the semaphore) queue.
//!
//! Invariant: every waiting call has its own [`Ticket`], queued in the condition
//! variable's list *before* the waiter releases the mutex, so a notification sent
//! after that release finds it. A notification takes the first ticket off the list
//! and grants it (both under the list's lock); a waiter that gives up (timeout)
//! takes its ticket back off the list under the same lock, so a ticket is either
//! still queued (the wait timed out) or granted (the wait was notified), never both
//! and never neither. A waiter unwound (cancelled, shutdown) after its ticket was
//! granted passes the notification on to the next ticket, as `waiter::wait_for`
//! does for its own waiters.

use super::mutex::MutexGuard;
use super::waiter::{self, WaitList};
use crate::rt::{WaitKind, Why};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, LockResult, PoisonError};
use std::time::{Duration, Instant};

/// A condition variable for coroutines and threads, with the API of
/// [`std::sync::Condvar`], working with [`stackweave::sync::Mutex`](super::Mutex).
///
/// Waiting suspends only the calling coroutine (or blocks the calling thread outside
/// a coroutine). As with std, a wait may return without a notification (a spurious
/// wakeup; rare here, but possible when a notification races with a timeout), so wait
/// in a loop or with [`wait_while`](Condvar::wait_while). Notifications are not
/// stored: a [`notify_one`](Condvar::notify_one) with nobody waiting does nothing.
/// Waiters are woken in the order they started waiting.
///
/// # Examples
///
/// ```
/// use stackweave::sync::{Arc, Condvar, Mutex};
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let pair2 = pair.clone();
/// stackweave::spawn(move || {
///     let (ready, cvar) = &*pair2;
///     *ready.lock().unwrap() = true;
///     cvar.notify_one();
/// });
///
/// let (ready, cvar) = &*pair;
/// let mut ready = ready.lock().unwrap();
/// while !*ready {
///     ready = cvar.wait(ready).unwrap();
/// }
/// ```
pub struct Condvar {
    waiters: std::sync::Mutex<TicketQueue>,
}

/// Whether a timed wait on a [`Condvar`] timed out, as in std.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackweave::sync::{Condvar, Mutex};
///
/// let m = Mutex::new(());
/// let cvar = Condvar::new();
/// let (_guard, result) = cvar.wait_timeout(m.lock().unwrap(), Duration::from_millis(10)).unwrap();
/// assert!(result.timed_out()); // nobody notified
/// ```
#[derive(Debug, PartialEq, Eq, Copy, Clone)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait ended because its time was up (rather than by a
    /// notification).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::sync::{Condvar, Mutex};
    ///
    /// let m = Mutex::new(0);
    /// let cvar = Condvar::new();
    /// let (guard, result) = cvar
    ///     .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(10), |n| *n == 0)
    ///     .unwrap();
    /// assert!(result.timed_out());
    /// assert_eq!(*guard, 0);
    /// ```
    #[must_use]
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// Creates a condition variable with nobody waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Condvar;
    ///
    /// static CHANGED: Condvar = Condvar::new();
    /// CHANGED.notify_all(); // nobody waits: nothing happens
    /// ```
    pub const fn new() -> Condvar {
        Condvar {
            waiters: std::sync::Mutex::new(TicketQueue::new()),
        }
    }

    /// Releases `guard`'s mutex, waits for a notification, and locks the mutex again;
    /// like [`std::sync::Condvar::wait`]. Suspends only the calling coroutine.
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned when it is locked again; the error holds the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Condvar, Mutex};
    ///
    /// let state = Arc::new((Mutex::new(0), Condvar::new()));
    /// let state2 = state.clone();
    /// let waiter = stackweave::spawn(move || {
    ///     let (count, cvar) = &*state2;
    ///     let mut count = count.lock().unwrap();
    ///     while *count < 3 {
    ///         count = cvar.wait(count).unwrap();
    ///     }
    ///     *count
    /// });
    /// for _ in 0..3 {
    ///     let (count, cvar) = &*state;
    ///     *count.lock().unwrap() += 1;
    ///     cvar.notify_one();
    /// }
    /// assert_eq!(waiter.join().unwrap(), 3);
    /// ```
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None).0
    }

    /// Waits (as [`wait`](Condvar::wait) does) while `condition` returns true for
    /// the data, then returns the guard; like [`std::sync::Condvar::wait_while`].
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned when it is locked again; the error holds the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Condvar, Mutex};
    ///
    /// let pending = Arc::new((Mutex::new(true), Condvar::new()));
    /// let pending2 = pending.clone();
    /// stackweave::spawn(move || {
    ///     let (pending, cvar) = &*pending2;
    ///     *pending.lock().unwrap() = false;
    ///     cvar.notify_one();
    /// });
    /// let (lock, cvar) = &*pending;
    /// let guard = cvar.wait_while(lock.lock().unwrap(), |pending| *pending).unwrap();
    /// assert!(!*guard);
    /// ```
    pub fn wait_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<MutexGuard<'a, T>>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like [`wait`](Condvar::wait), but gives up once `timeout` has passed; like
    /// [`std::sync::Condvar::wait_timeout`]. A timed-out wait returns no earlier
    /// than `timeout` after the call.
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned when it is locked again; the error holds the guard
    /// and the result.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use stackweave::sync::{Condvar, Mutex};
    ///
    /// let h = stackweave::spawn(|| {
    ///     let m = Mutex::new(());
    ///     let cvar = Condvar::new();
    ///     let start = Instant::now();
    ///     let (_guard, result) = cvar.wait_timeout(m.lock().unwrap(), Duration::from_millis(20)).unwrap();
    ///     (result.timed_out(), start.elapsed())
    /// });
    /// let (timed_out, waited) = h.join().unwrap();
    /// assert!(timed_out && waited >= Duration::from_millis(20));
    /// ```
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        // A deadline the clock cannot count to is no deadline.
        let deadline = Instant::now().checked_add(timeout);
        let (guard, timed_out) = self.wait_until(guard, deadline);
        let result = WaitTimeoutResult(timed_out);
        match guard {
            Ok(guard) => Ok((guard, result)),
            Err(poisoned) => Err(PoisonError::new((poisoned.into_inner(), result))),
        }
    }

    /// Waits while `condition` returns true for the data, but no longer than
    /// `timeout` in all; like [`std::sync::Condvar::wait_timeout_while`]. The result
    /// says whether it gave up with the condition still true.
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned when it is locked again; the error holds the guard
    /// and the result.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::sync::{Arc, Condvar, Mutex};
    ///
    /// let items = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    /// let items2 = items.clone();
    /// stackweave::spawn(move || {
    ///     let (items, cvar) = &*items2;
    ///     items.lock().unwrap().push(1);
    ///     cvar.notify_all();
    /// });
    /// let (lock, cvar) = &*items;
    /// let (guard, result) = cvar
    ///     .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(10), |v| v.is_empty())
    ///     .unwrap();
    /// assert!(!result.timed_out());
    /// assert_eq!(*guard, [1]);
    /// ```
    pub fn wait_timeout_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let start = Instant::now();
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            let Some(left) = timeout.checked_sub(start.elapsed()) else {
                return Ok((guard, WaitTimeoutResult(true)));
            };
            guard = self.wait_timeout(guard, left)?.0;
        }
    }

    /// Wakes the longest-waiting waiter, if any; like
    /// [`std::sync::Condvar::notify_one`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Condvar, Mutex};
    ///
    /// let queue = Arc::new((Mutex::new(Vec::<u32>::new()), Condvar::new()));
    /// let queue2 = queue.clone();
    /// let consumer = stackweave::spawn(move || {
    ///     let (items, cvar) = &*queue2;
    ///     let mut items = cvar.wait_while(items.lock().unwrap(), |v| v.is_empty()).unwrap();
    ///     items.pop()
    /// });
    /// let (items, cvar) = &*queue;
    /// items.lock().unwrap().push(7);
    /// cvar.notify_one();
    /// assert_eq!(consumer.join().unwrap(), Some(7));
    /// ```
    pub fn notify_one(&self) {
        waiter::lock(&self.waiters).grant_one();
    }

    /// Wakes every waiter; like [`std::sync::Condvar::notify_all`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Condvar, Mutex};
    ///
    /// let go = Arc::new((Mutex::new(false), Condvar::new()));
    /// let waiters: Vec<_> = (0..5)
    ///     .map(|_| {
    ///         let go = go.clone();
    ///         stackweave::spawn(move || {
    ///             let (flag, cvar) = &*go;
    ///             drop(cvar.wait_while(flag.lock().unwrap(), |go| !*go).unwrap());
    ///         })
    ///     })
    ///     .collect();
    /// let (flag, cvar) = &*go;
    /// *flag.lock().unwrap() = true;
    /// cvar.notify_all();
    /// for w in waiters {
    ///     w.join().unwrap();
    /// }
    /// ```
    pub fn notify_all(&self) {
        waiter::lock(&self.waiters).grant_all();
    }

    /// The wait: queue a ticket, release the mutex, wait for the ticket to be granted
    /// (or `deadline`), lock again. Returns the relocked guard and whether it timed
    /// out.
    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (LockResult<MutexGuard<'a, T>>, bool) {
        let mutex = guard.mutex;
        let ticket = Ticket::new();
        // Queued before the mutex is released: a notifier that changes the state under
        // the mutex after our release finds the ticket.
        waiter::lock(&self.waiters).push(ticket.clone());
        drop(guard);
        let withdraw = Withdraw {
            state: &self.waiters,
            ticket: &ticket,
            leave: |queue, ticket| {
                if !queue.remove(ticket) {
                    queue.grant_one();
                }
            },
        };
        let granted = ticket.wait(deadline, Why::new(WaitKind::Condvar));
        std::mem::forget(withdraw);
        // Timed out unless the ticket left the queue (granted) meanwhile.
        let timed_out = !granted && waiter::lock(&self.waiters).remove(&ticket);
        (mutex.lock(), timed_out)
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

/// One waiting call's claim on a grant: a notification of a condition variable, a
/// permit of a semaphore. Granted at most once, by whoever takes it off its
/// [`TicketQueue`]; waited on by the one call that queued it.
pub(super) struct Ticket {
    state: std::sync::Mutex<TicketState>,
}

struct TicketState {
    granted: bool,
    /// The call waiting for the grant (at most one).
    waiter: WaitList,
}

impl Ticket {
    pub(super) fn new() -> Arc<Ticket> {
        Arc::new(Ticket {
            state: std::sync::Mutex::new(TicketState {
                granted: false,
                waiter: WaitList::new(),
            }),
        })
    }

    fn grant(&self) {
        let mut state = waiter::lock(&self.state);
        state.granted = true;
        state.waiter.notify_one();
    }

    /// Waits until the ticket is granted (true) or `deadline` passes (false). May
    /// unwind (cancellation, shutdown) when called from a coroutine.
    pub(super) fn wait(&self, deadline: Option<Instant>, why: Why) -> bool {
        waiter::wait_for(
            &self.state,
            |state| &mut state.waiter,
            deadline,
            why,
            |state| state.granted.then_some(()),
        )
        .is_some()
    }
}

/// Tickets in the order they were queued (lives under its primitive's lock).
pub(super) struct TicketQueue {
    tickets: VecDeque<Arc<Ticket>>,
}

impl TicketQueue {
    pub(super) const fn new() -> TicketQueue {
        TicketQueue {
            tickets: VecDeque::new(),
        }
    }

    pub(super) fn push(&mut self, ticket: Arc<Ticket>) {
        self.tickets.push_back(ticket);
    }

    /// Grants the first ticket; false if there was none.
    pub(super) fn grant_one(&mut self) -> bool {
        match self.tickets.pop_front() {
            Some(ticket) => {
                ticket.grant();
                true
            }
            None => false,
        }
    }

    fn grant_all(&mut self) {
        for ticket in self.tickets.drain(..) {
            ticket.grant();
        }
    }

    /// Takes `ticket` off the queue; false if it is not there (it was granted).
    pub(super) fn remove(&mut self, ticket: &Arc<Ticket>) -> bool {
        match self.tickets.iter().position(|t| Arc::ptr_eq(t, ticket)) {
            Some(i) => {
                self.tickets.remove(i);
                true
            }
            None => false,
        }
    }
}

/// On an unwind out of [`Ticket::wait`] (the guard is forgotten otherwise): runs
/// `leave` under the primitive's lock, which takes the ticket off its queue or, if it
/// was granted already, hands the grant on.
pub(super) struct Withdraw<'a, S> {
    pub(super) state: &'a std::sync::Mutex<S>,
    pub(super) ticket: &'a Arc<Ticket>,
    pub(super) leave: fn(&mut S, &Arc<Ticket>),
}

impl<S> Drop for Withdraw<'_, S> {
    fn drop(&mut self) {
        (self.leave)(&mut waiter::lock(self.state), self.ticket);
    }
}
