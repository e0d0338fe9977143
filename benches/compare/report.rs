//! The comparison's outputs: the table on stdout (then the goals, `goals.rs`),
//! `results.csv`, `results.json`, `results.md` and `chart.svg`.
//!
//! Ratios everywhere read "how many times better stackweave is": the rival's value
//! over stackweave's where lower is better (time, memory), stackweave's over the
//! rival's where higher is better (requests per second). Above 1.00x stackweave wins.

use crate::harness::summary;
use crate::rows::{number, with_unit};
use crate::servers::Rival;
use crate::{CellResult, RowResult, RunInfo};
use std::fmt::Write as _;
use std::path::Path;

/// Median, minimum and maximum of a cell's main value; `None` without samples.
pub(crate) fn stats(cell: &CellResult) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = cell.samples.iter().map(|s| s.value).collect();
    (!v.is_empty()).then(|| summary(&v))
}

/// Median of one extra metric over a cell's samples.
pub(crate) fn extra_median(cell: &CellResult, key: &str) -> Option<f64> {
    let v: Vec<f64> = cell.samples.iter().filter_map(|s| s.extra(key)).collect();
    (!v.is_empty()).then(|| summary(&v).0)
}

/// How many times better stackweave is than `rival` in `row` (medians).
pub(crate) fn advantage(result: &RowResult, rival: usize) -> Option<f64> {
    let sw = stats(&result.cells[0])?.0;
    let other = stats(&result.cells[rival])?.0;
    let r = if result.row.higher_is_better() {
        sw / other
    } else {
        other / sw
    };
    r.is_finite().then_some(r)
}

/// The first error of a cell that has no sample, for its table cell (or why the
/// row does not apply to the rival).
fn failure(cell: &CellResult) -> Option<&str> {
    if let Some(why) = &cell.not_applicable {
        Some(why)
    } else if cell.samples.is_empty() {
        Some(cell.errors.first().map_or("no sample", String::as_str))
    } else {
        None
    }
}

pub fn print_table(info: &RunInfo, results: &[RowResult], quick: bool) {
    println!(
        "stackweave vs tokio, may and std threads; {} round(s), median (min-max); \
         \"vs\" = how many times better stackweave is (above 1.00x stackweave wins)",
        info.rounds
    );
    for result in results {
        let row = result.row;
        println!(
            "\n-- {} ({}, {} is better)",
            row.title(quick),
            row.unit(),
            row.better()
        );
        for (i, (rival, cell)) in Rival::ALL.iter().zip(&result.cells).enumerate() {
            let mut line = format!("  {:<10} ", rival.name());
            match (stats(cell), failure(cell)) {
                (Some((med, min, max)), _) => {
                    let _ = write!(line, "{:>9} ({}-{})", number(med), number(min), number(max));
                    for (key, unit) in row.extras() {
                        if let Some(v) = extra_median(cell, key) {
                            let _ = write!(line, "  {key} {}", with_unit(v, unit));
                        }
                    }
                    if i > 0 {
                        if let Some(a) = advantage(result, i) {
                            let _ = write!(line, "  vs {a:.2}x");
                        }
                    }
                    if !cell.errors.is_empty() {
                        let _ = write!(line, "  ({} failed)", cell.errors.len());
                    }
                    // One "trials" label for the cell; rounds separated by "; ".
                    let rounds: Vec<String> = cell
                        .samples
                        .iter()
                        .map(|s| s.trial_values())
                        .filter(|t| !t.is_empty())
                        .collect();
                    if !rounds.is_empty() {
                        let _ = write!(line, "  trials {}", rounds.join("; "));
                    }
                }
                (None, _) if cell.not_applicable.is_some() => {
                    line.push_str(cell.not_applicable.as_deref().unwrap_or(""));
                }
                (None, why) => {
                    let _ = write!(line, "FAILED: {}", why.unwrap_or(""));
                }
            }
            println!("{line}");
        }
    }
    println!("\nhow each cell runs:");
    for result in results {
        println!("  {}:", result.row.id());
        for rival in Rival::ALL {
            println!(
                "    {:<10} {}",
                rival.name(),
                result.row.describe(rival, quick)
            );
        }
    }
    crate::goals::print_goals(results, quick);
}

/// Writes `results.csv`, `results.json`, `results.md` (`docs/BENCHMARKS.md`'s form)
/// and `chart.svg` into `dir`.
pub fn write_files(
    dir: &Path,
    info: &RunInfo,
    results: &[RowResult],
    quick: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("results.csv", csv(results, quick))?;
    write("results.json", json(info, results, quick))?;
    write("results.md", markdown(info, results, quick))?;
    let svg = dir.join("chart.svg");
    chart(&svg, info, results, quick).map_err(|e| format!("{}: {e}", svg.display()))?;
    println!(
        "\nwrote {0}/results.csv, results.json, results.md and chart.svg",
        dir.display()
    );
    Ok(())
}

/// One line per row, rival and metric (the main value and every extra).
fn csv(results: &[RowResult], quick: bool) -> String {
    let mut out =
        String::from("row,title,metric,unit,higher_is_better,rival,median,min,max,samples,error\n");
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for result in results {
        let row = result.row;
        let metrics = std::iter::once(("value", row.unit(), row.higher_is_better())).chain(
            row.extras()
                .iter()
                .map(|(k, u)| (*k, *u, row.extra_higher_is_better(k))),
        );
        for (key, unit, higher) in metrics {
            for (rival, cell) in Rival::ALL.iter().zip(&result.cells) {
                let v: Vec<f64> = cell
                    .samples
                    .iter()
                    .filter_map(|s| {
                        if key == "value" {
                            Some(s.value)
                        } else {
                            s.extra(key)
                        }
                    })
                    .collect();
                let (med, min, max) = if v.is_empty() {
                    (String::new(), String::new(), String::new())
                } else {
                    let (a, b, c) = summary(&v);
                    (a.to_string(), b.to_string(), c.to_string())
                };
                let _ = writeln!(
                    out,
                    "{},{},{key},{unit},{higher},{},{med},{min},{max},{},{}",
                    row.id(),
                    quote(&row.title(quick)),
                    rival.name(),
                    v.len(),
                    quote(failure(cell).unwrap_or(""))
                );
            }
        }
    }
    out
}

/// `docs/BENCHMARKS.md` as this run would have it: a header naming the command
/// line, the machine and the date, then the table (per row the medians, each
/// rival's with stackweave's advantage, failures in words). Publishing a run is
/// copying this file there.
fn markdown(info: &RunInfo, results: &[RowResult], quick: bool) -> String {
    // What the bench was started with, less the `--bench` cargo passes to it.
    let args: String = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .map(|a| format!(" {a}"))
        .collect();
    let command = if args.is_empty() {
        "cargo bench --bench compare".to_string()
    } else {
        format!("cargo bench --bench compare --{args}")
    };
    let mut out = format!(
        "# Benchmarks: stackweave, tokio, may and threads\n\n\
         Generated by `{command}` ({}, {} round(s), medians), started {}, on {}; \
         stackweave switch backend {}; load average {} when the run ended. \
         Regenerate with that command and copy its `results.md` (in `target/compare/` \
         by default) here, and `chart.svg` to `docs/compare.svg`; do not edit by hand. \
         How each row \
         runs and how to read it: [DECISIONS.md](DECISIONS.md), \"Benchmarks\".\n\n\
         | workload | unit | stackweave | tokio | may | threads |\n|---|---|---|---|---|---|\n",
        info.mode,
        info.rounds,
        info.started,
        info.machine,
        stackweave::SWITCH_BACKEND,
        crate::harness::load_average()
    );
    for result in results {
        let row = result.row;
        let _ = write!(
            out,
            "| {} | {}, {} is better |",
            row.title(quick),
            row.unit(),
            row.better()
        );
        for (i, cell) in result.cells.iter().enumerate() {
            let text = match (stats(cell), failure(cell)) {
                (Some((med, ..)), _) if i == 0 => format!("**{}**", number(med)),
                (Some((med, ..)), _) => match advantage(result, i) {
                    Some(a) => format!("{} ({a:.2}x)", number(med)),
                    None => number(med),
                },
                (None, Some(why)) if cell.not_applicable.is_some() => why.replace('|', "/"),
                (None, why) => format!("fails: {}", why.unwrap_or("no sample").replace('|', "/")),
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out.push_str(
        "\nIn parentheses: how many times better stackweave is (above 1.00x stackweave wins).\n",
    );
    out
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number (`null` for NaN or infinity).
fn jn(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        "null".into()
    }
}

fn json(info: &RunInfo, results: &[RowResult], quick: bool) -> String {
    let mut out = format!(
        "{{\n  \"machine\": {},\n  \"mode\": {},\n  \"rounds\": {},\n  \"started\": {},\n  \"rows\": [",
        js(&info.machine),
        js(&info.mode),
        info.rounds,
        js(&info.started)
    );
    for (ri, result) in results.iter().enumerate() {
        let row = result.row;
        let _ = write!(
            out,
            "{}\n    {{\"id\": {}, \"title\": {}, \"unit\": {}, \"higher_is_better\": {}, \"cells\": [",
            if ri > 0 { "," } else { "" },
            js(row.id()),
            js(&row.title(quick)),
            js(row.unit()),
            row.higher_is_better()
        );
        for (ci, (rival, cell)) in Rival::ALL.iter().zip(&result.cells).enumerate() {
            let values: Vec<String> = cell.samples.iter().map(|s| jn(s.value)).collect();
            let extras: Vec<String> = row
                .extras()
                .iter()
                .filter_map(|(k, u)| {
                    extra_median(cell, k).map(|m| {
                        format!("{}: {{\"median\": {}, \"unit\": {}}}", js(k), jn(m), js(u))
                    })
                })
                .collect();
            let (med, min, max) = stats(cell).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
            // Per sample, for rows whose value is the worst of several trials.
            let trials = if cell.samples.iter().any(|s| !s.trials.is_empty()) {
                let per_sample: Vec<String> = cell
                    .samples
                    .iter()
                    .map(|s| {
                        let t: Vec<String> = s.trials.iter().map(|&v| jn(v)).collect();
                        format!("[{}]", t.join(", "))
                    })
                    .collect();
                format!(", \"trials\": [{}]", per_sample.join(", "))
            } else {
                String::new()
            };
            let not_applicable = cell.not_applicable.as_ref().map_or(String::new(), |why| {
                format!(", \"not_applicable\": {}", js(why))
            });
            let _ = write!(
                out,
                "{}\n      {{\"rival\": {}, \"setup\": {}, \"samples\": [{}]{trials}, \"median\": {}, \"min\": {}, \"max\": {}, \"vs\": {}, \"extras\": {{{}}}, \"errors\": [{}]{not_applicable}}}",
                if ci > 0 { "," } else { "" },
                js(rival.name()),
                js(&row.describe(*rival, quick)),
                values.join(", "),
                jn(med),
                jn(min),
                jn(max),
                if ci == 0 { "null".into() } else { advantage(result, ci).map_or("null".into(), jn) },
                extras.join(", "),
                cell.errors.iter().map(|e| js(e)).collect::<Vec<_>>().join(", ")
            );
        }
        out.push_str("\n    ]}");
    }
    out.push_str("\n  ]\n}\n");
    out
}

/// Bars per row: each rival's performance relative to stackweave (1 = same, above:
/// the rival is better), on a log scale; a cross where a rival failed (nothing
/// where the row does not apply to it).
fn chart(
    path: &Path,
    info: &RunInfo,
    results: &[RowResult],
    quick: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    const COLORS: [RGBColor; 3] = [
        RGBColor(230, 120, 30),  // tokio
        RGBColor(50, 150, 80),   // may
        RGBColor(130, 130, 130), // threads
    ];
    let (lo, hi) = (0.001f64, 100f64);
    let n = results.len().max(1);
    let root = SVGBackend::new(path, (1100, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Each rival relative to stackweave (the black line): above it the rival wins, \
             below it stackweave wins",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("rival / stackweave (performance)")
        .y_label_formatter(&|v| format!("{v}x"))
        .draw()?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (n as f64, 1.0)],
            BLACK.stroke_width(2),
        )))?
        .label("stackweave")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2)));
    let width = 0.25;
    for (k, color) in COLORS.iter().enumerate() {
        let rival = k + 1;
        let mut bars = Vec::new();
        let mut crosses = Vec::new();
        for (i, result) in results.iter().enumerate() {
            let x0 = i as f64 + 0.125 + k as f64 * width;
            match advantage(result, rival) {
                Some(a) => {
                    let perf = (1.0 / a).clamp(lo * 1.01, hi * 0.99);
                    bars.push(Rectangle::new(
                        [(x0, 1.0), (x0 + width * 0.9, perf)],
                        color.filled(),
                    ));
                }
                None if result.cells[rival].not_applicable.is_some() => {}
                None => crosses.push((x0 + width * 0.45, 1.0)),
            }
        }
        chart
            .draw_series(bars)?
            .label(Rival::ALL[rival].name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(
            crosses
                .into_iter()
                .map(|p| Cross::new(p, 6, color.stroke_width(2))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    let label_style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, result) in results.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, lo));
        root.draw(&Text::new(
            result.row.short(quick),
            (x, y + 8),
            label_style.clone(),
        ))?;
    }
    let footer = format!(
        "cargo bench --bench compare ({}, {} round(s), medians), {}; {}",
        info.mode, info.rounds, info.started, info.machine
    );
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(
        footer,
        (w as i32 / 2, h as i32 - 4),
        TextStyle::from(("sans-serif", 12).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Bottom)),
    ))?;
    root.present()?;
    Ok(())
}
