//! The life of a task: its state word, every transition of it, and the right to run.
//!
//! Invariant: for each task, at most one [`Runnable`] exists at a time, and it exists
//! exactly while the task is queued to run or running (state `Scheduled`, `Running`
//! or `Notified`). Only the transitions here make one: a spawn makes the first, a
//! wake that finds the task `Idle` makes the next; a worker gives it up when the task
//! idles or completes. So holding a `Runnable` *is* the right to run the task, and
//! the task's worker part is reached only through `&mut Runnable`: the borrow checker
//! keeps the contract that every caller once restated in prose.
//!
//! ```text
//!                                        ┌────(yields)─────┐
//!                                        v                 │
//!   spawn ──> SCHEDULED ──(begin_run)──> RUNNING ──(try_idle)──> IDLE
//!              ^  │  ^                    │  │                     │
//!              │  │  │   (wake while      │  └──(returns)──> DONE  │
//!              │  │  │    running)        v                  ^     │
//!              │  │  │                 NOTIFIED              │     │
//!              │  │  └──(try_idle fails)──┘                  │     │
//!              │  └──(completed unrun: shutdown, cancel)─────┘     │
//!              └──────────────────────(wake)───────────────────────┘
//! ```
//!
//! The suspend protocol: a coroutine that waits switches to its worker with a
//! [`Request`](super::Request); only *after* that switch has completed does the
//! worker try to move the state from `Running` to `Idle`. A wake that arrives
//! earlier finds `Running`, turns it into `Notified`, and the worker requeues the
//! task instead of idling it. So a wake can never schedule a coroutine that has not
//! finished suspending, and no wake is lost between "decide to wait" and "be
//! waiting".
//!
//! The condition a coroutine waits for (an unpark token, a flag) is published by the
//! waker *before* it calls [`Runnable::wake`], and checked by the coroutine *after*
//! its worker marked it `Running`. Those are two stores each followed by a load of the
//! other side's location, which x86 (and the C++ model) may reorder; so `wake` starts
//! with a `SeqCst` fence and [`Runnable::begin_run`] puts one between its `Running`
//! store and the coroutine's check. Then either the waker sees `Running` (or later),
//! or the coroutine sees the condition: a wake is never lost to a coroutine that is
//! just starting a run.

use super::task::{Body, Task, WorkerPart};
use std::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// Where a task is in its life (the diagram in the module docs).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Queued to run (a `Runnable` sits in some queue).
    Scheduled = 0,
    /// A worker runs it.
    Running = 1,
    /// Running, and woken meanwhile: run it again once it has switched out.
    Notified = 2,
    /// Suspended, waiting for a wake.
    Idle = 3,
    /// Finished (or completed unrun).
    Done = 4,
}

impl Lifecycle {
    fn from_u8(value: u8) -> Lifecycle {
        match value {
            0 => Lifecycle::Scheduled,
            1 => Lifecycle::Running,
            2 => Lifecycle::Notified,
            3 => Lifecycle::Idle,
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
    /// Set to make the coroutine unwind at its next suspension point (shutdown).
    unwind: AtomicBool,
    /// Set by `JoinHandle::cancel`: unwind with `Cancelled` at the next suspension
    /// point (or never start).
    cancelled: AtomicBool,
}

impl TaskState {
    /// The state of a new task: `Scheduled`, its `Runnable` about to be queued.
    pub(crate) const fn new() -> TaskState {
        TaskState {
            word: AtomicU8::new(Lifecycle::Scheduled as u8),
            unwind: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
        }
    }

    /// The current state (a snapshot: other threads may move it on).
    pub(crate) fn get(&self) -> Lifecycle {
        Lifecycle::from_u8(self.word.load(Ordering::Acquire))
    }

    /// Marks the task to unwind at its next suspension point (or never start).
    pub(crate) fn request_unwind(&self) {
        self.unwind.store(true, Ordering::Release);
    }

    /// Marks the task cancelled (see [`TaskState::cancelled`]).
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// Whether `JoinHandle::cancel` was called.
    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// How the next run must resume the coroutine; for one that never ran, anything
    /// but [`Resume::Run`] means it must be completed unrun.
    pub(crate) fn resume(&self) -> Resume {
        if self.unwind.load(Ordering::Acquire) {
            Resume::Unwind
        } else if self.cancelled() {
            Resume::Cancel
        } else {
            Resume::Run
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
    /// for the caller to queue; `Running` becomes `Notified`; otherwise (already
    /// queued, or finished) nothing changes.
    pub(crate) fn wake(task: &Arc<Task>) -> Option<Runnable> {
        // Orders the caller's store of the condition before our load of the state
        // (module docs).
        fence(Ordering::SeqCst);
        let word = &task.state.word;
        let mut state = word.load(Ordering::Acquire);
        loop {
            let next = match Lifecycle::from_u8(state) {
                Lifecycle::Idle => Lifecycle::Scheduled,
                Lifecycle::Running => Lifecycle::Notified,
                Lifecycle::Scheduled | Lifecycle::Notified | Lifecycle::Done => return None,
            };
            match word.compare_exchange(state, next as u8, Ordering::AcqRel, Ordering::Acquire) {
                // We moved it out of `Idle`, which no `Runnable` exists in: this is
                // the only one.
                Ok(_) if next == Lifecycle::Scheduled => return Some(Runnable(task.clone())),
                Ok(_) => return None,
                Err(actual) => state = actual,
            }
        }
    }

    /// The task.
    pub(crate) fn task(&self) -> &Arc<Task> {
        &self.0
    }

    /// The task's worker part: ours, since we hold the right to run it.
    pub(crate) fn worker_part(&mut self) -> &mut WorkerPart {
        // SAFETY: holding the `Runnable` is holding the right to run the task (module
        // invariant), and `&mut self` makes this the only reference into the part
        // that the worker's code holds; the coroutine's code never touches it.
        unsafe { self.0.worker_part() }
    }

    /// Begins a run: `Scheduled` becomes `Running`, then a `SeqCst` fence before
    /// the coroutine checks what it waits for: it pairs with the one in
    /// [`Runnable::wake`] (module docs).
    pub(crate) fn begin_run(&self) {
        debug_assert_eq!(self.0.state.get(), Lifecycle::Scheduled);
        self.0
            .state
            .word
            .store(Lifecycle::Running as u8, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// After a run that yielded: the task goes back in a run queue.
    pub(crate) fn requeue(self) -> Runnable {
        self.0.state.store(Lifecycle::Scheduled);
        self
    }

    /// After a run that switched out to wait: idles the task, giving up the right
    /// to run it, unless a wake came in while it ran; then it stays runnable
    /// (`Scheduled` again) and is returned to be requeued.
    pub(crate) fn try_idle(self) -> Option<Runnable> {
        let idled = self.0.state.word.compare_exchange(
            Lifecycle::Running as u8,
            Lifecycle::Idle as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        match idled {
            Ok(_) => None,
            Err(_) => Some(self.requeue()),
        }
    }

    /// The task finished, or was completed unrun: it never runs again.
    pub(crate) fn complete(self) {
        self.0.state.store(Lifecycle::Done);
    }
}
