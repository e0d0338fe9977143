//! The rows of the comparison: what each measures, in which unit, at which sizes,
//! and what exactly runs for each rival (the text under the table). A sample runs
//! in its own child process and reports one line, `RESULT value=… key=…`
//! (`sample.rs`).

use crate::sample::Sample;
use crate::servers::Rival;
use crate::sync_tasks::MUTEX_TASKS;
use crate::{net, placement, sync_tasks, tasks};
use std::time::Duration;

/// One workload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Row {
    Switch,
    Yield,
    Spawn,
    SpawnAll,
    PingPong,
    PingPong1w,
    PingPongBounded,
    Park,
    Mutex,
    MutexYield,
    IdleSmall,
    IdleLarge,
    Echo,
    Http100,
    Http1000,
    IdleConns,
    Placement,
    Hog,
    Scaling,
}

/// How big a sample is: full or `--quick`.
pub struct Sizes {
    /// Switch and yield rows (threads run a tenth of it).
    pub round_trips: u64,
    /// Spawn + join: tasks in all, in waves of `spawn_wave` (threads: a tenth).
    pub spawn_total: u64,
    pub spawn_wave: u64,
    /// Channel round trips, 2 workers and 1 (threads: a tenth).
    pub ping_pongs: u64,
    /// Park/unpark round trips (threads: a tenth).
    pub parks: u64,
    /// Lock + unlock operations per mutex sample (all tasks together), without and
    /// with a yield inside.
    pub locks: u64,
    pub locks_yield: u64,
    /// Idle tasks alive at once, for the two memory rows.
    pub idle_small: u64,
    pub idle_large: u64,
    /// Echo load: unmeasured warm-up, then the measured window.
    pub warmup: Duration,
    pub measure: Duration,
    /// wrk: seconds of the measured run (after a 1 s warm-up run when full).
    pub wrk_secs: u64,
    pub wrk_warmup: bool,
    /// Idle connections held open against one server.
    pub idle_conns: usize,
    /// Placement: trials (100 new connections each) per sample.
    pub trials: usize,
    /// Hog: unmeasured warm-up, then the measured window.
    pub hog_warmup: Duration,
    pub hog_measure: Duration,
    /// Scaling: the worker count compared with 1 (`--workers N`, default 2).
    pub workers: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                round_trips: 100_000,
                spawn_total: 20_000,
                spawn_wave: 10_000,
                ping_pongs: 10_000,
                parks: 10_000,
                locks: 200_000,
                locks_yield: 40_000,
                idle_small: 10_000,
                idle_large: 100_000,
                warmup: Duration::from_millis(200),
                measure: Duration::from_millis(500),
                wrk_secs: 1,
                wrk_warmup: false,
                idle_conns: 1_000,
                trials: 10,
                hog_warmup: Duration::from_millis(300),
                hog_measure: Duration::from_secs(1),
                workers: scaling_workers(),
            }
        } else {
            Sizes {
                round_trips: 1_000_000,
                spawn_total: 100_000,
                spawn_wave: 10_000,
                ping_pongs: 100_000,
                parks: 100_000,
                locks: 1_000_000,
                locks_yield: 200_000,
                idle_small: 100_000,
                idle_large: 1_000_000,
                warmup: Duration::from_millis(500),
                measure: Duration::from_secs(3),
                wrk_secs: 3,
                wrk_warmup: true,
                idle_conns: 10_000,
                trials: 10,
                hog_warmup: Duration::from_millis(500),
                hog_measure: Duration::from_millis(3500),
                workers: scaling_workers(),
            }
        }
    }
}

/// The value of `--NAME N` on this process's command line, if it has a number.
pub fn arg_number(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

/// The scaling row's worker count (`--workers N`, default 2; the parent passes it
/// on to every sample).
pub fn scaling_workers() -> usize {
    arg_number("--workers").map_or(2, |n| n.max(1) as usize)
}

impl Row {
    pub const ALL: [Row; 19] = [
        Row::Switch,
        Row::Yield,
        Row::Spawn,
        Row::SpawnAll,
        Row::PingPong,
        Row::PingPong1w,
        Row::PingPongBounded,
        Row::Park,
        Row::Mutex,
        Row::MutexYield,
        Row::IdleSmall,
        Row::IdleLarge,
        Row::Echo,
        Row::Http100,
        Row::Http1000,
        Row::IdleConns,
        Row::Placement,
        Row::Hog,
        Row::Scaling,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Row::Switch => "switch",
            Row::Yield => "yield",
            Row::Spawn => "spawn",
            Row::SpawnAll => "spawn-all",
            Row::PingPong => "pingpong",
            Row::PingPong1w => "pingpong-1w",
            Row::PingPongBounded => "pingpong-cap1",
            Row::Park => "park",
            Row::Mutex => "mutex",
            Row::MutexYield => "mutex-yield",
            Row::IdleSmall => "idle-small",
            Row::IdleLarge => "idle-large",
            Row::Echo => "echo",
            Row::Http100 => "http-100",
            Row::Http1000 => "http-1000",
            Row::IdleConns => "idle-conns",
            Row::Placement => "placement",
            Row::Hog => "hog",
            Row::Scaling => "scaling",
        }
    }

    pub fn from_id(id: &str) -> Option<Row> {
        Row::ALL.into_iter().find(|r| r.id() == id)
    }

    /// The row's heading, with its sizes.
    pub fn title(self, quick: bool) -> String {
        let z = Sizes::new(quick);
        match self {
            Row::Switch => "context switch round trip".into(),
            Row::Yield => "yield_now round trip, 2 tasks on 1 worker".into(),
            Row::Spawn => format!(
                "spawn + join of {} empty tasks, waves of {}",
                thousands(z.spawn_total),
                thousands(z.spawn_wave)
            ),
            Row::SpawnAll => format!(
                "spawn {} empty tasks, then join them all",
                thousands(z.spawn_total)
            ),
            Row::PingPong => "channel ping-pong round trip, 2 workers".into(),
            Row::PingPong1w => "channel ping-pong round trip, 1 worker".into(),
            Row::PingPongBounded => {
                "bounded channel (capacity 1) ping-pong round trip, 2 workers".into()
            }
            Row::Park => "park/unpark ping-pong round trip, 2 workers".into(),
            Row::Mutex => format!(
                "contended mutex, {MUTEX_TASKS} tasks, lock + increment + unlock, 2 workers"
            ),
            Row::MutexYield => {
                format!("contended mutex, {MUTEX_TASKS} tasks, yield while holding it, 2 workers")
            }
            Row::IdleSmall => format!("RSS per idle task, {} sleeping", thousands(z.idle_small)),
            Row::IdleLarge => format!("RSS per idle task, {} sleeping", thousands(z.idle_large)),
            Row::Echo => "TCP echo, 100 connections x 64 B".into(),
            Row::Http100 => "HTTP/1.1 hello (wrk), 100 connections".into(),
            Row::Http1000 => "HTTP/1.1 hello (wrk), 1,000 connections".into(),
            Row::IdleConns => format!(
                "server RSS per idle connection, {} open",
                thousands(z.idle_conns as u64)
            ),
            Row::Placement => format!(
                "smaller worker's share of 100 new connections, worst of {} trials, \
                 1 accept loop, 2 workers",
                z.trials
            ),
            Row::Hog => "p99 echo latency while 1 request in 100 spins 50 ms, 100 connections, \
                         2 workers"
                .into(),
            Row::Scaling => format!(
                "CPU-bound echo (~20 µs a request): req/s on {} workers over req/s on 1",
                z.workers
            ),
        }
    }

    /// A short label for the chart.
    pub fn short(self, quick: bool) -> String {
        let z = Sizes::new(quick);
        match self {
            Row::Switch => "switch".into(),
            Row::Yield => "yield".into(),
            Row::Spawn => "spawn waves".into(),
            Row::SpawnAll => "spawn all".into(),
            Row::PingPong => "ping-pong".into(),
            Row::PingPong1w => "ping-pong 1w".into(),
            Row::PingPongBounded => "ping-pong cap 1".into(),
            Row::Park => "park/unpark".into(),
            Row::Mutex => "mutex".into(),
            Row::MutexYield => "mutex+yield".into(),
            Row::IdleSmall => format!("idle {}", short_count(z.idle_small)),
            Row::IdleLarge => format!("idle {}", short_count(z.idle_large)),
            Row::Echo => "echo".into(),
            Row::Http100 => "http 100".into(),
            Row::Http1000 => "http 1k".into(),
            Row::IdleConns => format!("conns {}", short_count(z.idle_conns as u64)),
            Row::Placement => "placement".into(),
            Row::Hog => "hog p99".into(),
            Row::Scaling => format!("scaling {}/1", z.workers),
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Row::Switch
            | Row::Yield
            | Row::Spawn
            | Row::SpawnAll
            | Row::PingPong
            | Row::PingPong1w
            | Row::PingPongBounded
            | Row::Park
            | Row::Mutex
            | Row::MutexYield => "ns",
            Row::IdleSmall | Row::IdleLarge | Row::IdleConns => "KiB",
            Row::Echo | Row::Http100 | Row::Http1000 => "req/s",
            Row::Placement => "%",
            Row::Hog => "ms",
            Row::Scaling => "x",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Row::Echo | Row::Http100 | Row::Http1000 | Row::Placement | Row::Scaling
        )
    }

    /// "higher" or "lower": which way this row's value is better.
    pub fn better(self) -> &'static str {
        if self.higher_is_better() {
            "higher"
        } else {
            "lower"
        }
    }

    pub fn needs_wrk(self) -> bool {
        matches!(self, Row::Http100 | Row::Http1000)
    }

    /// The extra metrics a sample of this row carries: (key, unit); lower is better
    /// unless [`Row::extra_higher_is_better`] says otherwise.
    pub fn extras(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Row::IdleSmall | Row::IdleLarge => &[("page_tables", "KiB")],
            Row::Echo => &[("p50", "µs"), ("p99", "µs")],
            Row::Http100 | Row::Http1000 => &[("p50", "ms"), ("p99", "ms")],
            Row::IdleConns => &[("server_total", "MiB")],
            Row::Placement => &[("mean", "%")],
            Row::Hog => &[("p50", "ms"), ("p90", "ms"), ("requests", ""), ("hogs", "")],
            Row::Scaling => &[("rps_1", "req/s"), ("rps_n", "req/s")],
            _ => &[],
        }
    }

    /// Whether more is better for the extra metric `key` (shares, req/s, requests
    /// served).
    pub fn extra_higher_is_better(self, key: &str) -> bool {
        matches!(
            (self, key),
            (Row::Placement, "mean") | (Row::Scaling, _) | (Row::Hog, "requests" | "hogs")
        )
    }

    /// Why this row does not run for `rival`, if it does not (the cell's text).
    pub fn not_applicable(self, rival: Rival, quick: bool) -> Option<String> {
        match (self, rival) {
            (Row::Placement, Rival::Threads) => Some(
                "n/a: a thread per connection has no workers to start on (the kernel places \
                 each thread)"
                    .into(),
            ),
            (Row::PingPongBounded, Rival::May) => {
                Some("n/a: may's sync::mpsc has no bounded channel".into())
            }
            (Row::MutexYield, Rival::Threads) => {
                Some("n/a: threads have no yield_now to hold the lock across".into())
            }
            (Row::Scaling, Rival::Threads) => Some(format!(
                "n/a: a thread per connection cannot be held to 1 or {} workers",
                Sizes::new(quick).workers
            )),
            _ => None,
        }
    }

    /// One sample as a progress line.
    pub fn format_sample(self, s: &Sample) -> String {
        let mut line = format!("{} {}", number(s.value), self.unit());
        for (k, unit) in self.extras() {
            if let Some(v) = s.extra(k) {
                line.push_str(&format!("  {k} {}", with_unit(v, unit)));
            }
        }
        if !s.trials.is_empty() {
            line.push_str(&format!("  {}", s.trials_text()));
        }
        line
    }

    /// Lock + unlock operations per sample of a mutex row (0 for the others).
    fn locks(self, quick: bool) -> u64 {
        let z = Sizes::new(quick);
        match self {
            Row::Mutex => z.locks,
            Row::MutexYield => z.locks_yield,
            _ => 0,
        }
    }

    /// What runs in this row's cell for `rival`.
    pub fn describe(self, rival: Rival, quick: bool) -> String {
        let z = Sizes::new(quick);
        if let Some(why) = self.not_applicable(rival, quick) {
            return why;
        }
        use Rival::*;
        match (self, rival) {
            (Row::Switch, Stackweave) => "Generator::resume + Yielder::suspend".into(),
            (Row::Switch, Tokio) => {
                "2 tasks on a current_thread runtime, task::yield_now (the scheduler is the switch)"
                    .into()
            }
            (Row::Switch, May) => "generator crate (may's switch): resume + yield_".into(),
            (Row::Switch, Threads) => {
                "2 threads pinned to one CPU, park/unpark hand-off (kernel switch)".into()
            }
            (Row::Yield, Stackweave) => "1-worker runtime, stackweave::yield_now".into(),
            (Row::Yield, Tokio) => "current_thread runtime, task::yield_now".into(),
            (Row::Yield, May) => "set_workers(1), coroutine::yield_now".into(),
            (Row::Yield, Threads) => "2 threads pinned to one CPU, thread::yield_now".into(),
            (Row::Spawn, Threads) => format!(
                "{} threads in waves of 1,000 (time per thread)",
                thousands(z.spawn_total / 10)
            ),
            (Row::Spawn, _) => format!(
                "{}: waves of {} spawned, then joined, from inside the runtime",
                workers(rival),
                thousands(z.spawn_wave)
            ),
            (Row::SpawnAll, Threads) => format!(
                "{} threads spawned, then joined (time per thread)",
                thousands(z.spawn_total / 10)
            ),
            (Row::SpawnAll, _) => format!(
                "{}: all spawned, then all joined, from inside the runtime",
                workers(rival)
            ),
            (Row::PingPong, Stackweave) => "2 workers, sync::mpsc (unbounded)".into(),
            (Row::PingPong, Tokio) => "2 workers, sync::mpsc::unbounded_channel".into(),
            (Row::PingPong, May) => "2 workers, sync::mpsc".into(),
            (Row::PingPong, Threads) => "2 threads, std::sync::mpsc".into(),
            (Row::PingPong1w, Stackweave) => "1-worker runtime, sync::mpsc (unbounded)".into(),
            (Row::PingPong1w, Tokio) => {
                "current_thread runtime, sync::mpsc::unbounded_channel".into()
            }
            (Row::PingPong1w, May) => "set_workers(1), sync::mpsc".into(),
            (Row::PingPong1w, Threads) => "2 threads pinned to one CPU, std::sync::mpsc".into(),
            (Row::PingPongBounded, Stackweave) => "2 workers, sync::mpsc::sync_channel(1)".into(),
            (Row::PingPongBounded, Tokio) => {
                "multi-thread, 2 workers, sync::mpsc::channel(1)".into()
            }
            (Row::PingPongBounded, _) => "2 threads, std::sync::mpsc::sync_channel(1)".into(),
            (Row::Park, Stackweave) => {
                "2 workers (the scheduler places the pair), stackweave::park / \
                 Coroutine::unpark, an atomic turn"
                    .into()
            }
            (Row::Park, Tokio) => {
                "multi-thread, 2 workers, two sync::Notify (one per direction)".into()
            }
            (Row::Park, May) => {
                "2 workers, pinning off, coroutine::park / Coroutine::unpark, an atomic turn".into()
            }
            (Row::Park, Threads) => {
                "2 threads, thread::park / Thread::unpark, an atomic turn".into()
            }
            (Row::Mutex | Row::MutexYield, Stackweave) => format!(
                "2 workers, sync::Mutex<u64>, {MUTEX_TASKS} coroutines x {} locks{}",
                thousands(self.locks(quick) / MUTEX_TASKS),
                if self == Row::MutexYield {
                    ", yield_now() inside"
                } else {
                    ""
                }
            ),
            (Row::Mutex | Row::MutexYield, Tokio) => format!(
                "multi-thread, 2 workers, sync::Mutex<u64>, {MUTEX_TASKS} tasks x {} locks{}",
                thousands(self.locks(quick) / MUTEX_TASKS),
                if self == Row::MutexYield {
                    ", yield_now().await inside"
                } else {
                    ""
                }
            ),
            (Row::Mutex | Row::MutexYield, May) => format!(
                "2 workers, pinning off, sync::Mutex<u64>, {MUTEX_TASKS} coroutines x {} \
                 locks{}",
                thousands(self.locks(quick) / MUTEX_TASKS),
                if self == Row::MutexYield {
                    ", coroutine::yield_now() inside"
                } else {
                    ""
                }
            ),
            (Row::Mutex | Row::MutexYield, Threads) => format!(
                "std::sync::Mutex<u64>, {MUTEX_TASKS} threads x {} locks",
                thousands(self.locks(quick) / MUTEX_TASKS)
            ),
            (Row::IdleSmall | Row::IdleLarge, Stackweave) => {
                "time::sleep; default 256 KiB stack reservation (touched pages only)".into()
            }
            (Row::IdleSmall | Row::IdleLarge, Tokio) => "2 workers, time::sleep".into(),
            (Row::IdleSmall | Row::IdleLarge, May) => {
                "2 workers, coroutine::sleep; default stack".into()
            }
            (Row::IdleSmall | Row::IdleLarge, Threads) => {
                "thread::sleep; 16 KiB stacks (the minimum)".into()
            }
            (Row::Echo, _) => format!(
                "{}; one mio client thread; {:.1} s warm-up + {:.1} s",
                rival.describe_server(),
                z.warmup.as_secs_f64(),
                z.measure.as_secs_f64()
            ),
            (Row::Http100 | Row::Http1000, _) => format!(
                "{}; httparse; wrk -t2 --latency, {} s{}",
                rival.describe_server(),
                z.wrk_secs,
                if z.wrk_warmup {
                    " after a 1 s warm-up"
                } else {
                    ""
                }
            ),
            (Row::IdleConns, _) => format!(
                "{}; one echo each, then idle; growth of the server's VmRSS",
                rival.describe_server()
            ),
            (Row::Placement, _) => format!(
                "{}; blocking-style accept loop, a task spawned per connection; per trial \
                 100 connections opened one after another, each handler sends the OS thread \
                 it started on; {} trials, 50 ms apart",
                rival.describe_server(),
                z.trials
            ),
            (Row::Hog, _) => format!(
                "{}; every connection's every 100th request a hog (connection i's first at \
                 request 100 - i); one mio client, closed loop; {:.1} s warm-up + {:.1} s; \
                 latency of the other requests",
                rival.describe_server(),
                z.hog_warmup.as_secs_f64(),
                z.hog_measure.as_secs_f64()
            ),
            (Row::Scaling, _) => format!(
                "{} 1, then {} workers, a task per connection; every 64 B request runs the \
                 same hash loop (~20 µs, iterations calibrated once per run); one mio \
                 client, 100 connections; {:.1} s warm-up + {:.1} s each",
                match rival {
                    Stackweave => "stackweave, Runtime::builder().workers(n):",
                    Tokio => "tokio multi-thread, worker_threads(n):",
                    _ => "may, set_workers(n), pinning off:",
                },
                z.workers,
                z.warmup.as_secs_f64(),
                z.measure.as_secs_f64()
            ),
        }
    }
}

/// "3.50 ms", or a count ("1,817") where there is no unit.
pub fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() && v.is_finite() && v >= 0.0 {
        thousands(v.round() as u64)
    } else {
        format!("{} {unit}", number(v))
    }
}

fn workers(rival: Rival) -> &'static str {
    match rival {
        Rival::Stackweave => "2 workers",
        Rival::Tokio => "multi-thread, 2 workers",
        Rival::May => "2 workers, pinning off",
        Rival::Threads => "threads",
    }
}

/// Runs one sample in this (child) process, prints its result line and exits.
pub fn run_sample(row: Row, rival: Rival, quick: bool) -> ! {
    let z = Sizes::new(quick);
    let result = match row {
        // The parent runs no such sample; one started by hand says why.
        _ if row.not_applicable(rival, quick).is_some() => Err(row.describe(rival, quick)),
        Row::Switch => tasks::switch(rival, &z),
        Row::Yield => tasks::yield_round_trip(rival, &z),
        Row::Spawn => tasks::spawn_join(rival, &z, false),
        Row::SpawnAll => tasks::spawn_join(rival, &z, true),
        Row::PingPong => tasks::ping_pong(rival, &z),
        Row::PingPong1w => sync_tasks::ping_pong_one_worker(rival, &z),
        Row::PingPongBounded => sync_tasks::ping_pong_bounded(rival, &z),
        Row::Park => sync_tasks::park_ping_pong(rival, &z),
        Row::Mutex => sync_tasks::mutex(rival, &z, false),
        Row::MutexYield => sync_tasks::mutex(rival, &z, true),
        Row::IdleSmall => tasks::idle(rival, z.idle_small),
        Row::IdleLarge => tasks::idle(rival, z.idle_large),
        Row::Echo => net::echo(rival, &z),
        Row::Http100 => net::http(rival, &z, 100),
        Row::Http1000 => net::http(rival, &z, 1000),
        Row::IdleConns => net::idle_connections(rival, &z),
        Row::Placement => placement::placement(rival, &z),
        Row::Hog => net::hog(rival, &z),
        Row::Scaling => net::scaling(rival, &z),
    };
    crate::sample::exit_with(result)
}

/// The machine's memory in GiB (rounded).
pub fn mem_total_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: u64 = m
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((kib + (1 << 19)) >> 20)
        })
        .unwrap_or(0)
}

/// "100,000".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "100k", "1M".
fn short_count(n: u64) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// A number with 3–4 significant digits, thousands separated above 10,000.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 10_000.0 {
        thousands(v.round() as u64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v == 0.0 || v.abs() >= 0.01 {
        format!("{v:.2}")
    } else {
        // Such as a latency of a few µs given in ms.
        format!("{v:.4}")
    }
}
