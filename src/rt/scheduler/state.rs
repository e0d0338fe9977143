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
//!
//! The loom models at the end of this file check this argument (one waker, a yield
//! before the wait, two wakers where the second finds `Notified`, a waker racing a
//! dump's claim of the idle task, see [`Runnable::claim_for_dump`]); each of them
//! fails when the wake's release, the swap's acquire or the compare-exchange on
//! `Notified` is taken out.

use super::task::{Body, Task, WorkerPart};
use super::task_ref::TaskRef;
#[cfg(stackweave_loom)]
use loom::sync::atomic::AtomicU8;
#[cfg(not(stackweave_loom))]
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering;

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
    /// Record a backtrace for a dump and switch straight back with
    /// `Request::Dumped`, running no user code (`scheduler::dump`).
    Dump = 3,
}

impl Resume {
    /// The value that crossed the context switch.
    #[inline]
    pub(crate) fn from_raw(value: usize) -> Resume {
        match value {
            1 => Resume::Unwind,
            2 => Resume::Cancel,
            3 => Resume::Dump,
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
    pub(crate) fn new() -> TaskState {
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

    /// A wake: `Idle` becomes `Scheduled` (returns true: the caller makes the
    /// task's one `Runnable`); `Scheduled` (queued or running) becomes `Notified`,
    /// which its worker will find; otherwise (already notified, or finished) nothing
    /// changes.
    ///
    /// The decision is a compare-exchange even when the word already says
    /// `Notified`: the worker's next read-modify-write must synchronise with this
    /// wake, not an older one (module docs).
    fn wake(&self) -> bool {
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            let (from, next) = match Lifecycle::from_u8(state) {
                Lifecycle::Idle => (Lifecycle::Idle, Lifecycle::Scheduled),
                Lifecycle::Scheduled => (Lifecycle::Scheduled, Lifecycle::Notified),
                Lifecycle::Notified => (Lifecycle::Notified, Lifecycle::Notified),
                Lifecycle::Done => return false,
            };
            // Release: the caller's store of the condition goes with the new value.
            match self.word.compare_exchange_weak(
                state,
                next as u8,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return from == Lifecycle::Idle,
                Err(actual) => state = actual,
            }
        }
    }

    /// A run begins: a pending `Notified` is taken in (swapped back to
    /// `Scheduled`, synchronising with the waker); otherwise one plain load.
    #[inline]
    fn begin_run(&self) {
        let state = self.word.load(Ordering::Relaxed);
        debug_assert!(matches!(
            Lifecycle::from_u8(state),
            Lifecycle::Scheduled | Lifecycle::Notified
        ));
        if state == Lifecycle::Notified as u8 {
            // Only the holder of the `Runnable` moves the word out of `Notified`
            // (wakers leave it there).
            self.word.swap(Lifecycle::Scheduled as u8, Ordering::AcqRel);
        }
    }

    /// A run that waits ended: `Scheduled` becomes `Idle` (returns true), unless a
    /// wake left `Notified` (returns false: the task stays runnable).
    #[inline]
    fn try_idle(&self) -> bool {
        // Release: what this run wrote goes to whoever wakes the task next.
        self.word
            .compare_exchange(
                Lifecycle::Scheduled as u8,
                Lifecycle::Idle as u8,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// A dump claims an idle task: `Idle` becomes `Scheduled` (returns true), as a
    /// wake would, but nobody is told. See [`Runnable::claim_for_dump`].
    fn claim(&self) -> bool {
        self.word
            .compare_exchange(
                Lifecycle::Idle as u8,
                Lifecycle::Scheduled as u8,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The task finished or was completed unrun: `Done`, for good.
    #[inline]
    fn complete(&self) {
        self.word.store(Lifecycle::Done as u8, Ordering::Release);
    }
}

/// The right to run one task (module invariant): what the run queues, the deques and
/// the inboxes hold.
pub(crate) struct Runnable(TaskRef);

impl Runnable {
    /// Makes the first `Runnable` of a new task, and a handle to it.
    pub(crate) fn spawn<B: Body>(task: Task<B>) -> (Runnable, TaskRef) {
        let task = TaskRef::new(task);
        // A fresh task (`Scheduled`, as `TaskState::new` makes it) has no other.
        (Runnable(task.clone()), task)
    }

    /// Wakes `task` (see [`TaskState`]'s transitions): if it was `Idle`, its new
    /// `Runnable` is returned for the caller to queue; otherwise its worker will
    /// find the wake, or it has finished.
    pub(crate) fn wake(task: &TaskRef) -> Option<Runnable> {
        // Out of `Idle`, which no `Runnable` exists in: this is the only one.
        task.state.wake().then(|| Runnable(task.clone()))
    }

    /// The right to run an idle task, taken by its home worker for a dump's capture
    /// resume (`scheduler::dump`); `None` if it is not idle (queued, running, or
    /// done: then a `Runnable` exists elsewhere, or none ever will again).
    ///
    /// Why a wake is never lost: the claim is the same `Idle` → `Scheduled` step a
    /// wake takes, so from here on a wake finds `Scheduled` and leaves `Notified`
    /// without making a second `Runnable`. The holder must resume the coroutine
    /// with [`Resume::Dump`] *without* [`begin_run`](Runnable::begin_run) (which
    /// would take in, and so swallow, such a wake: the coroutine runs no code that
    /// could see its condition), then give the right back with
    /// [`try_idle`](Runnable::try_idle): that fails on `Notified` and hands back
    /// the `Runnable` to queue, exactly as after a run that suspended while a wake
    /// came in. A wake that came *before* the claim found `Idle` and made its own
    /// `Runnable`, so the claim fails instead.
    pub(crate) fn claim_for_dump(task: &TaskRef) -> Option<Runnable> {
        task.state.claim().then(|| Runnable(task.clone()))
    }

    /// The task.
    #[inline]
    pub(crate) fn task(&self) -> &TaskRef {
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
    /// last ran) is taken in: the coroutine sees what it was woken for, and an idle
    /// at the end of this run is not refused because of it. Without one, this is a
    /// single plain load (module docs).
    #[inline]
    pub(crate) fn begin_run(&self) {
        self.0.state.begin_run();
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
        if self.0.state.try_idle() {
            None
        } else {
            Some(self)
        }
    }

    /// The task finished, or was completed unrun: it never runs again.
    #[inline]
    pub(crate) fn complete(self) {
        self.0.state.complete();
    }
}

/// loom models of the protocol in the module docs (`RUSTFLAGS="--cfg
/// stackweave_loom" cargo test --release --lib loom_`). The worker part is a loom
/// cell that every holder of the right to run writes, so loom also checks that two
/// holders never overlap; the condition a coroutine waits for is read with a plain
/// acquire load, the weakest check the runtime's primitives make.
#[cfg(all(test, stackweave_loom))]
mod loom_models {
    use super::TaskState;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;
    use std::sync::atomic::Ordering;

    /// One task: its state, the conditions it waits for, its worker part.
    struct Model {
        state: TaskState,
        conditions: Vec<AtomicBool>,
        /// Stands for the worker part: runs of the task write it.
        part: UnsafeCell<usize>,
        /// Set by the run that found every condition and finished the task.
        finished: AtomicBool,
    }

    impl Model {
        /// A task that waits for `n` conditions, `Scheduled` and held by its first
        /// worker.
        fn new(n: usize) -> Arc<Model> {
            Arc::new(Model {
                state: TaskState::new(),
                conditions: (0..n).map(|_| AtomicBool::new(false)).collect(),
                part: UnsafeCell::new(0),
                finished: AtomicBool::new(false),
            })
        }

        /// What the holder of the right to run does: runs the task (yielding once
        /// first when `yields`) until it either finds every condition and
        /// finishes, or waits and is idled.
        fn hold(&self, yields: bool) {
            let mut yielded = !yields;
            loop {
                self.state.begin_run();
                // SAFETY: not a real dereference race: loom's cell reports any two
                // accesses that are not ordered by happens-before, which is what
                // this model exists to catch.
                self.part.with_mut(|part| unsafe { *part += 1 });
                if self.conditions.iter().all(|c| c.load(Ordering::Acquire)) {
                    self.finished.store(true, Ordering::Relaxed);
                    self.state.complete();
                    return;
                }
                if !yielded {
                    // A yield: it stays `Scheduled` (or `Notified`) and runs again.
                    yielded = true;
                    continue;
                }
                if self.state.try_idle() {
                    return;
                }
                // Notified while it ran: requeued, so it runs again.
            }
        }

        /// A waker: publishes condition `i`, wakes the task, and runs it if the
        /// wake made the new `Runnable` (standing for the home worker, which the
        /// inbox would hand it to: a queue orders it after the wake).
        fn wake(&self, i: usize) {
            self.conditions[i].store(true, Ordering::Release);
            if self.state.wake() {
                self.hold(false);
            }
        }
    }

    /// Runs the task on one thread while `wakers` threads each publish one condition
    /// and wake it; at the end the task must have seen every condition.
    fn race(wakers: usize, yields: bool) {
        loom::model(move || {
            let model = Model::new(wakers);
            let threads: Vec<_> = (0..wakers)
                .map(|i| {
                    let model = model.clone();
                    thread::spawn(move || model.wake(i))
                })
                .collect();
            model.hold(yields);
            for t in threads {
                t.join().unwrap();
            }
            assert!(
                model.finished.load(Ordering::Relaxed),
                "a wake was lost: the task idles with every condition set"
            );
        });
    }

    #[test]
    fn loom_a_wake_racing_a_suspend_is_never_lost() {
        race(1, false);
    }

    #[test]
    fn loom_a_wake_racing_a_yield_then_a_suspend_is_never_lost() {
        race(1, true);
    }

    #[test]
    fn loom_a_second_wake_on_a_notified_task_is_never_lost() {
        race(2, false);
    }

    /// The coroutine dump (`scheduler::dump`): after the task's run idles it, its
    /// home worker claims it for a capture and gives it back with `try_idle`
    /// (requeueing it if that fails), while a waker publishes the condition and
    /// wakes it. The wake must not be lost, and the claim must never overlap
    /// another holder (the worker part).
    #[test]
    fn loom_a_wake_racing_a_dump_claim_is_never_lost() {
        loom::model(|| {
            let model = Model::new(1);
            let waker = {
                let model = model.clone();
                thread::spawn(move || model.wake(0))
            };
            model.hold(false);
            if model.state.claim() {
                // The capture: it holds the right to run, touches the part, and
                // does not take a wake in (no `begin_run`).
                // SAFETY: as in `hold`: loom checks the accesses' ordering.
                model.part.with_mut(|part| unsafe { *part += 1 });
                if !model.state.try_idle() {
                    // Woken meanwhile: requeued, so it runs again.
                    model.hold(false);
                }
            }
            waker.join().unwrap();
            assert!(
                model.finished.load(Ordering::Relaxed),
                "a wake was lost: the task idles with its condition set"
            );
        });
    }
}
