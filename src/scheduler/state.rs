//! The life of a task: its state word, every transition of it, and the right to run.
//!
//! Invariant: for each task, at most one [`Runnable`] exists at a time, and it exists
//! exactly while the task is queued to run or running (state `Scheduled` or
//! `Notified`). Only the transitions here make one: a spawn makes the first, a wake
//! that finds the task `Idle` makes the next; a worker gives it up when the task
//! idles or completes. So holding a `Runnable` *is* the right to run the task, and
//! the task's worker part is reached only through `&mut Runnable`: the borrow checker
//! keeps the contract that every caller once restated in prose.
//!
//! ```text
//!                          (wake)
//!   spawn ──> SCHEDULED ──────────> NOTIFIED ──┐  (wake, yield, a failed
//!              │  ^  ^               │  ^      │   try_idle: it stays)
//!              │  │  └──(begin_run)──┘  └──────┘
//!    (try_idle)│  │(wake)
//!              v  │
//!              IDLE
//!
//!   SCHEDULED or NOTIFIED ──(returns, or completed unrun)──> DONE
//!   (a yield leaves SCHEDULED as it is)
//! ```
//!
//! `Scheduled` does not tell queued from running: a worker holds the `Runnable` in
//! both, and a wake does the same in both (it leaves a note, `Notified`, for the
//! worker to find). That is what lets a run begin without a barrier.
//!
//! The suspend protocol: a coroutine that waits switches to its worker with a
//! [`Request`](super::Request); only *after* that switch has completed does the
//! worker try to move the state from `Scheduled` to `Idle`. A wake that arrives
//! earlier, or while the task sat queued, has left `Notified`, and the worker
//! requeues the task instead of idling it. So a wake can never schedule a coroutine
//! that has not finished suspending, and no wake is lost between "decide to wait" and
//! "be waiting".
//!
//! Why no wake is lost: the condition a coroutine waits for (an unpark token, a
//! flag) is published by the waker *before* it calls [`Runnable::wake`], and every
//! decision about a wake is a read-modify-write of the one state word: the waker's
//! compare-exchange (release), and on the worker's side the compare-exchange of
//! [`Runnable::try_idle`] and the swap of [`Runnable::begin_run`] (acquire). Those
//! are totally ordered on the word and always read its latest value. If the waker's
//! comes first, the worker's reads `Notified` and synchronises with the waker: the
//! task runs again and sees the condition. If the worker's `try_idle` comes first,
//! the waker finds `Idle` and queues the task, and the queue carries the condition
//! to the run. A coroutine that checks its condition early, before a wake's store is
//! visible to it, only makes one extra round: its `try_idle` fails. No fence is
//! needed on either side, so a run that nobody woke meanwhile (a yield, a coroutine
//! that finds its data ready) costs one plain load of the word.

use super::task::{Body, Task, WorkerPart};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Where a task is in its life (the diagram in the module docs).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// A worker holds its `Runnable`: queued to run, or running.
    Scheduled = 0,
    /// Scheduled, and woken since: the worker must not idle it before it has run
    /// again.
    Notified = 1,
    /// Suspended, waiting for a wake.
    Idle = 2,
    /// Finished (or completed unrun).
    Done = 3,
}

impl Lifecycle {
    #[inline]
    fn from_u8(value: u8) -> Lifecycle {
        match value {
            0 => Lifecycle::Scheduled,
            1 => Lifecycle::Notified,
            2 => Lifecycle::Idle,
            _ => Lifecycle::Done,
        }
    }
}

/// What a worker hands a coroutine when it resumes it.
#[repr(usize)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Go on.
    Run = 0,
    /// Unwind with `Unwound`: the runtime is shutting down.
    Unwind = 1,
    /// Unwind with `Cancelled`: `JoinHandle::cancel` was called.
    Cancel = 2,
}

impl Resume {
    /// The value that crossed the context switch.
    #[inline]
    pub(crate) fn from_raw(value: usize) -> Resume {
        match value {
            1 => Resume::Unwind,
            2 => Resume::Cancel,
            _ => Resume::Run,
        }
    }
}

/// A task's state word and the two flags that change how its next run goes.
pub(crate) struct TaskState {
    word: AtomicU8,
    /// [`UNWIND`] and [`CANCEL`], in one byte so that a run reads both with one
    /// load.
    flags: AtomicU8,
}

/// Unwind with `Unwound` at the next suspension point (shutdown), or never start.
const UNWIND: u8 = 1;
/// `JoinHandle::cancel` was called: unwind with `Cancelled` at the next suspension
/// point, or never start.
const CANCEL: u8 = 2;

impl TaskState {
    /// The state of a new task: `Scheduled`, its `Runnable` about to be queued.
    pub(crate) const fn new() -> TaskState {
        TaskState {
            word: AtomicU8::new(Lifecycle::Scheduled as u8),
            flags: AtomicU8::new(0),
        }
    }

    /// Marks the task to unwind at its next suspension point (or never start).
    pub(crate) fn request_unwind(&self) {
        self.flags.fetch_or(UNWIND, Ordering::Release);
    }

    /// Marks the task cancelled (see [`TaskState::cancelled`]).
    pub(crate) fn cancel(&self) {
        self.flags.fetch_or(CANCEL, Ordering::Release);
    }

    /// Whether `JoinHandle::cancel` was called.
    #[inline]
    pub(crate) fn cancelled(&self) -> bool {
        self.flags.load(Ordering::Acquire) & CANCEL != 0
    }

    /// How the next run must resume the coroutine; for one that never ran, anything
    /// but [`Resume::Run`] means it must be completed unrun. Unwinding for shutdown
    /// wins over a cancel.
    #[inline]
    pub(crate) fn resume(&self) -> Resume {
        let flags = self.flags.load(Ordering::Acquire);
        if flags == 0 {
            Resume::Run
        } else if flags & UNWIND != 0 {
            Resume::Unwind
        } else {
            Resume::Cancel
        }
    }

    fn store(&self, state: Lifecycle) {
        self.word.store(state as u8, Ordering::Release);
    }
}

/// The right to run one task (module invariant): what the run queues, the deques and
/// the inboxes hold.
pub(crate) struct Runnable(Arc<Task>);

impl Runnable {
    /// Makes the first `Runnable` of a new task, and a handle to it.
    pub(crate) fn spawn<B: Body>(task: Task<B>) -> (Runnable, Arc<Task>) {
        let task: Arc<Task> = Arc::new(task);
        // A fresh task (`Scheduled`, as `TaskState::new` makes it) has no other.
        (Runnable(task.clone()), task)
    }

    /// Wakes `task`: `Idle` becomes `Scheduled` and its new `Runnable` is returned,
    /// for the caller to queue; `Scheduled` (queued or running) becomes `Notified`,
    /// which its worker will find; otherwise (already notified, or finished) nothing
    /// changes.
    ///
    /// The decision is a compare-exchange even when the word already says
    /// `Notified`: the worker's next read-modify-write must synchronise with this
    /// wake, not an older one (module docs).
    pub(crate) fn wake(task: &Arc<Task>) -> Option<Runnable> {
        let word = &task.state.word;
        let mut state = word.load(Ordering::Relaxed);
        loop {
            let (from, next) = match Lifecycle::from_u8(state) {
                Lifecycle::Idle => (Lifecycle::Idle, Lifecycle::Scheduled),
                Lifecycle::Scheduled => (Lifecycle::Scheduled, Lifecycle::Notified),
                Lifecycle::Notified => (Lifecycle::Notified, Lifecycle::Notified),
                Lifecycle::Done => return None,
            };
            // Release: the caller's store of the condition goes with the new value.
            match word.compare_exchange_weak(state, next as u8, Ordering::AcqRel, Ordering::Relaxed)
            {
                // We moved it out of `Idle`, which no `Runnable` exists in: this is
                // the only one.
                Ok(_) if from == Lifecycle::Idle => return Some(Runnable(task.clone())),
                Ok(_) => return None,
                Err(actual) => state = actual,
            }
        }
    }

    /// The task.
    #[inline]
    pub(crate) fn task(&self) -> &Arc<Task> {
        &self.0
    }

    /// The task's worker part: ours, since we hold the right to run it.
    #[inline]
    pub(crate) fn worker_part(&mut self) -> &mut WorkerPart {
        // SAFETY: holding the `Runnable` is holding the right to run the task (module
        // invariant), and `&mut self` makes this the only reference into the part
        // that the worker's code holds; the coroutine's code never touches it.
        unsafe { self.0.worker_part() }
    }

    /// Begins a run. A wake that came in since the task was queued (or while it
    /// last ran) is taken in: the swap synchronises with the waker, so the coroutine
    /// sees what it was woken for, and an idle at the end of this run is not refused
    /// because of it. Without one, this is a single plain load (module docs).
    #[inline]
    pub(crate) fn begin_run(&self) {
        let word = &self.0.state.word;
        let state = word.load(Ordering::Relaxed);
        debug_assert!(matches!(
            Lifecycle::from_u8(state),
            Lifecycle::Scheduled | Lifecycle::Notified
        ));
        if state == Lifecycle::Notified as u8 {
            // Only we move the word out of `Notified` (wakers leave it there).
            word.swap(Lifecycle::Scheduled as u8, Ordering::AcqRel);
        }
    }

    /// After a run that yielded: the task goes back in a run queue, its state as it
    /// is (`Scheduled`, or `Notified` if a wake came in while it ran).
    #[inline]
    pub(crate) fn requeue(self) -> Runnable {
        self
    }

    /// After a run that switched out to wait: idles the task, giving up the right
    /// to run it, unless a wake came in while it ran or sat queued (`Notified`);
    /// then it stays runnable and is returned to be requeued, and its next
    /// [`begin_run`](Runnable::begin_run) takes the wake in.
    #[inline]
    pub(crate) fn try_idle(self) -> Option<Runnable> {
        // Release: what this run wrote goes to whoever wakes the task next.
        let idled = self.0.state.word.compare_exchange(
            Lifecycle::Scheduled as u8,
            Lifecycle::Idle as u8,
            Ordering::Release,
            Ordering::Relaxed,
        );
        match idled {
            Ok(_) => None,
            Err(_) => Some(self),
        }
    }

    /// The task finished, or was completed unrun: it never runs again.
    #[inline]
    pub(crate) fn complete(self) {
        self.0.state.store(Lifecycle::Done);
    }
}
