//! [`Semaphore`]: a counting semaphore, first come first served.
//!
//! Invariant: free permits and queued acquirers never coexist. A released permit goes
//! straight to the first queued [`Ticket`] (granted under the semaphore's lock), and
//! only when nobody is queued does it join the free count; an acquirer takes a free
//! permit only if there is one, and otherwise queues. So permits are handed out in
//! the order acquirers asked, and a newcomer never overtakes a waiter. An acquirer that
//! gives up (timeout) takes its ticket off the queue under the same lock; if it
//! finds the ticket gone, the permit was granted and it keeps it. One unwound while
//! waiting gives a permit it was granted back.

use super::condvar::{Ticket, TicketQueue, Withdraw};
use super::waiter;
use crate::rt::{WaitKind, Why};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A counting semaphore for coroutines and threads (`std` has none): at most
/// `permits` holders at once, served first come first served.
///
/// [`acquire`](Semaphore::acquire) suspends only the calling coroutine (or blocks the
/// calling thread) until a permit is free, and returns it as a [`SemaphorePermit`]
/// that gives it back when dropped, also when its holder unwinds.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use stackweave::sync::{Arc, Semaphore};
///
/// // At most 3 of the 20 coroutines inside at once.
/// let limit = Arc::new(Semaphore::new(3));
/// let inside = Arc::new(AtomicUsize::new(0));
/// let handles: Vec<_> = (0..20)
///     .map(|_| {
///         let (limit, inside) = (limit.clone(), inside.clone());
///         stackweave::spawn(move || {
///             let _permit = limit.acquire();
///             assert!(inside.fetch_add(1, Ordering::SeqCst) < 3);
///             stackweave::yield_now();
///             inside.fetch_sub(1, Ordering::SeqCst);
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(limit.available_permits(), 3);
/// ```
pub struct Semaphore {
    state: std::sync::Mutex<State>,
}

struct State {
    /// Free permits; never non-zero while `queue` holds tickets.
    permits: usize,
    queue: TicketQueue,
}

impl State {
    /// Gives `n` permits to the queued acquirers first, then to the free count.
    fn release(&mut self, mut n: usize) {
        while n > 0 && self.queue.grant_one() {
            n -= 1;
        }
        self.permits = self
            .permits
            .checked_add(n)
            .expect("Semaphore: too many permits (usize overflow)");
    }
}

/// One permit of a [`Semaphore`], given back when dropped.
///
/// # Examples
///
/// ```
/// use stackweave::sync::Semaphore;
///
/// let sem = Semaphore::new(1);
/// let permit = sem.acquire();
/// assert_eq!(sem.available_permits(), 0);
/// drop(permit);
/// assert_eq!(sem.available_permits(), 1);
/// ```
#[must_use = "the permit is given back at once if unused"]
pub struct SemaphorePermit<'a> {
    semaphore: &'a Semaphore,
}

impl Semaphore {
    /// Creates a semaphore with `permits` free permits.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Semaphore;
    ///
    /// static CONNECTIONS: Semaphore = Semaphore::new(100);
    /// assert_eq!(CONNECTIONS.available_permits(), 100);
    /// ```
    pub const fn new(permits: usize) -> Semaphore {
        Semaphore {
            state: std::sync::Mutex::new(State {
                permits,
                queue: TicketQueue::new(),
            }),
        }
    }

    /// Takes a permit, waiting (suspending only the calling coroutine, or blocking the
    /// calling thread) behind everyone who asked earlier until one is free.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Semaphore};
    ///
    /// let sem = Arc::new(Semaphore::new(0));
    /// let sem2 = sem.clone();
    /// let waiter = stackweave::spawn(move || {
    ///     let _permit = sem2.acquire(); // waits for add_permits below
    ///     "got it"
    /// });
    /// sem.add_permits(1);
    /// assert_eq!(waiter.join().unwrap(), "got it");
    /// ```
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.acquire_until(None)
            .expect("a wait without a deadline ends with a permit")
    }

    /// Takes a permit if one is free and nobody is waiting, without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Semaphore;
    ///
    /// let sem = Semaphore::new(1);
    /// let first = sem.try_acquire();
    /// assert!(first.is_some());
    /// assert!(sem.try_acquire().is_none());
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        let mut state = waiter::lock(&self.state);
        if state.permits == 0 {
            return None;
        }
        state.permits -= 1;
        Some(SemaphorePermit { semaphore: self })
    }

    /// Like [`acquire`](Semaphore::acquire), but gives up (returning `None`) once
    /// `timeout` has passed, no earlier.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use stackweave::sync::Semaphore;
    ///
    /// let sem = Semaphore::new(0);
    /// let start = Instant::now();
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_none());
    /// assert!(start.elapsed() >= Duration::from_millis(10));
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        // A deadline the clock cannot count to is no deadline.
        self.acquire_until(Instant::now().checked_add(timeout))
    }

    /// Adds `n` permits, waking as many waiters as they serve.
    ///
    /// # Panics
    ///
    /// If the number of free permits would overflow `usize`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Semaphore;
    ///
    /// let sem = Semaphore::new(0);
    /// sem.add_permits(2);
    /// assert_eq!(sem.available_permits(), 2);
    /// ```
    pub fn add_permits(&self, n: usize) {
        waiter::lock(&self.state).release(n);
    }

    /// The number of free permits right now.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Semaphore;
    ///
    /// let sem = Semaphore::new(2);
    /// let _p = sem.acquire();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    pub fn available_permits(&self) -> usize {
        waiter::lock(&self.state).permits
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Option<SemaphorePermit<'_>> {
        let ticket = {
            let mut state = waiter::lock(&self.state);
            if state.permits > 0 {
                state.permits -= 1;
                return Some(SemaphorePermit { semaphore: self });
            }
            let ticket = Ticket::new();
            state.queue.push(ticket.clone());
            ticket
        };
        let withdraw = Withdraw {
            state: &self.state,
            ticket: &ticket,
            leave: |state: &mut State, ticket: &Arc<Ticket>| {
                if !state.queue.remove(ticket) {
                    // Granted a permit we will not use: pass it on.
                    state.release(1);
                }
            },
        };
        let granted = ticket.wait(deadline, Why::new(WaitKind::Semaphore));
        std::mem::forget(withdraw);
        // Timed out, unless the ticket left the queue (granted) meanwhile.
        if !granted && waiter::lock(&self.state).queue.remove(&ticket) {
            return None;
        }
        Some(SemaphorePermit { semaphore: self })
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .finish_non_exhaustive()
    }
}

impl SemaphorePermit<'_> {
    /// Drops the permit without giving it back: the semaphore has one permit fewer
    /// for good.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Semaphore;
    ///
    /// let sem = Semaphore::new(2);
    /// sem.acquire().forget();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        waiter::lock(&self.semaphore.state).release(1);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}
