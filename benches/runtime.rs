//! Runtime benchmarks: stackweave's scheduler against tokio, may and OS threads,
//! measured side by side in one process.
//!
//! # What is measured
//!
//! * **spawn + join**: spawn `N` empty tasks, then join them all; time per task.
//!   * stackweave: `Runtime::builder().workers(2)`; the spawning and joining run
//!     inside `rt.block_on`, which is itself a coroutine on one of the two workers.
//!   * tokio: multi-thread runtime, `worker_threads(2)`; spawned inside `block_on`
//!     and every `JoinHandle` awaited. tokio's `block_on` future runs on the calling
//!     thread, so tokio's spawner is a third thread beside its two workers.
//!   * may: `set_workers(2)`; spawned with `unsafe { may::coroutine::spawn }` from
//!     a may coroutine (the counterpart of `block_on`) and joined with `.join()`.
//!     At most 30,000 tasks (see *may's cap* below): spawning outruns completion,
//!     so nearly all of them are alive at once.
//!   * `std::thread`: `N / 10` threads (spawning a thread costs ~100x more), from
//!     the main thread; the table reports time per thread all the same.
//! * **yield**: two tasks on ONE worker, each calling its runtime's `yield_now` `N`
//!   times; time per yield (`elapsed / 2N`), so a yield is one switch from one task
//!   to the other through the scheduler.
//!   * stackweave: a 1-worker runtime, `stackweave::yield_now()`.
//!   * tokio: a `current_thread` runtime, `tokio::task::yield_now().await`.
//!   * may: `may::coroutine::yield_now()` with ONE worker. may's worker count is
//!     process-global and fixed at first use (and this process uses 2 for the other
//!     groups), so this contender runs in a helper child process (this same binary,
//!     started with `--may-yield-child`) that the parent drives round by round over
//!     a pipe; the child times itself with the same code shape.
//! * **park/unpark ping-pong**: two tasks hand a turn back and forth `N` times
//!   through a shared atomic and their runtime's park/unpark (wait: `while turn !=
//!   mine { park() }`; hand over: store the turn, `unpark` the other); time per
//!   round trip (there and back).
//!   * stackweave: 2 workers, `stackweave::park` / `Coroutine::unpark`. The two
//!     coroutines are forced onto different workers (a started coroutine never
//!     changes worker): the first one spawns the second and busy-waits, without
//!     yielding, until the second has started, which only the other worker can do.
//!     Each round checks that they really run on two threads. An extra row runs
//!     the same code on a 1-worker runtime (both coroutines on one worker), the
//!     placement tokio and may tend to pick by themselves; it is not a rival.
//!   * `std::thread`: two threads, `std::thread::park` / `Thread::unpark`.
//!   * tokio: 2 workers, two `tokio::sync::Notify` (one per direction, permits
//!     instead of the atomic turn). tokio moves tasks freely; its LIFO slot tends to
//!     run a woken task on the waker's worker, so this is tokio's default behaviour,
//!     not necessarily a cross-worker hand-off.
//!   * may: 2 workers, `may::coroutine::park` / `Coroutine::unpark` (may migrates
//!     coroutines too: placement is may's choice).
//! * **idle memory**: spawn `N` tasks that each wait forever (stackweave: `park()`,
//!   default stack size `stackweave::stack::DEFAULT_STACK_SIZE`; tokio: awaiting a
//!   shared `Notify`; may: `park()`, may's default stack size), wait until all of
//!   them are waiting, then read the process's `VmRSS` (and `VmPTE`, page tables,
//!   which `VmRSS` does not include) from `/proc/self/status`; the row reports the
//!   RSS growth over a baseline read just before spawning, per task. Then everything
//!   is woken and joined. `stack::trim_pool()` and `malloc_trim(0)` run before the baseline so freed memory of
//!   the previous round is not reused for free. Join handles and bookkeeping are part
//!   of the cost, for every contender alike.
//!
//! **may's cap**: may's stacks have `mprotect` guard pages, two memory maps each, so
//! the default `vm.max_map_count` (65,530) caps it near 32,000 live coroutines, and
//! past the cap every `mmap`/`mprotect` in the process fails: may's stack allocation
//! panics, and any thread started then aborts the process (std cannot map its
//! signal stack). So may runs at most 30,000 live coroutines in every group, and
//! each may sample first checks the free maps (`/proc/self/maps` against
//! `vm.max_map_count`) and reports "not run" in its row instead of risking it.
//! Values are per task, so rows of different sizes still compare.
//!
//! may is configured with `set_workers(2)` and `set_worker_pin(false)` (may pins its
//! workers to cores by default; pinning is turned off so that no contender is pinned)
//! and otherwise its defaults (stack size, coroutine pool capacity).
//!
//! **Lost wakeups**: stackweave's cross-worker `park`/`unpark` was seen to lose a
//! wakeup now and then (both coroutines parked, the turn handed over, nobody
//! runnable). So that one lost wakeup does not hang the run, the stackweave
//! ping-pong and idle-memory samples run beside a *rescuer* thread that unparks
//! their coroutines again when they make no progress for a second (a spurious
//! unpark is harmless to these park loops). Stalls are counted and printed after
//! the table; a timed sample that stalled is left out of its row.
//!
//! The contenders alternate round-robin: every round runs each of them once (the
//! starting contender rotates from round to round), so drift in clock speed or
//! background load hits them all alike. The table shows the median, minimum and
//! maximum over the rounds of each round's value per operation. One untimed warm-up
//! run at a tenth of the size precedes the rounds. A watchdog ends the process with a
//! message naming the contender if one sample runs for more than two minutes.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench runtime             # full: 5 rounds, well under 2 minutes
//! cargo bench --bench runtime -- --quick  # smoke run: 2 rounds, small counts
//! ```
//!
//! Run without `--bench` on the command line (as `cargo test --benches` does) the
//! binary also runs quick. Other arguments are ignored.
//!
//! # Reading the ratios
//!
//! The last column divides each rival's median by stackweave's median in the same
//! group: `tokio/stackweave = 1.50x` means the rival takes 1.5 times as long (or, in
//! the memory group, 1.5 times as many bytes) per operation as stackweave, which is
//! the better one; below `1.00x` the rival is better. A failed contender shows its
//! error instead of numbers. These are 2-worker runtimes on a small shared machine:
//! look at the min–max spread before trusting differences of a few percent.

mod harness;

use harness::{panic_message, status_bytes, summary};
use std::io::{BufRead, BufReader, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Sizes of one run.
struct Config {
    /// Rounds; each round runs every contender once.
    rounds: usize,
    /// Tasks per spawn + join sample (threads: a tenth of it).
    spawn: u64,
    /// Yields per task per yield sample.
    yields: u64,
    /// Round trips per ping-pong sample.
    ping: u64,
    /// Idle tasks per memory sample.
    idle: u64,
    /// Upper bound on may's live coroutines in any sample (see the module docs).
    may_cap: u64,
}

impl Config {
    const FULL: Config = Config {
        rounds: 5,
        spawn: 100_000,
        yields: 500_000,
        ping: 20_000,
        idle: 100_000,
        may_cap: 30_000,
    };
    const QUICK: Config = Config {
        rounds: 2,
        spawn: 10_000,
        yields: 20_000,
        ping: 2_000,
        idle: 10_000,
        may_cap: 10_000,
    };

    fn from_args() -> (Config, &'static str) {
        match harness::quick_mode() {
            Some(why) => (Config::QUICK, why),
            None => (Config::FULL, "full"),
        }
    }
}

/// Which comparison a contender belongs to; the first contender of a group is
/// stackweave, the baseline of the ratios.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Spawn,
    Yield,
    PingPong,
    Memory,
}

impl Group {
    fn title(self) -> &'static str {
        match self {
            Group::Spawn => "spawn + join of empty tasks (ns per task)",
            Group::Yield => "yield between two tasks on one worker (ns per yield)",
            Group::PingPong => "park/unpark ping-pong, 2 workers (ns per round trip)",
            Group::Memory => "idle tasks, RSS growth (bytes per task)",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Group::Memory => "B",
            _ => "ns",
        }
    }
}

/// What one sample measured: a total over its operations.
struct Measure {
    /// Nanoseconds, or bytes of RSS for the memory group.
    total: f64,
    /// Bytes of page tables (`VmPTE`), memory group only.
    pte: Option<f64>,
    /// Stalls (lost wakeups) the rescuer had to break, stackweave only.
    stalls: u64,
    /// Whether the value counts: a timing that includes a stall does not.
    valid: bool,
}

impl Measure {
    fn time(d: Duration) -> Measure {
        Measure {
            total: d.as_nanos() as f64,
            pte: None,
            stalls: 0,
            valid: true,
        }
    }
}

/// Runs one sample of the given size.
type Sample<'a> = Box<dyn FnMut(u64) -> Result<Measure, String> + 'a>;

/// One contender and its results (value per operation, one per round).
struct Contender<'a> {
    group: Group,
    name: String,
    /// The short name used in the ratio column.
    short: &'static str,
    /// The size passed to `run`.
    size: u64,
    /// Operations in one sample (the divisor of its total).
    ops: u64,
    run: Sample<'a>,
    samples: Vec<f64>,
    pte: Vec<f64>,
    /// Stalls broken by the rescuer, and samples left out because of them.
    stalls: u64,
    excluded: usize,
    error: Option<String>,
}

impl<'a> Contender<'a> {
    fn new(
        group: Group,
        name: String,
        short: &'static str,
        (size, ops): (u64, u64),
        run: impl FnMut(u64) -> Result<Measure, String> + 'a,
    ) -> Self {
        Contender {
            group,
            name,
            short,
            size,
            ops,
            run: Box::new(run),
            samples: Vec::new(),
            pte: Vec::new(),
            stalls: 0,
            excluded: 0,
            error: None,
        }
    }

    /// Runs one sample under the watchdog, catching panics; a failed contender is
    /// not run again.
    fn sample(&mut self, size: u64, ops: u64, record: bool) {
        if self.error.is_some() {
            return;
        }
        watchdog_set(Some(&self.name));
        let result = panic::catch_unwind(AssertUnwindSafe(|| (self.run)(size)))
            .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&*payload))));
        watchdog_set(None);
        match result {
            Ok(m) => {
                self.stalls += m.stalls;
                if !record {
                    return;
                }
                if !m.valid {
                    self.excluded += 1;
                    return;
                }
                self.samples.push(m.total / ops as f64);
                if let Some(pte) = m.pte {
                    self.pte.push(pte / ops as f64);
                }
            }
            Err(e) => self.error = Some(e),
        }
    }
}

// ---------------------------------------------------------------------------------
// Watchdog: a hang is reported by name instead of stalling the run forever.

/// The contender running now and since when.
static RUNNING: Mutex<Option<(String, Instant)>> = Mutex::new(None);
/// Longest a single sample may run.
const SAMPLE_LIMIT: Duration = Duration::from_secs(120);

fn watchdog_set(name: Option<&str>) {
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) =
        name.map(|n| (n.to_string(), Instant::now()));
}

fn start_watchdog() {
    thread::spawn(|| loop {
        thread::sleep(Duration::from_millis(500));
        let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((name, since)) = running {
            if since.elapsed() > SAMPLE_LIMIT {
                eprintln!(
                    "watchdog: `{name}` has run one sample for {:?}: it hangs; exiting",
                    since.elapsed()
                );
                std::process::exit(2);
            }
        }
    });
}

/// Waits for `done()` by spinning and yielding the thread; an error after `limit`.
fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::hint::spin_loop();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Memory

/// RSS and page-table bytes now.
fn memory_now() -> (f64, f64) {
    (
        status_bytes(None, "VmRSS").unwrap_or(0.0),
        status_bytes(None, "VmPTE").unwrap_or(0.0),
    )
}

/// Returns freed heap and the memory of pooled stacks to the kernel, so a baseline
/// does not include memory that the next spawns would reuse without growing RSS.
fn trim_heap() {
    stackweave::stack::trim_pool();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn memory_delta(before: (f64, f64), after: (f64, f64)) -> Measure {
    Measure {
        total: after.0 - before.0,
        pte: Some(after.1 - before.1),
        stalls: 0,
        valid: true,
    }
}

// ---------------------------------------------------------------------------------
// Rescuer: stackweave loses park/unpark wakeups now and then (see the notes the
// binary prints); without this, one lost wakeup hangs the whole run.

/// How long `progress` may stand still before the rescuer kicks.
const STALL_AFTER: Duration = Duration::from_millis(1000);

/// A thread that calls `kick` (spurious unparks, harmless to the park loops here)
/// whenever `progress` has not moved for [`STALL_AFTER`], and counts those stalls.
struct Rescuer {
    stop: Arc<AtomicBool>,
    stalls: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Rescuer {
    fn start(progress: Arc<AtomicU64>, kick: impl Fn() + Send + 'static) -> Rescuer {
        let stop = Arc::new(AtomicBool::new(false));
        let stalls = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, stalls) = (stop.clone(), stalls.clone());
            thread::spawn(move || {
                let mut last = (progress.load(Ordering::Relaxed), Instant::now());
                while !stop.load(Ordering::Acquire) {
                    thread::park_timeout(Duration::from_millis(50));
                    let now = progress.load(Ordering::Relaxed);
                    if now != last.0 {
                        last = (now, Instant::now());
                    } else if last.1.elapsed() > STALL_AFTER && !stop.load(Ordering::Acquire) {
                        stalls.fetch_add(1, Ordering::Relaxed);
                        kick();
                        last.1 = Instant::now();
                    }
                }
            })
        };
        Rescuer {
            stop,
            stalls,
            thread: Some(thread),
        }
    }

    /// Stops the thread; the number of stalls it broke.
    fn finish(mut self) -> u64 {
        self.stop_thread();
        self.stalls.load(Ordering::Relaxed)
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Rescuer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

// ---------------------------------------------------------------------------------
// stackweave

fn stackweave_spawn(rt: &stackweave::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    move |n| {
        rt.block_on(move || {
            let start = Instant::now();
            let mut handles = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let h = stackweave::Builder::new()
                    .spawn(|| {})
                    .map_err(|e| format!("spawn #{} failed: {e}", handles.len()))?;
                handles.push(h);
            }
            for h in handles {
                h.join().map_err(|_| "a coroutine panicked".to_string())?;
            }
            Ok(Measure::time(start.elapsed()))
        })
    }
}

fn stackweave_yield(rt: &stackweave::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    move |n| {
        let elapsed = rt.block_on(move || {
            let start = Instant::now();
            let body = move || {
                for _ in 0..n {
                    stackweave::yield_now();
                }
            };
            let a = stackweave::spawn(body);
            let b = stackweave::spawn(body);
            a.join().expect("yielder a");
            b.join().expect("yielder b");
            start.elapsed()
        });
        Ok(Measure::time(elapsed))
    }
}

/// One side of the ping-pong: waits for the turn `mine`, `rounds` times, handing
/// the turn to `theirs` before (first mover) or after each wait.
fn ping_pong_side(
    turn: &AtomicU32,
    progress: &AtomicU64,
    rounds: u64,
    first_mover: bool,
    park: impl Fn(),
    unpark_other: impl Fn(),
) {
    let (mine, theirs) = if first_mover { (0, 1) } else { (1, 0) };
    for _ in 0..rounds {
        if first_mover {
            turn.store(theirs, Ordering::Release);
            unpark_other();
        }
        while turn.load(Ordering::Acquire) != mine {
            park();
        }
        if !first_mover {
            // One writer: a plain load and store, not a locked increment.
            progress.store(progress.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            turn.store(theirs, Ordering::Release);
            unpark_other();
        }
    }
}

fn stackweave_ping(rt: &stackweave::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    move |n| rt.block_on(move || stackweave_ping_pong(n, true))
}

/// The ping-pong on a 1-worker runtime: both coroutines on the same worker, the
/// placement tokio and may usually end up with.
fn stackweave_ping_local(
    rt: &stackweave::Runtime,
) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    move |n| rt.block_on(move || stackweave_ping_pong(n, false))
}

/// The stackweave ping-pong, run by the calling coroutine and one it spawns; with
/// `cross_worker`, the two are made to run on different workers.
fn stackweave_ping_pong(n: u64, cross_worker: bool) -> Result<Measure, String> {
    let turn = Arc::new(AtomicU32::new(0));
    let progress = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicBool::new(false));
    let other_thread = Arc::new(Mutex::new(None));
    let me = stackweave::current();
    let b = {
        let (turn, progress, started, other_thread, me) = (
            turn.clone(),
            progress.clone(),
            started.clone(),
            other_thread.clone(),
            me.clone(),
        );
        stackweave::spawn(move || {
            *other_thread.lock().unwrap() = Some(thread::current().id());
            started.store(true, Ordering::Release);
            let unpark = || me.unpark();
            ping_pong_side(&turn, &progress, n, false, stackweave::park, unpark);
        })
    };
    if cross_worker {
        // Busy-wait without yielding: only the other worker can start `b`.
        wait_until(
            "the second coroutine to start",
            Duration::from_secs(10),
            || started.load(Ordering::Acquire),
        )?;
        if *other_thread.lock().unwrap() == Some(thread::current().id()) {
            return Err("both coroutines ran on one worker".to_string());
        }
    }
    let other = b.coroutine().clone();
    let rescuer = {
        let (me, other) = (me.clone(), other.clone());
        Rescuer::start(progress.clone(), move || {
            me.unpark();
            other.unpark();
        })
    };
    let start = Instant::now();
    ping_pong_side(&turn, &progress, n, true, stackweave::park, || {
        other.unpark()
    });
    let elapsed = start.elapsed();
    b.join()
        .map_err(|_| "the second coroutine panicked".to_string())?;
    let stalls = rescuer.finish();
    Ok(Measure {
        stalls,
        valid: stalls == 0,
        ..Measure::time(elapsed)
    })
}

fn stackweave_idle(rt: &stackweave::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    move |n| {
        rt.block_on(move || {
            // Counts arrivals at the park and departures after it: the rescuer's
            // measure of progress.
            let waiting = Arc::new(AtomicU64::new(0));
            let release = Arc::new(AtomicBool::new(false));
            let driver = stackweave::current();
            // Whom the rescuer unparks: the driver, and after the measurement every
            // coroutine (filled only then, so it costs no RSS in the measurement).
            let kick_list: Arc<Mutex<Vec<stackweave::Coroutine>>> = Arc::default();
            let rescuer = {
                let (driver, kick_list) = (driver.clone(), kick_list.clone());
                Rescuer::start(waiting.clone(), move || {
                    driver.unpark();
                    for c in kick_list.lock().unwrap().iter() {
                        c.unpark();
                    }
                })
            };
            trim_heap();
            let before = memory_now();
            let mut handles = Vec::with_capacity(n as usize);
            let mut failure = None;
            for i in 0..n {
                let (waiting, release, driver) = (waiting.clone(), release.clone(), driver.clone());
                let spawned = stackweave::Builder::new().spawn(move || {
                    if waiting.fetch_add(1, Ordering::AcqRel) + 1 == n {
                        driver.unpark();
                    }
                    while !release.load(Ordering::Acquire) {
                        stackweave::park();
                    }
                    waiting.fetch_add(1, Ordering::Relaxed);
                });
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        failure = Some(format!("spawn #{i} failed: {e}"));
                        break;
                    }
                }
            }
            if failure.is_none() {
                while waiting.load(Ordering::Acquire) < n {
                    stackweave::park();
                }
            }
            let after = memory_now();
            kick_list
                .lock()
                .unwrap()
                .extend(handles.iter().map(|h| h.coroutine().clone()));
            release.store(true, Ordering::Release);
            for h in &handles {
                h.coroutine().unpark();
            }
            for h in handles {
                h.join().map_err(|_| "a coroutine panicked".to_string())?;
            }
            let stalls = rescuer.finish();
            match failure {
                Some(e) => Err(e),
                None => Ok(Measure {
                    stalls,
                    ..memory_delta(before, after)
                }),
            }
        })
    }
}

// ---------------------------------------------------------------------------------
// tokio

fn tokio_spawn(rt: &tokio::runtime::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    move |n| {
        rt.block_on(async move {
            let start = Instant::now();
            let handles: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
            for h in handles {
                h.await.map_err(|e| e.to_string())?;
            }
            Ok(Measure::time(start.elapsed()))
        })
    }
}

fn tokio_yield(rt: &tokio::runtime::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    move |n| {
        rt.block_on(async move {
            let start = Instant::now();
            let body = move || async move {
                for _ in 0..n {
                    tokio::task::yield_now().await;
                }
            };
            let a = tokio::spawn(body());
            let b = tokio::spawn(body());
            a.await.map_err(|e| e.to_string())?;
            b.await.map_err(|e| e.to_string())?;
            Ok(Measure::time(start.elapsed()))
        })
    }
}

fn tokio_ping(rt: &tokio::runtime::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    use tokio::sync::Notify;
    move |n| {
        rt.block_on(async move {
            let to_a = Arc::new(Notify::new());
            let to_b = Arc::new(Notify::new());
            let b = {
                let (to_a, to_b) = (to_a.clone(), to_b.clone());
                tokio::spawn(async move {
                    for _ in 0..n {
                        to_b.notified().await;
                        to_a.notify_one();
                    }
                })
            };
            let a = tokio::spawn(async move {
                let start = Instant::now();
                for _ in 0..n {
                    to_b.notify_one();
                    to_a.notified().await;
                }
                start.elapsed()
            });
            let elapsed = a.await.map_err(|e| e.to_string())?;
            b.await.map_err(|e| e.to_string())?;
            Ok(Measure::time(elapsed))
        })
    }
}

fn tokio_idle(rt: &tokio::runtime::Runtime) -> impl FnMut(u64) -> Result<Measure, String> + '_ {
    use tokio::sync::Notify;
    move |n| {
        rt.block_on(async move {
            let release = Arc::new(Notify::new());
            let all_waiting = Arc::new(Notify::new());
            let waiting = Arc::new(AtomicU64::new(0));
            trim_heap();
            let before = memory_now();
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (release, all_waiting, waiting) =
                        (release.clone(), all_waiting.clone(), waiting.clone());
                    tokio::spawn(async move {
                        let wait = release.notified();
                        if waiting.fetch_add(1, Ordering::AcqRel) + 1 == n {
                            all_waiting.notify_one();
                        }
                        wait.await;
                    })
                })
                .collect();
            while waiting.load(Ordering::Acquire) < n {
                all_waiting.notified().await;
            }
            let after = memory_now();
            // Wakes every `Notified` created before this call, polled yet or not.
            release.notify_waiters();
            for h in handles {
                h.await.map_err(|e| e.to_string())?;
            }
            Ok(memory_delta(before, after))
        })
    }
}

// ---------------------------------------------------------------------------------
// may

/// Memory maps this process may still create below `vm.max_map_count`.
fn map_headroom() -> Option<usize> {
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let used = std::fs::read_to_string("/proc/self/maps")
        .ok()?
        .lines()
        .count();
    Some(max.saturating_sub(used))
}

/// Refuses to run a may sample of `n` live coroutines (two memory maps each) that
/// could exhaust `vm.max_map_count`: past it every `mmap` or `mprotect` in the
/// process fails, and a thread started then aborts the whole process.
fn may_map_check(n: u64) -> Result<(), String> {
    let need = 2 * n as usize + 2_000;
    match map_headroom() {
        Some(free) if free < need => Err(format!(
            "not run: {n} may coroutines need ~{need} memory maps, only {free} free \
             below vm.max_map_count"
        )),
        _ => Ok(()),
    }
}

fn may_spawn(n: u64) -> Result<Measure, String> {
    may_map_check(n)?;
    let body = move || {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            // SAFETY: an empty closure: no thread-locals, almost no stack.
            .map(|_| unsafe { may::coroutine::spawn(|| {}) })
            .collect();
        for h in handles {
            h.join().expect("an empty may coroutine panicked");
        }
        start.elapsed()
    };
    // SAFETY: the driver uses no thread-locals and only a few hundred bytes of
    // stack, far below may's default stack size.
    let driver = unsafe { may::coroutine::spawn(body) };
    let elapsed = driver
        .join()
        .map_err(|p| format!("panicked: {}", panic_message(&*p)))?;
    Ok(Measure::time(elapsed))
}

fn may_ping(n: u64) -> Result<Measure, String> {
    let first = move || {
        let turn = Arc::new(AtomicU32::new(0));
        let progress = Arc::new(AtomicU64::new(0));
        let me = may::coroutine::current();
        let second = {
            let (turn, progress) = (turn.clone(), progress.clone());
            move || {
                let unpark = || me.unpark();
                ping_pong_side(&turn, &progress, n, false, may::coroutine::park, unpark)
            }
        };
        // SAFETY: the coroutine uses no thread-locals and little stack.
        let b = unsafe { may::coroutine::spawn(second) };
        let other = b.coroutine().clone();
        let start = Instant::now();
        let unpark = || other.unpark();
        ping_pong_side(&turn, &progress, n, true, may::coroutine::park, unpark);
        let elapsed = start.elapsed();
        b.join().expect("may ping-pong partner panicked");
        elapsed
    };
    // SAFETY: the coroutine uses no thread-locals and little stack.
    let a = unsafe { may::coroutine::spawn(first) };
    let elapsed = a
        .join()
        .map_err(|p| format!("panicked: {}", panic_message(&*p)))?;
    Ok(Measure::time(elapsed))
}

fn may_idle(n: u64) -> Result<Measure, String> {
    may_map_check(n)?;
    let waiting = Arc::new(AtomicU64::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let main = thread::current();
    trim_heap();
    let before = memory_now();
    let mut handles = Vec::with_capacity(n as usize);
    // Spawned from this thread, so that a failed stack allocation (a panic inside
    // may) is caught here with the handles of the coroutines already parked.
    let spawned = panic::catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..n {
            let (waiting, release, main) = (waiting.clone(), release.clone(), main.clone());
            // SAFETY: the coroutine uses no thread-locals and little stack.
            let h = unsafe {
                may::coroutine::spawn(move || {
                    if waiting.fetch_add(1, Ordering::AcqRel) + 1 == n {
                        main.unpark();
                    }
                    while !release.load(Ordering::Acquire) {
                        may::coroutine::park();
                    }
                })
            };
            handles.push(h);
        }
    }));
    let failure = spawned.err().map(|p| {
        format!(
            "spawn #{} failed: {}",
            handles.len(),
            panic_message(&*p).lines().next().unwrap_or("")
        )
    });
    let limit = Instant::now() + Duration::from_secs(30);
    while failure.is_none() && waiting.load(Ordering::Acquire) < n && Instant::now() < limit {
        thread::park_timeout(Duration::from_millis(10));
    }
    let after = memory_now();
    release.store(true, Ordering::Release);
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join()
            .map_err(|p| format!("panicked: {}", panic_message(&*p)))?;
    }
    match failure {
        Some(e) => Err(e),
        None if waiting.load(Ordering::Acquire) < n => {
            Err("timed out waiting for the coroutines to park".to_string())
        }
        None => Ok(memory_delta(before, after)),
    }
}

/// Two may coroutines yielding `n` times each; must run in a process whose may has
/// one worker.
fn may_yield(n: u64) -> Duration {
    let start = Instant::now();
    let body = move || {
        for _ in 0..n {
            may::coroutine::yield_now();
        }
    };
    // SAFETY: the coroutines use no thread-locals and little stack.
    let (a, b) = unsafe { (may::coroutine::spawn(body), may::coroutine::spawn(body)) };
    a.join().expect("may yielder a");
    b.join().expect("may yielder b");
    start.elapsed()
}

/// The child process of the may yield contender: one may worker; reads a size per
/// line on stdin, answers with the elapsed nanoseconds per line on stdout.
fn may_yield_child() {
    may::config().set_workers(1).set_worker_pin(false);
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(n) = line.unwrap_or_default().trim().parse::<u64>() else {
            break;
        };
        let elapsed = may_yield(n);
        if writeln!(out, "{}", elapsed.as_nanos())
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
}

/// The parent's end of the may yield child.
struct MayYieldChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl MayYieldChild {
    fn start() -> Result<MayYieldChild, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("--may-yield-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the may child: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(MayYieldChild {
            child,
            stdin,
            stdout,
        })
    }

    fn sample(&mut self, n: u64) -> Result<Measure, String> {
        let stdin = self.stdin.as_mut().ok_or("the may child is gone")?;
        writeln!(stdin, "{n}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("may child: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("may child: {e}"))?;
        let nanos: u64 = line
            .trim()
            .parse()
            .map_err(|_| format!("may child answered {line:?} (did it crash?)"))?;
        Ok(Measure::time(Duration::from_nanos(nanos)))
    }
}

impl Drop for MayYieldChild {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the child exits.
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// std::thread

fn thread_spawn(n: u64) -> Result<Measure, String> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n {
        let h = thread::Builder::new()
            .spawn(|| {})
            .map_err(|e| format!("thread #{i} failed: {e}"))?;
        handles.push(h);
    }
    for h in handles {
        h.join().map_err(|_| "a thread panicked".to_string())?;
    }
    Ok(Measure::time(start.elapsed()))
}

fn thread_ping(n: u64) -> Result<Measure, String> {
    let turn = Arc::new(AtomicU32::new(0));
    let progress = Arc::new(AtomicU64::new(0));
    let a_thread = thread::current();
    let b = {
        let (turn, progress) = (turn.clone(), progress.clone());
        thread::spawn(move || {
            let unpark = || a_thread.unpark();
            ping_pong_side(&turn, &progress, n, false, thread::park, unpark);
        })
    };
    let other = b.thread().clone();
    let start = Instant::now();
    ping_pong_side(&turn, &progress, n, true, thread::park, || other.unpark());
    let elapsed = start.elapsed();
    b.join().map_err(|_| "the partner thread panicked")?;
    Ok(Measure::time(elapsed))
}

// ---------------------------------------------------------------------------------

fn main() {
    if std::env::args().any(|a| a == "--may-yield-child") {
        may_yield_child();
        return;
    }
    let (config, mode) = Config::from_args();
    let cfg = &config;

    // may's scheduler is global and starts on first use: configure it first.
    may::config().set_workers(2).set_worker_pin(false);

    let sw2 = stackweave::Runtime::builder()
        .workers(2)
        .build()
        .expect("stackweave runtime");
    let sw1 = stackweave::Runtime::builder()
        .workers(1)
        .build()
        .expect("stackweave runtime");
    let tokio_mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let tokio_ct = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut may_child = MayYieldChild::start();
    let threads = cfg.spawn / 10;
    let may_spawn_n = cfg.spawn.min(cfg.may_cap);
    let may_idle_n = cfg.idle.min(cfg.may_cap);

    let mut contenders = vec![
        Contender::new(
            Group::Spawn,
            format!("stackweave, 2 workers ({} tasks)", cfg.spawn),
            "stackweave",
            (cfg.spawn, cfg.spawn),
            stackweave_spawn(&sw2),
        ),
        Contender::new(
            Group::Spawn,
            format!("tokio, 2 workers ({} tasks)", cfg.spawn),
            "tokio",
            (cfg.spawn, cfg.spawn),
            tokio_spawn(&tokio_mt),
        ),
        Contender::new(
            Group::Spawn,
            format!("may, 2 workers ({may_spawn_n} tasks)"),
            "may",
            (may_spawn_n, may_spawn_n),
            may_spawn,
        ),
        Contender::new(
            Group::Spawn,
            format!("std::thread ({threads} threads)"),
            "thread",
            (threads, threads),
            thread_spawn,
        ),
        Contender::new(
            Group::Yield,
            "stackweave, 1 worker".to_string(),
            "stackweave",
            (cfg.yields, 2 * cfg.yields),
            stackweave_yield(&sw1),
        ),
        Contender::new(
            Group::Yield,
            "tokio current_thread".to_string(),
            "tokio",
            (cfg.yields, 2 * cfg.yields),
            tokio_yield(&tokio_ct),
        ),
        Contender::new(
            Group::Yield,
            "may, 1 worker (child process)".to_string(),
            "may",
            (cfg.yields, 2 * cfg.yields),
            move |n| match &mut may_child {
                Ok(child) => child.sample(n),
                Err(e) => Err(e.clone()),
            },
        ),
        Contender::new(
            Group::PingPong,
            "stackweave park/unpark".to_string(),
            "stackweave",
            (cfg.ping, cfg.ping),
            stackweave_ping(&sw2),
        ),
        Contender::new(
            Group::PingPong,
            "stackweave, both on one worker (1-worker runtime)".to_string(),
            "stackweave-1w",
            (cfg.ping, cfg.ping),
            stackweave_ping_local(&sw1),
        ),
        Contender::new(
            Group::PingPong,
            "std::thread park/unpark".to_string(),
            "thread",
            (cfg.ping, cfg.ping),
            thread_ping,
        ),
        Contender::new(
            Group::PingPong,
            "tokio Notify".to_string(),
            "tokio",
            (cfg.ping, cfg.ping),
            tokio_ping(&tokio_mt),
        ),
        Contender::new(
            Group::PingPong,
            "may park/unpark".to_string(),
            "may",
            (cfg.ping, cfg.ping),
            may_ping,
        ),
        Contender::new(
            Group::Memory,
            format!(
                "stackweave park() ({} parked, {} KiB stacks)",
                cfg.idle,
                stackweave::stack::DEFAULT_STACK_SIZE / 1024
            ),
            "stackweave",
            (cfg.idle, cfg.idle),
            stackweave_idle(&sw2),
        ),
        Contender::new(
            Group::Memory,
            format!("tokio Notify ({} waiting)", cfg.idle),
            "tokio",
            (cfg.idle, cfg.idle),
            tokio_idle(&tokio_mt),
        ),
        Contender::new(
            Group::Memory,
            format!(
                "may park() ({may_idle_n} parked, {} KiB stacks)",
                may::config().get_stack_size() * std::mem::size_of::<usize>() / 1024
            ),
            "may",
            (may_idle_n, may_idle_n),
            may_idle,
        ),
    ];

    println!(
        "stackweave: switch backend {}; guard pages {:?}; stack cap {}",
        stackweave::SWITCH_BACKEND,
        stackweave::stack::guard_kind(),
        stackweave::stack::stack_cap().map_or("none (vm.max_map_count not a limit)".into(), |n| {
            format!("~{n} stacks")
        }),
    );
    println!(
        "may: {} workers, core pinning OFF (set_worker_pin(false); may pins by default), \
         default stack {} KiB, pool capacity {}",
        may::config().get_workers(),
        may::config().get_stack_size() * std::mem::size_of::<usize>() / 1024,
        may::config().get_pool_capacity(),
    );
    println!(
        "mode: {mode}; {} rounds; spawn {} (threads {threads}); yields {} per task; \
         ping-pong {} round trips; idle {}; may capped at {} live coroutines; {} CPUs",
        cfg.rounds,
        cfg.spawn,
        cfg.yields,
        cfg.ping,
        cfg.idle,
        cfg.may_cap,
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    // Other processes' load changes cross-CPU wake-up latencies a lot on 2 CPUs:
    // an idle CPU has to be woken from halt first.
    println!("load average before the run: {}", harness::load_average());
    if cfg!(debug_assertions) {
        println!("warning: built without optimizations; the numbers mean little");
    }

    start_watchdog();
    let total = Instant::now();
    for c in &mut contenders {
        let size = (c.size / 10).max(1);
        c.sample(size, 1, false);
    }
    let n = contenders.len();
    for round in 0..cfg.rounds {
        for k in 0..n {
            let c = &mut contenders[(round + k) % n];
            c.sample(c.size, c.ops, true);
        }
    }

    print_table(&contenders);
    println!("\ntotal time {:.1} s", total.elapsed().as_secs_f64());
}

fn print_table(contenders: &[Contender<'_>]) {
    let name_width = contenders.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!();
    println!(
        "{:<name_width$}  {:>12}  {:>12}  {:>12}  vs stackweave (median)",
        "benchmark", "median", "min", "max"
    );
    let mut group = None;
    let mut baseline = f64::NAN;
    for c in contenders {
        if group != Some(c.group) {
            group = Some(c.group);
            baseline = f64::NAN;
            println!("-- {}", c.group.title());
        }
        if let Some(e) = &c.error {
            println!("{:<name_width$}  FAILED: {e}", c.name);
            continue;
        }
        let (median, min, max) = summary(&c.samples);
        let ratio = if c.short == "stackweave" {
            baseline = median;
            String::from("(baseline)")
        } else {
            format!("{}/stackweave = {:.2}x", c.short, median / baseline)
        };
        let unit = c.group.unit();
        let cell = |v: f64| format!("{v:.1} {unit}");
        println!(
            "{:<name_width$}  {:>12}  {:>12}  {:>12}  {ratio}",
            c.name,
            cell(median),
            cell(min),
            cell(max)
        );
    }
    let stalled: Vec<_> = contenders.iter().filter(|c| c.stalls > 0).collect();
    if !stalled.is_empty() {
        println!(
            "\nLOST WAKEUPS: park/unpark stalls (every task parked, none woken) that the \
             rescuer broke after {STALL_AFTER:?} by unparking them again:"
        );
        for c in stalled {
            println!(
                "  {:<name_width$}  {} stalls; {} timed samples left out of the row",
                c.name, c.stalls, c.excluded
            );
        }
    }
    let pte: Vec<_> = contenders.iter().filter(|c| !c.pte.is_empty()).collect();
    if !pte.is_empty() {
        println!("\npage tables (VmPTE growth, not in RSS above), median bytes per task:");
        for c in pte {
            println!("  {:<name_width$}  {:.1} B", c.name, summary(&c.pte).0);
        }
    }
}
