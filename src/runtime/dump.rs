//! The coroutine dump: every live coroutine of a runtime, what it waits for, and the
//! backtrace of its suspended stack, like Go's goroutine dump.
//!
//! Each worker lists its own coroutines and each suspended coroutine walks its own
//! stack on its home worker (see `scheduler::dump` for how, and why that is sound);
//! this module merges what the workers found, symbolizes each distinct stack once,
//! and prints it.
//!
//! Invariant (bounded cost): the workers hand over raw return addresses, one copy
//! per *distinct* stack, and every coroutine refers to its stack by index; each
//! distinct stack is symbolized once (each address once), and coroutines with the
//! same stack share one `Arc<[Frame]>`. A dump of 100,000 coroutines parked at the
//! same call site holds one symbolized trace, not 100,000.

use crate::coroutine::CoroutineId;
use crate::rt::scheduler::dump::{DumpRequest, RawEntry, WorkerDump};
use crate::rt::scheduler::{Shared, WaitKind};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod api;
pub use api::dump;
mod format;
mod on_signal;

pub(crate) use on_signal::{from_env as dump_signal_from_env, SignalDumper};

/// How long a dump waits for a worker to begin serving it (see
/// [`Handle::dump_timeout`](super::Handle::dump_timeout)): a worker that a
/// coroutine keeps busy that long is reported as busy.
///
/// # Examples
///
/// ```
/// assert_eq!(stackweave::runtime::DEFAULT_DUMP_TIMEOUT.as_secs(), 2);
/// ```
pub const DEFAULT_DUMP_TIMEOUT: Duration = Duration::from_secs(2);

/// A stack shared by at least this many coroutines is printed once for all.
const GROUP_AT: usize = 4;

/// A snapshot of every live coroutine of a runtime: see
/// [`Runtime::dump`](crate::Runtime::dump). Its `Display` prints it the way Go
/// prints goroutines, grouping coroutines with identical stacks.
///
/// # Examples
///
/// ```
/// let rt = stackweave::Runtime::builder().workers(1).build()?;
/// let h = rt.spawn(|| stackweave::park());
/// while rt.dump().coroutines().is_empty() {
///     std::thread::yield_now(); // until the coroutine has started
/// }
/// let dump = rt.dump();
/// assert_eq!(dump.coroutines()[0].state(), stackweave::runtime::CoroutineState::Waiting);
/// println!("{dump}");
/// h.coroutine().unpark();
/// h.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dump {
    coroutines: Vec<CoroutineDump>,
    workers: Vec<WorkerSummary>,
    took: Duration,
    distinct_stacks: usize,
}

/// One worker, as a [`Dump`] saw it.
///
/// # Examples
///
/// ```
/// let rt = stackweave::Runtime::builder().workers(2).build()?;
/// for w in rt.dump().workers() {
///     assert!(!w.is_busy());
///     println!("worker {}: {} coroutines, {} unstarted", w.index(), w.homed(), w.unstarted());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WorkerSummary {
    index: usize,
    busy: bool,
    homed: usize,
    unstarted: usize,
}

/// Where a coroutine is in its life, as a [`Dump`] saw it.
///
/// # Examples
///
/// ```
/// use stackweave::runtime::CoroutineState;
///
/// let rt = stackweave::Runtime::builder().workers(1).build()?;
/// let h = rt.spawn(|| loop {
///     stackweave::yield_now(); // always ready
/// });
/// let seen = loop {
///     if let Some(c) = rt.dump().coroutines().first() {
///         break c.state();
///     }
/// };
/// assert_eq!(seen, CoroutineState::Ready);
/// h.cancel();
/// assert!(h.join().is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoroutineState {
    /// Running on its worker (which was busy with it: not captured).
    Running,
    /// Queued to run: it yielded, or was woken.
    Ready,
    /// Suspended until something wakes it: see [`CoroutineDump::waiting_for`].
    Waiting,
}

/// What a waiting coroutine waits for.
///
/// # Examples
///
/// ```
/// use stackweave::runtime::WaitingFor;
/// use std::time::Duration;
///
/// let rt = stackweave::Runtime::builder().workers(1).build()?;
/// let h = rt.spawn(|| stackweave::time::sleep(Duration::from_secs(60)));
/// let dump = loop {
///     let dump = rt.dump();
///     if dump.coroutines().first().is_some_and(|c| c.waiting_for().is_some()) {
///         break dump;
///     }
/// };
/// let sleeper = &dump.coroutines()[0];
/// assert_eq!(sleeper.waiting_for(), Some(WaitingFor::Sleep));
/// assert!(sleeper.deadline().is_some());
/// h.cancel();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitingFor {
    /// A socket (or other descriptor) to become readable; the peer of a connected
    /// IP socket.
    Read {
        /// The descriptor.
        fd: RawFd,
        /// The peer address, where known.
        peer: Option<SocketAddr>,
    },
    /// A listening socket to have a connection to accept.
    Accept {
        /// The descriptor.
        fd: RawFd,
    },
    /// A socket to become writable.
    Write {
        /// The descriptor.
        fd: RawFd,
        /// The peer address, where known.
        peer: Option<SocketAddr>,
    },
    /// A timer (`sleep`, `sleep_until`): see [`CoroutineDump::deadline`].
    Sleep,
    /// A channel: send, receive or select.
    Channel,
    /// A [`sync::Mutex`](crate::sync::Mutex).
    Mutex,
    /// A [`sync::RwLock`](crate::sync::RwLock).
    RwLock,
    /// A [`sync::Condvar`](crate::sync::Condvar).
    Condvar,
    /// A [`sync::Barrier`](crate::sync::Barrier).
    Barrier,
    /// A [`sync::WaitGroup`](crate::sync::WaitGroup).
    WaitGroup,
    /// A [`sync::Semaphore`](crate::sync::Semaphore).
    Semaphore,
    /// The end of another coroutine ([`JoinHandle::join`](crate::JoinHandle::join)).
    Join(CoroutineId),
    /// An unpark ([`park`](crate::park), [`park_timeout`](crate::park_timeout)).
    Park,
    /// A `Future` ([`future::block_on`](crate::future::block_on)).
    Future,
    /// A job on the blocking pool ([`spawn_blocking`](crate::spawn_blocking)).
    BlockingPool,
    /// A libc call made cooperative by the `hooks` feature (`poll`, `sleep`, …).
    HookedCall,
    /// The workers' part of a coroutine dump.
    Dump,
}

/// One coroutine in a [`Dump`].
///
/// # Examples
///
/// ```
/// #[inline(never)]
/// fn wait_for_work() -> u32 {
///     stackweave::park();
///     std::hint::black_box(1) // not a tail call: this frame stays on the stack
/// }
///
/// let rt = stackweave::Runtime::builder().workers(1).build()?;
/// let h = rt
///     .handle()
///     .try_spawn(stackweave::Builder::new().name("idle".into()), wait_for_work)?;
/// let dump = loop {
///     let dump = rt.dump();
///     if dump.find("idle").is_some_and(|c| c.waiting_for().is_some()) {
///         break dump;
///     }
/// };
/// let idle = dump.find("idle").unwrap();
/// assert_eq!(idle.id(), h.coroutine().id());
/// assert!(idle.backtrace_contains("wait_for_work"));
/// assert!(idle.spawned_at().is_some());
/// h.coroutine().unpark();
/// h.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CoroutineDump {
    id: CoroutineId,
    name: Option<Box<str>>,
    worker: usize,
    state: CoroutineState,
    waiting_for: Option<WaitingFor>,
    deadline: Option<Instant>,
    waited: Option<Duration>,
    spawned_at: Option<&'static Location<'static>>,
    backtrace: Result<Arc<[Frame]>, &'static str>,
}

/// One frame of a coroutine's backtrace, innermost first.
///
/// # Examples
///
/// ```
/// let rt = stackweave::Runtime::builder().workers(1).build()?;
/// let h = rt.spawn(|| stackweave::park());
/// let dump = loop {
///     let dump = rt.dump();
///     if dump.coroutines().first().is_some_and(|c| c.waiting_for().is_some()) {
///         break dump;
///     }
/// };
/// for frame in dump.coroutines()[0].backtrace().unwrap() {
///     println!("{} at {:?}:{:?}", frame.name(), frame.file(), frame.line());
/// }
/// h.coroutine().unpark();
/// h.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    name: String,
    file: Option<String>,
    line: Option<u32>,
}

impl Dump {
    /// Every live, started coroutine found, by id; on a busy worker only the one
    /// running there (see [`WorkerSummary::is_busy`]).
    pub fn coroutines(&self) -> &[CoroutineDump] {
        &self.coroutines
    }

    /// The first coroutine named `name`, if any.
    pub fn find(&self, name: &str) -> Option<&CoroutineDump> {
        self.coroutines.iter().find(|c| c.name() == Some(name))
    }

    /// The runtime's workers, by index.
    pub fn workers(&self) -> &[WorkerSummary] {
        &self.workers
    }

    /// How long the dump took, symbolization included.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// How many distinct stacks the captured coroutines have (each was symbolized
    /// once).
    pub fn distinct_stacks(&self) -> usize {
        self.distinct_stacks
    }
}

impl WorkerSummary {
    /// The worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the worker did not answer before the dump's timeout: a coroutine
    /// runs on it without suspending (a stall). Its other coroutines are then
    /// not listed, only counted in [`homed`](WorkerSummary::homed).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Started, unfinished coroutines homed on the worker.
    pub fn homed(&self) -> usize {
        self.homed
    }

    /// Coroutines queued on the worker that have not started yet (not listed).
    pub fn unstarted(&self) -> usize {
        self.unstarted
    }
}

impl CoroutineDump {
    /// The coroutine's id.
    pub fn id(&self) -> CoroutineId {
        self.id
    }

    /// Its name, if it was given one ([`Builder::name`](crate::Builder::name)).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Its home worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Running, ready or waiting.
    pub fn state(&self) -> CoroutineState {
        self.state
    }

    /// What it waits for, when [waiting](CoroutineState::Waiting).
    pub fn waiting_for(&self) -> Option<WaitingFor> {
        self.waiting_for
    }

    /// When its wait times out (or its sleep ends), if it has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How long it has waited (to a few milliseconds), when waiting.
    pub fn waited(&self) -> Option<Duration> {
        self.waited
    }

    /// Where it was spawned.
    pub fn spawned_at(&self) -> Option<&'static Location<'static>> {
        self.spawned_at
    }

    /// The backtrace of its suspended stack, innermost first, from the blocking
    /// call it made into the runtime (the runtime's own frames trimmed); `None`
    /// when it was not captured (see [`not_captured`](CoroutineDump::not_captured)).
    pub fn backtrace(&self) -> Option<&[Frame]> {
        self.backtrace.as_deref().ok()
    }

    /// Why its backtrace was not captured, if it was not (e.g. "worker busy").
    pub fn not_captured(&self) -> Option<&str> {
        self.backtrace.as_ref().err().copied()
    }

    /// Whether a frame of its backtrace names a function whose path contains
    /// `name` (e.g. `"read_request"`).
    pub fn backtrace_contains(&self, name: &str) -> bool {
        self.backtrace()
            .is_some_and(|frames| frames.iter().any(|f| f.name.contains(name)))
    }
}

impl Frame {
    /// The function's demangled path (`my_server::handle`), or its address when
    /// it has no symbol.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source file, when debug info has it.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The source line, when debug info has it.
    pub fn line(&self) -> Option<u32> {
        self.line
    }
}

/// Takes a dump of `shared`'s runtime (`Handle::dump_timeout`).
pub(crate) fn take(shared: &Arc<Shared>, timeout: Duration) -> Dump {
    let began = Instant::now();
    let request = DumpRequest::new(shared.remotes.len());
    request.post(&shared.remotes);
    // Workers that are shutting down serve no dump: do not wait for them.
    let timeout = if shared.shutdown.load(std::sync::atomic::Ordering::Acquire) {
        Duration::ZERO
    } else {
        timeout
    };
    let deadline = began
        .checked_add(timeout)
        .unwrap_or(began + DEFAULT_DUMP_TIMEOUT);
    let results = request.wait(deadline);
    let mut busy: Vec<(usize, Option<RawRunning>)> = Vec::new();
    for (index, result) in results.iter().enumerate() {
        if result.is_none() {
            busy.push((index, shared.remotes[index].activity.running()));
        }
    }
    let homed: Vec<usize> = shared
        .remotes
        .iter()
        .map(|r| r.homed.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    // Symbolizing reads debug info (file I/O, deep parsing): off the worker and
    // off a small coroutine stack, on the blocking pool when called from one.
    let mut dump = crate::spawn_blocking(move || assemble(results, busy, homed));
    dump.took = began.elapsed();
    dump
}

type RawRunning = crate::rt::scheduler::watchdog::Stalled;

/// Merges the workers' findings, symbolizing each distinct stack once.
fn assemble(
    results: Vec<Option<Arc<WorkerDump>>>,
    busy: Vec<(usize, Option<RawRunning>)>,
    homed: Vec<usize>,
) -> Dump {
    let mut resolver = format::Resolver::default();
    let mut by_stack: HashMap<&[usize], Arc<[Frame]>> = HashMap::new();
    let mut coroutines = Vec::new();
    let mut workers = Vec::with_capacity(results.len());
    for (index, result) in results.iter().enumerate() {
        let Some(found) = result else {
            workers.push(WorkerSummary {
                index,
                busy: true,
                homed: homed[index],
                unstarted: 0,
            });
            continue;
        };
        workers.push(WorkerSummary {
            index,
            busy: false,
            homed: found.entries.len(),
            unstarted: found.unstarted,
        });
        for raw in &found.entries {
            let backtrace = raw.stack.map(|i| {
                let frames: &[usize] = &found.stacks[i as usize];
                by_stack
                    .entry(frames)
                    .or_insert_with(|| resolver.resolve(frames))
                    .clone()
            });
            coroutines.push(coroutine(raw, index, found.now, backtrace));
        }
    }
    for (index, running) in busy {
        if let Some(RawRunning {
            id,
            name,
            spawned_at,
        }) = running
        {
            coroutines.push(CoroutineDump {
                id: CoroutineId::from_raw(id),
                name,
                worker: index,
                state: CoroutineState::Running,
                waiting_for: None,
                deadline: None,
                waited: None,
                spawned_at,
                backtrace: Err("worker busy"),
            });
        }
    }
    coroutines.sort_by_key(|c| c.id);
    Dump {
        coroutines,
        workers,
        took: Duration::ZERO,
        distinct_stacks: by_stack.len(),
    }
}

fn coroutine(
    raw: &RawEntry,
    worker: usize,
    now: u64,
    backtrace: Result<Arc<[Frame]>, &'static str>,
) -> CoroutineDump {
    let why = raw.why.filter(|_| raw.waiting);
    CoroutineDump {
        id: CoroutineId::from_raw(raw.id),
        name: raw.name.clone(),
        worker,
        state: if raw.waiting {
            CoroutineState::Waiting
        } else {
            CoroutineState::Ready
        },
        waiting_for: why.map(|why| match why.kind {
            WaitKind::Read if raw.listening => WaitingFor::Accept { fd: why.fd },
            WaitKind::Read => WaitingFor::Read {
                fd: why.fd,
                peer: raw.peer,
            },
            WaitKind::Write => WaitingFor::Write {
                fd: why.fd,
                peer: raw.peer,
            },
            WaitKind::Sleep => WaitingFor::Sleep,
            WaitKind::Channel => WaitingFor::Channel,
            WaitKind::Mutex => WaitingFor::Mutex,
            WaitKind::RwLock => WaitingFor::RwLock,
            WaitKind::Condvar => WaitingFor::Condvar,
            WaitKind::Barrier => WaitingFor::Barrier,
            WaitKind::WaitGroup => WaitingFor::WaitGroup,
            WaitKind::Semaphore => WaitingFor::Semaphore,
            WaitKind::Join => WaitingFor::Join(CoroutineId::from_raw(why.arg)),
            WaitKind::Park => WaitingFor::Park,
            WaitKind::Future => WaitingFor::Future,
            WaitKind::Blocking => WaitingFor::BlockingPool,
            WaitKind::Hooked => WaitingFor::HookedCall,
            WaitKind::Dump => WaitingFor::Dump,
        }),
        deadline: why.and_then(|why| why.deadline),
        waited: why.map(|_| Duration::from_nanos(now.saturating_sub(raw.since))),
        spawned_at: raw.spawned_at,
        backtrace,
    }
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format::write_dump(self, f)
    }
}
