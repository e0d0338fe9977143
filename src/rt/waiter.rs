//! Waiting in line: the one way every primitive of `stackweave::sync` blocks.
//!
//! Invariant: a [`Waiter`] in a list is notified at most once, and a notification is never
//! lost: a waiter that gives up (timeout) or is unwound (runtime shutdown,
//! cancellation) while a notification is already on its way hands it on to the next
//! waiter in its list ([`wait_for`] does this, under the primitive's lock). A
//! coroutine waits by suspending (only that coroutine), a thread by
//! `std::thread::park`; notifying either wakes it. The primitive's state lock (a
//! `std::sync::Mutex`) is only held for short, non-blocking sections, never across a
//! suspension.

use super::scheduler::{self, Why};
use super::wake::Wakeup;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

/// One blocked coroutine or thread.
pub(crate) struct Waiter {
    notified: AtomicBool,
    /// Made by `Wakeup::current`: a coroutine or a thread, never a `Waker`.
    who: Wakeup,
}

impl Waiter {
    /// A waiter for the calling coroutine (or thread).
    pub(crate) fn current() -> Arc<Waiter> {
        Arc::new(Waiter::current_inline())
    }

    /// A waiter for the calling coroutine (or thread), not yet shared: for
    /// embedding in a larger shared value (the channel core's token), which saves
    /// an allocation per wait.
    pub(crate) fn current_inline() -> Waiter {
        Waiter {
            notified: AtomicBool::new(false),
            who: Wakeup::current(),
        }
    }

    /// Notifies the waiter; false if it already was.
    pub(crate) fn notify(&self) -> bool {
        if self.notified.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.who.wake_by_ref();
        true
    }

    /// Clears the notification so that the waiter can wait again. Only for a waiter
    /// that is in no list: `future::block_on` re-arms its own before every poll.
    pub(crate) fn rearm(&self) {
        self.notified.store(false, Ordering::Release);
    }

    /// Whether it was notified.
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// Blocks the caller (who must be the waiter's coroutine or thread) until it is
    /// notified or `deadline` passes; returns whether it was notified. May unwind
    /// (shutdown, cancellation) when a coroutine.
    pub(crate) fn block(&self, deadline: Option<Instant>, why: Why) -> bool {
        if self.who.is_coroutine() {
            return match deadline {
                None => {
                    while !self.is_notified() {
                        scheduler::wait_current(why);
                    }
                    true
                }
                Some(deadline) => {
                    super::suspend::suspend_until(deadline, why, || self.is_notified())
                        .unwrap_or(false)
                }
            };
        }
        loop {
            if self.is_notified() {
                return true;
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return self.is_notified();
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
    }
}

/// The waiters of one primitive (or one side of it), first come first served.
#[derive(Default)]
pub(crate) struct WaitList {
    waiters: VecDeque<Arc<Waiter>>,
}

impl WaitList {
    /// An empty list (usable in `const` contexts).
    pub(crate) const fn new() -> WaitList {
        WaitList {
            waiters: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, waiter: Arc<Waiter>) {
        self.waiters.push_back(waiter);
    }

    /// Queues `waiter` first in line (a waiter that already waited its turn).
    pub(crate) fn push_front(&mut self, waiter: Arc<Waiter>) {
        self.waiters.push_front(waiter);
    }

    /// Takes the first waiter off the list, without notifying it.
    pub(crate) fn pop_front(&mut self) -> Option<Arc<Waiter>> {
        self.waiters.pop_front()
    }

    /// Notifies the first waiter; false if there was none.
    pub(crate) fn notify_one(&mut self) -> bool {
        while let Some(waiter) = self.waiters.pop_front() {
            if waiter.notify() {
                return true;
            }
        }
        false
    }

    /// Notifies every waiter; returns how many.
    pub(crate) fn notify_all(&mut self) -> usize {
        let mut n = 0;
        for waiter in self.waiters.drain(..) {
            n += usize::from(waiter.notify());
        }
        n
    }

    /// Removes `waiter`; false if it was not in the list (it was notified).
    pub(crate) fn remove(&mut self, waiter: &Arc<Waiter>) -> bool {
        match self.waiters.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            Some(i) => {
                self.waiters.remove(i);
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }
}

/// Locks a state mutex, ignoring poisoning (the states guarded here stay
/// consistent: no user code runs under these locks).
pub(crate) fn lock<S>(mutex: &Mutex<S>) -> MutexGuard<'_, S> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The blocking loop of a primitive: calls `attempt` under the lock until it
/// returns `Some`, queueing the caller in the list `list` selects and blocking
/// between attempts; `None` once `deadline` passes. Whatever happens (success,
/// timeout, unwind), the caller is off the list afterwards, and a notification it
/// received but did not use goes to the next waiter.
pub(crate) fn wait_for<S, R>(
    state: &Mutex<S>,
    list: impl Fn(&mut S) -> &mut WaitList,
    deadline: Option<Instant>,
    why: Why,
    mut attempt: impl FnMut(&mut S) -> Option<R>,
) -> Option<R> {
    let mut guard = lock(state);
    if let Some(r) = attempt(&mut guard) {
        return Some(r);
    }
    loop {
        let waiter = Waiter::current();
        list(&mut guard).push(waiter.clone());
        drop(guard);
        let leave = Leave {
            state,
            list: &list,
            waiter: &waiter,
        };
        let notified = waiter.block(deadline, why);
        std::mem::forget(leave);
        guard = lock(state);
        if let Some(r) = attempt(&mut guard) {
            if !notified {
                list(&mut guard).remove(&waiter);
            }
            return Some(r);
        }
        if !notified {
            // Timed out: leave the line, passing on a notification that raced in.
            if !list(&mut guard).remove(&waiter) {
                list(&mut guard).notify_one();
            }
            return None;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Notified, but what it was for went to someone else, and time is up.
            return None;
        }
    }
}

/// On an unwind out of a wait: take the waiter off its list, or hand on the
/// notification it got.
struct Leave<'a, S, L: Fn(&mut S) -> &mut WaitList> {
    state: &'a Mutex<S>,
    list: &'a L,
    waiter: &'a Arc<Waiter>,
}

impl<S, L: Fn(&mut S) -> &mut WaitList> Drop for Leave<'_, S, L> {
    fn drop(&mut self) {
        let mut guard = lock(self.state);
        let list = (self.list)(&mut guard);
        if !list.remove(self.waiter) && self.waiter.is_notified() {
            list.notify_one();
        }
    }
}
