//! Spawning and joining coroutines, like `std::thread`: every coroutine runs exactly
//! once, `join` works from threads and from coroutines, a dropped `JoinHandle`
//! detaches, and `Builder` names coroutines and sizes their stacks.

mod common;

use common::Watchdog;
use stackweave::{Builder, JoinHandle, Runtime};
use std::collections::VecDeque;
use std::hint::black_box;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Coroutines in the spawn-and-join tests.
const MANY: u32 = if cfg!(miri) { 500 } else { 100_000 };
/// At most this many of them are alive at once: every live coroutine holds a stack
/// (two memory maps with `mprotect` guards, and `vm.max_map_count` is 65,530).
const IN_FLIGHT: usize = 4_096;

/// Spawns `MANY` coroutines with `spawn`, each bumping its own run counter and
/// returning `3 * i + 1`, joins them all (keeping at most `IN_FLIGHT` alive) and
/// checks every result and that each ran exactly once.
fn spawn_and_join_many(spawn: impl Fn(Box<dyn FnOnce() -> u32 + Send>) -> JoinHandle<u32>) {
    let runs: Arc<Vec<AtomicU32>> = Arc::new((0..MANY).map(|_| AtomicU32::new(0)).collect());
    let mut in_flight = VecDeque::with_capacity(IN_FLIGHT);
    let mut joined = 0;
    let mut join_oldest = |in_flight: &mut VecDeque<(u32, JoinHandle<u32>)>| {
        let (i, h) = in_flight.pop_front().expect("one in flight");
        assert_eq!(h.join().unwrap(), 3 * i + 1, "result of coroutine {i}");
        joined += 1;
    };
    for i in 0..MANY {
        if in_flight.len() == IN_FLIGHT {
            join_oldest(&mut in_flight);
        }
        let runs = runs.clone();
        let h = spawn(Box::new(move || {
            runs[i as usize].fetch_add(1, Ordering::Relaxed);
            3 * i + 1
        }));
        in_flight.push_back((i, h));
    }
    while !in_flight.is_empty() {
        join_oldest(&mut in_flight);
    }
    assert_eq!(joined, MANY);
    let wrong: Vec<(usize, u32)> = runs
        .iter()
        .map(|r| r.load(Ordering::Relaxed))
        .enumerate()
        .filter(|&(_, n)| n != 1)
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "(coroutine, runs) not run exactly once: {wrong:?}"
    );
}

#[test]
fn hundred_thousand_coroutines_spawned_from_a_thread_each_run_once() {
    let _watchdog = Watchdog::new("100,000 spawns from a thread", Duration::from_secs(60));
    let rt = Runtime::builder().workers(2).build().unwrap();
    spawn_and_join_many(|f| rt.spawn(f));
    let m = rt.metrics();
    assert_eq!(
        (m.spawned, m.completed),
        (MANY.into(), MANY.into()),
        "{m:?}"
    );
    assert_eq!(m.live_coroutines, 0, "{m:?}");
}

#[test]
fn hundred_thousand_coroutines_spawned_from_a_coroutine_each_run_once() {
    let _watchdog = Watchdog::new("100,000 spawns from a coroutine", Duration::from_secs(60));
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(|| spawn_and_join_many(stackweave::spawn));
    let m = rt.metrics();
    // The `block_on` coroutine too.
    let all = u64::from(MANY) + 1;
    assert_eq!((m.spawned, m.completed), (all, all), "{m:?}");
    assert_eq!(m.live_coroutines, 0, "{m:?}");
}

#[test]
fn join_from_a_thread_returns_the_result() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let h = rt.spawn(|| {
        stackweave::yield_now();
        String::from("from a coroutine")
    });
    let from_thread = std::thread::spawn(move || h.join().unwrap());
    assert_eq!(from_thread.join().unwrap(), "from a coroutine");
}

#[test]
fn join_from_a_coroutine_returns_the_result() {
    let _watchdog = Watchdog::new("joins from coroutines", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let sum = rt.block_on(|| {
        let children: Vec<_> = (0..100u64)
            .map(|i| {
                stackweave::spawn(move || {
                    for _ in 0..(i % 4) {
                        stackweave::yield_now();
                    }
                    i
                })
            })
            .collect();
        children.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, (0..100).sum());
}

#[test]
fn join_from_a_coroutine_of_another_runtime_returns_the_result() {
    let _watchdog = Watchdog::new("a join across runtimes", Duration::from_secs(30));
    let a = Runtime::builder().workers(1).build().unwrap();
    let b = Runtime::builder().workers(1).build().unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let on_b = b.spawn(move || {
        release_rx.recv().unwrap(); // blocks b's worker; fine for this test
        "from b"
    });
    let joiner = a.spawn(move || on_b.join().unwrap());
    release_tx.send(()).unwrap();
    assert_eq!(joiner.join().unwrap(), "from b");
}

#[test]
fn join_of_a_finished_coroutine_returns_at_once() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let h = rt.spawn(|| 5);
    while !h.is_finished() {
        std::thread::yield_now();
    }
    assert_eq!(h.join().unwrap(), 5);
}

#[test]
fn is_finished_is_false_until_the_coroutine_returns() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let h = rt.spawn({
        let release = release.clone();
        move || {
            while !release.load(Ordering::Acquire) {
                stackweave::park();
            }
        }
    });
    assert!(!h.is_finished());
    std::thread::sleep(Duration::from_millis(10));
    assert!(!h.is_finished(), "finished while parked");
    release.store(true, Ordering::Release);
    h.coroutine().unpark();
    while !h.is_finished() {
        std::thread::yield_now();
    }
    h.join().unwrap();
}

#[test]
fn join_handle_names_its_coroutine() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let named = rt
        .handle()
        .try_spawn(Builder::new().name("named-one".into()), || {
            let me = stackweave::current();
            (me.id(), me.name().map(str::to_owned))
        })
        .unwrap();
    let unnamed = rt.spawn(|| stackweave::current().name().map(str::to_owned));
    assert_eq!(named.coroutine().name(), Some("named-one"));
    assert_eq!(unnamed.coroutine().name(), None);
    assert_ne!(named.coroutine().id(), unnamed.coroutine().id());
    let id = named.coroutine().id();
    assert_eq!(named.join().unwrap(), (id, Some("named-one".to_owned())));
    assert_eq!(unnamed.join().unwrap(), None);
}

#[test]
fn dropping_a_join_handle_detaches_the_coroutine() {
    let _watchdog = Watchdog::new("a detached coroutine", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let release = Arc::new(AtomicBool::new(false));
    let h = rt.spawn({
        let release = release.clone();
        move || {
            while !release.load(Ordering::Acquire) {
                stackweave::park();
            }
            done_tx.send("ran to completion").unwrap();
        }
    });
    let coroutine = h.coroutine().clone();
    drop(h);
    release.store(true, Ordering::Release);
    coroutine.unpark();
    assert_eq!(done_rx.recv().unwrap(), "ran to completion");
    let m = rt.metrics();
    // Counted as completed before its result is dropped: wait for the count.
    while rt.metrics().live_coroutines != 0 {
        std::thread::yield_now();
    }
    assert_eq!(m.spawned, 1);
}

/// Uses about `bytes` of stack, in 4 KiB frames.
fn use_stack(bytes: usize) -> u64 {
    let frame = black_box([1u8; 4096]);
    let below = if bytes > 4096 {
        use_stack(bytes - 4096)
    } else {
        0
    };
    below + u64::from(black_box(&frame)[4095])
}

#[test]
fn builder_stack_size_gives_a_coroutine_a_bigger_stack() {
    const BIG: usize = 4 * 1024 * 1024;
    let rt = Runtime::builder().workers(1).build().unwrap();
    // 3 MiB of frames would overflow (and abort) on the default 256 KiB stack.
    let h = rt
        .handle()
        .try_spawn(Builder::new().stack_size(BIG), || {
            use_stack(3 * 1024 * 1024)
        })
        .unwrap();
    assert_eq!(h.join().unwrap(), 3 * 256);
}

#[test]
fn runtime_stack_size_is_the_default_for_its_coroutines() {
    let rt = Runtime::builder()
        .workers(1)
        .stack_size(4 * 1024 * 1024)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(|| use_stack(3 * 1024 * 1024)), 3 * 256);
}

#[test]
fn absurd_stack_size_is_an_error_not_a_panic() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let err = rt
        .handle()
        .try_spawn(Builder::new().stack_size(usize::MAX), || ())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    // The same through `Builder::spawn` from inside the runtime.
    let err = rt
        .block_on(|| Builder::new().stack_size(usize::MAX).spawn(|| ()).map(drop))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    // And a runtime cannot be built with it.
    let err = Runtime::builder()
        .workers(1)
        .stack_size(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    // The runtime is still fine.
    assert_eq!(rt.block_on(|| 1), 1);
}

#[test]
fn huge_but_representable_stack_size_is_an_out_of_memory_error() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    // 2^62 bytes: rounds to pages fine, but no address space is that large.
    let err = rt
        .handle()
        .try_spawn(Builder::new().stack_size(1 << 62), || ())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
}
