//! The bridge to `async`: `future::block_on` inside coroutines and threads,
//! `JoinHandle` as a `Future`, and `spawn_blocking`.

use futures::channel::oneshot;
use futures::future::join_all;
use stackweave::Runtime;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn block_on_waits_for_a_futures_oneshot_sent_from_a_thread() {
    let (tx, rx) = oneshot::channel();
    let h = stackweave::spawn(move || stackweave::future::block_on(rx).unwrap());
    std::thread::sleep(Duration::from_millis(20));
    tx.send(42).unwrap();
    assert_eq!(h.join().unwrap(), 42);
}

#[test]
fn block_on_suspends_only_its_coroutine() {
    // One worker: if block_on blocked the thread, the sender could never run.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let got = rt.block_on(|| {
        let (tx, rx) = oneshot::channel();
        let sender = stackweave::spawn(move || {
            stackweave::yield_now();
            tx.send("from a coroutine on the same worker").unwrap();
        });
        let v = stackweave::future::block_on(rx).unwrap();
        sender.join().unwrap();
        v
    });
    assert_eq!(got, "from a coroutine on the same worker");
}

#[test]
fn many_coroutines_block_on_futures_completed_by_other_coroutines() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let total = rt.block_on(|| {
        let mut senders = Vec::new();
        let waiters: Vec<_> = (0..1000u64)
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                senders.push((i, tx));
                stackweave::spawn(move || stackweave::future::block_on(rx).unwrap())
            })
            .collect();
        for (i, tx) in senders {
            stackweave::spawn(move || tx.send(i * 2).unwrap());
        }
        waiters.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(total, 2 * (0..1000u64).sum::<u64>());
}

#[test]
fn a_join_handle_is_a_future_awaited_by_an_async_executor() {
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            stackweave::spawn(move || {
                stackweave::time::sleep(Duration::from_millis(i % 10));
                i
            })
        })
        .collect();
    let results = futures::executor::block_on(join_all(handles));
    let sum: u64 = results.into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(sum, (0..100).sum::<u64>());
}

#[test]
fn a_join_handle_awaited_reports_panics_like_join() {
    let h = stackweave::spawn(|| panic!("inside"));
    let err = futures::executor::block_on(h).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"inside"));
}

#[test]
fn block_on_from_a_plain_thread_blocks_the_thread() {
    let h = stackweave::spawn(|| 7);
    assert_eq!(stackweave::future::block_on(h).unwrap(), 7);
}

#[test]
fn spawn_blocking_runs_off_the_worker_while_other_coroutines_run() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (blocking_thread, ticks) = rt.block_on(|| {
        let worker = std::thread::current().id();
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = stackweave::spawn(move || {
            for _ in 0..10 {
                stackweave::time::sleep(Duration::from_millis(5));
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        let t = ticks.clone();
        let id = stackweave::spawn_blocking(move || {
            // Blocks until the ticker has ticked 5 times, however slowly a loaded
            // machine runs it (a blocked worker never would: then the deadline).
            let deadline = Instant::now() + Duration::from_secs(20);
            while t.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::current().id()
        });
        // The ticker ran on the (only) worker while we waited.
        let during = ticks.load(Ordering::SeqCst);
        ticker.join().unwrap();
        assert_ne!(id, worker);
        (id, during)
    });
    let _ = blocking_thread;
    assert!(ticks >= 5, "the worker was blocked: only {ticks} ticks");
}

#[test]
fn spawn_blocking_passes_panics_to_the_caller() {
    let h = stackweave::spawn(|| stackweave::spawn_blocking(|| panic!("in the pool")));
    let err = h.join().unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"in the pool"));
}

#[test]
fn spawn_blocking_jobs_beyond_the_limit_wait_their_turn() {
    // The limit is process-wide: this test binary's other tests use the pool
    // lightly, and a higher limit only makes this test's assertion easier.
    let rt = Runtime::builder()
        .workers(2)
        .blocking_threads(3)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let (running, peak) = (running.clone(), peak.clone());
            rt.spawn(move || {
                stackweave::spawn_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    // 12 jobs of 50 ms, 3 at a time: at least 4 rounds.
    assert!(start.elapsed() >= Duration::from_millis(200));
}
