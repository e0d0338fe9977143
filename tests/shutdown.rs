//! Shutting a runtime down (dropping it, or `Runtime::shutdown`) ends every
//! coroutine: blocked ones are unwound on their worker (their destructors run and
//! their `join` returns `Err(Unwound)`), unstarted ones are completed without running
//! (their captured values dropped), and spawning afterwards is an error.

mod common;

use common::Watchdog;
use stackweave::runtime::{Handle, RuntimeShutdown};
use stackweave::{Builder, JoinHandle, Runtime, Unwound};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Counts its drops.
struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Asserts that `h`'s coroutine was ended by its runtime.
fn assert_unwound<T>(h: JoinHandle<T>) {
    let payload = h.join().err().expect("ended by the runtime, not returned");
    assert!(payload.is::<Unwound>(), "payload is not Unwound");
}

/// Waits until `counter` reaches `n` (coroutines announcing they got somewhere).
fn wait_for(counter: &AtomicUsize, n: usize) {
    while counter.load(Ordering::SeqCst) < n {
        thread::yield_now();
    }
}

/// Continues the unwind of a joined coroutine that its runtime ended; counts in
/// `wrong` a join that did not return `Err(Unwound)`.
fn propagate(joined: std::thread::Result<()>, wrong: &AtomicUsize) {
    match joined {
        Err(payload) if payload.is::<Unwound>() => panic::resume_unwind(payload),
        _ => {
            wrong.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn dropping_a_runtime_unwinds_parked_coroutines_and_runs_their_destructors() {
    const N: usize = 20;
    let _watchdog = Watchdog::new("unwinding parked coroutines", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let handles: Vec<JoinHandle<()>> = (0..N)
        .map(|_| {
            let (dropped, parked) = (dropped.clone(), parked.clone());
            rt.spawn(move || {
                let _guard = Guard(dropped);
                parked.fetch_add(1, Ordering::SeqCst);
                loop {
                    stackweave::park();
                }
            })
        })
        .collect();
    wait_for(&parked, N);
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    drop(rt);
    assert_eq!(dropped.load(Ordering::SeqCst), N, "every destructor ran");
    handles.into_iter().for_each(assert_unwound);
}

#[test]
fn dropping_a_runtime_unwinds_coroutines_blocked_joining_each_other() {
    let _watchdog = Watchdog::new("unwinding joiners", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let joining = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(AtomicUsize::new(0));

    // Two coroutines, each joining the other: a deadlock only shutdown ends. Each
    // gets the other's handle through a slot once both exist.
    type Slot = Arc<Mutex<Option<JoinHandle<()>>>>;
    let slots: [Slot; 2] = Default::default();
    let cycle: Vec<JoinHandle<()>> = (0..2)
        .map(|i| {
            let (slot, dropped) = (slots[1 - i].clone(), dropped.clone());
            let (joining, wrong) = (joining.clone(), wrong.clone());
            rt.spawn(move || {
                let _guard = Guard(dropped);
                let other = loop {
                    if let Some(other) = slot.lock().unwrap().take() {
                        break other;
                    }
                    stackweave::park();
                };
                joining.fetch_add(1, Ordering::SeqCst);
                // If the other one is unwound first (its worker may drain first),
                // this join returns its `Unwound` before this one is unwound too.
                propagate(other.join(), &wrong);
            })
        })
        .collect();
    let coroutines: Vec<_> = cycle.iter().map(|h| h.coroutine().clone()).collect();
    for (slot, h) in slots.iter().zip(cycle) {
        *slot.lock().unwrap() = Some(h);
    }
    // They may have parked before their slot was filled.
    coroutines.iter().for_each(stackweave::Coroutine::unpark);

    // And one whose joiner this test holds: it joins a coroutine parked forever.
    let joiner = rt.spawn({
        let (dropped, joining, wrong) = (dropped.clone(), joining.clone(), wrong.clone());
        move || {
            let _guard = Guard(dropped.clone());
            let parked = stackweave::spawn(move || {
                let _guard = Guard(dropped);
                loop {
                    stackweave::park();
                }
            });
            joining.fetch_add(1, Ordering::SeqCst);
            propagate(parked.join(), &wrong);
        }
    });
    wait_for(&joining, 3);
    drop(rt);
    // Two in the cycle, the joiner, and the coroutine it joins.
    assert_eq!(dropped.load(Ordering::SeqCst), 4, "every destructor ran");
    assert_eq!(
        wrong.load(Ordering::SeqCst),
        0,
        "a join returned other than Unwound"
    );
    assert_unwound(joiner);
}

/// Coroutines still queued, unstarted, when a runtime shuts down.
struct Queued {
    rt: Runtime,
    /// Spawned from a coroutine, onto its worker's own deque.
    local: Vec<JoinHandle<()>>,
    /// Spawned from this thread, onto the worker's spawn inbox.
    injected: Vec<JoinHandle<()>>,
    /// The coroutine that keeps the only worker busy until shutdown begins.
    blocker: JoinHandle<()>,
    /// Drops of the values the queued coroutines captured.
    dropped: Arc<AtomicUsize>,
    /// Set by any queued coroutine that runs.
    ran: Arc<AtomicBool>,
}

/// Builds a 1-worker runtime whose only worker runs a coroutine that does not
/// return to the scheduler until shutdown has begun (it sees spawning fail), with
/// `n` coroutines queued behind it on the worker's own queues and `n` in its spawn
/// inbox (spawned from outside).
fn queue_behind_a_blocker(n: usize) -> Queued {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicBool::new(false));
    let queued = |dropped: &Arc<AtomicUsize>, ran: &Arc<AtomicBool>| {
        let guard = Guard(dropped.clone());
        let ran = ran.clone();
        move || {
            ran.store(true, Ordering::SeqCst);
            drop(guard);
        }
    };
    let (local_tx, local_rx) = std::sync::mpsc::channel();
    let blocker = rt.spawn({
        let (dropped, ran) = (dropped.clone(), ran.clone());
        move || {
            let local: Vec<_> = (0..n)
                .map(|_| stackweave::spawn(queued(&dropped, &ran)))
                .collect();
            local_tx.send(local).unwrap();
            let handle = Handle::current();
            while handle.try_spawn(Builder::new(), || ()).is_ok() {
                thread::sleep(Duration::from_millis(1));
            }
            loop {
                stackweave::park();
            }
        }
    });
    let local = local_rx.recv().unwrap();
    let injected = (0..n).map(|_| rt.spawn(queued(&dropped, &ran))).collect();
    Queued {
        rt,
        local,
        injected,
        blocker,
        dropped,
        ran,
    }
}

#[test]
fn shutdown_gives_queued_coroutines_a_result_and_drops_their_captures() {
    const N: usize = 10;
    let _watchdog = Watchdog::new("ending queued coroutines", Duration::from_secs(30));
    let q = queue_behind_a_blocker(N);
    q.rt.shutdown();
    assert_eq!(
        q.dropped.load(Ordering::SeqCst),
        2 * N,
        "captured values dropped"
    );
    for h in q.local.into_iter().chain(q.injected) {
        // Ran, or was completed unrun (see the ignored test below).
        if let Err(payload) = h.join() {
            assert!(payload.is::<Unwound>());
        }
    }
    assert_unwound(q.blocker);
}

#[test]
fn shutdown_completes_unstarted_coroutines_without_running_them() {
    const N: usize = 10;
    let _watchdog = Watchdog::new("completing unstarted coroutines", Duration::from_secs(30));
    let q = queue_behind_a_blocker(N);
    q.rt.shutdown();
    assert!(
        !q.ran.load(Ordering::SeqCst),
        "an unstarted coroutine ran during shutdown"
    );
    assert_eq!(
        q.dropped.load(Ordering::SeqCst),
        2 * N,
        "captured values dropped"
    );
    q.local.into_iter().for_each(assert_unwound);
    q.injected.into_iter().for_each(assert_unwound);
    assert_unwound(q.blocker);
}

#[test]
fn shutdown_leaves_no_live_coroutines() {
    let _watchdog = Watchdog::new("shutdown metrics", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let parked = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let parked = parked.clone();
            rt.spawn(move || {
                if i % 2 == 0 {
                    parked.fetch_add(1, Ordering::SeqCst);
                    loop {
                        stackweave::park();
                    }
                }
            })
        })
        .collect();
    wait_for(&parked, 25);
    // The others return at once: let them, so that each half ends its own way.
    while !handles.iter().skip(1).step_by(2).all(|h| h.is_finished()) {
        thread::yield_now();
    }
    assert!(handle.metrics().live_coroutines >= 25);
    rt.shutdown();
    let m = handle.metrics();
    assert_eq!(m.live_coroutines, 0, "{m:?}");
    assert_eq!((m.spawned, m.completed), (50, 50), "{m:?}");
    for (i, h) in handles.into_iter().enumerate() {
        if i % 2 == 0 {
            assert_unwound(h);
        } else {
            h.join().unwrap();
        }
    }
}

/// Asserts that `err` is the error of a spawn refused at shutdown.
fn assert_runtime_shutdown(err: &std::io::Error) {
    let payload = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<RuntimeShutdown>());
    assert_eq!(payload, Some(&RuntimeShutdown::default()), "{err}");
    assert_eq!(err.to_string(), "the runtime is shutting down");
}

#[test]
fn a_spawn_while_the_shutdown_is_under_way_returns_runtime_shutdown() {
    let _watchdog = Watchdog::new("a spawn during shutdown", Duration::from_secs(30));
    let rt = Runtime::builder().workers(1).build().unwrap();
    let handle = rt.handle().clone();
    let (parked, unwound, release) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    // Catches its unwind and then keeps its worker, without blocking, until told:
    // the shutdown cannot finish meanwhile.
    let h = rt.spawn({
        let (parked, unwound, release) = (parked.clone(), unwound.clone(), release.clone());
        move || {
            let caught = panic::catch_unwind(|| {
                parked.fetch_add(1, Ordering::SeqCst);
                loop {
                    stackweave::park();
                }
            });
            assert!(caught.expect_err("parked forever").is::<Unwound>());
            unwound.fetch_add(1, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        }
    });
    wait_for(&parked, 1);
    thread::scope(|s| {
        let shutdown = s.spawn(move || rt.shutdown());
        wait_for(&unwound, 1);
        let err = handle.try_spawn(Builder::new(), || ()).unwrap_err();
        assert_runtime_shutdown(&err);
        assert!(
            !shutdown.is_finished(),
            "the shutdown waits for the coroutine"
        );
        release.store(true, Ordering::SeqCst);
        shutdown.join().unwrap();
    });
    h.join().unwrap();
}

#[test]
fn spawning_through_a_handle_after_the_runtime_is_dropped_is_an_error() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let handle = rt.handle();
    drop(rt);
    let err = handle.try_spawn(Builder::new(), || ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Other, "{err}");
    assert_runtime_shutdown(&err);
    // `Handle::spawn` panics instead of hanging.
    let spawn = panic::catch_unwind(AssertUnwindSafe(|| handle.spawn(|| ())));
    assert!(spawn.is_err(), "spawned on a dropped runtime");
    assert_eq!(handle.metrics().live_coroutines, 0);
}

#[test]
fn coroutine_that_catches_the_unwind_and_blocks_again_is_unwound_again() {
    let _watchdog = Watchdog::new("a stubborn coroutine", Duration::from_secs(30));
    let rt = Runtime::builder().workers(1).build().unwrap();
    let caught = Arc::new(AtomicBool::new(false));
    let parked = Arc::new(AtomicUsize::new(0));
    let h = rt.spawn({
        let (caught, parked) = (caught.clone(), parked.clone());
        move || {
            let first = panic::catch_unwind(|| {
                parked.fetch_add(1, Ordering::SeqCst);
                loop {
                    stackweave::park();
                }
            });
            let payload = first.expect_err("parked forever");
            caught.store(payload.is::<Unwound>(), Ordering::SeqCst);
            loop {
                stackweave::park();
            }
        }
    });
    wait_for(&parked, 1);
    drop(rt);
    assert!(caught.load(Ordering::SeqCst), "caught the first unwind");
    assert_unwound(h);
}

#[test]
fn dropping_an_idle_runtime_returns_promptly() {
    let _watchdog = Watchdog::new("dropping idle runtimes", Duration::from_secs(30));
    for _ in 0..20 {
        let rt = Runtime::builder().workers(2).build().unwrap();
        assert_eq!(rt.block_on(|| 1), 1);
        drop(rt);
    }
}
