//! The runtime: worker threads that run coroutines, and the default runtime.
//!
//! Invariant: a runtime's workers outlive its coroutines. Shutting a runtime down
//! (by [`Runtime::shutdown`] or by dropping it) first unwinds every started
//! coroutine on its home worker, then completes every unstarted one without running
//! it, then joins the workers; so every stack goes back to a pool or is unmapped, and
//! every [`JoinHandle`] gets a result ([`Unwound`](crate::Unwound) for those the
//! runtime ended).

mod drain;
mod dump;
mod metrics;
mod shutdown_error;

pub(crate) use drain::{accepting, is_drain_error};
pub use drain::{until_drain, Drained, Draining};
pub use dump::{
    dump, CoroutineDump, CoroutineState, Dump, Frame, WaitingFor, WorkerSummary,
    DEFAULT_DUMP_TIMEOUT,
};
pub use metrics::{Metrics, WorkerMetrics};
pub use shutdown_error::RuntimeShutdown;

use crate::coroutine::{self, JoinHandle};
use crate::rt::reactor::WAKER_TOKEN;
use crate::rt::scheduler::idle::Idle;
use crate::rt::scheduler::watchdog::Monitor;
use crate::rt::scheduler::{self, Padded, Remote, Shared};
use crate::rt::stack;
use crossbeam_deque::Worker;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

/// The stall watchdog's default threshold: a coroutine that runs this long without
/// suspending is reported (see [`Builder::stall_threshold`]).
///
/// 100 ms: above the longest runs of well-behaved coroutines, which the watchdog
/// cannot tell from a worker thread the OS did not run (on a 2-core machine at a
/// load of 9, the TCP echo and ping-pong benchmarks' coroutines ran up to 40 ms at
/// a time), and short enough that what it reports is a stall users notice. See
/// `docs/DECISIONS.md`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(stackweave::runtime::DEFAULT_STALL_THRESHOLD, Duration::from_millis(100));
/// ```
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(100);

/// A set of worker threads running coroutines.
///
/// # Examples
///
/// ```
/// use stackweave::Runtime;
///
/// let rt = Runtime::builder().workers(2).build()?;
/// let sum = rt.block_on(|| {
///     let parts: Vec<_> = (1..=4).map(|i| stackweave::spawn(move || i * 10)).collect();
///     parts.into_iter().map(|h| h.join().unwrap()).sum::<i32>()
/// });
/// assert_eq!(sum, 100);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    handle: Handle,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    watchdog: Mutex<Option<Monitor>>,
    dumper: Mutex<Option<dump::SignalDumper>>,
}

/// Configures a [`Runtime`].
///
/// # Examples
///
/// ```
/// let rt = stackweave::Runtime::builder()
///     .workers(4)
///     .stack_size(128 * 1024)
///     .build()?;
/// assert_eq!(rt.metrics().workers, 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: usize,
    blocking_threads: Option<usize>,
    stall_threshold: Option<Duration>,
    dump_signal: Option<i32>,
}

/// A cloneable, `Send` handle to a runtime: spawns onto it from any thread.
///
/// A handle does not keep the runtime running: once the runtime is shut down,
/// spawning through a handle fails.
///
/// # Examples
///
/// ```
/// let rt = stackweave::Runtime::builder().workers(1).build()?;
/// let handle = rt.handle();
/// let from_thread = std::thread::spawn(move || handle.spawn(|| 7).join().unwrap());
/// assert_eq!(from_thread.join().unwrap(), 7);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Builder {
    /// One worker per available CPU, [`DEFAULT_STACK_SIZE`](crate::stack::DEFAULT_STACK_SIZE)
    /// stacks.
    pub fn new() -> Builder {
        Builder {
            workers: None,
            stack_size: stack::DEFAULT_STACK_SIZE,
            blocking_threads: None,
            stall_threshold: Some(DEFAULT_STALL_THRESHOLD),
            dump_signal: dump::dump_signal_from_env(),
        }
    }

    /// Number of worker threads (at least 1).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = Some(n.max(1));
        self
    }

    /// Default usable stack size of the runtime's coroutines, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Sets the most threads of the process-wide blocking pool behind
    /// [`spawn_blocking`](crate::spawn_blocking) and name resolution (default 16,
    /// at least 1), when the runtime is built. The pool is shared by every runtime
    /// of the process: the last runtime built with this option sets it.
    pub fn blocking_threads(mut self, n: usize) -> Builder {
        self.blocking_threads = Some(n);
        self
    }

    /// Sets the stall watchdog's threshold ([`DEFAULT_STALL_THRESHOLD`] unless set;
    /// at least 1 ms), or turns the watchdog off with `None`.
    ///
    /// A coroutine never leaves its worker once started, so one that runs without
    /// suspending (a CPU loop, `std::thread::sleep`, a blocking `std::net` call)
    /// holds up every coroutine homed on that worker. With a threshold, a monitor
    /// thread reports each run longer than that once on stderr, with the
    /// coroutine's id, name and spawn location, the worker, how long it has run and
    /// how many coroutines it holds up, then once more when it ends; [`Metrics::stalls`] counts them. The workers
    /// only publish a counter and the running coroutine on each switch; the monitor
    /// looks four times per threshold. The default runtime reads the threshold in
    /// milliseconds from `STACKWEAVE_STALL_THRESHOLD_MS` (`0` or `off`: off).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = stackweave::Runtime::builder()
    ///     .workers(1)
    ///     .stall_threshold(Some(Duration::from_millis(20)))
    ///     .build()?;
    /// rt.block_on(|| std::thread::sleep(Duration::from_millis(200))); // reported
    /// let quiet = stackweave::Runtime::builder().stall_threshold(None).build()?;
    /// quiet.block_on(|| std::thread::sleep(Duration::from_millis(200))); // not
    /// assert_eq!(quiet.metrics().stalls, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stall_threshold(mut self, threshold: Option<Duration>) -> Builder {
        self.stall_threshold = threshold.map(|t| t.max(Duration::from_millis(1)));
        self
    }

    /// Starts the worker threads.
    ///
    /// # Errors
    ///
    /// When a worker thread, the watchdog's thread or a worker's `epoll` instance
    /// cannot be created, the stack size is invalid, or the
    /// [dump signal](Builder::dump_on_signal) cannot be received.
    pub fn build(self) -> io::Result<Runtime> {
        let workers = self
            .workers
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
        stack::round_size(self.stack_size)?;
        if let Some(n) = self.blocking_threads {
            crate::rt::blocking::set_max_threads(n);
        }
        coroutine::install_panic_hook();
        let mut locals = Vec::with_capacity(workers);
        let mut remotes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let deque = Worker::new_lifo();
            let poll = mio::Poll::new()?;
            remotes.push(Remote::new(
                deque.stealer(),
                mio::Waker::new(poll.registry(), WAKER_TOKEN)?,
                poll.registry().try_clone()?,
            ));
            locals.push((deque, poll));
        }
        let remotes = remotes.into_boxed_slice();
        let shared = Arc::new(Shared {
            remotes,
            idle: Padded(Idle::default()),
            shutdown: AtomicBool::new(false),
            spawning: Padded(AtomicUsize::new(0)),
            stack_size: self.stack_size,
            spawned: Padded(AtomicU64::new(0)),
            completed: Padded(AtomicU64::new(0)),
            draining: AtomicBool::new(false),
            listeners: Mutex::new(Vec::new()),
            started_at: std::time::Instant::now(),
            id: scheduler::next_runtime_id(),
        });
        let runtime = Runtime {
            handle: Handle {
                shared: shared.clone(),
            },
            threads: Mutex::new(Vec::new()),
            watchdog: Mutex::new(None),
            dumper: Mutex::new(None),
        };
        #[cfg(feature = "hooks")]
        crate::hooks::init();
        let started = scheduler::start_workers(&shared, locals).and_then(|threads| {
            *runtime.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
            let monitor = self
                .stall_threshold
                .map(|threshold| Monitor::start(&shared, threshold))
                .transpose()?;
            *runtime.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = monitor;
            let dumper = self
                .dump_signal
                .map(|signal| dump::SignalDumper::start(&shared, signal))
                .transpose()?;
            *runtime.dumper.lock().unwrap_or_else(|e| e.into_inner()) = dumper;
            Ok(())
        });
        if let Err(e) = started {
            // Stop the workers that did start.
            runtime.shutdown_inner();
            return Err(e);
        }
        Ok(runtime)
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Runtime {
    /// A builder for a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(1).build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A runtime with one worker per available CPU.
    ///
    /// # Errors
    ///
    /// When a worker thread cannot be spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::new()?;
    /// assert_eq!(rt.block_on(|| 1 + 1), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// Runs `f` as a coroutine on this runtime and blocks the calling thread until it
    /// returns its value. (Called from a coroutine, it suspends only that coroutine.)
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic continues here with its payload; also if no stack can
    /// be allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(2).build()?;
    /// let v = rt.block_on(|| {
    ///     stackweave::yield_now();
    ///     vec![1, 2, 3]
    /// });
    /// assert_eq!(v, [1, 2, 3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.spawn(f).join() {
            Ok(value) => value,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Spawns a coroutine on this runtime, like [`crate::spawn`].
    ///
    /// # Panics
    ///
    /// If no stack can be allocated or the runtime is shutting down (the panic
    /// message shows the [`RuntimeShutdown`] error).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(1).build()?;
    /// assert_eq!(rt.spawn(|| 3).join().unwrap(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.spawn(f)
    }

    /// A handle that spawns onto this runtime from any thread.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// A snapshot of this runtime's counters.
    pub fn metrics(&self) -> Metrics {
        self.handle.metrics()
    }

    /// Shuts the runtime down: every coroutine still running or blocked is unwound on
    /// its home worker (its destructors run, and its `join` returns
    /// `Err(`[`Unwound`](crate::Unwound)`)`), unstarted ones are completed without
    /// running, and the workers are joined. Dropping the runtime does the same.
    ///
    /// A coroutine that catches the unwind and blocks again is unwound again at its
    /// next blocking point; one that never reaches one (an endless loop without
    /// blocking calls) keeps its worker, and so this call, from finishing. A
    /// destructor must not block (park, join, yield) while its coroutine unwinds:
    /// std's "panicking" state belongs to the OS thread, so the coroutine cannot be
    /// suspended mid-unwind, and the process aborts with a message saying so.
    ///
    /// # Panics
    ///
    /// If called from one of this runtime's own coroutines (it would wait for itself).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(1).build()?;
    /// let h = rt.spawn(|| stackweave::park());
    /// rt.shutdown();
    /// assert!(h.join().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(self) {
        // Drop does the work.
    }

    fn shutdown_inner(&self) {
        let shared = &self.handle.shared;
        if let Some(current) = scheduler::current_runtime() {
            assert!(
                !Arc::ptr_eq(&current, shared),
                "a runtime cannot be shut down or dropped from one of its own coroutines"
            );
        }
        // First: a dump it may be printing needs the workers.
        let dumper = self.dumper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(dumper) = dumper {
            dumper.stop();
        }
        shared.shutdown.store(true, Ordering::SeqCst);
        for remote in shared.remotes.iter() {
            remote.parker.unpark();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        // Anything spawned from outside after the workers left: complete it here,
        // once the spawns that passed their shutdown check have pushed.
        while shared.spawning.load(Ordering::SeqCst) != 0 {
            thread::yield_now();
        }
        shared.complete_stranded();
        // Last: a coroutine that kept its worker from shutting down is reported too.
        let monitor = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(monitor) = monitor {
            monitor.stop();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.handle.shared.remotes.len())
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Spawns a coroutine on the handle's runtime, like [`crate::spawn`].
    ///
    /// # Panics
    ///
    /// If no stack can be allocated or the runtime is shutting down (the panic
    /// message shows the [`RuntimeShutdown`] error); use [`Handle::try_spawn`] for
    /// an error instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(1).build()?;
    /// let h = rt.handle().spawn(|| "hi");
    /// assert_eq!(h.join().unwrap(), "hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.try_spawn(coroutine::Builder::new(), f)
            .expect("failed to spawn a coroutine")
    }

    /// Spawns a coroutine configured by `builder` on the handle's runtime.
    ///
    /// # Errors
    ///
    /// As [`Builder::spawn`](crate::Builder::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(1).build()?;
    /// let b = stackweave::Builder::new().name("named".into());
    /// let h = rt.handle().try_spawn(b, || stackweave::current().name().map(String::from))?;
    /// assert_eq!(h.join().unwrap().as_deref(), Some("named"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn try_spawn<F, T>(&self, builder: coroutine::Builder, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        builder.spawn_on(&self.shared, f)
    }

    /// A snapshot of the runtime's counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    /// How many workers the runtime has (fixed when it was built).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(3).build()?;
    /// assert_eq!(rt.handle().workers(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.shared.remotes.len()
    }

    /// The handle of the runtime the caller runs on: the current coroutine's runtime,
    /// or the default runtime (started if needed) outside any.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = stackweave::runtime::Handle::current().metrics();
    /// assert!(m.workers >= 1);
    /// ```
    pub fn current() -> Handle {
        Handle {
            shared: scheduler::current_runtime().unwrap_or_else(default_shared),
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.shared.remotes.len())
            .finish_non_exhaustive()
    }
}

/// The default runtime, started on first use: `STACKWEAVE_WORKERS` workers if that
/// variable holds a positive number, else one per available CPU; the stall
/// watchdog's threshold from `STACKWEAVE_STALL_THRESHOLD_MS` (`0` or `off`: off). It
/// lives until the process exits.
pub(crate) fn default_shared() -> Arc<Shared> {
    static DEFAULT: OnceLock<Runtime> = OnceLock::new();
    let runtime = DEFAULT.get_or_init(|| {
        let mut builder = Builder::new();
        if let Some(n) = std::env::var("STACKWEAVE_WORKERS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
        {
            builder = builder.workers(n);
        }
        if let Ok(v) = std::env::var("STACKWEAVE_STALL_THRESHOLD_MS") {
            match v.trim() {
                "0" | "off" => builder = builder.stall_threshold(None),
                ms => {
                    if let Ok(ms) = ms.parse::<u64>() {
                        builder = builder.stall_threshold(Some(Duration::from_millis(ms)));
                    }
                }
            }
        }
        builder
            .build()
            .expect("failed to start the default stackweave runtime")
    });
    runtime.handle.shared.clone()
}
