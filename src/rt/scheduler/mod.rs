//! The work-stealing scheduler.
//!
//! Per worker: a crossbeam `Worker` deque of **unstarted** coroutines (others may
//! steal from it), a next slot for its last spawn and a spawn inbox for unstarted
//! coroutines other threads placed on it (others take from both only after a grace
//! period: see the placement module), a local run queue of **started** coroutines
//! (never stolen), and an inbox through which other threads hand it started
//! coroutines they woke (and unstarted ones pinned to it).
//!
//! Invariant (soundness): only coroutines that have not started yet are ever
//! reachable by another worker. A coroutine's first run makes that worker its
//! *home*; every later wakeup goes to the home worker's run queue or inbox, so a
//! started coroutine — whose stack may hold `Rc`s, `MutexGuard`s and thread-local
//! borrows — never changes OS thread. That is why `spawn` can be a safe function
//! taking only a `Send` closure.
//!
//! Search order of a worker: local run queue → next slot → own deque → spawn inbox →
//! inbox → steal from the others (deques, random start; then next slots and spawn
//! inboxes that waited past the grace) → poll the reactor and the timers → sleep in
//! the reactor. Every [`FAIRNESS_TICKS`] runs it polls the reactor, takes in the
//! inbox and runs an unstarted coroutine (spawn inbox, next slot, then deque)
//! first, so a busy worker — even one whose run queue never empties because a
//! coroutine yields in a loop — starves neither. The reactor poll at a fairness
//! tick is skipped when the last poll is less than [`MIN_BUSY_POLL_INTERVAL`] old:
//! with runs of tens of nanoseconds (coroutines that yield in a loop) a system call
//! every 61 runs was a sixth of the worker's time; with runs of a third of a
//! microsecond or more, 61 runs take longer than the interval and every tick polls.

pub(crate) mod deadline;
pub(crate) mod dump;
pub(crate) mod idle;
mod placement;
mod run_queue;
mod spawn_inbox;
mod started;
pub(crate) mod state;
pub(crate) mod task;
mod task_cache;
mod task_ref;
pub(crate) mod wait;
pub(crate) mod watchdog;
mod worker;

use crate::rt::reactor::scheduled_io::ScheduledIo;
use crossbeam_deque::{Injector, Steal, Stealer};
use std::cell::Cell;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use placement::Placement;

pub(crate) use state::Runnable;
pub(crate) use task::{context_for, Body, Payload, Request, Task};
pub(crate) use task_cache::trim as trim_task_cache;
pub(crate) use task_ref::TaskRef;
pub(crate) use wait::{WaitKind, Why};
pub(crate) use worker::{
    add_timer, cancel_timer, current_task, others_ready, start as start_workers, suspend_current,
    wait_current, with_current_task,
};

use idle::{Idle, Parker};
use placement::NextSlot;

/// Runs between two forced checks of the inbox and the spawn inbox.
pub(crate) const FAIRNESS_TICKS: u32 = 61;

/// A busy worker polls the reactor at a fairness tick only if its last poll is at
/// least this old (module docs): what it adds to the wait of a coroutine whose I/O
/// became ready while its worker stays busy.
pub(crate) const MIN_BUSY_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_micros(20);

/// What every worker of one runtime shares.
///
/// The fields others write often sit on lines of their own ([`Padded`]): the
/// `Arc`'s reference count, which every spawn and every finished coroutine
/// touches, shares its line only with read-mostly fields.
pub(crate) struct Shared {
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) idle: Padded<Idle>,
    pub(crate) shutdown: AtomicBool,
    /// Spawns between their shutdown check and their push (see `Builder::spawn_on`).
    pub(crate) spawning: Padded<AtomicUsize>,
    pub(crate) stack_size: usize,
    /// Spawns and completions counted off the workers (see [`Remote::spawned`]).
    pub(crate) spawned: Padded<AtomicU64>,
    pub(crate) completed: Padded<AtomicU64>,
    /// Set by `Runtime::shutdown_timeout` (see `runtime::drain`).
    pub(crate) draining: AtomicBool,
    /// The readiness slots of the listeners accepting on this runtime, to
    /// interrupt at a drain (see `runtime::drain`).
    pub(crate) listeners: Mutex<Vec<&'static ScheduledIo>>,
    /// When the runtime was built: the origin of the workers' busy time.
    pub(crate) started_at: Instant,
    /// This runtime's number, never reused in the process (unlike the address of
    /// a `Shared`, which a later runtime may get): what a readiness slot records
    /// to say which runtime's drain list holds it.
    pub(crate) id: u64,
}

/// Gives each runtime its [`Shared::id`] (0 means none).
pub(crate) fn next_runtime_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A value on cache lines of its own (two, against the adjacent-line prefetcher):
/// for the fields of [`Remote`] that one thread writes while others write theirs.
/// Without it the counters the worker bumps on every run shared lines with the
/// next slot and spawn counters other workers write, and spawn + join of short
/// coroutines took twice as long.
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// What others see of one worker.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Runnable>,
    /// Started coroutines of this worker, woken from other threads.
    /// (A crossbeam `Injector` used as a lock-free MPSC queue: only the home worker
    /// takes from it.)
    pub(crate) inbox: Injector<Runnable>,
    /// Wakes the worker when it sleeps in its reactor.
    pub(crate) parker: Padded<Parker>,
    /// Registers file descriptors with the worker's `Poll`.
    pub(crate) registry: mio::Registry,
    /// Unstarted coroutines that other threads placed on this worker; the worker
    /// takes from it, others only after the grace (placement module).
    pub(crate) spawn_inbox: spawn_inbox::SpawnInbox<Runnable>,
    /// The worker's last spawn, kept for it (placement module).
    pub(crate) next: Padded<NextSlot>,
    /// The worker's own load (started, unfinished coroutines homed here plus its
    /// queued unstarted ones), published by the worker itself only when it moved
    /// by more than a little: others read it on every spawn, so it must stay in
    /// their caches while the load is steady (placement module).
    pub(crate) load_hint: Padded<AtomicUsize>,
    /// Coroutines pushed on `spawn_inbox` and not taken yet (written by those who
    /// place work here: only on the spawn paths that hand work over).
    pub(crate) spawn_pending: Padded<AtomicUsize>,
    /// Takes from `spawn_inbox` so far (written only by this worker).
    pub(crate) inbox_taken: AtomicU64,
    /// Whether the worker is asleep or about to be (it will look at its queues when
    /// it wakes, so nobody takes its fresh work meanwhile).
    pub(crate) sleeping: Padded<AtomicBool>,
    /// Length of the local run queue, for metrics.
    pub(crate) run_queue_len: AtomicUsize,
    pub(crate) steals: AtomicU64,
    pub(crate) parks: AtomicU64,
    /// Spawns made and coroutines completed on this worker's thread: written only by
    /// that thread (no read-modify-write, no cache line shared with other writers);
    /// the metrics add them to the runtime's own counters.
    pub(crate) spawned: AtomicU64,
    pub(crate) completed: AtomicU64,
    /// What the stall watchdog samples (written by the worker on every run).
    pub(crate) activity: Padded<watchdog::Activity>,
    /// Started, unfinished coroutines homed here (stored by the worker at each
    /// start and finish).
    pub(crate) homed: AtomicUsize,
    /// Armed timers, as the worker last published them (each reactor poll).
    pub(crate) timers: AtomicUsize,
    /// Reactor polls (written only by the worker).
    pub(crate) polls: AtomicU64,
    /// File descriptors registered with this worker's `Poll`.
    pub(crate) registrations: AtomicUsize,
    /// Nanoseconds parked in the reactor, since `Shared::started_at`, not counting a
    /// park in progress (written only by the worker).
    pub(crate) parked_nanos: AtomicU64,
    /// While parked: 1 + when the park began, in nanoseconds since
    /// `Shared::started_at`; 0 while awake.
    pub(crate) parked_since: AtomicU64,
    /// Its coroutines inside a drain scope (`runtime::until_drain`), for the drain
    /// to wake (deadline module).
    pub(crate) drain_scopes: Mutex<deadline::DrainScopes>,
    /// Coroutine dumps waiting for this worker (the dump module).
    pub(crate) dump: dump::DumpSlot,
}

impl Remote {
    /// What others see of a worker whose deque is behind `stealer` and whose
    /// reactor is behind `waker` and `registry`.
    pub(crate) fn new(
        stealer: Stealer<Runnable>,
        waker: mio::Waker,
        registry: mio::Registry,
    ) -> Remote {
        Remote {
            stealer,
            inbox: Injector::new(),
            parker: Padded(Parker::new(waker)),
            registry,
            spawn_inbox: spawn_inbox::SpawnInbox::new(),
            next: Padded(NextSlot::default()),
            load_hint: Padded(AtomicUsize::new(0)),
            spawn_pending: Padded(AtomicUsize::new(0)),
            inbox_taken: AtomicU64::new(0),
            sleeping: Padded(AtomicBool::new(false)),
            run_queue_len: AtomicUsize::new(0),
            steals: AtomicU64::new(0),
            parks: AtomicU64::new(0),
            spawned: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            activity: Padded(watchdog::Activity::default()),
            homed: AtomicUsize::new(0),
            timers: AtomicUsize::new(0),
            polls: AtomicU64::new(0),
            registrations: AtomicUsize::new(0),
            parked_nanos: AtomicU64::new(0),
            parked_since: AtomicU64::new(0),
            drain_scopes: Mutex::new(deadline::DrainScopes::default()),
            dump: dump::DumpSlot::default(),
        }
    }

    /// The worker's load, as seen from another thread (placement module).
    fn load(&self) -> usize {
        self.load_hint.load(Ordering::Relaxed) + self.spawn_pending.load(Ordering::Relaxed)
    }

    /// Places an unstarted task on this worker's spawn inbox and wakes the worker.
    fn push_spawned(&self, task: Runnable) {
        self.spawn_pending.fetch_add(1, Ordering::Relaxed);
        self.spawn_inbox.push(task);
        self.parker.unpark();
    }

    /// Takes a task from this worker's spawn inbox (the worker itself, or a thief).
    fn take_spawned(&self) -> Option<Runnable> {
        let task = self.spawn_inbox.take()?;
        self.spawn_pending.fetch_sub(1, Ordering::Relaxed);
        Some(task)
    }
}

/// Adds one to a counter that only the calling thread writes.
pub(crate) fn bump_own(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Shared {
    /// Checks a placement before a task is made for it: a worker index must exist.
    pub(crate) fn check_placement(&self, placement: Placement) -> io::Result<()> {
        match placement {
            Placement::Worker(n) if n >= self.remotes.len() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "no worker {n}: the runtime has {} (Placement::Worker takes 0..{})",
                    self.remotes.len(),
                    self.remotes.len()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Queues an unstarted task where `placement` says (see the placement module),
    /// waking whoever must look at it. `placement` passed [`Shared::check_placement`].
    pub(crate) fn schedule_new(self: &Arc<Shared>, task: Runnable, placement: Placement) {
        let Err(task) = worker::place_from_worker(self, task, placement) else {
            return;
        };
        // Not on one of this runtime's workers.
        self.spawned.fetch_add(1, Ordering::Relaxed);
        match placement {
            Placement::Worker(n) => {
                let remote = &self.remotes[n];
                remote.inbox.push(task);
                remote.parker.unpark();
            }
            _ => {
                let target = self.least_loaded(task.task().owner.id as usize);
                self.place_on(target, task);
            }
        }
    }

    /// Places an unstarted task on worker `w`'s spawn inbox. If that worker is
    /// awake (busy), a sleeping one is woken too: it watches the inbox and takes the
    /// task if `w` does not get to it (placement module); with every other worker
    /// asleep, a task placed on a worker stuck in a long computation would wait for
    /// it.
    pub(crate) fn place_on(&self, w: usize, task: Runnable) {
        let remote = &self.remotes[w];
        remote.push_spawned(task);
        if !remote.sleeping.load(Ordering::Acquire) {
            self.wake_one();
        }
    }

    /// The least-loaded worker; ties go to the first found from `start`, so that
    /// callers passing different starts spread over equal workers.
    fn least_loaded(&self, start: usize) -> usize {
        let n = self.remotes.len();
        let mut best = (usize::MAX, 0);
        for i in 0..n {
            let w = (start + i) % n;
            let load = self.remotes[w].load();
            if load < best.0 {
                best = (load, w);
                if load == 0 {
                    break;
                }
            }
        }
        best.1
    }

    /// Completes, unrun, every unstarted task still queued for a worker that has
    /// exited (the runtime's last sweep at shutdown, after every worker has left).
    pub(crate) fn complete_stranded(&self) {
        for remote in self.remotes.iter() {
            while let Some(task) = remote.take_spawned() {
                complete_unstarted(task);
            }
            loop {
                match remote.inbox.steal() {
                    Steal::Success(task) => complete_unstarted(task),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
            if let Some(task) = remote.next.take() {
                complete_unstarted(task);
            }
            loop {
                match remote.stealer.steal() {
                    Steal::Success(task) => complete_unstarted(task),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
        }
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
}

/// Queues a started task that was just woken (state now `Scheduled`) on its home
/// worker: directly on the local run queue when called on that worker, else through
/// the home worker's inbox, unparking it.
pub(crate) fn schedule_started(task: Runnable) {
    let home = task.task().home().expect("a started task has a home");
    if let Err(task) = worker::push_local_started(home, task) {
        let shared = task.task().shared.clone();
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

/// Runs `f` with the runtime whose worker this thread is, if any, without touching
/// its reference count.
pub(crate) fn with_current_runtime<R>(f: impl FnOnce(&Shared) -> R) -> Option<R> {
    let shared = RUNTIME.with(Cell::get);
    if shared.is_null() {
        return None;
    }
    // SAFETY: alive while RUNTIME is set (see `current_runtime`); `f` runs before we
    // return, on this thread.
    Some(f(unsafe { &*shared }))
}

/// Completes a task that never ran, without running user code: its closure is
/// dropped and its joiner gets [`Cancelled`](crate::Cancelled) if it was
/// cancelled, [`Unwound`](crate::Unwound) otherwise.
///
/// The task has not started (whoever holds its `Runnable` took it from a queue of
/// unstarted tasks, or found its stack still there).
pub(crate) fn complete_unstarted(mut task: Runnable) {
    let stack = task.worker_part().stack.take();
    if let Some(stack) = stack {
        crate::rt::stack::pool::give(stack);
        let payload: Payload = if task.task().state.cancelled() {
            Box::new(crate::rt::unwind::Cancelled)
        } else {
            Box::new(crate::rt::unwind::Unwound)
        };
        let task = task.task();
        // SAFETY: we hold the right to run the task (its `Runnable`); it never ran
        // (it still had its stack, which its first run takes), so its body runs
        // here, once.
        unsafe { task.body.run(task, Some(payload)) };
    }
    task.complete();
}
