//! `Runtime`, its `Handle` and the default runtime: `block_on` returns the value or
//! continues the panic, handles spawn from any thread, and a plain thread spawns on
//! the default runtime (sized by `STACKWEAVE_WORKERS` if set).

mod common;

use common::Watchdog;
use stackweave::runtime::Handle;
use stackweave::Runtime;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

#[test]
fn block_on_returns_the_value() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let v = rt.block_on(|| {
        let parts: Vec<_> = (1..=10u64)
            .map(|i| stackweave::spawn(move || i * i))
            .collect();
        parts.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(v, 385);
}

#[test]
fn block_on_continues_the_panic_with_its_payload() {
    #[derive(Debug, PartialEq)]
    struct Payload(&'static str);
    let rt = Runtime::builder().workers(1).build().unwrap();
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(|| -> () { panic::panic_any(Payload("from block_on")) })
    }));
    assert_eq!(
        caught.unwrap_err().downcast_ref(),
        Some(&Payload("from block_on"))
    );
    // The runtime still works.
    assert_eq!(rt.block_on(|| 3), 3);
}

#[test]
fn block_on_from_a_thread_while_another_thread_spawns_through_a_handle() {
    const ROUNDS: u64 = 200;
    let _watchdog = Watchdog::new("concurrent block_on", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let start = Arc::new(Barrier::new(2));
    let spawner = thread::spawn({
        let start = start.clone();
        move || {
            start.wait();
            (0..ROUNDS)
                .map(|i| handle.spawn(move || i).join().unwrap())
                .sum::<u64>()
        }
    });
    start.wait();
    let total = Arc::new(AtomicU64::new(0));
    for i in 0..ROUNDS {
        let total = total.clone();
        let v = rt.block_on(move || {
            stackweave::yield_now();
            total.fetch_add(i, Ordering::Relaxed);
            i * 2
        });
        assert_eq!(v, i * 2);
    }
    assert_eq!(spawner.join().unwrap(), (0..ROUNDS).sum());
    assert_eq!(total.load(Ordering::Relaxed), (0..ROUNDS).sum());
    let m = rt.metrics();
    assert_eq!((m.spawned, m.completed), (2 * ROUNDS, 2 * ROUNDS), "{m:?}");
}

#[test]
fn block_on_from_a_coroutine_of_another_runtime_suspends_only_it() {
    let _watchdog = Watchdog::new("nested block_on", Duration::from_secs(30));
    let outer = Runtime::builder().workers(1).build().unwrap();
    let inner = Arc::new(Runtime::builder().workers(1).build().unwrap());
    let v = outer.block_on({
        let inner = inner.clone();
        move || {
            // While this waits, the outer runtime's only worker runs others.
            let waiting_on_inner = stackweave::spawn(move || inner.block_on(|| 20));
            let meanwhile = stackweave::spawn(|| 22);
            waiting_on_inner.join().unwrap() + meanwhile.join().unwrap()
        }
    });
    assert_eq!(v, 42);
}

#[test]
fn handle_spawns_from_many_threads() {
    let _watchdog = Watchdog::new("spawning from threads", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let handle = rt.handle();
            thread::spawn(move || {
                (0..250u64)
                    .map(|i| handle.spawn(move || t * 1000 + i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let expected: u64 = (0..4u64)
        .flat_map(|t| (0..250u64).map(move |i| t * 1000 + i))
        .sum();
    assert_eq!(total, expected);
    assert_eq!(rt.metrics().live_coroutines, 0);
}

#[test]
fn handle_current_inside_a_coroutine_is_its_runtime() {
    let rt = Runtime::builder().workers(3).build().unwrap();
    let (workers, spawned_on_same) = rt.block_on(|| {
        let before = Handle::current().metrics().spawned;
        // `stackweave::spawn` inside a coroutine spawns on the same runtime.
        stackweave::spawn(|| ()).join().unwrap();
        let after = Handle::current().metrics().spawned;
        (Handle::current().metrics().workers, after == before + 1)
    });
    assert_eq!(workers, 3);
    assert!(spawned_on_same);
}

#[test]
fn metrics_count_spawned_and_completed_coroutines() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let m = rt.metrics();
    assert_eq!(m.workers, 2);
    assert_eq!((m.spawned, m.completed, m.live_coroutines), (0, 0, 0));
    assert_eq!(m.run_queue_depths.len(), 2);
    let handles: Vec<_> = (0..10).map(|i| rt.spawn(move || i)).collect();
    for h in handles {
        h.join().unwrap();
    }
    let m = rt.metrics();
    assert_eq!((m.spawned, m.completed, m.live_coroutines), (10, 10, 0));
    assert_eq!(
        rt.handle().metrics().spawned,
        10,
        "handle sees the same counters"
    );
}

#[test]
fn worker_count_is_at_least_one() {
    let rt = Runtime::builder().workers(0).build().unwrap();
    assert_eq!(rt.metrics().workers, 1);
    assert_eq!(rt.block_on(|| 1), 1);
}

#[test]
fn spawn_from_a_plain_thread_uses_the_default_runtime() {
    let h = stackweave::spawn(|| {
        stackweave::yield_now();
        "on the default runtime"
    });
    assert_eq!(h.join().unwrap(), "on the default runtime");
    let m = Handle::current().metrics();
    assert!(m.workers >= 1, "{m:?}");
    assert!(m.spawned >= 1, "{m:?}");
}

#[test]
fn default_runtime_has_stackweave_workers_workers() {
    const NAME: &str = "default_runtime_has_stackweave_workers_workers";
    if common::is_child(NAME) {
        assert_eq!(Handle::current().metrics().workers, 3);
        assert_eq!(stackweave::spawn(|| 5).join().unwrap(), 5);
        println!("DEFAULT RUNTIME OK");
        return;
    }
    let child = common::run_child_with_env(NAME, &[("STACKWEAVE_WORKERS", "3")]);
    assert!(child.status.success(), "{child}");
    assert!(child.stdout.contains("DEFAULT RUNTIME OK"), "{child}");
}

#[test]
fn default_runtime_ignores_an_invalid_stackweave_workers() {
    const NAME: &str = "default_runtime_ignores_an_invalid_stackweave_workers";
    if common::is_child(NAME) {
        let expected = thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Handle::current().metrics().workers, expected);
        println!("DEFAULT RUNTIME OK");
        return;
    }
    let child = common::run_child_with_env(NAME, &[("STACKWEAVE_WORKERS", "zero")]);
    assert!(child.status.success(), "{child}");
    assert!(child.stdout.contains("DEFAULT RUNTIME OK"), "{child}");
}
