//! Timers: stackweave's per-worker heap against tokio's timer wheel, side by side.
//!
//! Run with `cargo bench --bench timers` (`-- --quick` for a smoke run). Two workloads,
//! alternated over several rounds, medians printed with ratios:
//!
//! * **deadline armed and cancelled**: one task waits with a 10 s timeout and is
//!   woken by another on the same worker long before it: what every I/O call with a
//!   timeout costs. The same ping-pong without a timeout is measured too, so the
//!   difference is the timer's own cost.
//! * **sleepers**: N tasks each sleep 100–200 ms; how late they wake (p50/p99/max)
//!   and how long arming and firing them all takes.

#[path = "harness/mod.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(10);

/// Ping-pong on one worker: `waiter` waits (with or without a deadline), `waker`
/// wakes it and yields. Nanoseconds per round trip.
fn stackweave_deadline(rt: &stackweave::Runtime, n: u64, with_timeout: bool) -> f64 {
    rt.block_on(move || {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let waiter = stackweave::spawn(move || {
            for _ in 0..n {
                if with_timeout {
                    stackweave::park_timeout(LONG);
                } else {
                    stackweave::park();
                }
            }
            d.store(true, Ordering::Release);
        });
        let target = waiter.coroutine().clone();
        let start = Instant::now();
        while !done.load(Ordering::Acquire) {
            target.unpark();
            stackweave::yield_now();
        }
        waiter.join().unwrap();
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

fn tokio_deadline(rt: &tokio::runtime::Runtime, n: u64, with_timeout: bool) -> f64 {
    rt.block_on(async move {
        let notify = Arc::new(tokio::sync::Notify::new());
        let done = Arc::new(AtomicBool::new(false));
        let (nw, d) = (notify.clone(), done.clone());
        let waiter = tokio::spawn(async move {
            for _ in 0..n {
                if with_timeout {
                    let _ = tokio::time::timeout(LONG, nw.notified()).await;
                } else {
                    nw.notified().await;
                }
            }
            d.store(true, Ordering::Release);
        });
        let start = Instant::now();
        while !done.load(Ordering::Acquire) {
            notify.notify_one();
            tokio::task::yield_now().await;
        }
        waiter.await.unwrap();
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

/// Lateness of each sleeper in µs, and the wall time of the whole run in ms.
struct Sleepers {
    late_us: Vec<f64>,
    wall_ms: f64,
}

fn sleep_for(i: u64) -> Duration {
    Duration::from_millis(100 + i % 100)
}

fn stackweave_sleepers(rt: &stackweave::Runtime, n: u64) -> Sleepers {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            rt.spawn(move || {
                let d = sleep_for(i);
                let t = Instant::now();
                stackweave::time::sleep(d);
                (t.elapsed() - d).as_nanos() as f64 / 1e3
            })
        })
        .collect();
    let late_us = handles.into_iter().map(|h| h.join().unwrap()).collect();
    Sleepers {
        late_us,
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
    }
}

fn tokio_sleepers(rt: &tokio::runtime::Runtime, n: u64) -> Sleepers {
    rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                tokio::spawn(async move {
                    let d = sleep_for(i);
                    let t = Instant::now();
                    tokio::time::sleep(d).await;
                    (t.elapsed().saturating_sub(d)).as_nanos() as f64 / 1e3
                })
            })
            .collect();
        let mut late_us = Vec::with_capacity(handles.len());
        for h in handles {
            late_us.push(h.await.unwrap());
        }
        Sleepers {
            late_us,
            wall_ms: start.elapsed().as_secs_f64() * 1e3,
        }
    })
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let quick = harness::quick_mode();
    let (rounds, pings, sleepers) = if quick.is_some() {
        (1, 20_000, 10_000)
    } else {
        (5, 500_000, 100_000)
    };
    println!(
        "timers: {} mode, {rounds} rounds, {} CPUs, load {}",
        quick.unwrap_or("full"),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        harness::load_average()
    );
    let sw1 = stackweave::Runtime::builder().workers(1).build().unwrap();
    let sw2 = stackweave::Runtime::builder().workers(2).build().unwrap();
    let tk1 = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let tk2 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();

    let mut ping: [Vec<f64>; 4] = Default::default();
    let mut late: [Vec<[f64; 3]>; 2] = Default::default();
    let mut wall: [Vec<f64>; 2] = Default::default();
    for _ in 0..rounds {
        ping[0].push(stackweave_deadline(&sw1, pings, false));
        ping[1].push(stackweave_deadline(&sw1, pings, true));
        ping[2].push(tokio_deadline(&tk1, pings, false));
        ping[3].push(tokio_deadline(&tk1, pings, true));
        for (k, mut s) in [
            stackweave_sleepers(&sw2, sleepers),
            tokio_sleepers(&tk2, sleepers),
        ]
        .into_iter()
        .enumerate()
        {
            let p = [0.5, 0.99, 1.0].map(|q| percentile(&mut s.late_us, q));
            late[k].push(p);
            wall[k].push(s.wall_ms);
        }
    }

    let med = |v: &[f64]| harness::summary(v).0;
    println!("\n## deadline armed and cancelled (1 worker; ns per wait+wake round trip, median)");
    let names = [
        "stackweave park/unpark",
        "stackweave park_timeout(10 s)/unpark",
        "tokio Notify",
        "tokio timeout(10 s, Notify)",
    ];
    for (name, v) in names.iter().zip(&ping) {
        let (m, lo, hi) = harness::summary(v);
        println!("{name:<40} {m:>8.1} ns  (min {lo:.1}, max {hi:.1})");
    }
    let sw_cost = med(&ping[1]) - med(&ping[0]);
    let tk_cost = med(&ping[3]) - med(&ping[2]);
    println!(
        "timer cost: stackweave {sw_cost:.1} ns, tokio {tk_cost:.1} ns; whole wait with \
         deadline tokio/stackweave = {:.2}x",
        med(&ping[3]) / med(&ping[1])
    );

    println!(
        "\n## {sleepers} sleepers of 100-200 ms (2 workers; lateness in µs, medians over rounds)"
    );
    for (k, name) in ["stackweave", "tokio"].iter().enumerate() {
        let col = |i: usize| med(&late[k].iter().map(|p| p[i]).collect::<Vec<_>>());
        println!(
            "{name:<12} p50 {:>8.0}  p99 {:>8.0}  max {:>8.0}   wall {:>7.1} ms",
            col(0),
            col(1),
            col(2),
            med(&wall[k])
        );
    }
}
