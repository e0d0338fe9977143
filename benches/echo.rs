//! TCP echo benchmark: the same load generator against four echo servers.
//!
//! # What is measured
//!
//! 100 connections to 127.0.0.1, each a request/response ping-pong: the client
//! sends a 64-byte message, waits until its 64-byte echo is back in full, checks
//! it, and sends the next. The servers, each one connection = one task, blocking
//! style where the runtime allows it:
//!
//! * **stackweave**: `Runtime::builder().workers(2)`, an accept loop coroutine
//!   (`TcpListener::incoming`), one coroutine per connection doing `read` +
//!   `write_all`.
//! * **tokio**: multi-thread runtime with `worker_threads(2)`, the accept loop a
//!   spawned task, one `tokio::spawn`ed task per connection with
//!   `AsyncReadExt::read` + `AsyncWriteExt::write_all`.
//! * **may**: `may::config().set_workers(2).set_worker_pin(false)` (as in the
//!   `runtime` bench: may pins its workers to cores by default, and no contender is
//!   pinned), the accept loop a may coroutine, one may coroutine per connection with
//!   `may::net`.
//! * **threads**: `std::net`, one OS thread per connection, the accept loop on the
//!   main thread.
//!
//! Every server sets `TCP_NODELAY` on its connections and echoes through a 4 KiB
//! buffer. Each runs in its own child process (this binary, started again with
//! `--serve echo NAME`; it prints its port and exits when its stdin closes), so only
//! one server is alive at a time and no runtime's threads compete with another's.
//!
//! **The load generator** is the same for every server and cheap: ONE thread, a
//! `mio` event loop (edge-triggered epoll) driving all 100 non-blocking connections
//! (`TCP_NODELAY`); per request one `write` and one `read` (the read is only tried
//! once epoll reports the echo). It runs `warm-up` seconds unmeasured, then
//! `measure` seconds during which every completed request's latency (from the
//! write to the last echoed byte read) goes into an `hdrhistogram`. It stops with an
//! error if no request completes for 2 s (a stall) and, at the end, reports
//! connections whose request has been outstanding for more than 1 s.
//!
//! Beside req/s and latency each run reports CPU during the measured window, in
//! cores (1.00 = one CPU busy all the time): the server process's user+system time
//! (`/proc/PID/stat`) split over its busiest threads (`/proc/PID/task/*/schedstat`),
//! the client thread's (`getrusage(RUSAGE_THREAD)`), and "others": the rest of the
//! machine's busy time (`/proc/stat`), i.e. other processes. On a 2-CPU machine the
//! client and the server's 2 workers share 2 CPUs: the numbers then say which server
//! does its work with the least CPU (the `µs/req` column), not how fast each could
//! go alone; and a high "others" says the run competed with something else.
//!
//! For stackweave it also prints how many connections each worker serves: a started
//! coroutine never changes worker, so this is where the load sits for good.
//!
//! The servers alternate round-robin: every round runs each once (the starting
//! server rotates from round to round), so drift in clock speed or background load
//! hits them all alike. The table shows median, minimum and maximum over the rounds.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench echo             # full: 5 rounds of 0.5 s warm-up + 3 s, ~75 s
//! cargo bench --bench echo -- --quick  # smoke run: 1 round of 0.2 s + 0.5 s
//! ```
//!
//! Run without `--bench` on the command line (as `cargo test --benches` does) the
//! binary also runs quick.
//!
//! # Reading the ratios
//!
//! `stackweave/tokio = 1.10x` under req/s means stackweave served 1.1 times as many
//! requests per second as tokio (above 1: stackweave is better). For p99 latency and
//! CPU per request the ratio is the other way round, rival/stackweave, so that above
//! 1 is again better for stackweave.

#[path = "harness/echo_load.rs"]
mod echo_load;
mod harness;
#[path = "harness/servers.rs"]
mod servers;

use echo_load::{load, RunResult, CONNECTIONS, MSG, STUCK};
use harness::summary;
use servers::{Protocol, Rival, ServerProcess};
use std::thread;
use std::time::{Duration, Instant};

/// Sizes of one run.
struct Config {
    rounds: usize,
    warmup: Duration,
    measure: Duration,
}

impl Config {
    const FULL: Config = Config {
        rounds: 5,
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(3),
    };
    const QUICK: Config = Config {
        rounds: 1,
        warmup: Duration::from_millis(200),
        measure: Duration::from_millis(500),
    };
}

// ---------------------------------------------------------------------------------
// The parent: rounds, table, ratios.

#[derive(Default)]
struct Samples {
    req_per_s: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    max_us: Vec<f64>,
    /// Server CPU in cores during the window, and CPU µs per request.
    server_cores: Vec<f64>,
    server_us_per_req: Vec<f64>,
    client_cores: Vec<f64>,
    /// CPU used by everything else on the machine during the window, in cores.
    others_cores: Vec<f64>,
    errors: Vec<String>,
}

fn one_run(kind: Rival, cfg: &Config) -> Result<RunResult, String> {
    let server = ServerProcess::start(Protocol::Echo, kind)?;
    let result = load(server.addr, server.pid(), cfg.warmup, cfg.measure);
    // The connections are closed by now (`load` returned): stop the server.
    let stopped = server.stop();
    let mut result = result?;
    for line in stopped? {
        if let Some(homes) = line.strip_prefix("HOMES ") {
            result.homes = Some(homes.split(' ').collect::<Vec<_>>().join("/"));
        }
    }
    Ok(result)
}

fn main() {
    servers::serve_if_asked();
    let (cfg, mode) = match harness::quick_mode() {
        Some(why) => (Config::QUICK, why),
        None => (Config::FULL, "full"),
    };

    println!(
        "machine: {} CPUs ({}), Linux {}, load average {} before the run",
        thread::available_parallelism().map_or(0, |n| n.get()),
        harness::cpu_model(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
        harness::load_average()
    );
    println!(
        "echo: {CONNECTIONS} connections x {MSG}-byte request/response ping-pong over \
         127.0.0.1; one single-threaded mio client for every server; each server a \
         child process"
    );
    println!(
        "mode: {mode}; {} rounds; per run {:.1} s warm-up + {:.1} s measured; stackweave \
         switch backend {}",
        cfg.rounds,
        cfg.warmup.as_secs_f64(),
        cfg.measure.as_secs_f64(),
        stackweave::SWITCH_BACKEND
    );
    if cfg!(debug_assertions) {
        println!("warning: built without optimizations; the numbers mean little");
    }
    println!();

    let total = Instant::now();
    let mut samples: Vec<Samples> = Rival::ALL.iter().map(|_| Samples::default()).collect();
    let n = Rival::ALL.len();
    for round in 0..cfg.rounds {
        for k in 0..n {
            let idx = (round + k) % n;
            let kind = Rival::ALL[idx];
            let s = &mut samples[idx];
            match one_run(kind, &cfg) {
                Ok(r) => {
                    let us = |ns: u64| ns as f64 / 1000.0;
                    let (p50, p99, max) = (
                        us(r.latency.value_at_quantile(0.5)),
                        us(r.latency.value_at_quantile(0.99)),
                        us(r.latency.max()),
                    );
                    let cpu = &r.cpu;
                    println!(
                        "round {} {:<10} {:>7.0} req/s  p50 {:>6.1} µs  p99 {:>7.1} µs  \
                         max {:>8.1} µs  CPU: server {} = {}, client {:.2}, others {}{}{}",
                        round + 1,
                        kind.name(),
                        r.req_per_s(),
                        p50,
                        p99,
                        max,
                        cpu.server.map_or("?".into(), |c| format!("{c:.2}")),
                        cpu.threads_summary(),
                        cpu.client,
                        cpu.others.map_or("?".into(), |c| format!("{c:.2}")),
                        r.homes
                            .as_ref()
                            .map_or(String::new(), |h| format!("; connections per worker {h}")),
                        if r.stuck > 0 {
                            format!("  STUCK: {} connections waited > {STUCK:?}", r.stuck)
                        } else {
                            String::new()
                        }
                    );
                    if r.stuck > 0 {
                        s.errors.push(format!(
                            "round {}: {} connections had a request outstanding > {STUCK:?}",
                            round + 1,
                            r.stuck
                        ));
                    }
                    s.req_per_s.push(r.req_per_s());
                    s.p50_us.push(p50);
                    s.p99_us.push(p99);
                    s.max_us.push(max);
                    s.client_cores.push(cpu.client);
                    s.others_cores.extend(cpu.others);
                    if let Some(c) = cpu.server {
                        s.server_cores.push(c);
                        s.server_us_per_req.push(c * 1e6 / r.req_per_s());
                    }
                }
                Err(e) => {
                    println!("round {} {:<10} FAILED: {e}", round + 1, kind.name());
                    s.errors.push(format!("round {}: {e}", round + 1));
                }
            }
        }
    }

    print_table(&samples);
    println!(
        "\ntotal time {:.1} s; load average {} after the run",
        total.elapsed().as_secs_f64(),
        harness::load_average()
    );
}

fn print_table(samples: &[Samples]) {
    let w = Rival::ALL
        .iter()
        .map(|s| s.describe_server().len())
        .max()
        .unwrap_or(0);
    println!();
    println!(
        "{:<w$}  {:>26}  {:>24}  {:>7}  {:>8}  {:>6}  {:>7}  {:>6}  {:>6}",
        "server",
        "req/s median (min-max)",
        "p99 µs median (min-max)",
        "p50 µs",
        "max µs",
        "server",
        "µs/req",
        "client",
        "others"
    );
    for (kind, s) in Rival::ALL.iter().zip(samples) {
        if s.req_per_s.is_empty() {
            println!("{:<w$}  no successful run", kind.describe_server());
            continue;
        }
        let (rps, rps_min, rps_max) = summary(&s.req_per_s);
        let (p99, p99_min, p99_max) = summary(&s.p99_us);
        println!(
            "{:<w$}  {:>26}  {:>24}  {:>7.1}  {:>8.0}  {:>6.2}  {:>7.2}  {:>6.2}  {:>6.2}",
            kind.describe_server(),
            format!("{rps:.0} ({rps_min:.0}-{rps_max:.0})"),
            format!("{p99:.1} ({p99_min:.1}-{p99_max:.1})"),
            median_or_nan(&s.p50_us),
            median_or_nan(&s.max_us),
            median_or_nan(&s.server_cores),
            median_or_nan(&s.server_us_per_req),
            median_or_nan(&s.client_cores),
            median_or_nan(&s.others_cores),
        );
    }
    println!(
        "CPU columns, medians in cores (1.00 = one CPU all the time): server = the server \
         process; µs/req = server CPU time per request; client = the load generator's \
         thread; others = the rest of the machine (other processes, unattributed \
         interrupts)"
    );

    let base = &samples[0];
    if !base.req_per_s.is_empty() {
        let (rps, p99, cpu) = (
            summary(&base.req_per_s).0,
            summary(&base.p99_us).0,
            median_or_nan(&base.server_us_per_req),
        );
        println!("\nratios of medians (above 1.00x: stackweave is better)");
        for (kind, s) in Rival::ALL.iter().zip(samples).skip(1) {
            if s.req_per_s.is_empty() {
                println!("  vs {:<8} (no successful run)", kind.name());
                continue;
            }
            println!(
                "  req/s stackweave/{0} = {1:.2}x   p99 {0}/stackweave = {2:.2}x   \
                 CPU per request {0}/stackweave = {3:.2}x",
                kind.name(),
                rps / summary(&s.req_per_s).0,
                summary(&s.p99_us).0 / p99,
                median_or_nan(&s.server_us_per_req) / cpu,
            );
        }
    }

    let failed: Vec<_> = Rival::ALL
        .iter()
        .zip(samples)
        .filter(|(_, s)| !s.errors.is_empty())
        .collect();
    if !failed.is_empty() {
        println!("\nERRORS:");
        for (kind, s) in failed {
            for e in &s.errors {
                println!("  {}: {e}", kind.name());
            }
        }
    }
}

fn median_or_nan(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        summary(v).0
    }
}
