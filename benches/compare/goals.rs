//! The goals of the comparison and whether a run met them, printed after the table.
//!
//! * switch, spawn, spawn-all, pingpong, mutex, mutex-yield, echo, http-100,
//!   http-1000: ahead of tokio and may (medians; the mutex goals are the retired
//!   `benches/sync.rs`'s).
//! * pingpong, also: steady, the slowest round at most 2x the median (stackweave's
//!   cross-worker hand-offs must not make some rounds several times slower).
//! * idle-large: at most 4.5 KiB per idle coroutine at 1,000,000 (full run only).
//! * placement: every trial within 60/40 on 2 workers (the smaller worker's share
//!   never below 40 %).
//! * hog: stackweave's p99 no higher than tokio's.
//! * scaling: stackweave's N-worker/1-worker ratio at least tokio's.

use crate::report::{advantage, extra_median, stats};
use crate::rows::{number, scaling_workers, Row};
use crate::servers::Rival;
use crate::{CellResult, RowResult};

/// The placement goal: the smaller worker's share of every trial, in %.
const PLACEMENT_MIN_SHARE: f64 = 40.0;
/// The pingpong goal: the slowest round over the median.
const PINGPONG_MAX_SPREAD: f64 = 2.0;

pub fn print_goals(results: &[RowResult], quick: bool) {
    println!("\ngoals (this run):");
    for result in results {
        let row = result.row;
        if matches!(
            row,
            Row::Switch
                | Row::Spawn
                | Row::SpawnAll
                | Row::PingPong
                | Row::Mutex
                | Row::MutexYield
                | Row::Echo
                | Row::Http100
                | Row::Http1000
        ) {
            let verdicts: Vec<String> = [1, 2]
                .iter()
                .map(|&i| match advantage(result, i) {
                    Some(a) if a > 1.0 => format!("ahead of {} ({a:.2}x)", Rival::ALL[i].name()),
                    Some(a) => format!("BEHIND {} ({a:.2}x)", Rival::ALL[i].name()),
                    None => format!("no comparison with {}", Rival::ALL[i].name()),
                })
                .collect();
            println!("  {:<11} {}", row.id(), verdicts.join(", "));
        }
        let verdict = match row {
            Row::PingPong => pingpong(result),
            Row::IdleLarge => idle_large(result, quick),
            Row::Placement => placement(result),
            Row::Hog => hog(result),
            Row::Scaling => scaling(result),
            _ => continue,
        };
        println!("  {:<11} {verdict}", row.id());
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// Stackweave's cell of a row.
fn stackweave(result: &RowResult) -> &CellResult {
    &result.cells[0]
}

fn tokio(result: &RowResult) -> &CellResult {
    &result.cells[1]
}

fn pingpong(result: &RowResult) -> String {
    let cell = stackweave(result);
    let Some((med, _, max)) = stats(cell) else {
        return "no stackweave sample".into();
    };
    let n = cell.samples.len();
    let head = format!(
        "stackweave slowest round {} ns, median {} ns over {n} round(s); goal max <= \
         {PINGPONG_MAX_SPREAD}x median:",
        number(max),
        number(med)
    );
    if n < 2 {
        format!("{head} not judged with 1 round (--rounds 2 or more)")
    } else {
        format!("{head} {}", met(max <= PINGPONG_MAX_SPREAD * med))
    }
}

fn idle_large(result: &RowResult, quick: bool) -> String {
    let at = result.row.title(quick);
    match stats(stackweave(result)) {
        Some((med, ..)) => format!(
            "{} KiB per idle coroutine ({at}); goal <= 4.5 KiB at 1,000,000: {}",
            number(med),
            if quick {
                "not judged in --quick"
            } else {
                met(med <= 4.5)
            }
        ),
        None => "no stackweave sample".into(),
    }
}

fn placement(result: &RowResult) -> String {
    // A sample's value is its worst trial: the minimum over the samples is the worst
    // trial of the run.
    let worst = |cell: &CellResult| stats(cell).map(|(_, min, _)| min);
    let trials: usize = stackweave(result)
        .samples
        .iter()
        .map(|s| s.trials.len())
        .sum();
    let others: Vec<String> = [1, 2]
        .iter()
        .map(|&i| match worst(&result.cells[i]) {
            Some(w) => format!("{} {} %", Rival::ALL[i].name(), number(w)),
            None => format!("{} -", Rival::ALL[i].name()),
        })
        .collect();
    match worst(stackweave(result)) {
        Some(w) => format!(
            "stackweave's worst of {trials} trials: smaller worker {} % of the \
             connections; goal every trial within 60/40 (>= {PLACEMENT_MIN_SHARE} %): {} \
             (worst trial: {})",
            number(w),
            met(w >= PLACEMENT_MIN_SHARE),
            others.join(", ")
        ),
        None => "no stackweave sample".into(),
    }
}

fn hog(result: &RowResult) -> String {
    // The p99 alone can hide a worse median or fewer requests served: shown beside it.
    let context = |key: &str| {
        let of = |cell: &CellResult| extra_median(cell, key).map_or("-".into(), number);
        format!("{key} {} vs {}", of(stackweave(result)), of(tokio(result)))
    };
    match (stats(stackweave(result)), stats(tokio(result))) {
        (Some((sw, ..)), Some((tk, ..))) => format!(
            "p99 of the other requests: stackweave {} ms, tokio {} ms; goal stackweave <= \
             tokio: {} ({} ms, {})",
            number(sw),
            number(tk),
            met(sw <= tk),
            context("p50"),
            context("requests")
        ),
        (None, _) => "no stackweave sample".into(),
        (_, None) => "no tokio sample to compare with".into(),
    }
}

fn scaling(result: &RowResult) -> String {
    match (stats(stackweave(result)), stats(tokio(result))) {
        (Some((sw, ..)), Some((tk, ..))) => format!(
            "{} workers over 1: stackweave {sw:.2}x, tokio {tk:.2}x; goal stackweave >= \
             tokio: {}",
            scaling_workers(),
            met(sw >= tk)
        ),
        (None, _) => "no stackweave sample".into(),
        (_, None) => "no tokio sample to compare with".into(),
    }
}
