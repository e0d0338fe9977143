//! [`WaitGroup`]: wait for a group of coroutines to finish (Go's `sync.WaitGroup`),
//! with the clone-to-add, drop-to-finish API of crossbeam's `WaitGroup`.
//!
//! Invariant: `count` is the number of live `WaitGroup` handles of the group that
//! have not started [`wait`](WaitGroup::wait)ing. Cloning one adds one, dropping (or
//! waiting on) one removes it; the change that brings it to zero wakes every waiter,
//! under the group's lock. Zero is final: only a live handle can be cloned. So the
//! count can neither go negative nor be forgotten, even by a coroutine that panics or
//! is cancelled (its handle is dropped while it unwinds).

use super::waiter::{self, WaitList};
use crate::rt::{WaitKind, Why};
use std::fmt;
use std::sync::Arc;

/// Waits until a group of coroutines (or threads) is done.
///
/// Each member holds a clone of the `WaitGroup` and drops it when it is done;
/// [`wait`](WaitGroup::wait) (which gives up the caller's own handle) returns once
/// every handle is gone. This is crossbeam's `WaitGroup`, chosen over Go's
/// counter-based `Add`/`Done`: the count follows the handles, so it cannot go negative,
/// and a member that panics or is cancelled still counts as done (its handle is
/// dropped as it unwinds) instead of leaving the waiter hanging.
///
/// Waiting suspends only the calling coroutine (or blocks the calling thread outside
/// a coroutine).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use stackweave::sync::{Arc, WaitGroup};
///
/// let wg = WaitGroup::new();
/// let done = Arc::new(AtomicUsize::new(0));
/// for _ in 0..100 {
///     let (wg, done) = (wg.clone(), done.clone());
///     stackweave::spawn(move || {
///         stackweave::yield_now();
///         done.fetch_add(1, Ordering::SeqCst);
///         drop(wg); // this member is done
///     });
/// }
/// wg.wait(); // until all 100 clones are dropped
/// assert_eq!(done.load(Ordering::SeqCst), 100);
/// ```
pub struct WaitGroup {
    inner: Arc<Inner>,
}

struct Inner {
    state: std::sync::Mutex<State>,
}

struct State {
    /// Live handles that are not waiting.
    count: usize,
    waiters: WaitList,
}

impl WaitGroup {
    /// Creates a group with one member: the returned handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::WaitGroup;
    ///
    /// let wg = WaitGroup::new();
    /// wg.wait(); // the only handle: returns at once
    /// ```
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(Inner {
                state: std::sync::Mutex::new(State {
                    count: 1,
                    waiters: WaitList::new(),
                }),
            }),
        }
    }

    /// Gives up this handle and waits until every other handle of the group has been
    /// dropped (or is waiting too).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::WaitGroup;
    ///
    /// let wg = WaitGroup::new();
    /// let member = wg.clone();
    /// let waiter = stackweave::spawn(move || wg.wait());
    /// drop(member);
    /// waiter.join().unwrap();
    /// ```
    pub fn wait(self) {
        let inner = self.inner.clone();
        drop(self);
        waiter::wait_for(
            &inner.state,
            |state| &mut state.waiters,
            None,
            Why::new(WaitKind::WaitGroup),
            |state| (state.count == 0).then_some(()),
        );
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl Clone for WaitGroup {
    /// Adds a member to the group: the new handle.
    fn clone(&self) -> WaitGroup {
        waiter::lock(&self.inner.state).count += 1;
        WaitGroup {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for WaitGroup {
    /// This member is done.
    fn drop(&mut self) {
        let mut state = waiter::lock(&self.inner.state);
        state.count -= 1;
        if state.count == 0 {
            state.waiters.notify_all();
        }
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = waiter::lock(&self.inner.state).count;
        f.debug_struct("WaitGroup").field("count", &count).finish()
    }
}
