//! The control block of one runtime coroutine.
//!
//! Invariant (who may touch what):
//!
//! * The atomics (`state`, `home`, the park token, the cancel flag) may be touched
//!   from any thread.
//! * The two non-atomic parts (and the closure in the [`Body`]) are touched only by
//!   the thread that holds the right to run the task: the worker holding its
//!   [`Runnable`], which it took from a queue. Before its first run that can be any
//!   worker (an unstarted task holds only its `Send` closure and a stack nothing
//!   runs on); from its first run on, it is always the task's *home* worker, which
//!   it never leaves.
//!   Within that thread, [`WorkerPart`] (stack, context, started slot) belongs to the
//!   worker's code and [`CoroutinePart`] (suspender, locals) to the coroutine's code
//!   while it runs; neither reaches into the other's part, so a
//!   `&mut` to one never aliases a pointer into the other.
//! * The state word serialises the two: see the state module.
//!
//! A task is one allocation: the untyped header above and its typed [`Body`] (the
//! closure, then the result), reached as a [`TaskRef`](super::TaskRef) (a counted
//! pointer to `Task<dyn Body>`, whose count is the header's `refs`). The first run
//! builds the context through the body, so the entry knows the body's type and gets
//! the task as a thin pointer.

use crate::rt::context::{self, Context, Suspender};
use crate::rt::locals::LocalMap;
use crate::rt::stack::{Owner, Stack};
use crate::rt::unwind::{Cancelled, Unwound};
use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::state::{Resume, Runnable, TaskState};
use super::task_ref::TaskRef;
use super::wait::WaitRecord;
use super::Shared;

/// What a coroutine asks of its worker when it switches out (the value it suspends
/// with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Run me again after the others that are ready (`yield_now`).
    Yield = 1,
    /// Idle me until someone wakes me (`park`, `join`, …).
    Wait = 2,
    /// Back from a dump's capture resume (`scheduler::dump`): leave my state as
    /// the dump found it.
    Dumped = 3,
}

impl Request {
    /// The value that crossed the context switch.
    pub(crate) fn from_raw(value: usize) -> Request {
        if value == Request::Yield as usize {
            Request::Yield
        } else if value == Request::Dumped as usize {
            Request::Dumped
        } else {
            Request::Wait
        }
    }
}

/// The `join` error of a coroutine completed without running its closure.
pub(crate) type Payload = Box<dyn Any + Send>;

/// The typed part of a task, stored in the same allocation as its header: the
/// coroutine's closure until it runs, then its result (see `coroutine::body`).
pub(crate) trait Body: Send + Sync + 'static {
    /// Builds the context of the task's first run: [`context_for::<Self>`](context_for).
    ///
    /// # Safety
    ///
    /// As [`context_for`], with `task` pointing at the `Task<Self>` holding `self`.
    unsafe fn context(&self, stack: Stack, task: *const ()) -> Context;

    /// Runs the closure (`skip` is `None`), or drops it unrun and completes with
    /// `skip` as the `join` error; then publishes the result. Never unwinds.
    ///
    /// # Safety
    ///
    /// Called at most once per task, by the thread holding the right to run it
    /// (module invariant); with `None`, only by the coroutine itself, on its stack.
    unsafe fn run(&self, task: &Task, skip: Option<Payload>);

    /// The result slot, for the `JoinHandle` to downcast to its typed packet.
    fn output(&self) -> &(dyn Any + Send + Sync);
}

/// A context whose first resume runs the body of the `Task<B>` at `task`.
///
/// # Safety
///
/// `task` points at a `Task<B>` that stays alive until the context has finished
/// (its home worker keeps it among its started tasks).
pub(crate) unsafe fn context_for<B: Body>(stack: Stack, task: *const ()) -> Context {
    // SAFETY: `TaskEntry<B>` reads `task` as a `Task<B>`: the caller's contract.
    unsafe { Context::new::<TaskEntry<B>>(stack, task.cast_mut()) }
}

/// The context entry of a runtime coroutine: runs its body.
struct TaskEntry<B>(std::marker::PhantomData<B>);

impl<B: Body> context::Entry for TaskEntry<B> {
    unsafe fn run(value: usize, data: *mut (), suspender: Suspender) -> usize {
        // SAFETY: `data` is the `Task<B>`, alive while its context runs (`context_for`).
        let task = unsafe { &*data.cast::<Task<B>>().cast_const() };
        // SAFETY: we are the running coroutine, so its part is ours; the borrow ends
        // here.
        unsafe { task.coroutine_part().suspender = Some(suspender) };
        let skip: Option<Payload> = match Resume::from_raw(value) {
            Resume::Unwind => Some(Box::new(Unwound)),
            Resume::Cancel => Some(Box::new(Cancelled)),
            // A dump resumes only started coroutines (it claims them from among
            // its worker's started tasks).
            Resume::Run | Resume::Dump => None,
        };
        let dyn_task: &Task = task;
        // SAFETY: the first (and only) run of the body, by the coroutine on its stack,
        // on the worker holding the right to run it.
        unsafe { task.body.run(dyn_task, skip) };
        0
    }
}

/// No home yet (never run).
pub(crate) const NO_HOME: usize = usize::MAX;

/// One coroutine of a runtime: the header, then the typed body (last, so that
/// `Task<B>` unsizes to `Task<dyn Body>`).
pub(crate) struct Task<B: ?Sized = dyn Body> {
    /// How many `TaskRef`s point at it (the task_ref module's invariant).
    pub(super) refs: AtomicUsize,
    /// Names it in panics, overflow reports and `Coroutine::name`.
    pub(crate) owner: Owner,
    /// Its place in the life of a task, and how its next run resumes it.
    pub(crate) state: TaskState,
    /// Index of the home worker, or `NO_HOME` before the first run.
    pub(crate) home: AtomicUsize,
    /// `park`/`unpark` token: true when an unpark is pending.
    pub(crate) unparked: AtomicBool,
    pub(crate) shared: Arc<Shared>,
    worker_part: UnsafeCell<WorkerPart>,
    coroutine_part: UnsafeCell<CoroutinePart>,
    /// What it waits for (the wait module's invariant).
    wait: UnsafeCell<WaitRecord>,
    pub(crate) body: B,
}

/// What the worker running the task touches (module invariant).
pub(crate) struct WorkerPart {
    /// The stack, until the first run builds the context on it.
    pub(crate) stack: Option<Stack>,
    /// The running context, from the first run until the task is done.
    pub(crate) context: Option<Context>,
    /// Its index among its home worker's started tasks, while it is there.
    pub(crate) slot: usize,
}

/// What the coroutine touches while it runs (module invariant); also the worker,
/// for a task that never ran.
pub(crate) struct CoroutinePart {
    /// The coroutine's way back to its worker, set when it starts.
    pub(crate) suspender: Option<Suspender>,
    /// `coroutine_local!` values.
    pub(crate) locals: LocalMap,
    /// The deadline scopes it is inside (`time::deadline`).
    pub(crate) scope: super::deadline::Scopes,
}

// SAFETY: the two parts follow the module invariant: it is only reached by the one thread
// that holds the right to run the task (a task is never run by two workers at once;
// the state word hands that right over with acquire/release ordering), and the
// values in it that are not `Send` (the context, the locals) are created and dropped
// on the home worker, which the task never leaves once they exist. Everything else is
// atomic or immutable.
unsafe impl<B: ?Sized + Send> Send for Task<B> {}
// SAFETY: as above: shared references from other threads only reach the atomics and
// the immutable owner, and the body is `Sync` itself.
unsafe impl<B: ?Sized + Sync> Sync for Task<B> {}

impl TaskRef {
    /// Wakes the task: schedules it if it is idle, or marks a running one to be run
    /// again once it has suspended. Callable from any thread.
    pub(crate) fn wake(&self) {
        if let Some(runnable) = Runnable::wake(self) {
            super::schedule_started(runnable);
        }
    }
}

impl<B: Body> Task<B> {
    /// A new, unstarted task.
    pub(crate) fn new(owner: Owner, shared: Arc<Shared>, stack: Stack, body: B) -> Task<B> {
        Task {
            refs: AtomicUsize::new(1),
            owner,
            state: TaskState::new(),
            home: AtomicUsize::new(NO_HOME),
            unparked: AtomicBool::new(false),
            shared,
            worker_part: UnsafeCell::new(WorkerPart {
                stack: Some(stack),
                context: None,
                slot: usize::MAX,
            }),
            coroutine_part: UnsafeCell::new(CoroutinePart {
                suspender: None,
                locals: LocalMap::default(),
                scope: super::deadline::Scopes::default(),
            }),
            wait: UnsafeCell::new(WaitRecord::new()),
            body,
        }
    }
}

impl<B: ?Sized> Task<B> {
    /// The worker's part.
    ///
    /// # Safety
    ///
    /// The caller is the worker's code and holds the right to run the task (module
    /// invariant), and no other reference into this part is alive: in practice
    /// [`Runnable::worker_part`](super::state::Runnable::worker_part), or code
    /// holding the only `Runnable`.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn worker_part(&self) -> &mut WorkerPart {
        // SAFETY: contract.
        unsafe { &mut *self.worker_part.get() }
    }

    /// The coroutine's part.
    ///
    /// # Safety
    ///
    /// The caller is the running coroutine (or the worker, for a task that never
    /// ran), and no other reference into this part is alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn coroutine_part(&self) -> &mut CoroutinePart {
        // SAFETY: contract.
        unsafe { &mut *self.coroutine_part.get() }
    }

    /// The record of its latest wait.
    ///
    /// # Safety
    ///
    /// The wait module's invariant: the caller is the running coroutine about to
    /// switch out, or its home worker holding the right to run it while it is
    /// suspended; no other reference into the record is alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn wait_record(&self) -> &mut WaitRecord {
        // SAFETY: contract.
        unsafe { &mut *self.wait.get() }
    }

    /// The home worker's index, if the task has started.
    pub(crate) fn home(&self) -> Option<usize> {
        match self.home.load(Ordering::Acquire) {
            NO_HOME => None,
            home => Some(home),
        }
    }
}
