//! The metrics example (`examples/metrics.rs`), run in-process for two seconds: it
//! must run its load and print every worker's figures. What it prints depends on
//! the machine's speed; only that the load showed up in the counters is checked.

#[path = "../examples/metrics.rs"]
#[allow(dead_code)]
mod metrics_example;

#[test]
fn the_metrics_example_runs_and_counts_its_load() {
    let m = metrics_example::run(2).expect("the example's load");
    assert_eq!(m.per_worker.len(), 2);
    assert!(
        m.per_worker.iter().map(|w| w.runs).sum::<u64>() > 0,
        "{m:?}"
    );
    // The listener and the 64 client connections at least, wherever they live.
    assert!(
        m.per_worker.iter().map(|w| w.registrations).sum::<usize>() >= 65,
        "{m:?}"
    );
}
