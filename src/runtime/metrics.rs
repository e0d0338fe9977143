//! Runtime counters, cheap enough to leave on.
//!
//! Invariant: every counter is a relaxed atomic bumped on a path that already does
//! heavier work (a spawn, a completion, a steal, a park, a reactor poll, a
//! registration) or a plain store of a figure the worker already knows, so reading
//! metrics costs nothing when nobody reads them. The one counter of the switch path
//! is the watchdog's run count, which it publishes anyway. A snapshot is not atomic
//! as a whole: counters are read one by one.

use crate::rt::scheduler::{Remote, Shared};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A snapshot of a runtime's counters, from [`Runtime::metrics`](crate::Runtime::metrics)
/// or [`Handle::metrics`](crate::runtime::Handle::metrics).
///
/// # Examples
///
/// ```
/// let rt = stackweave::Runtime::builder().workers(2).build()?;
/// rt.block_on(|| ());
/// let m = rt.metrics();
/// assert_eq!(m.workers, 2);
/// assert!(m.spawned >= 1 && m.completed >= 1);
/// println!("{m:?}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Worker threads.
    pub workers: usize,
    /// Coroutines spawned and not yet finished (queued, running or blocked).
    pub live_coroutines: usize,
    /// Coroutines spawned since the runtime started.
    pub spawned: u64,
    /// Coroutines that finished (returned, panicked, or were unwound at shutdown).
    pub completed: u64,
    /// Successful steals of unstarted coroutines from another worker's queues.
    pub steals: u64,
    /// Times a worker went to sleep for lack of work.
    pub parks: u64,
    /// Stalls the watchdog reported: runs of a coroutine that went past the stall
    /// threshold without suspending (see
    /// [`Builder::stall_threshold`](crate::runtime::Builder::stall_threshold)).
    pub stalls: u64,
    /// Per worker: coroutines ready to run there (run queue, next slot, deque and
    /// inbox). The run queue's part is as its worker last published it: every few
    /// dozen runs, and whenever it runs out of ready coroutines.
    pub run_queue_depths: Vec<usize>,
    /// Coroutines placed on a worker by another thread (spawned from outside the
    /// runtime, or handed over by a spawn on another worker) and not picked up yet.
    pub injector_depth: usize,
    /// Each worker's own counters, by worker index.
    pub per_worker: Vec<WorkerMetrics>,
    /// Threads of the process-wide blocking pool
    /// ([`spawn_blocking`](crate::spawn_blocking), name resolution), shared by every
    /// runtime of the process.
    pub blocking_threads: usize,
    /// Of those, the threads running a job now.
    pub blocking_busy: usize,
}

/// One worker's counters, in [`Metrics::per_worker`].
///
/// # Examples
///
/// ```
/// let rt = stackweave::Runtime::builder().workers(2).build()?;
/// rt.block_on(|| stackweave::yield_now());
/// let m = rt.metrics();
/// assert_eq!(m.per_worker.len(), 2);
/// assert!(m.per_worker.iter().map(|w| w.runs).sum::<u64>() >= 2);
/// for (i, w) in m.per_worker.iter().enumerate() {
///     println!("worker {i}: busy {:?}, {} runs, {} live", w.busy, w.runs, w.live_coroutines);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Time since the runtime started that the worker was not parked in its
    /// reactor for lack of work (running coroutines, looking for work, and the
    /// short spin before it parks).
    pub busy: Duration,
    /// Runs of coroutines: first runs and resumes after each suspension.
    pub runs: u64,
    /// Reactor polls (each one also fires the due timers).
    pub polls: u64,
    /// Successful steals by this worker.
    pub steals: u64,
    /// Times this worker parked for lack of work.
    pub parks: u64,
    /// Stalls the watchdog reported on this worker.
    pub stalls: u64,
    /// Coroutines started on this worker (their home) and not finished.
    pub live_coroutines: usize,
    /// Coroutines ready to run here (as in [`Metrics::run_queue_depths`]).
    pub ready_coroutines: usize,
    /// File descriptors registered with this worker's reactor.
    pub registrations: usize,
    /// Armed timers (sleeps, timeouts), as of the worker's last reactor poll.
    pub timers: usize,
}

/// What the worker publishes (called by the worker only).
impl Remote {
    /// The worker polled its reactor; `timers` are armed.
    #[inline]
    pub(crate) fn polled(&self, timers: usize) {
        crate::rt::scheduler::bump_own(&self.polls);
        self.timers.store(timers, Ordering::Relaxed);
    }

    /// The worker parks in its reactor now; returns when, for [`Remote::park_ended`].
    #[inline]
    pub(crate) fn park_began(&self, origin: Instant) -> Instant {
        let began = Instant::now();
        let since = began.saturating_duration_since(origin).as_nanos() as u64;
        self.parked_since.store(since + 1, Ordering::Relaxed);
        began
    }

    /// The park that began at `began` is over.
    #[inline]
    pub(crate) fn park_ended(&self, began: Instant) {
        let parked = began.elapsed().as_nanos() as u64;
        let total = self.parked_nanos.load(Ordering::Relaxed) + parked;
        self.parked_nanos.store(total, Ordering::Relaxed);
        self.parked_since.store(0, Ordering::Relaxed);
    }
}

/// What the metrics read.
impl Remote {
    /// Coroutines ready to run on this worker.
    fn ready(&self) -> usize {
        self.run_queue_len.load(Ordering::Relaxed)
            + self.stealer.len()
            + self.inbox.len()
            + usize::from(self.next.held() != 0)
    }

    /// This worker's counters, `elapsed` after the runtime started.
    fn worker_metrics(&self, elapsed: Duration) -> WorkerMetrics {
        let since = self.parked_since.load(Ordering::Relaxed);
        let mut parked = self.parked_nanos.load(Ordering::Relaxed);
        if since != 0 {
            parked += (elapsed.as_nanos() as u64).saturating_sub(since - 1);
        }
        WorkerMetrics {
            busy: elapsed.saturating_sub(Duration::from_nanos(parked)),
            runs: self.activity.runs(),
            polls: self.polls.load(Ordering::Relaxed),
            steals: self.steals.load(Ordering::Relaxed),
            parks: self.parks.load(Ordering::Relaxed),
            stalls: self.activity.stalls.load(Ordering::Relaxed),
            live_coroutines: self.homed.load(Ordering::Relaxed),
            ready_coroutines: self.ready(),
            registrations: self.registrations.load(Ordering::Relaxed),
            timers: self.timers.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
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
        let elapsed = Instant::now().saturating_duration_since(self.started_at);
        let per_worker: Vec<WorkerMetrics> = self
            .remotes
            .iter()
            .map(|r| r.worker_metrics(elapsed))
            .collect();
        let (blocking_threads, blocking_busy) = crate::rt::blocking::thread_counts();
        Metrics {
            workers: self.remotes.len(),
            live_coroutines: spawned.saturating_sub(completed) as usize,
            spawned,
            completed,
            steals: per_worker.iter().map(|w| w.steals).sum(),
            parks: per_worker.iter().map(|w| w.parks).sum(),
            stalls: per_worker.iter().map(|w| w.stalls).sum(),
            run_queue_depths: per_worker.iter().map(|w| w.ready_coroutines).collect(),
            injector_depth: self.remotes.iter().map(|r| r.spawn_inbox.len()).sum(),
            per_worker,
            blocking_threads,
            blocking_busy,
        }
    }
}
