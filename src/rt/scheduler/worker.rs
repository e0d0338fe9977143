//! One worker thread: its loop, its queues, and running a coroutine on it.
//!
//! Invariant: a worker's `Core` lives on the worker thread's own stack for the
//! thread's whole life and is reached through the `CORE` thread-local, read fresh
//! each time (a value, never a reference kept across a switch). Code running inside a
//! coroutine may reach it (to spawn, or to wake a coroutine of the same worker)
//! because a coroutine runs on its home worker's thread; no borrow of the core's
//! queues is held across a `resume`.

use super::deadline;
use super::dump;
use super::placement::{self, Burst, Placement, Watch, RECHECK};
use super::run_queue::RunQueue;
use super::started::Started;
use super::state::{Resume, Runnable};
use super::task::{Payload, Request, Task};
use super::task_ref::TaskRef;
use super::wait::{coarse_now, Why};
use super::{Shared, FAIRNESS_TICKS, MIN_BUSY_POLL_INTERVAL, RUNTIME};
use crate::rt::context::Context;
use crate::rt::locals as local;
use crate::rt::reactor::Reactor;
use crate::rt::stack;
use crate::rt::timer_queue::{TimerKey, TimerQueue};
use crate::rt::unwind::{Cancelled, Unwound};
use crossbeam_deque::{Steal, Worker};
use std::cell::{Cell, RefCell};
use std::panic;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks for work before a worker sleeps: half busy spins, half `yield_now`s.
const SPIN_ROUNDS: u32 = 64;
/// During the busy rounds, the reactor is polled (without blocking) every this many.
const SPIN_POLL_EVERY: u32 = 8;

/// Per-worker state, owned by the worker thread.
struct Core {
    index: usize,
    shared: Arc<Shared>,
    /// Unstarted coroutines; others steal from its `Stealer`.
    deque: Worker<Runnable>,
    /// Started coroutines ready to run.
    run_queue: RefCell<RunQueue<Runnable>>,
    /// Every started, unfinished coroutine whose home this is (for shutdown).
    started: RefCell<Started>,
    /// The task being run (`None` between runs).
    current: Cell<Option<NonNull<Task>>>,
    tick: Cell<u32>,
    rng: Cell<u64>,
    /// What this worker saw of each other worker's fresh work (placement module).
    watch: RefCell<Vec<Watch>>,
    /// Started, unfinished coroutines homed here.
    homed: Cell<usize>,
    /// The load last published in `Remote::load_hint`.
    published: Cell<usize>,
    /// This worker's `Poll` (see the reactor module).
    reactor: RefCell<Reactor>,
    /// Deadlines of this worker's coroutines (sleeps, timeouts).
    timers: RefCell<TimerQueue<TaskRef>>,
    /// Coroutines made ready by the reactor or the timers, to be woken.
    woken: RefCell<Vec<TaskRef>>,
    /// The coarse clock (wait module) as of this worker's latest reactor poll: the
    /// time a coroutine's wait record gets, so that a wait costs no clock read.
    /// Polls come at least every `FAIRNESS_TICKS` runs and whenever the worker
    /// runs dry, so it lags by at most that many runs.
    now: Cell<u64>,
    /// When this worker last polled the reactor (see `MIN_BUSY_POLL_INTERVAL`).
    polled_at: Cell<Instant>,
    /// The spawns of the current run (the placement module's burst rule).
    burst: Cell<Burst>,
}

thread_local! {
    static CORE: Cell<*const Core> = const { Cell::new(ptr::null()) };
}

/// Runs `f` with this thread's worker core, if this thread is a worker.
///
/// Always inlined: a coroutine's suspend goes through here, and as a call it cost
/// the yield path a frame and a result passed through memory.
#[inline(always)]
fn with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    let core = CORE.with(Cell::get);
    if core.is_null() {
        return None;
    }
    // SAFETY: CORE points at the `Core` on this worker thread's stack, set by
    // `run_worker` before any coroutine runs and cleared before the core goes away.
    Some(f(unsafe { &*core }))
}

/// Places an unstarted task from this thread, if this thread is a worker of
/// `shared`'s runtime (see the placement module); gives it back otherwise.
pub(super) fn place_from_worker(
    shared: &Arc<Shared>,
    task: Runnable,
    placement: Placement,
) -> Result<(), Runnable> {
    let mut task = Some(task);
    with_core(|core| {
        if Arc::ptr_eq(&core.shared, shared) {
            core.place_new(task.take().expect("once"), placement);
        }
    });
    match task {
        None => Ok(()),
        Some(task) => Err(task),
    }
}

/// Pushes a woken started task on the local run queue, if this thread is its home
/// worker.
pub(super) fn push_local_started(home: usize, task: Runnable) -> Result<(), Runnable> {
    let mut task = Some(task);
    with_core(|core| {
        let t = task.as_ref().expect("once");
        if core.index == home && Arc::ptr_eq(&core.shared, &t.task().shared) {
            core.push_ready(task.take().expect("once"));
        }
    });
    match task {
        None => Ok(()),
        Some(task) => Err(task),
    }
}

/// The task running on this thread, if any.
pub(crate) fn current_task() -> Option<TaskRef> {
    with_core(|core| {
        let current = core.current.get()?.as_ptr().cast_const();
        // SAFETY: `current` is `TaskRef::as_ptr` of the `TaskRef` that `run_task` holds
        // for as long as it is set.
        Some(unsafe { TaskRef::clone_from_ptr(current) })
    })
    .flatten()
}

/// Runs `f` with the task running on this thread, if any, without touching its
/// reference count.
pub(crate) fn with_current_task<R>(f: impl FnOnce(&Task) -> R) -> Option<R> {
    with_core(|core| {
        let current = core.current.get()?;
        // SAFETY: alive while set (see `current_task`); `f` runs before we return, on
        // this thread, while the task keeps running.
        Some(f(unsafe { current.as_ref() }))
    })
    .flatten()
}

/// The index of this thread's worker, if it is a worker of `shared`'s runtime.
pub(super) fn worker_index_of(shared: &Shared) -> Option<usize> {
    with_core(|core| ptr::eq(Arc::as_ptr(&core.shared), shared).then_some(core.index)).flatten()
}

/// Whether other coroutines are ready to run on this thread's worker (false outside
/// a worker).
pub(crate) fn others_ready() -> bool {
    with_core(|core| !core.run_queue.borrow().is_empty()).unwrap_or(false)
}

/// Arms a timer on this worker that wakes `task` at `deadline`. Called by the
/// running coroutine `task` (so on its home worker); `None` outside a worker.
pub(crate) fn add_timer(deadline: Instant, task: TaskRef) -> Option<TimerKey> {
    with_core(|core| core.timers.borrow_mut().insert(deadline, task))
}

/// Disarms a timer armed by [`add_timer`] on this worker (no-op if it fired).
pub(crate) fn cancel_timer(key: TimerKey) {
    with_core(|core| core.timers.borrow_mut().cancel(key));
}

/// Switches the running coroutine out to its worker with `request` and returns true
/// when the worker resumes it (possibly spuriously: callers wait in a loop); unwinds
/// with [`Unwound`] if the runtime shuts down, or with [`Cancelled`] if the
/// coroutine was cancelled (then without switching out at all). Returns false at
/// once when called outside a coroutine, so callers fall back to blocking the
/// thread without a second look-up.
///
/// Aborts the process if the coroutine is unwinding (see
/// `blocked_while_unwinding`).
///
/// Inlined into its callers, like `yield_now`: a frame between the coroutine's code
/// and the switch would cost two mispredicted returns per round trip (the context
/// module's docs; the yield row went from ~140 to ~55 ns with both inlined).
#[inline]
pub(crate) fn suspend_current(request: Request) -> bool {
    suspend(request, None)
}

/// [`suspend_current`] with [`Request::Wait`], recording first what the coroutine
/// waits for (the wait module: a copy of `why` and of the worker's coarse time),
/// for the coroutine dump.
#[inline]
pub(crate) fn wait_current(why: Why) -> bool {
    suspend(Request::Wait, Some(why))
}

#[inline(always)]
fn suspend(request: Request, why: Option<Why>) -> bool {
    let found = with_core(|core| {
        let current = core.current.get()?;
        // SAFETY: `current` is alive while set (see `current_task`).
        let task = unsafe { current.as_ref() };
        if std::thread::panicking() {
            blocked_while_unwinding(task);
        }
        if task.state.cancelled() {
            return Some(Err(Box::new(Cancelled) as Payload));
        }
        // SAFETY: we are the running coroutine: its part is ours (task module
        // invariant); this short borrow ends before the switch.
        let part = unsafe { task.coroutine_part() };
        if let Some(expired) = deadline::check(&part.scope) {
            return Some(Err(expired));
        }
        if let Some(why) = why {
            // SAFETY: we are the running coroutine, about to switch out (the wait
            // module's invariant); the borrow ends here.
            let record = unsafe { task.wait_record() };
            record.why = Some(why);
            record.since = core.now.get();
        }
        part.suspender.map(Ok)
    })
    .flatten();
    let suspender = match found {
        None => return false,
        // Cancelled, or past a deadline scope's deadline: unwind from here, a
        // blocking point, without waiting.
        Some(Err(payload)) => panic::resume_unwind(payload),
        Some(Ok(found)) => found,
    };
    // A generator the coroutine is inside stays with the coroutine: the coroutines
    // this worker runs meanwhile must not see its `coroutine_local!` map.
    let generator_map = local::swap_generator_map(ptr::null());
    // SAFETY: we run on the coroutine's stack: `current` is set only while its
    // context runs, and code on a worker's own stack never reaches here (it has no
    // current task).
    let value = unsafe { suspender.suspend(request as usize) };
    if value != Resume::Run as usize {
        resumed_otherwise(suspender, value, generator_map);
    } else {
        local::restore_generator_map(generator_map);
    }
    true
}

/// The rest of [`suspend`] when the coroutine was resumed for anything but a plain
/// run: for a dump's capture (any number of times, then a run), to unwind, or to be
/// cancelled. Out of line: the plain run is the hot path.
#[cold]
#[inline(never)]
fn resumed_otherwise(
    suspender: crate::rt::context::Suspender,
    mut value: usize,
    generator_map: *const local::GeneratorMap,
) {
    while value == Resume::Dump as usize {
        // A dump's capture resume: record this stack and switch straight back
        // (scheduler::dump), before any of the coroutine's own code runs.
        value = super::dump::capture(suspender);
    }
    local::restore_generator_map(generator_map);
    match Resume::from_raw(value) {
        Resume::Unwind => panic::resume_unwind(Box::new(Unwound)),
        Resume::Cancel => panic::resume_unwind(Box::new(Cancelled)),
        Resume::Run | Resume::Dump => {}
    }
}

/// A coroutine tried to block (park, join, yield) while unwinding: in a destructor
/// that runs during a panic, or during the runtime's shutdown. It cannot be
/// suspended: std keeps "this thread is panicking" per OS thread, so every other
/// coroutine of this worker would run as if panicking (and a panic in any of them
/// would abort the process with a less helpful message). Stop here, loudly.
#[cold]
fn blocked_while_unwinding(task: &Task) -> ! {
    let name = task.owner.name.as_deref().unwrap_or("<unnamed>");
    eprintln!(
        "stackweave: coroutine '{name}' ({}) tried to block while unwinding (a destructor \
         that parks, joins or yields during a panic or a runtime shutdown); a coroutine \
         cannot be suspended in the middle of an unwind. Aborting.",
        task.owner.id
    );
    std::process::abort()
}

/// Starts the worker threads of a runtime.
pub(crate) fn start(
    shared: &Arc<Shared>,
    workers: Vec<(Worker<Runnable>, mio::Poll)>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(workers.len());
    for (index, (deque, poll)) in workers.into_iter().enumerate() {
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("stackweave-worker-{index}"))
            .spawn(move || run_worker(shared, index, deque, poll))?;
        threads.push(thread);
    }
    Ok(threads)
}

fn run_worker(shared: Arc<Shared>, index: usize, deque: Worker<Runnable>, poll: mio::Poll) {
    stack::install_overflow_handler();
    let core = Core {
        index,
        watch: RefCell::new(vec![Watch::default(); shared.remotes.len()]),
        homed: Cell::new(0),
        published: Cell::new(0),
        shared,
        deque,
        run_queue: RefCell::new(RunQueue::default()),
        started: RefCell::new(Started::default()),
        current: Cell::new(None),
        tick: Cell::new(0),
        rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1)),
        reactor: RefCell::new(Reactor::new(poll)),
        timers: RefCell::new(TimerQueue::default()),
        woken: RefCell::new(Vec::new()),
        now: Cell::new(coarse_now()),
        polled_at: Cell::new(Instant::now()),
        burst: Cell::new(Burst::default()),
    };
    CORE.with(|c| c.set(&core));
    RUNTIME.with(|r| r.set(Arc::as_ptr(&core.shared)));
    core.run();
    core.drain_for_shutdown();
    RUNTIME.with(|r| r.set(ptr::null()));
    CORE.with(|c| c.set(ptr::null()));
}

impl Core {
    #[inline(always)]
    fn remote(&self) -> &super::Remote {
        &self.shared.remotes[self.index]
    }

    #[inline]
    fn push_ready(&self, task: Runnable) {
        self.run_queue.borrow_mut().push_back(task);
    }

    /// Publishes the run queue's length for metrics: every [`FAIRNESS_TICKS`] runs
    /// and whenever the queue runs dry, not on every push and pop (the hot path).
    fn publish_run_queue_len(&self) {
        let len = self.run_queue.borrow().len();
        self.remote().run_queue_len.store(len, Ordering::Relaxed);
    }

    /// Whether a coroutine dump waits for this worker (the dump module).
    #[inline]
    fn dump_pending(&self) -> bool {
        self.remote().dump.pending.load(Ordering::Relaxed)
    }

    /// Serves the waiting coroutine dumps (between runs: no coroutine runs now).
    #[cold]
    fn serve_dump(&self) {
        let view = dump::WorkerView {
            index: self.index,
            remote: self.remote(),
            started: &self.started,
            run_queue: &self.run_queue,
            unstarted: self.deque.len() + usize::from(self.remote().next.held() != 0),
        };
        dump::serve(view, || self.take_inbox());
    }

    /// Places a task spawned on this worker (see the placement module).
    fn place_new(&self, task: Runnable, placement: Placement) {
        super::bump_own(&self.remote().spawned);
        match placement {
            Placement::SameWorker => self.push_ready(task),
            Placement::Worker(w) if w == self.index => self.push_ready(task),
            Placement::Worker(w) => {
                let remote = &self.shared.remotes[w];
                remote.inbox.push(task);
                remote.parker.unpark();
            }
            Placement::LeastLoaded => {
                let target = self.shared.least_loaded(self.index);
                if target == self.index {
                    self.deque.push(task);
                    self.publish_load();
                    self.shared.wake_one();
                } else {
                    self.send_to(target, task);
                }
            }
            Placement::Balanced => {
                if let Some(other) = self.balanced_elsewhere() {
                    return self.send_to(other, task);
                }
                // Kept: in the next slot, for the spawner to run when it blocks; the
                // previous occupant goes where idle workers may steal it.
                if let Some(previous) = self.remote().next.put(task) {
                    self.deque.push(previous);
                    let mut burst = self.burst.get();
                    burst.pushed();
                    self.burst.set(burst);
                }
                self.publish_load();
                self.shared.wake_one();
            }
        }
    }

    /// The worker a [`Placement::Balanced`] spawn goes to, or `None` to keep it
    /// here: the balance test against one other worker at random, with the burst
    /// rule's slack (placement module).
    fn balanced_elsewhere(&self) -> Option<usize> {
        if self.shared.remotes.len() == 1 {
            return None;
        }
        let mut burst = self.burst.get();
        let draining = burst.draining(self.remote().activity.runs(), || self.deque.len());
        self.burst.set(burst);
        let other = self.random_other();
        let theirs = self.shared.remotes[other].load();
        placement::sends_across(self.load(), theirs, draining).then_some(other)
    }

    /// Hands an unstarted task to worker `w` (its spawn inbox).
    fn send_to(&self, w: usize, task: Runnable) {
        self.shared.place_on(w, task);
    }

    /// This worker's load, as its own thread sees it (placement module): exact
    /// where others see the published hint.
    fn load(&self) -> usize {
        self.own_load() + self.remote().spawn_pending.load(Ordering::Relaxed)
    }

    /// Sets the count of homed coroutines, published exactly for the metrics.
    fn set_homed(&self, n: usize) {
        self.homed.set(n);
        self.remote().homed.store(n, Ordering::Relaxed);
    }

    /// What this worker publishes as its load: homed + deque + next slot.
    fn own_load(&self) -> usize {
        self.homed.get() + self.deque.len() + usize::from(self.remote().next.held() != 0)
    }

    /// Publishes this worker's load if it moved by more than 1 (and 1/32) since it
    /// was last published: a steady load costs others no cache miss.
    fn publish_load(&self) {
        let load = self.own_load();
        let last = self.published.get();
        if load.abs_diff(last) > (last / 32).max(1) {
            self.published.set(load);
            self.remote().load_hint.store(load, Ordering::Relaxed);
        }
    }

    /// xorshift: a cheap random number, so thieves and placements spread out.
    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// Another worker, at random (there are at least two).
    fn random_other(&self) -> usize {
        let n = self.shared.remotes.len();
        let offset = 1 + (self.random() % (n as u64 - 1)) as usize;
        (self.index + offset) % n
    }

    /// Takes an unstarted task others placed on this worker.
    fn take_spawned(&self) -> Option<Runnable> {
        let remote = self.remote();
        let task = remote.take_spawned()?;
        super::bump_own(&remote.inbox_taken);
        Some(task)
    }

    /// This worker's own unstarted work: next slot, then deque.
    fn take_own_new(&self) -> Option<Runnable> {
        self.remote().next.take().or_else(|| self.deque.pop())
    }

    #[inline]
    fn pop_ready(&self) -> Option<Runnable> {
        self.run_queue.borrow_mut().pop_front()
    }

    fn run(&self) {
        // A task the last run handed over to run next (after a yield).
        let mut handed: Option<Runnable> = None;
        loop {
            // Once shutdown begins, nothing new starts: `drain_for_shutdown` unwinds
            // the started coroutines and completes the others unrun.
            if self.shared.shutdown.load(Ordering::Acquire) {
                if let Some(task) = handed {
                    self.push_ready(task);
                }
                return;
            }
            if let Some(task) = handed.take().or_else(|| self.next_task()) {
                handed = self.run_task(task);
                continue;
            }
            if self.dump_pending() {
                self.serve_dump();
                continue;
            }
            // Nothing queued: take what the reactor and the timers have ready.
            self.publish_run_queue_len();
            if self.poll_io(Some(Duration::ZERO)) {
                continue;
            }
            if self.shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            self.sleep();
        }
    }

    /// After `task` yielded: the next ready task, with `task` queued behind it, in
    /// one borrow of the run queue (`task` itself if none is ready). `None`, with
    /// `task` queued, when the next run is a fairness tick: then [`next_task`]
    /// looks at new work first.
    ///
    /// [`next_task`]: Core::next_task
    #[inline(always)]
    fn after_yield(&self, task: Runnable) -> Option<Runnable> {
        let tick = self.tick.get().wrapping_add(1);
        if tick % FAIRNESS_TICKS == 0 {
            self.push_ready(task);
            return None;
        }
        self.tick.set(tick);
        Some(self.run_queue.borrow_mut().rotate(task))
    }

    /// The next task to run, in the search order of the module docs.
    fn next_task(&self) -> Option<Runnable> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick % FAIRNESS_TICKS == 0 {
            // Now and then, new work first: coroutines woken from elsewhere join the
            // run queue, and an unstarted one (own deque, then injector) runs before
            // the ready ones, which a coroutine that yields in a loop keeps non-empty;
            // I/O and timers are looked at too, unless polled a moment ago.
            if self.polled_at.get().elapsed() >= MIN_BUSY_POLL_INTERVAL {
                self.poll_io(Some(Duration::ZERO));
            }
            self.take_inbox();
            if self.dump_pending() {
                self.serve_dump();
            }
            self.publish_run_queue_len();
            if let Some(task) = self.take_spawned().or_else(|| self.take_own_new()) {
                return Some(task);
            }
        }
        if let Some(task) = self.pop_ready() {
            return Some(task);
        }
        if let Some(task) = self.take_own_new().or_else(|| self.take_spawned()) {
            return Some(task);
        }
        if self.take_inbox() {
            return self.pop_ready();
        }
        self.steal()
    }

    /// Moves the inbox into the run queue; whether it held anything.
    fn take_inbox(&self) -> bool {
        let mut any = false;
        loop {
            match self.remote().inbox.steal() {
                Steal::Success(task) => {
                    self.push_ready(task);
                    any = true;
                }
                Steal::Empty => return any,
                Steal::Retry => {}
            }
        }
    }

    fn steal(&self) -> Option<Runnable> {
        let n = self.shared.remotes.len();
        if n < 2 {
            return None;
        }
        let start = (self.random() % n as u64) as usize;
        let own = self.load();
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            // An idle worker that already homes clearly more coroutines than the
            // victim leaves it its own new work: coroutines started now stay for
            // life, and the victim is about to run them (placement module).
            let theirs = self.shared.remotes[victim].load();
            if placement::imbalanced(own, theirs) {
                continue;
            }
            // At most half the difference, so one steal cannot tip the balance.
            let limit = (theirs.saturating_sub(own) / 2).max(1);
            loop {
                match self.shared.remotes[victim]
                    .stealer
                    .steal_batch_with_limit_and_pop(&self.deque, limit)
                {
                    Steal::Success(task) => {
                        self.remote().steals.fetch_add(1, Ordering::Relaxed);
                        return Some(task);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        // No deque had any: fresh work that waited past the grace elsewhere.
        let victim = self.ripe_victim(start)?;
        // One task per grace: the victim may only be slow to get the CPU back.
        self.watch.borrow_mut()[victim] = Watch::default();
        let remote = &self.shared.remotes[victim];
        let task = remote.next.take().or_else(|| remote.take_spawned())?;
        self.remote().steals.fetch_add(1, Ordering::Relaxed);
        Some(task)
    }

    /// Another worker whose next slot or spawn inbox holds work that has waited
    /// long enough for this idle worker to take it (placement module), looking from
    /// `start`; updates the watch.
    fn ripe_victim(&self, start: usize) -> Option<usize> {
        let n = self.shared.remotes.len();
        let mut watch = self.watch.borrow_mut();
        let mut seen = None;
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            let remote = &self.shared.remotes[victim];
            let held = remote.next.held();
            let pending =
                !remote.sleeping.load(Ordering::Acquire) && !remote.spawn_inbox.is_empty();
            if held == 0 && !pending {
                watch[victim] = Watch::default();
                continue;
            }
            let (now, own) = *seen.get_or_insert_with(|| (Instant::now(), self.load()));
            let heavier = placement::imbalanced(own, remote.load());
            let taken = remote.inbox_taken.load(Ordering::Relaxed);
            if watch[victim].ripe(held, pending, taken, heavier, now) {
                return Some(victim);
            }
        }
        None
    }

    /// Whether another worker holds fresh work this one leaves to it for now.
    fn others_hold_fresh_work(&self) -> bool {
        self.shared
            .remotes
            .iter()
            .enumerate()
            .any(|(i, r)| i != self.index && (r.next.held() != 0 || !r.spawn_inbox.is_empty()))
    }

    fn has_work(&self) -> bool {
        let remote = self.remote();
        !self.run_queue.borrow().is_empty()
            || !self.deque.is_empty()
            || remote.next.held() != 0
            || !remote.spawn_inbox.is_empty()
            || !remote.inbox.is_empty()
            || self.shared.shutdown.load(Ordering::Acquire)
            || self.dump_pending()
            || self
                .shared
                .remotes
                .iter()
                .enumerate()
                .any(|(i, r)| i != self.index && !r.stealer.is_empty())
            || self.ripe_victim(self.index).is_some()
    }

    /// Fires the due timers and polls the reactor for up to `timeout` (shortened to
    /// the next timer), then wakes what became ready. Returns whether anything was
    /// woken.
    fn poll_io(&self, timeout: Option<Duration>) -> bool {
        self.now.set(coarse_now());
        let now = Instant::now();
        self.polled_at.set(now);
        let mut woken = self.woken.take();
        let mut timeout = timeout;
        {
            let mut timers = self.timers.borrow_mut();
            if timers.next_deadline().is_some() {
                timers.fire_due(now, |task| woken.push(task));
                if let Some(next) = timers.next_deadline() {
                    let until = next.saturating_duration_since(now);
                    timeout = Some(timeout.map_or(until, |t| t.min(until)));
                }
            }
        }
        // Timers already fired: do not block in the reactor.
        let timeout = if woken.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.reactor.borrow_mut().poll(timeout, &mut woken);
        if timeout != Some(Duration::ZERO) {
            self.now.set(coarse_now());
            let after = Instant::now();
            self.polled_at.set(after);
            // We may have slept: timers may be due now.
            self.timers
                .borrow_mut()
                .fire_due(after, |task| woken.push(task));
        }
        self.remote().polled(self.timers.borrow().len());
        let any = !woken.is_empty();
        for task in woken.drain(..) {
            task.wake();
        }
        *self.woken.borrow_mut() = woken;
        any
    }

    /// Sleeps in the reactor until there may be work (see the idle module's
    /// invariant): I/O, a timer, or an unpark from another thread.
    fn sleep(&self) {
        self.remote().activity.idle();
        // Spin a little first: a wakeup that is microseconds away (a reply from a
        // coroutine on another worker) is cheaper to wait for than a sleep in
        // `epoll_wait` and an eventfd wake. Yielding the CPU in between keeps this
        // polite on a loaded machine.
        for round in 0..SPIN_ROUNDS {
            if self.has_work() {
                return;
            }
            // Under load a `yield_now` can last a scheduler slice of another process:
            // poll I/O and timers around each one, so they are not left waiting.
            let poll_now =
                round >= SPIN_ROUNDS / 2 || round % SPIN_POLL_EVERY == SPIN_POLL_EVERY - 1;
            if poll_now && self.poll_io(Some(Duration::ZERO)) {
                return;
            }
            if round < SPIN_ROUNDS / 2 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let remote = self.remote();
        remote.sleeping.store(true, Ordering::Release);
        self.shared.idle.register(self.index);
        if self.has_work() {
            self.shared.idle.unregister(self.index);
            remote.sleeping.store(false, Ordering::Release);
            return;
        }
        remote.parks.fetch_add(1, Ordering::Relaxed);
        // Work that others were given but have not started yet may be ours to take
        // once its grace is over: look again soon rather than sleep for good.
        let timeout = self.others_hold_fresh_work().then_some(RECHECK);
        let parker = &remote.parker;
        if parker.begin_park() {
            let began = remote.park_began(self.shared.started_at);
            self.poll_io(timeout);
            parker.end_park();
            remote.park_ended(began);
        }
        self.shared.idle.unregister(self.index);
        remote.sleeping.store(false, Ordering::Release);
    }

    /// Runs `task` until it suspends or finishes, then carries out what it asked
    /// for; returns the task to run next when that is already known (after a
    /// yield, see [`Core::after_yield`]).
    #[inline(always)]
    fn run_task(&self, mut task: Runnable) -> Option<Runnable> {
        task.begin_run();
        let resume = task.task().state.resume();
        if task.worker_part().context.is_none() {
            if resume != Resume::Run {
                // Never started, and the runtime is going away or it was cancelled:
                // complete it unrun.
                super::complete_unstarted(task);
                return None;
            }
            self.start(&mut task);
        }
        let context: *mut Context = task.worker_part().context.as_mut().expect("started");
        self.remote().activity.begin_run(&task.task().owner);
        self.current
            .set(NonNull::new(TaskRef::as_ptr(task.task()).cast_mut()));
        #[cfg(feature = "hooks")]
        crate::rt::hook_flag::set_in_coroutine(true);
        // SAFETY: the context is started, not finished (finished tasks are never
        // queued again) and not running; the coroutine does not touch the worker's
        // part, and we do not either until it switches back, so this pointer stays
        // valid and unaliased.
        let request = unsafe { (*context).resume(resume as usize) };
        #[cfg(feature = "hooks")]
        crate::rt::hook_flag::set_in_coroutine(false);
        self.current.set(None);
        // SAFETY: the coroutine is suspended or finished, so the part is ours again.
        if unsafe { (*context).is_finished() } {
            self.finish(task);
            return None;
        }
        match Request::from_raw(request) {
            Request::Yield => return self.after_yield(task.requeue()),
            // Idle it, unless a wake came in while it ran (the suspend protocol, see
            // the state module). (`Dumped` only answers a dump's resume, which
            // `run_task` never makes.)
            Request::Wait | Request::Dumped => {
                if let Some(task) = task.try_idle() {
                    self.push_ready(task);
                }
            }
        }
        None
    }

    /// First run of `task` on this worker: makes this its home and builds its context.
    fn start(&self, task: &mut Runnable) {
        let handle = task.task().clone();
        handle.home.store(self.index, Ordering::Release);
        self.set_homed(self.homed.get() + 1);
        self.publish_load();
        let part = task.worker_part();
        let stack =
            stack::pool::for_first_run(part.stack.take().expect("unstarted task has its stack"));
        // SAFETY: the owner lives in the task, which outlives the stack's use (the
        // stack goes back to the pool, resetting its owner, in `finish`).
        unsafe { stack.set_owner(&handle.owner) };
        // SAFETY: the pointer is the task holding this body, which this worker keeps
        // alive (in `started`) until the context has finished.
        let context = unsafe { handle.body.context(stack, TaskRef::as_ptr(&handle).cast()) };
        part.context = Some(context);
        part.slot = self.started.borrow_mut().insert(handle);
    }

    fn finish(&self, mut task: Runnable) {
        // Before the task can go: the watchdog may be reading its owner.
        self.remote().activity.finished();
        let part = task.worker_part();
        let context = part.context.take().expect("finished task has its context");
        let slot = part.slot;
        // SAFETY: its entry has returned: nothing lives on the stack any more.
        stack::pool::give(unsafe { context.into_stack() });
        let kept = self.started.borrow_mut().remove(slot);
        self.set_homed(self.homed.get() - 1);
        self.publish_load();
        debug_assert!(kept.is_some_and(|kept| TaskRef::ptr_eq(&kept, task.task())));
        task.complete();
    }

    /// Shutdown: unwind every started coroutine of this worker on this worker, and
    /// complete (without running) the unstarted ones it can reach.
    fn drain_for_shutdown(&self) {
        loop {
            let started: Vec<TaskRef> = self.started.borrow().tasks().cloned().collect();
            for task in &started {
                task.state.request_unwind();
                task.wake();
            }
            self.take_inbox();
            let mut ran = false;
            while let Some(task) = self.pop_ready().or_else(|| self.take_own_new()) {
                task.task().state.request_unwind();
                if let Some(next) = self.run_task(task) {
                    self.push_ready(next);
                }
                ran = true;
            }
            while let Some(task) = self.take_spawned() {
                task.task().state.request_unwind();
                if let Some(next) = self.run_task(task) {
                    self.push_ready(next);
                }
                ran = true;
            }
            if self.started.borrow().is_empty() && !ran {
                // Every coroutine cancelled its own timers while unwinding.
                drop(self.timers.borrow_mut().drain());
                break;
            }
            if !ran {
                // Started coroutines remain but none is ready: their wakes are in
                // flight to our inbox.
                self.remote().activity.idle();
                std::thread::yield_now();
            }
        }
    }
}
