//! Placement and work stealing spread unstarted coroutines over the workers, a started coroutine
//! never changes OS thread, and a coroutine that keeps yielding cannot starve the
//! others.

mod common;

use common::Watchdog;
use stackweave::Runtime;
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// The set of OS threads some coroutines started on.
#[derive(Default)]
struct Threads(Mutex<HashSet<ThreadId>>);

impl Threads {
    /// Records the calling thread; returns it.
    fn record(&self) -> ThreadId {
        let me = thread::current().id();
        self.0.lock().unwrap().insert(me);
        me
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Spins on the OS thread, without returning to the scheduler, until coroutines
    /// have started on two threads. The worker running the caller is kept busy, so
    /// the other worker must steal: it is how a test makes stealing certain rather
    /// than likely on a loaded machine.
    fn wait_for_two(&self) {
        while self.count() < 2 {
            thread::yield_now();
        }
    }
}

/// Some work that the optimiser cannot remove.
fn cpu_work(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

#[test]
fn cpu_bound_coroutines_spawned_from_one_coroutine_spread_over_both_workers() {
    const N: u64 = 1_000;
    let _watchdog = Watchdog::new("stealing", Duration::from_secs(60));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let threads = Arc::new(Threads::default());
    let per_coroutine = rt.block_on({
        let threads = threads.clone();
        move || {
            let handles: Vec<_> = (0..N)
                .map(|i| {
                    let threads = threads.clone();
                    stackweave::spawn(move || {
                        let me = threads.record();
                        let result = cpu_work(i);
                        threads.wait_for_two();
                        (me, i, result)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }
    });
    for (i, &(_, j, result)) in per_coroutine.iter().enumerate() {
        assert_eq!((i as u64, result), (j, cpu_work(j)));
    }
    let ran_on: HashSet<ThreadId> = per_coroutine.iter().map(|&(t, _, _)| t).collect();
    // Placement hands some to the other worker at spawn and it steals others: which
    // of the two did it is the scheduler's business, not this test's.
    assert_eq!(ran_on.len(), 2, "both workers ran some coroutines");
}

#[test]
fn started_coroutine_never_changes_thread_across_yields_and_parks() {
    const N: usize = 10_000;
    const YIELDS: usize = 20;
    let _watchdog = Watchdog::new("pinning", Duration::from_secs(60));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let threads = Arc::new(Threads::default());
    let parking: Arc<Vec<AtomicBool>> = Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
    let released: Arc<Vec<AtomicBool>> = Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
    let (coroutines_tx, coroutines_rx) = mpsc::channel();

    // One coroutine spawns them all, so that all but the ones its worker starts
    // itself are handed over unstarted (placed on the other worker, or stolen).
    let spawner = rt.spawn({
        let (threads, parking, released) = (threads.clone(), parking.clone(), released.clone());
        move || {
            let handles: Vec<_> = (0..N)
                .map(|i| {
                    let (threads, parking, released) =
                        (threads.clone(), parking.clone(), released.clone());
                    stackweave::spawn(move || {
                        let home = threads.record();
                        threads.wait_for_two();
                        let mut changes = 0;
                        let mut check = || changes += usize::from(thread::current().id() != home);
                        for _ in 0..YIELDS / 2 {
                            stackweave::yield_now();
                            check();
                        }
                        // No yield between announcing the park and parking.
                        parking[i].store(true, Ordering::Release);
                        while !released[i].load(Ordering::Acquire) {
                            stackweave::park();
                            check();
                        }
                        for _ in 0..YIELDS / 2 {
                            stackweave::yield_now();
                            check();
                        }
                        (home, changes)
                    })
                })
                .collect();
            let coroutines = handles.iter().map(|h| h.coroutine().clone()).collect();
            coroutines_tx.send(coroutines).unwrap();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }
    });

    // Unpark each one from this (non-worker) thread once it is parking or parked.
    let coroutines: Vec<stackweave::Coroutine> = coroutines_rx.recv().unwrap();
    let mut pending: Vec<usize> = (0..N).collect();
    while !pending.is_empty() {
        pending.retain(|&i| {
            if !parking[i].load(Ordering::Acquire) {
                return true;
            }
            released[i].store(true, Ordering::Release);
            coroutines[i].unpark();
            false
        });
        thread::yield_now();
    }

    let results = spawner.join().unwrap();
    assert_eq!(results.len(), N);
    let changed: usize = results.iter().map(|&(_, changes)| changes).sum();
    assert_eq!(
        changed, 0,
        "coroutines resumed on another thread {changed} times"
    );
    let homes: HashSet<ThreadId> = results.iter().map(|&(home, _)| home).collect();
    assert_eq!(homes.len(), 2, "coroutines started on both workers");
}

/// Spawns on `rt` a coroutine that yields until `flag` is set (or a deadline
/// passes, so that a failing test does not hang); its result says whether the flag
/// was seen. Returns once the coroutine has started.
fn spawn_yielder(rt: &Runtime, flag: &Arc<AtomicBool>) -> (stackweave::JoinHandle<bool>, ThreadId) {
    let (started_tx, started_rx) = mpsc::channel();
    let flag = flag.clone();
    let h = rt.spawn(move || {
        started_tx.send(thread::current().id()).unwrap();
        yield_until(&flag)
    });
    (h, started_rx.recv().unwrap())
}

/// Yields until `flag` is set; false if it was not within 10 s.
fn yield_until(flag: &AtomicBool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(Ordering::Acquire) {
        if Instant::now() > deadline {
            return false;
        }
        stackweave::yield_now();
    }
    true
}

#[test]
fn yielding_coroutine_cannot_starve_one_spawned_from_outside_on_one_worker() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let (yielder, _) = spawn_yielder(&rt, &flag);
    // The only worker is busy yielding; this one arrives through the injector.
    let setter = rt.spawn({
        let flag = flag.clone();
        move || flag.store(true, Ordering::Release)
    });
    assert!(yielder.join().unwrap(), "the flag setter never ran");
    setter.join().unwrap();
}

#[test]
fn yielding_coroutines_cannot_starve_one_spawned_from_outside_on_two_workers() {
    let _watchdog = Watchdog::new("injector starvation", Duration::from_secs(60));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    // The first yielder holds its worker (spinning on the OS thread) until the
    // second has started, so the second starts on the other worker: then both
    // workers are busy yielding when the flag setter arrives through the injector.
    let both_started = Arc::new(AtomicBool::new(false));
    let (first_started_tx, first_started_rx) = mpsc::channel();
    let first = rt.spawn({
        let (flag, both_started) = (flag.clone(), both_started.clone());
        move || {
            first_started_tx.send(thread::current().id()).unwrap();
            while !both_started.load(Ordering::Acquire) {
                thread::yield_now(); // the OS thread's yield: keeps this worker
            }
            yield_until(&flag)
        }
    });
    let first_thread = first_started_rx.recv().unwrap();
    let (second, second_thread) = spawn_yielder(&rt, &flag);
    both_started.store(true, Ordering::Release);
    let setter = rt.spawn({
        let flag = flag.clone();
        move || flag.store(true, Ordering::Release)
    });
    assert!(first.join().unwrap(), "the flag setter never ran");
    assert!(second.join().unwrap(), "the flag setter never ran");
    assert_ne!(
        first_thread, second_thread,
        "the yielders ran on different workers"
    );
    setter.join().unwrap();
}

#[test]
fn yielding_coroutine_cannot_starve_one_it_spawned_on_one_worker() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let saw_flag = rt.block_on(|| {
        let flag = Arc::new(AtomicBool::new(false));
        // Goes to this worker's own deque (not the injector), unstarted.
        let setter = stackweave::spawn({
            let flag = flag.clone();
            move || flag.store(true, Ordering::Release)
        });
        let saw_flag = yield_until(&flag);
        drop(setter);
        saw_flag
    });
    assert!(
        saw_flag,
        "the coroutine spawned before the yield loop never ran"
    );
}

/// A loop of timed waits whose timeout has already passed (here: zero) must still
/// let the worker's other coroutines run: each such wait is a blocking point that
/// gives up the worker for a turn, like a yield, before it reports the timeout.
/// On one worker, `other` can only set its flag if the looping coroutine lets it
/// run; the loop is bounded so that the failure is a clean assertion, not a hang.
#[test]
fn timed_waits_that_already_expired_let_other_coroutines_run() {
    type Wait = fn(&stackweave::sync::mpsc::Receiver<()>, &stackweave::net::TcpStream);
    let waits: [(&str, Wait); 5] = [
        ("recv_timeout", |rx, _| {
            let _ = rx.recv_timeout(Duration::ZERO);
        }),
        ("select! with default(timeout)", |rx, _| {
            stackweave::select! {
                recv(rx) -> _msg => {},
                default(Duration::ZERO) => {},
            }
        }),
        ("park_timeout", |_, _| {
            stackweave::park_timeout(Duration::ZERO)
        }),
        ("sleep", |_, _| stackweave::time::sleep(Duration::ZERO)),
        ("read with a timeout", |_, stream| {
            use std::io::Read;
            let mut buf = [0u8; 1];
            let _ = (&*stream).read(&mut buf);
        }),
    ];
    let rt = Runtime::builder().workers(1).build().unwrap();
    for (name, wait) in waits {
        let spins = rt.block_on(move || {
            let listener = stackweave::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let _client = stackweave::net::TcpStream::connect(listener.local_addr().unwrap());
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_nanos(1)))
                .unwrap();
            let (_tx, rx) = stackweave::sync::mpsc::channel::<()>();
            let flag = Arc::new(AtomicBool::new(false));
            let set = flag.clone();
            let other = stackweave::spawn(move || set.store(true, Ordering::Release));
            let mut spins = 0u32;
            while !flag.load(Ordering::Acquire) && spins < 100_000 {
                wait(&rx, &stream);
                spins += 1;
            }
            other.join().unwrap();
            spins
        });
        assert!(
            spins < 100_000,
            "{name}: 100,000 expired waits in a row and the other coroutine never ran"
        );
    }
}
