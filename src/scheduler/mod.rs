//! The work-stealing scheduler.
//!
//! Per worker: a crossbeam `Worker` deque of **unstarted** coroutines (others may
//! steal from it), a local run queue of **started** coroutines (never stolen), and an
//! inbox through which other threads hand it started coroutines they woke. A global
//! `Injector` takes coroutines spawned from outside the runtime.
//!
//! Invariant (soundness): only coroutines that have not started yet are ever
//! reachable by another worker. A coroutine's first run makes that worker its
//! *home*; every later wakeup goes to the home worker's run queue or inbox, so a
//! started coroutine — whose stack may hold `Rc`s, `MutexGuard`s and thread-local
//! borrows — never changes OS thread. That is why `spawn` can be a safe function
//! taking only a `Send` closure.
//!
//! Search order of a worker: local run queue → own deque → inbox → injector →
//! steal from the others (random start) → poll the reactor and the timers → sleep
//! in the reactor. Every [`FAIRNESS_TICKS`] runs it
//! polls the reactor, takes in the inbox and runs an unstarted coroutine (own deque, then injector)
//! first, so a busy worker — even one whose run queue never empties because a
//! coroutine yields in a loop — starves neither.

pub(crate) mod idle;
mod started;
pub(crate) mod task;
mod worker;

use crate::runtime::Metrics;
use crossbeam_deque::{Injector, Stealer};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) use task::{context_for, Body, Payload, Request, Task};
pub(crate) use worker::{
    add_timer, cancel_timer, current_task, others_ready, start as start_workers, suspend_current,
    with_current_task,
};

use idle::{Idle, Parker};

/// Runs between two forced checks of the inbox and the injector.
pub(crate) const FAIRNESS_TICKS: u32 = 61;

/// What every worker of one runtime shares.
pub(crate) struct Shared {
    pub(crate) injector: Injector<Arc<Task>>,
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) idle: Idle,
    pub(crate) shutdown: AtomicBool,
    /// Spawns between their shutdown check and their push (see `Builder::spawn_on`).
    pub(crate) spawning: AtomicUsize,
    pub(crate) stack_size: usize,
    /// Spawns and completions counted off the workers (see [`Remote::spawned`]).
    pub(crate) spawned: AtomicU64,
    pub(crate) completed: AtomicU64,
}

/// What others see of one worker.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Arc<Task>>,
    /// Started coroutines of this worker, woken from other threads.
    /// (A crossbeam `Injector` used as a lock-free MPSC queue: only the home worker
    /// takes from it.)
    pub(crate) inbox: Injector<Arc<Task>>,
    /// Wakes the worker when it sleeps in its reactor.
    pub(crate) parker: Parker,
    /// Registers file descriptors with the worker's `Poll`.
    pub(crate) registry: mio::Registry,
    /// Length of the local run queue, for metrics.
    pub(crate) run_queue_len: AtomicUsize,
    pub(crate) steals: AtomicU64,
    pub(crate) parks: AtomicU64,
    /// Spawns made and coroutines completed on this worker's thread: written only by
    /// that thread (no read-modify-write, no cache line shared with other writers);
    /// the metrics add them to the runtime's own counters.
    pub(crate) spawned: AtomicU64,
    pub(crate) completed: AtomicU64,
}

/// Adds one to a counter that only the calling thread writes.
fn bump_own(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Shared {
    /// Queues an unstarted task: on this thread's worker deque if this thread is a
    /// worker of this runtime, on the injector otherwise; then wakes one sleeper.
    pub(crate) fn schedule_new(self: &Arc<Shared>, task: Arc<Task>) {
        if let Err(task) = worker::push_local_new(self, task) {
            self.spawned.fetch_add(1, Ordering::Relaxed);
            self.injector.push(task);
        }
        self.wake_one();
    }

    /// Counts a completed coroutine (before its joiner can see the result).
    pub(crate) fn count_completed(&self) {
        match worker::worker_index_of(self) {
            Some(index) => bump_own(&self.remotes[index].completed),
            None => {
                self.completed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether the calling thread is one of this runtime's workers.
    pub(crate) fn is_own_worker(&self) -> bool {
        worker::worker_index_of(self).is_some()
    }

    /// Wakes one sleeping worker, if any, to look for work.
    pub(crate) fn wake_one(&self) {
        if let Some(w) = self.idle.pick_one() {
            self.remotes[w].parker.unpark();
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn metrics(&self) -> Metrics {
        let sum = |own: &AtomicU64, each: fn(&Remote) -> &AtomicU64| {
            own.load(Ordering::Relaxed)
                + self
                    .remotes
                    .iter()
                    .map(|r| each(r).load(Ordering::Relaxed))
                    .sum::<u64>()
        };
        let spawned = sum(&self.spawned, |r| &r.spawned);
        let completed = sum(&self.completed, |r| &r.completed);
        Metrics {
            workers: self.remotes.len(),
            live_coroutines: spawned.saturating_sub(completed) as usize,
            spawned,
            completed,
            steals: self
                .remotes
                .iter()
                .map(|r| r.steals.load(Ordering::Relaxed))
                .sum(),
            parks: self
                .remotes
                .iter()
                .map(|r| r.parks.load(Ordering::Relaxed))
                .sum(),
            run_queue_depths: self
                .remotes
                .iter()
                .map(|r| r.run_queue_len.load(Ordering::Relaxed) + r.stealer.len() + r.inbox.len())
                .collect(),
            injector_depth: self.injector.len(),
        }
    }
}

/// Queues a started task that was just woken (state now `SCHEDULED`) on its home
/// worker: directly on the local run queue when called on that worker, else through
/// the home worker's inbox, unparking it.
pub(crate) fn schedule_started(task: Arc<Task>) {
    let home = task.home().expect("a started task has a home");
    if let Err(task) = worker::push_local_started(home, task) {
        let shared = task.shared.clone();
        let remote = &shared.remotes[home];
        remote.inbox.push(task);
        remote.parker.unpark();
    }
}

thread_local! {
    /// The runtime this thread is a worker of (null elsewhere). A value, read fresh
    /// each time: never a pointer kept across a switch.
    static RUNTIME: Cell<*const Shared> = const { Cell::new(ptr::null()) };
}

/// The runtime whose worker this thread is, if any.
pub(crate) fn current_runtime() -> Option<Arc<Shared>> {
    let shared = RUNTIME.with(Cell::get);
    if shared.is_null() {
        return None;
    }
    // SAFETY: a worker thread sets RUNTIME to a pointer from its own `Arc<Shared>`,
    // which it holds until it clears RUNTIME again, on this same thread; so the
    // pointer is alive here and we may take a new strong reference.
    unsafe {
        Arc::increment_strong_count(shared);
        Some(Arc::from_raw(shared))
    }
}

/// Completes a task that never ran, without running user code: its closure is
/// dropped and its joiner gets [`Cancelled`](crate::Cancelled) if it was
/// cancelled, [`Unwound`](crate::Unwound) otherwise.
///
/// The caller holds the right to run the task (took it from a queue) and it has not
/// started.
pub(crate) fn complete_unstarted(task: &Arc<Task>) {
    // SAFETY: the caller holds the right to run the task, which never ran: no
    // coroutine uses its parts.
    let stack = unsafe { task.worker_part().stack.take() };
    if let Some(stack) = stack {
        crate::stack::pool::give(stack);
        let payload: Payload = if task.cancelled.load(Ordering::Acquire) {
            Box::new(crate::Cancelled)
        } else {
            Box::new(crate::Unwound)
        };
        // SAFETY: the caller holds the right to run the task; it never ran (it still
        // had its stack, which its first run takes), so its body runs here, once.
        unsafe { task.body.run(task, Some(payload)) };
    }
    task.state.store(task::State::DONE, Ordering::Release);
}
