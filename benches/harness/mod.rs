//! What the hand-written benchmark harnesses share: the run mode and the summary of
//! a sample. (Included by each bench with `mod harness;`; not a bench target.)

/// Whether to run the full benchmark or the quick smoke version, and why.
///
/// Quick with `--quick`, or when the binary was not started by `cargo bench`
/// (which passes `--bench`; `cargo test --benches` does not).
pub fn quick_mode() -> Option<&'static str> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--quick") {
        Some("quick (--quick)")
    } else if !args.iter().any(|a| a == "--bench") {
        Some("quick (not run by `cargo bench`)")
    } else {
        None
    }
}

/// Median, minimum and maximum of a non-empty sample.
pub fn summary(samples: &[f64]) -> (f64, f64, f64) {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}
