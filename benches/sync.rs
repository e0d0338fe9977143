//! Synchronization benchmarks: stackweave's `sync` channels and mutex against tokio,
//! may and `std`, measured side by side in one process.
//!
//! # What is measured
//!
//! * **channel ping-pong**: task A sends a number to task B on one channel, B sends
//!   it back on a second channel, `N` times; time per round trip (there and back),
//!   timed inside A.
//!   * stackweave: `sync::mpsc::channel()` between two coroutines spawned on a
//!     2-worker runtime (the scheduler places them; the notes after the table say
//!     how often they landed on different workers: a started coroutine never changes
//!     worker). The same on a 1-worker runtime, and `sync_channel(1)` on 2 workers.
//!   * tokio: `tokio::sync::mpsc::unbounded_channel` between two tasks on a 2-worker
//!     multi-thread runtime and on a `current_thread` runtime, and the bounded
//!     `channel(1)` on 2 workers (the counterpart of `sync_channel(1)`).
//!   * may: `may::sync::mpsc::channel` between two coroutines, 2 workers.
//!   * std: `std::sync::mpsc::channel` between two threads.
//! * **contended mutex**: 8 tasks each lock a shared `u64` counter, increment it and
//!   unlock, `N / 8` times each; time per lock + unlock (`elapsed / N`, spawning and
//!   joining the 8 tasks included). The final count is checked. stackweave
//!   `sync::Mutex` (8 coroutines, 2 workers), tokio `sync::Mutex` (8 tasks, 2
//!   workers), may `sync::Mutex` (8 coroutines, 2 workers), `std::sync::Mutex` (8
//!   threads).
//! * **contended mutex, yield inside**: the same, but each critical section yields
//!   (`stackweave::yield_now()`, `tokio::task::yield_now().await`,
//!   `may::coroutine::yield_now()`) while holding the lock, so the other tasks really
//!   queue on it. Threads have no such yield: the std row says n/a.
//!
//! may is configured with `set_workers(2)` and `set_worker_pin(false)` (as in
//! `benches/runtime.rs`: no contender is pinned) before its first use.
//!
//! Every contender has its own runtime, so one that hangs does not take the others
//! down with it. Each sample runs on a fresh thread that the main thread waits for
//! with a time limit: a panic or a timeout becomes the contender's error, printed in
//! its row, and the contender is not run again (a hung sample is left running: the
//! rows measured after it may be disturbed, and the output says so).
//!
//! The contenders alternate round-robin: every round runs each of them once (the
//! starting contender rotates from round to round), after one untimed warm-up run
//! at a tenth of the size. The table shows the median, minimum and maximum over the
//! rounds; the last column divides the rival's median by the median of the
//! stackweave row it is compared with (`tokio/stackweave = 1.50x`: tokio takes 1.5
//! times as long, stackweave is ahead; below `1.00x` the rival is ahead).
//!
//! # Running
//!
//! ```text
//! cargo bench --bench sync             # full: 5 rounds
//! cargo bench --bench sync -- --quick  # smoke run: 1 round, small counts
//! ```
//!
//! Run without `--bench` on the command line (as `cargo test --benches` does) the
//! binary also runs quick. Free arguments filter the rows by name, e.g.
//! `cargo bench --bench sync -- --quick "1 worker"` (handy under `perf record`).

#[path = "harness/mod.rs"]
mod harness;

use harness::{panic_message, summary};
use std::any::Any;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// Tasks (or threads) sharing the mutex.
const TASKS: u64 = 8;

/// Sizes of one run.
struct Config {
    /// Rounds; each round runs every contender once.
    rounds: usize,
    /// Round trips per channel sample.
    ping: u64,
    /// Lock + unlock operations per mutex sample (all tasks together).
    locks: u64,
    /// The same with a yield in each critical section.
    locks_yield: u64,
    /// Longest one sample may run before it counts as hung.
    limit: Duration,
}

impl Config {
    const FULL: Config = Config {
        rounds: 5,
        ping: 100_000,
        locks: 1_000_000,
        locks_yield: 200_000,
        limit: Duration::from_secs(60),
    };
    const QUICK: Config = Config {
        rounds: 1,
        ping: 20_000,
        locks: 200_000,
        locks_yield: 40_000,
        limit: Duration::from_secs(10),
    };
}

/// Which comparison a contender belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Channel,
    Mutex,
    MutexYield,
}

impl Group {
    fn title(self) -> String {
        match self {
            Group::Channel => "channel ping-pong between two tasks (ns per round trip)".into(),
            Group::Mutex => format!(
                "contended mutex, {TASKS} tasks, lock/increment/unlock (ns per lock+unlock)"
            ),
            Group::MutexYield => format!(
                "contended mutex, {TASKS} tasks, yield while holding it (ns per lock+unlock)"
            ),
        }
    }
}

/// What one sample measured.
struct Measure {
    /// Nanoseconds for all the operations of the sample.
    nanos: f64,
    /// Where the tasks ran, where known: "same worker" / "cross-worker" for the two
    /// stackweave coroutines of a ping-pong, and how many tasks started on each OS
    /// thread ("5+3") for the mutex.
    placement: Option<String>,
}

impl Measure {
    fn time(d: Duration) -> Measure {
        Measure {
            nanos: d.as_nanos() as f64,
            placement: None,
        }
    }
}

type SampleFn = Box<dyn FnMut(u64) -> Result<Measure, String> + Send>;

/// One contender and its results (value per operation, one per round).
struct Contender {
    group: Group,
    name: String,
    /// The name used in the ratio column.
    short: &'static str,
    /// The `short` of the stackweave row this one is compared with; `None` for a
    /// stackweave row (a baseline).
    vs: Option<&'static str>,
    /// Operations per sample (the divisor of its total).
    size: u64,
    /// `None`: not applicable (the row prints the reason instead).
    run: Option<Arc<Mutex<SampleFn>>>,
    na: &'static str,
    samples: Vec<f64>,
    /// The placement of each recorded sample that reported one, with its value.
    placements: Vec<(f64, String)>,
    error: Option<String>,
}

impl Contender {
    fn new(
        group: Group,
        name: impl Into<String>,
        (short, vs): (&'static str, Option<&'static str>),
        size: u64,
        run: impl FnMut(u64) -> Result<Measure, String> + Send + 'static,
    ) -> Contender {
        Contender {
            group,
            name: name.into(),
            short,
            vs,
            size,
            run: Some(Arc::new(Mutex::new(Box::new(run)))),
            na: "",
            samples: Vec::new(),
            placements: Vec::new(),
            error: None,
        }
    }

    fn not_applicable(group: Group, name: &str, short: &'static str, why: &'static str) -> Self {
        Contender {
            run: None,
            na: why,
            ..Contender::new(group, name, (short, Some("stackweave")), 0, |_| {
                Err(String::new())
            })
        }
    }

    /// Runs one sample of `size` operations on a fresh thread, waiting at most
    /// `limit`; a failed contender is not run again.
    fn sample(&mut self, size: u64, record: bool, limit: Duration) {
        let Some(run) = &self.run else { return };
        if self.error.is_some() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let run = run.clone();
        let spawned = thread::Builder::new().name("sample".into()).spawn(move || {
            let mut run = run.lock().unwrap_or_else(|e| e.into_inner());
            let result = panic::catch_unwind(AssertUnwindSafe(|| run(size)))
                .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&*payload))));
            let _ = tx.send(result);
        });
        if let Err(e) = spawned {
            self.error = Some(format!("cannot start the sample thread: {e}"));
            return;
        }
        let result = match rx.recv_timeout(limit) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                eprintln!(
                    "`{}`: one sample ran for over {limit:?}; left running, rows measured \
                     after this may be disturbed",
                    self.name
                );
                Err(format!(
                    "TIMED OUT: one sample of {size} ran for over {limit:?} (hang?)"
                ))
            }
            Err(RecvTimeoutError::Disconnected) => Err("the sample thread died".to_string()),
        };
        match result {
            Ok(m) if record => {
                let value = m.nanos / size as f64;
                self.samples.push(value);
                if let Some(p) = m.placement {
                    self.placements.push((value, p));
                }
            }
            Ok(_) => {}
            Err(e) => self.error = Some(e),
        }
    }

    fn median(&self) -> Option<f64> {
        (self.error.is_none() && !self.samples.is_empty()).then(|| summary(&self.samples).0)
    }
}

// ---------------------------------------------------------------------------------
// Runtimes: one per contender, leaked, so that a hung one stays out of the way.

fn stackweave_rt(workers: usize) -> Result<&'static stackweave::Runtime, String> {
    stackweave::Runtime::builder()
        .workers(workers)
        .build()
        .map(|rt| &*Box::leak(Box::new(rt)))
        .map_err(|e| format!("cannot build the stackweave runtime: {e}"))
}

fn tokio_rt(workers: Option<usize>) -> Result<&'static tokio::runtime::Runtime, String> {
    let built = match workers {
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .build(),
        None => tokio::runtime::Builder::new_current_thread().build(),
    };
    built
        .map(|rt| &*Box::leak(Box::new(rt)))
        .map_err(|e| format!("cannot build the tokio runtime: {e}"))
}

/// A sample that runs on the runtime `rt` once it is built, or fails with its error.
fn on<R: 'static + Sync>(
    rt: Result<&'static R, String>,
    f: fn(&'static R, u64) -> Result<Measure, String>,
) -> impl FnMut(u64) -> Result<Measure, String> + Send + 'static {
    move |n| f(rt.clone()?, n)
}

fn join_error(what: &str) -> impl Fn(Box<dyn Any + Send>) -> String + '_ {
    move |p| format!("{what} panicked: {}", panic_message(&*p))
}

/// Checks an echoed message.
fn check_echo(got: u64, sent: u64) -> Result<(), String> {
    if got == sent {
        Ok(())
    } else {
        Err(format!("sent {sent}, got {got} back"))
    }
}

fn check_count(count: u64, n: u64) -> Result<(), String> {
    if count == n {
        Ok(())
    } else {
        Err(format!("WRONG COUNT: {count} after {n} increments"))
    }
}

// ---------------------------------------------------------------------------------
// Channel ping-pong

/// How long the forced placements wait for the other worker to start a coroutine.
const PLACE_LIMIT: Duration = Duration::from_secs(5);

/// Spins (without yielding: the worker stays busy) until `done()`; an error after
/// [`PLACE_LIMIT`].
fn spin_until(what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > PLACE_LIMIT {
            return Err(format!(
                "timed out after {PLACE_LIMIT:?} waiting for {what}"
            ));
        }
        std::hint::spin_loop();
    }
    Ok(())
}

/// The stackweave ping-pong with `make()` making each of the two channels.
///
/// Without `force_cross`, A and B are both spawned and the scheduler places them.
/// With it, B is spawned and the calling coroutine (A) spins without yielding until
/// B has started, which only the other worker can do, then plays A itself: a
/// started coroutine never changes worker, so every round trip crosses workers.
fn stackweave_ping<S, R>(
    rt: &stackweave::Runtime,
    n: u64,
    force_cross: bool,
    make: fn() -> (S, R),
    send: fn(&S, u64) -> bool,
    recv: fn(&R) -> Option<u64>,
) -> Result<Measure, String>
where
    S: Send + 'static,
    R: Send + 'static,
{
    rt.block_on(move || {
        let (to_b, from_a) = make();
        let (to_a, from_b) = make();
        let b_thread = Arc::new(Mutex::new(None));
        let b = {
            let b_thread = b_thread.clone();
            stackweave::spawn(move || {
                *b_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread::current().id());
                for _ in 0..n {
                    let v = recv(&from_a).ok_or("B: the channel closed")?;
                    if !send(&to_a, v) {
                        return Err("B: the channel closed".to_string());
                    }
                }
                Ok(())
            })
        };
        let play_a = move || {
            let me = thread::current().id();
            let start = Instant::now();
            for i in 0..n {
                if !send(&to_b, i) {
                    return Err("A: the channel closed".to_string());
                }
                check_echo(recv(&from_b).ok_or("A: the channel closed")?, i)?;
            }
            Ok((start.elapsed(), me))
        };
        let ra = if force_cross {
            spin_until("B to start on the other worker", || {
                b_thread.lock().unwrap_or_else(|e| e.into_inner()).is_some()
            })?;
            play_a()
        } else {
            stackweave::spawn(play_a).join().map_err(join_error("A"))?
        };
        let rb = b.join().map_err(join_error("B"))?;
        let (elapsed, a_thread) = ra?;
        rb?;
        let b_thread = *b_thread.lock().unwrap_or_else(|e| e.into_inner());
        if force_cross && b_thread == Some(a_thread) {
            return Err("forced cross-worker, yet A and B ran on one worker".to_string());
        }
        let placement = if b_thread == Some(a_thread) {
            "same worker"
        } else {
            "cross-worker"
        };
        Ok(Measure {
            placement: Some(placement.to_string()),
            ..Measure::time(elapsed)
        })
    })
}

fn stackweave_channel(
    rt: &'static stackweave::Runtime,
    n: u64,
    force_cross: bool,
) -> Result<Measure, String> {
    use stackweave::sync::mpsc::{channel, Receiver, Sender};
    stackweave_ping(
        rt,
        n,
        force_cross,
        channel::<u64>,
        |s: &Sender<u64>, v| s.send(v).is_ok(),
        |r: &Receiver<u64>| r.recv().ok(),
    )
}

fn stackweave_sync_channel(rt: &'static stackweave::Runtime, n: u64) -> Result<Measure, String> {
    use stackweave::sync::mpsc::{sync_channel, Receiver, SyncSender};
    stackweave_ping(
        rt,
        n,
        false,
        || sync_channel::<u64>(1),
        |s: &SyncSender<u64>, v| s.send(v).is_ok(),
        |r: &Receiver<u64>| r.recv().ok(),
    )
}

fn tokio_unbounded(rt: &'static tokio::runtime::Runtime, n: u64) -> Result<Measure, String> {
    use tokio::sync::mpsc::unbounded_channel;
    rt.block_on(async move {
        let (to_b, mut from_a) = unbounded_channel::<u64>();
        let (to_a, mut from_b) = unbounded_channel::<u64>();
        let b = tokio::spawn(async move {
            for _ in 0..n {
                let v = from_a.recv().await.ok_or("B: the channel closed")?;
                to_a.send(v).map_err(|_| "B: the channel closed")?;
            }
            Ok::<_, &str>(())
        });
        let a = tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..n {
                to_b.send(i).map_err(|_| "A: the channel closed")?;
                check_echo(from_b.recv().await.ok_or("A: the channel closed")?, i)?;
            }
            Ok::<_, String>(start.elapsed())
        });
        let elapsed = a.await.map_err(|e| e.to_string())??;
        b.await.map_err(|e| e.to_string())??;
        Ok(Measure::time(elapsed))
    })
}

fn tokio_bounded1(rt: &'static tokio::runtime::Runtime, n: u64) -> Result<Measure, String> {
    use tokio::sync::mpsc::channel;
    rt.block_on(async move {
        let (to_b, mut from_a) = channel::<u64>(1);
        let (to_a, mut from_b) = channel::<u64>(1);
        let b = tokio::spawn(async move {
            for _ in 0..n {
                let v = from_a.recv().await.ok_or("B: the channel closed")?;
                to_a.send(v).await.map_err(|_| "B: the channel closed")?;
            }
            Ok::<_, &str>(())
        });
        let a = tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..n {
                to_b.send(i).await.map_err(|_| "A: the channel closed")?;
                check_echo(from_b.recv().await.ok_or("A: the channel closed")?, i)?;
            }
            Ok::<_, String>(start.elapsed())
        });
        let elapsed = a.await.map_err(|e| e.to_string())??;
        b.await.map_err(|e| e.to_string())??;
        Ok(Measure::time(elapsed))
    })
}

fn may_channel(n: u64) -> Result<Measure, String> {
    use may::sync::mpsc::channel;
    let (to_b, from_a) = channel::<u64>();
    let (to_a, from_b) = channel::<u64>();
    // SAFETY: the coroutine uses no thread-locals and little stack.
    let b = unsafe {
        may::coroutine::spawn(move || {
            for _ in 0..n {
                let v = from_a.recv().map_err(|_| "B: the channel closed")?;
                to_a.send(v).map_err(|_| "B: the channel closed")?;
            }
            Ok::<_, &str>(())
        })
    };
    // SAFETY: as above.
    let a = unsafe {
        may::coroutine::spawn(move || {
            let start = Instant::now();
            for i in 0..n {
                to_b.send(i).map_err(|_| "A: the channel closed")?;
                check_echo(from_b.recv().map_err(|_| "A: the channel closed")?, i)?;
            }
            Ok::<_, String>(start.elapsed())
        })
    };
    let ra = a.join().map_err(join_error("A"));
    let rb = b.join().map_err(join_error("B"));
    let elapsed = ra??;
    rb??;
    Ok(Measure::time(elapsed))
}

fn thread_channel(n: u64) -> Result<Measure, String> {
    use std::sync::mpsc::channel;
    let (to_b, from_a) = channel::<u64>();
    let (to_a, from_b) = channel::<u64>();
    let b = thread::spawn(move || {
        for _ in 0..n {
            let v = from_a.recv().map_err(|_| "B: the channel closed")?;
            to_a.send(v).map_err(|_| "B: the channel closed")?;
        }
        Ok::<_, &str>(())
    });
    let start = Instant::now();
    for i in 0..n {
        to_b.send(i).map_err(|_| "A: the channel closed")?;
        check_echo(from_b.recv().map_err(|_| "A: the channel closed")?, i)?;
    }
    let elapsed = start.elapsed();
    b.join().map_err(join_error("B"))??;
    Ok(Measure::time(elapsed))
}

// ---------------------------------------------------------------------------------
// Contended mutex

/// Counts the tasks that started on each OS thread.
#[derive(Clone, Default)]
struct Threads(Arc<Mutex<HashMap<ThreadId, usize>>>);

impl Threads {
    /// Records the calling thread.
    fn note(&self) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(thread::current().id()).or_default() += 1;
    }

    /// Tasks per thread, most first: "5+3", or "8" when all ran on one thread.
    fn placement(&self) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts: Vec<usize> = map.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
        Some(format!("tasks per thread {}", counts.join("+")))
    }
}

/// The stackweave mutex sample. Without `force_spread` the scheduler places the
/// tasks. With it, they run 4 on each worker: the calling coroutine (on worker X)
/// holds the lock, spawns the first half and spins without yielding until they
/// have all started, which only the other worker Y can do; three of them then wait
/// for the lock on Y, and the last one keeps Y busy (spinning) until the second
/// half, spawned next, has started on X (the caller yields meanwhile, so X starts
/// them and Y cannot steal them). Then the clock starts and the lock is released.
fn stackweave_mutex(
    rt: &stackweave::Runtime,
    n: u64,
    yield_inside: bool,
    force_spread: bool,
) -> Result<Measure, String> {
    use stackweave::sync::Mutex as SwMutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    rt.block_on(move || {
        let per = n / TASKS;
        let half = TASKS / 2;
        let counter = Arc::new(SwMutex::new(0u64));
        let threads = Threads::default();
        let started = Arc::new(AtomicU64::new(0));
        let spawn_task = || {
            let (counter, threads, started) = (counter.clone(), threads.clone(), started.clone());
            stackweave::spawn(move || {
                threads.note();
                let k = started.fetch_add(1, Ordering::AcqRel) + 1;
                if force_spread && k == half {
                    // The last of the first half: hold this worker until the second
                    // half has started on the other one (the caller times out).
                    let limit = Instant::now() + PLACE_LIMIT;
                    while started.load(Ordering::Acquire) < TASKS && Instant::now() < limit {
                        std::hint::spin_loop();
                    }
                }
                for _ in 0..per {
                    let mut count = counter.lock().unwrap();
                    *count += 1;
                    if yield_inside {
                        stackweave::yield_now();
                    }
                }
            })
        };
        let mut handles = Vec::with_capacity(TASKS as usize);
        let start;
        if force_spread {
            let guard = counter.lock().map_err(|_| "poisoned")?;
            handles.extend((0..half).map(|_| spawn_task()));
            spin_until(
                "the first half of the tasks to start on the other worker",
                || started.load(Ordering::Acquire) >= half,
            )?;
            handles.extend((half..TASKS).map(|_| spawn_task()));
            let limit = Instant::now() + PLACE_LIMIT;
            while started.load(Ordering::Acquire) < TASKS {
                if Instant::now() > limit {
                    return Err(format!(
                        "timed out after {PLACE_LIMIT:?} waiting for the second half of the \
                         tasks to start"
                    ));
                }
                stackweave::yield_now();
            }
            start = Instant::now();
            drop(guard);
        } else {
            start = Instant::now();
            handles.extend((0..TASKS).map(|_| spawn_task()));
        }
        for h in handles {
            h.join().map_err(join_error("a task"))?;
        }
        let elapsed = start.elapsed();
        let count = *counter.lock().map_err(|_| "poisoned")?;
        check_count(count, per * TASKS)?;
        let placement = threads.placement();
        if force_spread && placement.as_deref() != Some("tasks per thread 4+4") {
            return Err(format!(
                "forced spread failed: {}",
                placement.unwrap_or_default()
            ));
        }
        Ok(Measure {
            placement,
            ..Measure::time(elapsed)
        })
    })
}

fn tokio_mutex(
    rt: &tokio::runtime::Runtime,
    n: u64,
    yield_inside: bool,
) -> Result<Measure, String> {
    use tokio::sync::Mutex as TokioMutex;
    rt.block_on(async move {
        let per = n / TASKS;
        let counter = Arc::new(TokioMutex::new(0u64));
        let threads = Threads::default();
        let start = Instant::now();
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let (counter, threads) = (counter.clone(), threads.clone());
                tokio::spawn(async move {
                    threads.note();
                    for _ in 0..per {
                        let mut count = counter.lock().await;
                        *count += 1;
                        if yield_inside {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.map_err(|e| e.to_string())?;
        }
        let elapsed = start.elapsed();
        let count = *counter.lock().await;
        check_count(count, per * TASKS)?;
        Ok(Measure {
            placement: threads.placement(),
            ..Measure::time(elapsed)
        })
    })
}

fn may_mutex(n: u64, yield_inside: bool) -> Result<Measure, String> {
    use may::sync::Mutex as MayMutex;
    let per = n / TASKS;
    let counter = Arc::new(MayMutex::new(0u64));
    let threads = Threads::default();
    let start = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let (counter, threads) = (counter.clone(), threads.clone());
            // SAFETY: the coroutine uses no thread-locals and little stack.
            unsafe {
                may::coroutine::spawn(move || {
                    threads.note();
                    for _ in 0..per {
                        let mut count = counter.lock().unwrap();
                        *count += 1;
                        if yield_inside {
                            may::coroutine::yield_now();
                        }
                    }
                })
            }
        })
        .collect();
    for h in handles {
        h.join().map_err(join_error("a task"))?;
    }
    let elapsed = start.elapsed();
    let count = *counter.lock().map_err(|_| "poisoned")?;
    check_count(count, per * TASKS)?;
    Ok(Measure {
        placement: threads.placement(),
        ..Measure::time(elapsed)
    })
}

fn thread_mutex(n: u64) -> Result<Measure, String> {
    let per = n / TASKS;
    let counter = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let counter = counter.clone();
            thread::spawn(move || {
                for _ in 0..per {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(join_error("a thread"))?;
    }
    let elapsed = start.elapsed();
    let count = *counter.lock().map_err(|_| "poisoned")?;
    check_count(count, per * TASKS)?;
    Ok(Measure::time(elapsed))
}

// ---------------------------------------------------------------------------------

fn main() {
    let (cfg, mode) = match harness::quick_mode() {
        Some(why) => (Config::QUICK, why),
        None => (Config::FULL, "full"),
    };

    // may's scheduler is global and starts on first use: configure it first.
    may::config().set_workers(2).set_worker_pin(false);

    let (ping, locks, locks_yield) = (cfg.ping, cfg.locks, cfg.locks_yield);
    let sw = ("stackweave", None);
    let mut contenders = vec![
        Contender::new(
            Group::Channel,
            "stackweave mpsc::channel(), 2 workers",
            sw,
            ping,
            on(stackweave_rt(2), |rt, n| stackweave_channel(rt, n, false)),
        ),
        Contender::new(
            Group::Channel,
            "tokio mpsc::unbounded_channel, 2 workers",
            ("tokio", Some("stackweave")),
            ping,
            on(tokio_rt(Some(2)), tokio_unbounded),
        ),
        Contender::new(
            Group::Channel,
            "may mpsc::channel, 2 workers",
            ("may", Some("stackweave")),
            ping,
            may_channel,
        ),
        Contender::new(
            Group::Channel,
            "std mpsc::channel, 2 threads",
            ("std", Some("stackweave")),
            ping,
            thread_channel,
        ),
        Contender::new(
            Group::Channel,
            "stackweave mpsc::channel(), 2 workers, forced cross-worker",
            ("stackweave-x", Some("stackweave")),
            ping,
            on(stackweave_rt(2), |rt, n| stackweave_channel(rt, n, true)),
        ),
        Contender::new(
            Group::Channel,
            "stackweave mpsc::channel(), 1 worker",
            ("stackweave-1w", None),
            ping,
            on(stackweave_rt(1), |rt, n| stackweave_channel(rt, n, false)),
        ),
        Contender::new(
            Group::Channel,
            "tokio mpsc::unbounded_channel, current_thread",
            ("tokio-ct", Some("stackweave-1w")),
            ping,
            on(tokio_rt(None), tokio_unbounded),
        ),
        Contender::new(
            Group::Channel,
            "stackweave mpsc::sync_channel(1), 2 workers",
            ("stackweave-sync1", None),
            ping,
            on(stackweave_rt(2), stackweave_sync_channel),
        ),
        Contender::new(
            Group::Channel,
            "tokio mpsc::channel(1), 2 workers",
            ("tokio-bounded1", Some("stackweave-sync1")),
            ping,
            on(tokio_rt(Some(2)), tokio_bounded1),
        ),
        Contender::new(
            Group::Mutex,
            "stackweave sync::Mutex, 2 workers",
            sw,
            locks,
            on(stackweave_rt(2), |rt, n| {
                stackweave_mutex(rt, n, false, false)
            }),
        ),
        Contender::new(
            Group::Mutex,
            "stackweave sync::Mutex, 2 workers, forced onto both",
            ("stackweave-spread", Some("stackweave")),
            locks,
            on(stackweave_rt(2), |rt, n| {
                stackweave_mutex(rt, n, false, true)
            }),
        ),
        Contender::new(
            Group::Mutex,
            "tokio sync::Mutex, 2 workers",
            ("tokio", Some("stackweave")),
            locks,
            on(tokio_rt(Some(2)), |rt, n| tokio_mutex(rt, n, false)),
        ),
        Contender::new(
            Group::Mutex,
            "may sync::Mutex, 2 workers",
            ("may", Some("stackweave")),
            locks,
            |n| may_mutex(n, false),
        ),
        Contender::new(
            Group::Mutex,
            format!("std::sync::Mutex, {TASKS} threads"),
            ("std", Some("stackweave")),
            locks,
            thread_mutex,
        ),
        Contender::new(
            Group::MutexYield,
            "stackweave sync::Mutex + yield_now(), 2 workers",
            sw,
            locks_yield,
            on(stackweave_rt(2), |rt, n| {
                stackweave_mutex(rt, n, true, false)
            }),
        ),
        Contender::new(
            Group::MutexYield,
            "stackweave sync::Mutex + yield_now(), 2 workers, forced onto both",
            ("stackweave-spread", Some("stackweave")),
            locks_yield,
            on(stackweave_rt(2), |rt, n| {
                stackweave_mutex(rt, n, true, true)
            }),
        ),
        Contender::new(
            Group::MutexYield,
            "tokio sync::Mutex + yield_now().await, 2 workers",
            ("tokio", Some("stackweave")),
            locks_yield,
            on(tokio_rt(Some(2)), |rt, n| tokio_mutex(rt, n, true)),
        ),
        Contender::new(
            Group::MutexYield,
            "may sync::Mutex + yield_now(), 2 workers",
            ("may", Some("stackweave")),
            locks_yield,
            |n| may_mutex(n, true),
        ),
        Contender::not_applicable(
            Group::MutexYield,
            &format!("std::sync::Mutex, {TASKS} threads"),
            "std",
            "n/a (threads have no yield_now to hold the lock across)",
        ),
    ];

    // Like a libtest filter: free arguments keep only the contenders whose name
    // contains one of them (for profiling one row).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() {
        contenders.retain(|c| filters.iter().any(|f| c.name.contains(f.as_str())));
        println!("filtered to the contenders matching {filters:?}");
    }

    println!(
        "machine: {}; {} CPUs; load average before the run: {}",
        harness::cpu_model(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        harness::load_average()
    );
    println!(
        "stackweave: switch backend {}; may: {} workers, core pinning off",
        stackweave::SWITCH_BACKEND,
        may::config().get_workers(),
    );
    println!(
        "mode: {mode}; {} rounds; ping-pong {ping} round trips; mutex {locks} locks \
         ({TASKS} tasks x {}), with yield {locks_yield} ({TASKS} x {}); sample limit {:?}",
        cfg.rounds,
        locks / TASKS,
        locks_yield / TASKS,
        cfg.limit,
    );
    if cfg!(debug_assertions) {
        println!("warning: built without optimizations; the numbers mean little");
    }

    let total = Instant::now();
    for c in &mut contenders {
        c.sample((c.size / 10).max(TASKS), false, cfg.limit);
    }
    let n = contenders.len();
    for round in 0..cfg.rounds {
        for k in 0..n {
            let c = &mut contenders[(round + k) % n];
            c.sample(c.size, true, cfg.limit);
        }
    }

    print_table(&contenders);
    print_notes(&contenders);
    print_goal(&contenders);
    println!("\nload average after the run: {}", harness::load_average());
    println!("total time {:.1} s", total.elapsed().as_secs_f64());
    // A hung sample thread (if any) must not keep the process alive.
    std::process::exit(0);
}

/// The median of a row; `None` if it failed or was filtered out.
fn find(contenders: &[Contender], group: Group, short: &str) -> Option<f64> {
    contenders
        .iter()
        .find(|c| c.group == group && c.short == short)
        .and_then(Contender::median)
}

fn print_table(contenders: &[Contender]) {
    let name_width = contenders.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!();
    println!(
        "{:<name_width$}  {:>11}  {:>11}  {:>11}  ratio of medians",
        "benchmark", "median", "min", "max"
    );
    let mut group = None;
    for c in contenders {
        if group != Some(c.group) {
            group = Some(c.group);
            println!("-- {}", c.group.title());
        }
        if c.run.is_none() {
            println!("{:<name_width$}  {}", c.name, c.na);
            continue;
        }
        if let Some(e) = &c.error {
            println!("{:<name_width$}  FAILED: {e}", c.name);
            continue;
        }
        if c.samples.is_empty() {
            println!("{:<name_width$}  no samples", c.name);
            continue;
        }
        let (median, min, max) = summary(&c.samples);
        let ratio = match c.vs {
            None => "(baseline)".to_string(),
            Some(vs) => match find(contenders, c.group, vs) {
                Some(base) => format!("{}/{vs} = {:.2}x", c.short, median / base),
                None => format!("{vs} failed or not run"),
            },
        };
        let cell = |v: f64| format!("{v:.1} ns");
        println!(
            "{:<name_width$}  {:>11}  {:>11}  {:>11}  {ratio}",
            c.name,
            cell(median),
            cell(min),
            cell(max)
        );
    }
}

fn print_notes(contenders: &[Contender]) {
    println!("\nplacement per sample (value per operation, where the tasks ran):");
    for c in contenders.iter().filter(|c| !c.placements.is_empty()) {
        let cells: Vec<String> = c
            .placements
            .iter()
            .map(|(v, p)| format!("{v:.0} ns {p}"))
            .collect();
        println!("  {}: {}", c.name, cells.join(", "));
    }
}

fn print_goal(contenders: &[Contender]) {
    println!("\ngoal: stackweave ahead of tokio and may on both (rival/stackweave > 1.00x)");
    let mut behind = Vec::new();
    for (group, sw, what) in [
        (Group::Channel, "stackweave", "channel ping-pong, 2 workers"),
        (Group::Mutex, "stackweave", "contended mutex"),
        (
            Group::Mutex,
            "stackweave-spread",
            "  same, stackweave forced onto both",
        ),
        (
            Group::MutexYield,
            "stackweave",
            "contended mutex, yield inside",
        ),
        (
            Group::MutexYield,
            "stackweave-spread",
            "  same, stackweave forced onto both",
        ),
    ] {
        let base = find(contenders, group, sw);
        let cells: Vec<String> = ["tokio", "may"]
            .iter()
            .map(|rival| match (base, find(contenders, group, rival)) {
                (Some(b), Some(r)) => {
                    let ratio = r / b;
                    let verdict = if ratio > 1.0 { "ahead" } else { "BEHIND" };
                    if ratio <= 1.0 {
                        behind.push(format!("{} vs {rival}", what.trim()));
                    }
                    format!("{rival}/{sw} = {ratio:.2}x ({verdict})")
                }
                (None, _) => {
                    behind.push(format!("{}: {sw} failed or not run", what.trim()));
                    format!("{rival}: {sw} failed or not run")
                }
                (_, None) => format!("{rival} failed or not run"),
            })
            .collect();
        println!("  {what:<36} {}", cells.join(", "));
    }
    behind.dedup();
    if behind.is_empty() {
        println!("  => met");
    } else {
        println!("  => NOT met: {}", behind.join("; "));
    }
}
