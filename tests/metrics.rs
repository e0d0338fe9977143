//! Per-worker metrics through the public API: runs, live coroutines, armed timers,
//! reactor registrations, busy time, and the blocking pool's threads.
//!
//! The figures a worker publishes when it next polls its reactor are waited for
//! (with a generous cap), never expected within a time.

mod common;

use common::eventually;
use stackweave::net::TcpListener;
use stackweave::runtime::WorkerMetrics;
use stackweave::Runtime;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn worker0(rt: &Runtime) -> WorkerMetrics {
    rt.metrics().per_worker[0].clone()
}

#[test]
fn a_worker_counts_its_runs_live_coroutines_timers_and_registrations() {
    let before_build = Instant::now();
    let rt = Runtime::builder().workers(1).build().unwrap();
    assert_eq!(rt.metrics().per_worker.len(), 1);
    let idle = worker0(&rt);
    assert_eq!(idle.live_coroutines, 0);
    assert_eq!(idle.registrations, 0);

    // One coroutine parked for good, one asleep for a minute, one waiting in accept.
    let (started, ready) = mpsc::channel();
    let parked = rt.spawn(move || {
        started.send(()).unwrap();
        loop {
            stackweave::park();
        }
    });
    ready.recv().unwrap();
    let sleeper = rt.spawn(|| stackweave::time::sleep(Duration::from_secs(60)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let acceptor = rt.spawn(move || {
        let _ = listener.accept();
    });
    eventually("three live coroutines", || {
        worker0(&rt).live_coroutines == 3
    });
    eventually("the sleeper's timer", || worker0(&rt).timers == 1);
    eventually("the listener's registration", || {
        worker0(&rt).registrations == 1
    });
    let m = worker0(&rt);
    assert!(m.runs >= 3, "{m:?}");
    assert!(m.polls >= 1, "{m:?}");
    assert!(m.busy <= before_build.elapsed(), "{m:?}");
    assert_eq!(m.stalls, 0);
    eventually("a park", || worker0(&rt).parks >= 1);

    // Cancelled, they finish: live and timers go back to 0.
    for h in [parked, sleeper, acceptor] {
        h.cancel();
        let _ = h.join();
    }
    eventually("no live coroutine", || worker0(&rt).live_coroutines == 0);
    eventually("no timer", || worker0(&rt).timers == 0);
    eventually("no registration", || worker0(&rt).registrations == 0);
    let m = rt.metrics();
    assert_eq!(m.steals, m.per_worker.iter().map(|w| w.steals).sum::<u64>());
    assert_eq!(m.parks, m.per_worker.iter().map(|w| w.parks).sum::<u64>());
}

#[test]
fn every_worker_has_its_counters_and_runs_add_up() {
    let rt = Runtime::builder().workers(3).build().unwrap();
    let handles: Vec<_> = (0..30)
        .map(|_| {
            rt.spawn(|| {
                for _ in 0..10 {
                    stackweave::yield_now();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let m = rt.metrics();
    assert_eq!(m.per_worker.len(), 3);
    // Each coroutine runs 11 times: its first run and once after each yield.
    let runs: u64 = m.per_worker.iter().map(|w| w.runs).sum();
    assert!(runs >= 30 * 11, "{m:?}");
    eventually("all finished", || {
        rt.metrics()
            .per_worker
            .iter()
            .all(|w| w.live_coroutines == 0)
    });
}

#[test]
fn the_blocking_pool_shows_a_busy_thread() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (release, wait) = mpsc::channel::<()>();
    let job = rt.spawn(move || stackweave::spawn_blocking(move || wait.recv().unwrap()));
    eventually("a busy blocking thread", || {
        let m = rt.metrics();
        m.blocking_busy >= 1 && m.blocking_threads >= m.blocking_busy
    });
    release.send(()).unwrap();
    job.join().unwrap();
}
