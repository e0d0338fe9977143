//! Runtime counters, cheap enough to leave on.
//!
//! Invariant: every counter is a relaxed atomic bumped on a path that already does
//! heavier work (a spawn, a completion, a steal, a park) or a plain store of a queue
//! length the worker already knows, so reading metrics costs nothing when nobody
//! reads them. A snapshot is not atomic as a whole: counters are read one by one.

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
}
