//! [`Barrier`]: `std::sync::Barrier` for coroutines and threads.
//!
//! Invariant: `count` is the number of callers of the current generation that have
//! arrived and are still waiting; the `n`-th arrival (the leader) resets it, starts
//! the next generation and wakes every waiter, all under the barrier's lock, so a
//! waiter wakes exactly when its generation has ended and the barrier is at once
//! ready for the next one. A waiter unwound (cancelled, shutdown) before its
//! generation ends withdraws its arrival.

use super::waiter::{self, WaitList};
use crate::rt::{WaitKind, Why};
use std::cell::Cell;
use std::fmt;

/// A barrier for coroutines and threads, with the API of [`std::sync::Barrier`]:
/// `n` callers of [`wait`](Barrier::wait) meet, then all go on together, and the
/// barrier is ready for the next round.
///
/// Waiting suspends only the calling coroutine (or blocks the calling thread outside
/// a coroutine). A coroutine unwound while it waits (cancelled, or its runtime shut
/// down) withdraws its arrival: the round still waits for `n` callers.
///
/// # Examples
///
/// ```
/// use stackweave::sync::{Arc, Barrier};
///
/// let n = 10;
/// let barrier = Arc::new(Barrier::new(n));
/// let handles: Vec<_> = (0..n)
///     .map(|_| {
///         let barrier = barrier.clone();
///         stackweave::spawn(move || barrier.wait().is_leader())
///     })
///     .collect();
/// let leaders = handles.into_iter().map(|h| h.join().unwrap());
/// assert_eq!(leaders.filter(|&leader| leader).count(), 1);
/// ```
pub struct Barrier {
    state: std::sync::Mutex<State>,
    n: usize,
}

struct State {
    /// Arrivals of the current generation still waiting.
    count: usize,
    generation: u64,
    waiters: WaitList,
}

/// What [`Barrier::wait`] returns: whether this caller was the round's leader.
///
/// # Examples
///
/// ```
/// use stackweave::sync::Barrier;
///
/// let barrier = Barrier::new(1);
/// assert!(barrier.wait().is_leader()); // alone: always the leader
/// ```
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this caller was the leader of its round: exactly one caller per round
    /// is (the last to arrive), as in std.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::{Arc, Barrier};
    ///
    /// let barrier = Arc::new(Barrier::new(2));
    /// let b2 = barrier.clone();
    /// let other = stackweave::spawn(move || b2.wait().is_leader());
    /// let me = barrier.wait().is_leader();
    /// assert!(me != other.join().unwrap());
    /// ```
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl fmt::Debug for BarrierWaitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierWaitResult")
            .field("is_leader", &self.0)
            .finish()
    }
}

impl Barrier {
    /// Creates a barrier for rounds of `n` callers (`n == 0` behaves like 1, as in
    /// std).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::Barrier;
    ///
    /// static START: Barrier = Barrier::new(1);
    /// START.wait();
    /// ```
    pub const fn new(n: usize) -> Barrier {
        Barrier {
            state: std::sync::Mutex::new(State {
                count: 0,
                generation: 0,
                waiters: WaitList::new(),
            }),
            n,
        }
    }

    /// Waits until `n` callers (this one included) have called `wait` in this round;
    /// like [`std::sync::Barrier::wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use stackweave::sync::{Arc, Barrier};
    ///
    /// let barrier = Arc::new(Barrier::new(3));
    /// let arrived = Arc::new(AtomicUsize::new(0));
    /// let handles: Vec<_> = (0..3)
    ///     .map(|_| {
    ///         let (barrier, arrived) = (barrier.clone(), arrived.clone());
    ///         stackweave::spawn(move || {
    ///             arrived.fetch_add(1, Ordering::SeqCst);
    ///             barrier.wait();
    ///             // Nobody gets past the barrier before everyone reached it.
    ///             assert_eq!(arrived.load(Ordering::SeqCst), 3);
    ///         })
    ///     })
    ///     .collect();
    /// for h in handles {
    ///     h.join().unwrap();
    /// }
    /// ```
    pub fn wait(&self) -> BarrierWaitResult {
        // The generation this call waits in, once it has arrived without leading.
        let arrived = Cell::new(None);
        let withdraw = Withdraw {
            barrier: self,
            arrived: &arrived,
        };
        let leader = waiter::wait_for(
            &self.state,
            |state| &mut state.waiters,
            None,
            Why::new(WaitKind::Barrier),
            |state| match arrived.get() {
                None => {
                    state.count += 1;
                    if state.count < self.n {
                        arrived.set(Some(state.generation));
                        return None;
                    }
                    state.count = 0;
                    state.generation = state.generation.wrapping_add(1);
                    state.waiters.notify_all();
                    Some(true)
                }
                Some(generation) => (state.generation != generation).then_some(false),
            },
        )
        .expect("a wait without a deadline ends with a result");
        std::mem::forget(withdraw);
        BarrierWaitResult(leader)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").finish_non_exhaustive()
    }
}

/// On an unwind out of [`Barrier::wait`]: withdraws the arrival if its round is
/// still on.
struct Withdraw<'a> {
    barrier: &'a Barrier,
    arrived: &'a Cell<Option<u64>>,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let mut state = waiter::lock(&self.barrier.state);
        if self.arrived.get() == Some(state.generation) {
            state.count -= 1;
        }
    }
}
