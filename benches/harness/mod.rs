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

/// The first three fields of `/proc/loadavg` ("?" where it cannot be read).
#[allow(dead_code)] // not every bench prints it
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// The CPU's model name from `/proc/cpuinfo` ("?" where it cannot be read).
#[allow(dead_code)] // not every bench prints it
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".to_string())
}

/// The message of a panic payload (`&str` or `String`; "Box<dyn Any>" otherwise).
#[allow(dead_code)] // not every bench catches panics
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// A field of `/proc/PID/status` (`/proc/self/status` for `None`) in bytes.
#[allow(dead_code)] // not every bench measures memory
pub fn status_bytes(pid: Option<u32>, field: &str) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}
