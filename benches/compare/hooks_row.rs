//! The `hooks` row (`cargo bench --bench compare -- hooks`; named only, not in the
//! default set): one `std::net` echo server, built without and with the `hooks`
//! feature, against `stackweave::net` and tokio, all loaded by the echo row's mio
//! client (100 connections x 64 B, closed loop).
//!
//! The feature is a Cargo feature, so one binary cannot be both. The row builds
//! the other flavour of this bench binary itself (`cargo bench --no-run --bench
//! compare [--features hooks]`, the same profile and target directory, so only
//! stackweave and this crate are compiled again) and starts each server from the
//! binary that has the flavour its cell needs:
//!
//! * `hooks-off`: the threads server (`std::net`, a thread per connection) from
//!   the build without the feature: plain libc.
//! * `hooks-on-threads`: the same server from the build with it: every call goes
//!   through a hook's fast path (the thread-local check), outside coroutines.
//! * `hooks-on`: the same `std::net` handler with a coroutine per connection on 2
//!   stackweave workers (`--serve echo std-coroutines`), with the feature.
//! * `stackweave-net`, `tokio`: the echo row's servers, from the build without it.
//!
//! The client is always the build without the feature, so every cell is loaded by
//! the same code. Goals: `hooks-on` within 10% of `stackweave-net` (req/s medians),
//! `hooks-on-threads` within 2% of `hooks-off`.

use crate::echo_load::load;
use crate::report::{extra_median, stats};
use crate::rows::{number, Sizes};
use crate::sample::Sample;
use crate::servers::{Protocol, ServerProcess, ServerSpec, STD_COROUTINES};
use crate::CellResult;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The row's id on the command line.
pub const ID: &str = "hooks";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Off,
    OnThreads,
    On,
    StackweaveNet,
    Tokio,
}

impl Cell {
    const ALL: [Cell; 5] = [
        Cell::Off,
        Cell::OnThreads,
        Cell::On,
        Cell::StackweaveNet,
        Cell::Tokio,
    ];

    fn name(self) -> &'static str {
        match self {
            Cell::Off => "hooks-off",
            Cell::OnThreads => "hooks-on-threads",
            Cell::On => "hooks-on",
            Cell::StackweaveNet => "stackweave-net",
            Cell::Tokio => "tokio",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Cell::Off => "std::net, thread/conn, built without `hooks` (plain libc)",
            Cell::OnThreads => "the same server built with `hooks` (outside coroutines)",
            Cell::On => "the same std::net handler, coroutine/conn, 2 workers, `hooks`",
            Cell::StackweaveNet => "stackweave::net, coroutine/conn, 2 workers",
            Cell::Tokio => "tokio, 2 workers, task/conn",
        }
    }

    /// Whether its server comes from the build with the feature.
    fn hooked(self) -> bool {
        matches!(self, Cell::OnThreads | Cell::On)
    }

    /// The server's name for `--serve echo NAME`.
    fn server(self) -> &'static str {
        match self {
            Cell::Off | Cell::OnThreads => "threads",
            Cell::On => STD_COROUTINES,
            Cell::StackweaveNet => "stackweave",
            Cell::Tokio => "tokio",
        }
    }

    fn from_name(name: &str) -> Option<Cell> {
        Cell::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// In a sample process (`--hooks-sample CELL --server-exe PATH`): loads that
/// server, prints the result line and exits; otherwise returns.
pub fn sample_if_asked(quick: bool) {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--hooks-sample") else {
        return;
    };
    let cell = args.get(i + 1).and_then(|c| Cell::from_name(c));
    let exe = args
        .iter()
        .position(|a| a == "--server-exe")
        .and_then(|k| args.get(k + 1));
    let (Some(cell), Some(exe)) = (cell, exe) else {
        eprintln!("usage: --hooks-sample CELL --server-exe PATH");
        std::process::exit(2);
    };
    let z = Sizes::new(quick);
    let result = (|| {
        let spec = ServerSpec::new(Protocol::Echo);
        let server = ServerProcess::start_exe(Path::new(exe), spec, cell.server())?;
        let r = load(server.addr, server.pid(), z.warmup, z.measure);
        server.stop()?;
        let r = r?;
        if r.stuck > 0 {
            return Err(format!("{} connections got stuck", r.stuck));
        }
        let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1000.0;
        Ok(Sample::new(r.req_per_s())
            .with("p50", us(0.5))
            .with("p99", us(0.99)))
    })();
    crate::sample::exit_with(result)
}

/// Builds this bench binary with (`hooks`) or without the feature and returns its
/// path (the same other features as this build).
fn build(hooks: bool) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut features = Vec::new();
    if hooks {
        features.push("hooks");
    }
    if cfg!(feature = "corosensei-backend") {
        features.push("corosensei-backend");
    }
    let mut cmd = Command::new(cargo);
    cmd.args(["bench", "--no-run", "--bench", "compare"])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    println!(
        "hooks: building the bench {} the feature (cargo bench --no-run{})",
        if hooks { "with" } else { "without" },
        if hooks { " --features hooks" } else { "" }
    );
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo bench --no-run failed: {}", out.status));
    }
    // The artifact line of the `compare` bench: `"executable":"PATH"`.
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter(|l| l.contains("\"name\":\"compare\""))
        .find_map(|l| {
            let rest = &l[l.find("\"executable\":\"")? + 14..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .ok_or_else(|| "cargo reported no executable for the compare bench".into())
}

/// Runs the row: `rounds` rounds of the five cells, the first cell rotating, then
/// its table and goals.
pub fn run(rounds: usize, quick: bool) {
    let z = Sizes::new(quick);
    println!(
        "\nhooks row: TCP echo, 100 connections x 64 B (the echo row's mio client); \
         {:.1} s warm-up + {:.1} s per sample; {rounds} round(s)",
        z.warmup.as_secs_f64(),
        z.measure.as_secs_f64()
    );
    let own = std::env::current_exe().map_err(|e| e.to_string());
    let other = build(!cfg!(feature = "hooks"));
    let (plain, hooked) = if cfg!(feature = "hooks") {
        (other, own)
    } else {
        (own, other)
    };
    let mut cells: Vec<CellResult> = Cell::ALL.iter().map(|_| CellResult::default()).collect();
    let names = Cell::ALL.map(Cell::name);
    for round in 0..rounds {
        let run = |idx: usize| {
            let cell = Cell::ALL[idx];
            match (&plain, if cell.hooked() { &hooked } else { &plain }) {
                (Ok(client), Ok(server)) => {
                    let mut cmd = Command::new(client);
                    cmd.args(["--hooks-sample", cell.name(), "--server-exe"])
                        .arg(server);
                    if quick {
                        cmd.arg("--quick");
                    }
                    crate::run_sample_command(cmd)
                }
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            }
        };
        let format = |s: &Sample| {
            format!(
                "{} req/s  p50 {} µs  p99 {} µs",
                number(s.value),
                number(s.extra("p50").unwrap_or(f64::NAN)),
                number(s.extra("p99").unwrap_or(f64::NAN)),
            )
        };
        crate::run_round((round, rounds), ID, &names, &mut cells, run, format);
    }
    print_table(&cells);
}

fn print_table(cells: &[CellResult]) {
    println!("\nhooks: the same std::net echo server with the feature off and on (req/s, higher is better)");
    println!(
        "  {:<16} {:>10} {:>21} {:>9} {:>9}  what runs",
        "cell", "median", "min-max", "p50 µs", "p99 µs"
    );
    for (cell, result) in Cell::ALL.iter().zip(cells) {
        let Some((med, min, max)) = stats(result) else {
            let why = result.errors.first().map_or("no sample", String::as_str);
            println!("  {:<16} FAILED: {why}", cell.name());
            continue;
        };
        let extra = |k: &str| extra_median(result, k).map_or("-".to_string(), number);
        println!(
            "  {:<16} {:>10} {:>21} {:>9} {:>9}  {}",
            cell.name(),
            number(med),
            format!("{}-{}", number(min), number(max)),
            extra("p50"),
            extra("p99"),
            cell.describe()
        );
    }
    let median = |idx: usize| stats(&cells[idx]).map(|(med, ..)| med);
    println!("\ngoals (this run, medians):");
    let goal = |what: &str, a: Cell, b: Cell, within: f64| {
        let ia = Cell::ALL.iter().position(|&c| c == a).unwrap();
        let ib = Cell::ALL.iter().position(|&c| c == b).unwrap();
        match (median(ia), median(ib)) {
            (Some(x), Some(y)) => {
                let ratio = x / y;
                let ok = ratio >= 1.0 - within;
                println!(
                    "  hooks  {what}: {} / {} req/s = {:.3} ({:+.1}%), goal within {:.0}%: {}",
                    number(x),
                    number(y),
                    ratio,
                    (ratio - 1.0) * 100.0,
                    within * 100.0,
                    if ok { "met" } else { "NOT met" }
                );
            }
            _ => println!("  hooks  {what}: not judged (a cell has no sample)"),
        }
    };
    goal(
        "hooks on vs stackweave::net",
        Cell::On,
        Cell::StackweaveNet,
        0.10,
    );
    goal(
        "hooks on outside coroutines vs plain libc",
        Cell::OnThreads,
        Cell::Off,
        0.02,
    );
}
