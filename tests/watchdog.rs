//! The stall watchdog: a coroutine that runs past the threshold without suspending
//! is reported once on stderr, with its name and spawn location, and counted in the
//! metrics; nothing is reported with the watchdog off, or for a coroutine that
//! yields often.
//!
//! Stderr is checked in a child process (see `common`). No test asserts how soon a
//! report comes: the busy coroutines spin until the metrics count a stall.

mod common;

use stackweave::runtime::Handle;
use stackweave::Runtime;
use std::time::{Duration, Instant};

/// Longest a busy coroutine waits for the watchdog before the test gives up.
const GIVE_UP: Duration = Duration::from_secs(60);

/// Spins without suspending until the current runtime's metrics count a stall (or
/// [`GIVE_UP`] passes); returns the stalls counted.
fn spin_until_reported() -> u64 {
    let start = Instant::now();
    loop {
        let stalls = Handle::current().metrics().stalls;
        if stalls > 0 || start.elapsed() > GIVE_UP {
            return stalls;
        }
        std::hint::spin_loop();
    }
}

/// The lines of `stderr` that are stackweave's stall reports.
fn reports(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("stackweave: coroutine"))
        .collect()
}

#[test]
fn a_busy_coroutine_is_reported_with_its_name_and_spawn_location() {
    const NAME: &str = "a_busy_coroutine_is_reported_with_its_name_and_spawn_location";
    if common::is_child(NAME) {
        let rt = Runtime::builder()
            .workers(2)
            .stall_threshold(Some(Duration::from_millis(50)))
            .build()
            .unwrap();
        let builder = stackweave::Builder::new().name("busy-loop".into());
        let busy = rt.handle().try_spawn(builder, spin_until_reported).unwrap();
        let stalls = busy.join().unwrap();
        println!("STALLS {stalls} {}", rt.metrics().stalls);
        drop(rt); // the watchdog's last look reports the end of the stall
        return;
    }
    let child = common::run_child(NAME);
    assert!(child.status.success(), "{child}");
    assert!(child.stdout.contains("STALLS 1 1"), "{child}");
    let reports = reports(&child.stderr);
    let first = reports
        .iter()
        .find(|l| l.contains("without suspending"))
        .unwrap_or_else(|| panic!("no stall report\n{child}"));
    for part in [
        "'busy-loop'",
        "(spawned at tests/watchdog.rs:",
        " ms on worker ",
        "the 0 other coroutine(s) homed on that worker wait",
        "stackweave::spawn_blocking",
    ] {
        assert!(
            first.contains(part),
            "{part:?} missing in {first:?}\n{child}"
        );
    }
    assert_eq!(
        reports
            .iter()
            .filter(|l| l.contains("without suspending"))
            .count(),
        1,
        "one report per stall\n{child}"
    );
    assert!(
        reports
            .iter()
            .any(|l| l.contains("'busy-loop'") && l.contains("after a stall of about")),
        "no report of the stall's end\n{child}"
    );
}

#[test]
fn the_default_runtime_takes_the_threshold_from_the_environment() {
    const NAME: &str = "the_default_runtime_takes_the_threshold_from_the_environment";
    if common::is_child(NAME) {
        let stalls = stackweave::spawn(spin_until_reported).join().unwrap();
        println!("STALLS {stalls}");
        return;
    }
    let child = common::run_child_with_env(NAME, &[("STACKWEAVE_STALL_THRESHOLD_MS", "30")]);
    assert!(child.status.success(), "{child}");
    assert!(child.stdout.contains("STALLS 1"), "{child}");
    assert!(
        reports(&child.stderr)
            .iter()
            .any(|l| l.contains("without suspending") && l.contains("stall threshold 30 ms")),
        "no stall report\n{child}"
    );
}

#[test]
fn nothing_is_reported_with_the_watchdog_off() {
    const NAME: &str = "nothing_is_reported_with_the_watchdog_off";
    if common::is_child(NAME) {
        let rt = Runtime::builder()
            .workers(1)
            .stall_threshold(None)
            .build()
            .unwrap();
        let builder = stackweave::Builder::new().name("sleeper".into());
        let sleeper = rt
            .handle()
            .try_spawn(builder, || std::thread::sleep(Duration::from_millis(300)))
            .unwrap();
        sleeper.join().unwrap();
        println!("STALLS {}", rt.metrics().stalls);
        return;
    }
    let child = common::run_child(NAME);
    assert!(child.status.success(), "{child}");
    assert!(child.stdout.contains("STALLS 0"), "{child}");
    assert!(
        reports(&child.stderr).is_empty(),
        "reported with the watchdog off\n{child}"
    );
}

#[test]
fn a_coroutine_that_yields_often_is_not_reported() {
    // A threshold far above any pause a loaded machine gives a thread, and a loop
    // five times as long.
    let rt = Runtime::builder()
        .workers(1)
        .stall_threshold(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let yields = rt.block_on(|| {
        let start = Instant::now();
        let mut yields = 0u64;
        while start.elapsed() < Duration::from_secs(1) {
            let burst = Instant::now();
            while burst.elapsed() < Duration::from_micros(50) {
                std::hint::spin_loop();
            }
            stackweave::yield_now();
            yields += 1;
        }
        yields
    });
    assert!(yields > 0);
    assert_eq!(rt.metrics().stalls, 0);
}
