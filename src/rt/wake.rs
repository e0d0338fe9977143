//! Who to wake: a coroutine, a thread or an `async` task's [`Waker`], in one type.
//!
//! Every place that records "the party that waits here" — a primitive's waiter
//! (`waiter::Waiter`), a coroutine's joiner (`coroutine::join`) — holds a
//! [`Wakeup`], made for the caller by [`Wakeup::current`] (or from a `Waker` by
//! [`Wakeup::waker`]). Waking a coroutine reschedules its task on its home worker
//! ([`Task::wake`]), waking a thread unparks it, waking a `Waker` wakes it; the
//! waiting side re-checks its condition after every wakeup, so a wakeup carries no
//! data and a spurious one is harmless.

use super::scheduler::{self, TaskRef};
use std::task::Waker;
use std::thread::{self, Thread};

/// A coroutine, a thread or a [`Waker`] to wake.
pub(crate) enum Wakeup {
    /// A coroutine: [`Task::wake`] schedules it on its home worker.
    Coroutine(TaskRef),
    /// A thread, blocked in `thread::park` (or `park_timeout`).
    Thread(Thread),
    /// An `async` task, through its waker.
    Waker(Waker),
}

impl Wakeup {
    /// The caller: its coroutine when called from one, else its thread.
    pub(crate) fn current() -> Wakeup {
        match scheduler::current_task() {
            Some(task) => Wakeup::Coroutine(task),
            None => Wakeup::Thread(thread::current()),
        }
    }

    /// The `async` task of `waker`.
    pub(crate) fn waker(waker: &Waker) -> Wakeup {
        Wakeup::Waker(waker.clone())
    }

    /// Whether this is a coroutine (which waits by suspending, not by parking).
    pub(crate) fn is_coroutine(&self) -> bool {
        matches!(self, Wakeup::Coroutine(_))
    }

    /// Whether waking this wakes the same `async` task as `waker` (as
    /// [`Waker::will_wake`]): a poll that finds its waker already registered need not
    /// replace it. False for a coroutine or a thread.
    pub(crate) fn will_wake(&self, waker: &Waker) -> bool {
        matches!(self, Wakeup::Waker(w) if w.will_wake(waker))
    }

    /// Wakes the party.
    pub(crate) fn wake(self) {
        match self {
            Wakeup::Coroutine(task) => task.wake(),
            Wakeup::Thread(thread) => thread.unpark(),
            Wakeup::Waker(waker) => waker.wake(),
        }
    }

    /// Wakes the party, keeping the `Wakeup` (to wake it again later).
    pub(crate) fn wake_by_ref(&self) {
        match self {
            Wakeup::Coroutine(task) => task.wake(),
            Wakeup::Thread(thread) => thread.unpark(),
            Wakeup::Waker(waker) => waker.wake_by_ref(),
        }
    }
}
