//! The network rows: TCP echo (the mio load generator of `benches/echo.rs`), the
//! same with hog requests and with CPU-bound requests, HTTP loaded by `wrk`, and the
//! server's memory per idle connection. Each sample starts the rival's server as a
//! child process (`benches/harness/servers.rs`) and loads it from the sample
//! process.

use crate::echo_load::{load, load_with_hogs, Hogs, RunResult, MSG};
use crate::harness::status_bytes;
use crate::rows::{arg_number, Sizes};
use crate::sample::Sample;
use crate::servers::work::{self, FRAME, HOG_MARK};
use crate::servers::{Protocol, Rival, ServerProcess, ServerSpec};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

pub fn echo(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let server = ServerProcess::start(Protocol::Echo, rival)?;
    let result = load(server.addr, server.pid(), z.warmup, z.measure);
    server.stop()?;
    let r = checked(result)?;
    let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(Sample::new(r.req_per_s())
        .with("p50", us(0.5))
        .with("p99", us(0.99)))
}

// ---------------------------------------------------------------------------------
// Hogs and CPU-bound requests: how a runtime spreads work over its cores

// The servers cut the stream into the load generator's messages.
const _: () = assert!(FRAME == MSG);

/// One request in this many is a hog (per connection, staggered; see [`Hogs`]).
const HOG_EVERY: u64 = 100;

/// The echo load against a `hog` server (2 workers): every connection's every
/// 100th request spins 50 ms on its worker. The value is the p99 latency of the
/// other requests (ms), with their p50 and p90, their count and the hogs' count.
/// A request still waiting at the end is no failure here: queueing behind hogs is
/// what the row measures.
pub fn hog(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let server = ServerProcess::start(Protocol::Hog, rival)?;
    let hogs = Hogs {
        every: HOG_EVERY,
        mark: HOG_MARK,
    };
    let result = load_with_hogs(
        server.addr,
        server.pid(),
        z.hog_warmup,
        z.hog_measure,
        Some(hogs),
    );
    server.stop()?;
    let r = result?;
    if r.requests == 0 {
        return Err("no request other than a hog completed".into());
    }
    let ms = |q: f64| r.latency.value_at_quantile(q) as f64 / 1e6;
    Ok(Sample::new(ms(0.99))
        .with("p50", ms(0.5))
        .with("p90", ms(0.9))
        .with("requests", r.requests as f64)
        .with("hogs", r.hogs as f64))
}

/// How long the `cpu` server's hash loop is meant to take per request.
pub const CPU_WORK: Duration = Duration::from_micros(20);

/// The hash iterations that take [`CPU_WORK`]: `--work-iters` (the parent
/// calibrates once per run and passes it to every sample, so every rival and round
/// does the same work), or calibrated here for a sample started by hand.
fn work_iters() -> u64 {
    arg_number("--work-iters").unwrap_or_else(|| work::calibrate(CPU_WORK))
}

/// The echo load against a `cpu` server on 1 worker, then on `z.workers`: the value
/// is how many times more requests per second the larger runtime serves.
pub fn scaling(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let iters = work_iters();
    let rate = |workers: usize| -> Result<f64, String> {
        let spec = ServerSpec {
            protocol: Protocol::Cpu,
            workers,
            iters,
        };
        let server = ServerProcess::start_spec(spec, rival)?;
        let result = load(server.addr, server.pid(), z.warmup, z.measure);
        server.stop()?;
        let r = checked(result)?;
        Ok(r.req_per_s())
    };
    let one = rate(1).map_err(|e| format!("1 worker: {e}"))?;
    let n = rate(z.workers).map_err(|e| format!("{} workers: {e}", z.workers))?;
    Ok(Sample::new(n / one).with("rps_1", one).with("rps_n", n))
}

/// A run's result, or an error if a connection got stuck.
fn checked(result: Result<RunResult, String>) -> Result<RunResult, String> {
    let r = result?;
    if r.stuck > 0 {
        return Err(format!(
            "{} connections had a request outstanding for over 1 s",
            r.stuck
        ));
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------
// HTTP with wrk

/// Whether `wrk` runs here.
fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// Makes sure `wrk` is installed: when it is missing and we are root on a system
/// with `apt-get`, installs Debian's package (refreshing the package lists once if
/// the first try fails). Prints what it did; the HTTP cells say so if it failed.
pub fn ensure_wrk() {
    if have_wrk() {
        return;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || Command::new("apt-get").arg("--version").output().is_err() {
        println!("wrk is not installed (the HTTP rows need it: apt-get install wrk)");
        return;
    }
    println!("wrk is not installed: running apt-get install -y wrk");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-q"]).output();
        install();
    }
    if !have_wrk() {
        println!("installing wrk failed; the HTTP rows will fail");
    }
}

/// Loads the rival's HTTP server with `wrk -t2 -c<connections> --latency`.
pub fn http(rival: Rival, z: &Sizes, connections: u32) -> Result<Sample, String> {
    if !have_wrk() {
        return Err("wrk is not installed (apt-get install wrk)".into());
    }
    let server = ServerProcess::start(Protocol::Http, rival)?;
    let url = format!("http://{}/", server.addr);
    let wrk = |secs: u64| -> Result<String, String> {
        let out = Command::new("wrk")
            .args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s")])
            .args(["--latency", "--timeout", "5s", &url])
            .output()
            .map_err(|e| format!("cannot run wrk: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "wrk failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(text)
    };
    let result = (|| {
        if z.wrk_warmup {
            wrk(1)?;
        }
        parse_wrk(&wrk(z.wrk_secs)?)
    })();
    server.stop()?;
    result
}

/// Requests/sec, the 50th and 99th latency percentiles (ms) and the error counts of
/// a `wrk --latency` report. Non-2xx answers or socket errors fail the sample.
fn parse_wrk(text: &str) -> Result<Sample, String> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = wrk_ms(v.trim());
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = wrk_ms(v.trim());
        } else if t.starts_with("Non-2xx") || t.starts_with("Socket errors") {
            return Err(format!("wrk reported \"{t}\""));
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50), Some(p99)) => Ok(Sample::new(rps).with("p50", p50).with("p99", p99)),
        _ => Err(format!("cannot read wrk's report:\n{text}")),
    }
}

/// "635.91us", "1.20ms", "2.01s" in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|x| x * scale)
}

// ---------------------------------------------------------------------------------
// Idle connections

/// Opens `z.idle_conns` connections to the rival's echo server, makes one echo on
/// each (so every connection's task has run and waits in `read`), and reports the
/// growth of the server's RSS per connection (KiB) and its total RSS (MiB).
pub fn idle_connections(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let n = z.idle_conns;
    // Both this process and the server (which inherits the limit) need n + slack
    // descriptors.
    let limit = raise_fd_limit();
    if limit < n as u64 + 100 {
        return Err(format!(
            "the open-file limit is {limit}; {} connections need {}",
            n,
            n + 100
        ));
    }
    let server = ServerProcess::start(Protocol::Echo, rival)?;
    let pid = Some(server.pid());
    thread::sleep(Duration::from_millis(100));
    let before = status_bytes(pid, "VmRSS").ok_or("cannot read the server's VmRSS")?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect_timeout(&server.addr, Duration::from_secs(5))
            .map_err(|e| format!("connection {i}: {e}"))?;
        conns.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
        ))
        .map_err(|e| e.to_string())?;
        let msg = (i as u32).to_le_bytes();
        s.write_all(&msg)
            .map_err(|e| format!("connection {i}: write: {e}"))?;
        let mut back = [0u8; 4];
        s.read_exact(&mut back)
            .map_err(|e| format!("connection {i}: no echo: {e}"))?;
        if back != msg {
            return Err(format!("connection {i}: wrong echo"));
        }
    }
    thread::sleep(Duration::from_millis(300));
    let after = status_bytes(pid, "VmRSS").ok_or("cannot read the server's VmRSS")?;
    drop(conns);
    server.stop()?;
    Ok(Sample::new((after - before) / n as f64 / 1024.0).with("server_total", after / 1048576.0))
}

/// Raises this process's soft limit on open files to the hard limit; returns it.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit whose soft limit does not exceed the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return 0;
    }
    lim.rlim_cur
}
