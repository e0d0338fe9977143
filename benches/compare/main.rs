//! The comparison: every workload on stackweave, tokio, may and `std` threads, in
//! one run, alternating them, with a table, a CSV and a JSON file and an SVG chart.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench compare                 # full: 5 rounds, ~11 minutes
//! cargo bench --bench compare -- --quick      # smoke run: 1 round, small sizes, < 2 min
//! cargo bench --bench compare -- --rounds 5 echo http-100   # chosen rows only
//! cargo bench --bench compare -- --workers 8 scaling         # 1 vs 8 workers
//! cargo bench --bench compare -- --rounds 3 hooks   # std::net, `hooks` off/on (named only)
//! ```
//!
//! Results go to `compare/` in cargo's target directory (`$CARGO_TARGET_DIR`, else
//! the one this bench binary was built in; `--out DIR` to change): `results.csv`,
//! `results.json` and `chart.svg`. The HTTP rows need `wrk`; when it is missing and
//! the bench runs as root on a Debian-like system it installs it with
//! `apt-get install -y wrk`, otherwise those cells say how to get it.
//!
//! # How it runs
//!
//! Every sample (one row, one rival, one round) runs in a fresh child process (this
//! binary started with `--sample ROW RIVAL`), so no runtime's threads, heap or
//! memory maps outlive their sample, memory rows start from a clean process, and a
//! rival that crashes or runs out of memory maps fails its cell, not the harness.
//! The network rows start one more child, the server (`--serve PROTOCOL RIVAL`,
//! see `benches/harness/servers.rs`), and load it from the sample process.
//! Within a round the rivals of a row run one after another, the first one rotating
//! from round to round, so drift in clock speed or background load hits them alike.
//! The table shows the median, minimum and maximum over the rounds.
//!
//! Every rival runs with 2 workers where it has workers (tokio multi-thread with
//! `worker_threads(2)`, may with `set_workers(2)` and core pinning off, which
//! measured faster on this machine); `rows::describe` says, per cell, exactly what
//! runs. The exception is the scaling row, which compares 1 worker with N
//! (`--workers N`, default 2). The ratio column reads "how many times better
//! stackweave is": above 1.00x stackweave wins the row, below it the rival does. A
//! cell that cannot exist (a thread per connection has no workers to place or to
//! count) reads "n/a" and runs nothing.
//!
//! Three rows judge how well a runtime uses its cores in the real server pattern,
//! one accept loop and a task per connection: `placement` (on which worker the
//! connections start, `placement.rs`), `hog` (the latency of ordinary requests
//! while 1 in 100 spins 50 ms) and `scaling` (CPU-bound requests, N workers against
//! 1; `net.rs`). Their goals, and the others', are in `goals.rs`.

// Shared with benches/echo.rs, which also reads the CPU figures this bench leaves out.
#[allow(dead_code)]
#[path = "../harness/echo_load.rs"]
mod echo_load;
mod goals;
#[path = "../harness/mod.rs"]
mod harness;
mod hooks_row;
mod net;
mod placement;
mod report;
mod rows;
mod sample;
#[path = "../harness/servers.rs"]
mod servers;
mod sync_tasks;
mod tasks;

use rows::Row;
use sample::Sample;
use servers::Rival;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A sample that runs longer than this is killed and counts as failed.
const SAMPLE_LIMIT: Duration = Duration::from_secs(180);

/// Everything measured for one row.
pub(crate) struct RowResult {
    pub(crate) row: Row,
    /// In [`Rival::ALL`] order.
    pub(crate) cells: Vec<CellResult>,
}

/// One rival's samples in one row.
#[derive(Default)]
pub(crate) struct CellResult {
    pub(crate) samples: Vec<Sample>,
    pub(crate) errors: Vec<String>,
    /// Why the row does not run for this rival ([`Row::not_applicable`]).
    pub(crate) not_applicable: Option<String>,
}

/// What the whole run was.
pub(crate) struct RunInfo {
    pub(crate) machine: String,
    pub(crate) mode: String,
    pub(crate) rounds: usize,
    pub(crate) started: String,
}

fn main() {
    servers::serve_if_asked();
    let args: Vec<String> = std::env::args().skip(1).collect();
    hooks_row::sample_if_asked(args.iter().any(|a| a == "--quick"));
    if let Some(i) = args.iter().position(|a| a == "--sample") {
        // The parent says which sizes: `--quick` or nothing (full).
        let quick = args.iter().any(|a| a == "--quick");
        let row = args.get(i + 1).and_then(|r| Row::from_id(r));
        let rival = args.get(i + 2).and_then(|r| Rival::from_name(r));
        match (row, rival) {
            (Some(row), Some(rival)) => rows::run_sample(row, rival, quick),
            _ => {
                eprintln!("usage: --sample ROW RIVAL");
                std::process::exit(2);
            }
        }
    }

    let quick = harness::quick_mode().is_some();
    let mut rounds = if quick { 1 } else { 5 };
    let mut out_dir = target_dir().join("compare");
    let mut wanted = Vec::new();
    let mut want_hooks = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => rounds = n,
                _ => usage_exit("--rounds needs a positive number"),
            },
            "--out" => match it.next() {
                Some(d) => out_dir = d.into(),
                None => usage_exit("--out needs a directory"),
            },
            // Read where it is used (rows::scaling_workers), like --quick.
            "--workers" => match it.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n >= 2 => {}
                _ => usage_exit("--workers needs a number of at least 2"),
            },
            "--quick" | "--bench" => {}
            hooks_row::ID => want_hooks = true,
            id if !id.starts_with('-') => match Row::from_id(id) {
                Some(row) => wanted.push(row),
                None => usage_exit(&format!("unknown row {id:?}")),
            },
            other => usage_exit(&format!("unknown option {other:?}")),
        }
    }
    if wanted.is_empty() && !want_hooks {
        wanted = Row::ALL.to_vec();
    }

    let info = RunInfo {
        machine: format!(
            "{} CPUs ({}), Linux {}, {} GiB RAM",
            thread::available_parallelism().map_or(0, |n| n.get()),
            harness::cpu_model(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into()),
            rows::mem_total_gib()
        ),
        mode: harness::quick_mode().unwrap_or("full").to_string(),
        rounds,
        started: utc_now(),
    };
    println!("machine: {}", info.machine);
    println!(
        "mode: {}; {rounds} round(s); load average {} before the run; stackweave \
         switch backend {}",
        info.mode,
        harness::load_average(),
        stackweave::SWITCH_BACKEND
    );
    if cfg!(debug_assertions) {
        println!("warning: built without optimizations; the numbers mean little");
    }
    if wanted.iter().any(|r| r.needs_wrk()) {
        net::ensure_wrk();
    }
    // Passed to every sample process.
    let mut forward = vec!["--workers".to_string(), rows::scaling_workers().to_string()];
    if wanted.contains(&Row::Scaling) {
        let iters = servers::work::calibrate(net::CPU_WORK);
        println!(
            "scaling: {} µs of work per request = {iters} hash iterations (calibrated \
             now, the same for every rival and round)",
            net::CPU_WORK.as_micros()
        );
        forward.extend(["--work-iters".to_string(), iters.to_string()]);
    }
    println!();

    let total = Instant::now();
    let mut results: Vec<RowResult> = wanted
        .iter()
        .map(|&row| RowResult {
            row,
            cells: Rival::ALL
                .iter()
                .map(|&rival| CellResult {
                    not_applicable: row.not_applicable(rival, quick),
                    ..CellResult::default()
                })
                .collect(),
        })
        .collect();
    let names = Rival::ALL.map(|r| r.name());
    for round in 0..rounds {
        for result in &mut results {
            let row = result.row;
            run_round(
                (round, rounds),
                row.id(),
                &names,
                &mut result.cells,
                |idx| run_child(row, Rival::ALL[idx], quick, &forward),
                |s| row.format_sample(s),
            );
        }
    }

    if !results.is_empty() {
        println!();
        report::print_table(&info, &results, quick);
        if let Err(e) = report::write_files(&out_dir, &info, &results, quick) {
            println!("could not write the result files: {e}");
        }
    }
    if want_hooks {
        hooks_row::run(rounds, quick);
    }
    println!(
        "\ntotal time {:.0} s; load average {} after the run",
        total.elapsed().as_secs_f64(),
        harness::load_average()
    );
}

/// One round of one row (or of the hooks row): every cell runs once through `run`
/// (its index in `cells`), except those marked not applicable (said once, in the
/// first round); the first cell rotates with the round, so drift in clock speed or
/// background load hits them alike. Prints a progress line per cell (`format`
/// shows a sample) and files each sample or error in its cell.
pub(crate) fn run_round(
    (round, rounds): (usize, usize),
    row_id: &str,
    names: &[&str],
    cells: &mut [CellResult],
    mut run: impl FnMut(usize) -> Result<Sample, String>,
    format: impl Fn(&Sample) -> String,
) {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let n = cells.len();
    for k in 0..n {
        let idx = (round + k) % n;
        let name = names[idx];
        let head = format!("round {}/{rounds} {row_id:<13} {name:<width$}", round + 1);
        if let Some(why) = &cells[idx].not_applicable {
            if round == 0 {
                println!("{head} {:>8} {why}", "");
            }
            continue;
        }
        let started = Instant::now();
        let outcome = run(idx);
        let took = format!("[{:.1} s]", started.elapsed().as_secs_f64());
        let cell = &mut cells[idx];
        match outcome {
            Ok(s) => {
                println!("{head} {took:>8} {}", format(&s));
                cell.samples.push(s);
            }
            Err(e) => {
                println!("{head} {took:>8} FAILED: {e}");
                cell.errors.push(e);
            }
        }
    }
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` where set, else the directory
/// above this binary that holds cargo's `CACHEDIR.TAG` (the binary is
/// `TARGET/PROFILE/deps/compare-HASH`, or `TARGET/TRIPLE/PROFILE/deps/...`), else
/// `target`.
fn target_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let exe = std::env::current_exe().ok();
    exe.iter()
        .flat_map(|e| e.ancestors().skip(1).take(4))
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| "target".into(), std::path::Path::to_path_buf)
}

fn usage_exit(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: cargo bench --bench compare -- [--quick] [--rounds N] [--out DIR] \
         [--workers N] [ROW...]\nrows: {} (and {}, run only when named)",
        Row::ALL.map(|r| r.id()).join(" "),
        hooks_row::ID
    );
    std::process::exit(2);
}

/// Runs one sample in a child process, passing it `forward` too; its result line,
/// or why there is none.
fn run_child(row: Row, rival: Rival, quick: bool, forward: &[String]) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["--sample", row.id(), rival.name()]);
    cmd.args(forward);
    if quick {
        cmd.arg("--quick");
    }
    run_sample_command(cmd)
}

/// Runs a sample process (`cmd`, which prints `RESULT …`) and waits for it, killing
/// it after [`SAMPLE_LIMIT`]; its result line, or why there is none.
pub(crate) fn run_sample_command(mut cmd: Command) -> Result<Sample, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the sample process: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut result = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("RESULT ") {
                result = Some(rest.to_string());
            }
        }
        let _ = tx.send(result);
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if start.elapsed() > SAMPLE_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("killed after {} s", SAMPLE_LIMIT.as_secs()));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(e.to_string()),
        }
    };
    let result = rx.recv_timeout(Duration::from_secs(5)).ok().flatten();
    let stderr = errors.join().unwrap_or_default();
    let last_words = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    let status = status?;
    match result {
        Some(line) if status.success() => Sample::parse(&line),
        // The sample's own error message (it exits with 1 after printing it).
        _ if status.code() == Some(1) && !last_words.is_empty() => Err(last_words),
        _ => {
            let how = match std::os::unix::process::ExitStatusExt::signal(&status) {
                Some(sig) => format!("crashed (signal {sig})"),
                None => format!("exited with {status}"),
            };
            Err(if last_words.is_empty() {
                how
            } else {
                format!("{how}: {last_words}")
            })
        }
    }
}

/// "2026-11-28 09:30 UTC" (from `date`; "?" where it cannot run).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".to_string(), |s| s.trim().to_string())
}
