//! The blocking primitives of `stackweave::sync` (Mutex, Condvar, RwLock, Semaphore,
//! Barrier, WaitGroup), through the public API: mutual exclusion under contention
//! from coroutines and threads together, poisoning as in std, no lost wakeups,
//! readers sharing and writers not starving, FIFO permits, reusable barriers.
//!
//! Every test runs under a watchdog: a lost wakeup or a starvation shows up as a
//! hang, which the watchdog turns into a failure that names the test.

mod common;

use common::Watchdog;
use stackweave::sync::{
    Arc, Barrier, Condvar, Mutex, MutexGuard, RwLock, Semaphore, TryLockError, WaitGroup,
};
use stackweave::{Builder, JoinHandle, Placement, Runtime};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn two_workers() -> Runtime {
    Runtime::builder().workers(2).build().expect("runtime")
}

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Spawns `f` (from a coroutine of a two-worker runtime) on the worker that is not
/// the caller's, named with `Placement::Worker` (a probe finds which one is ours).
fn spawn_on_other_worker<T, F>(f: F) -> JoinHandle<Option<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let me = thread::current().id();
    let on = |worker| Builder::new().placement(Placement::Worker(worker));
    let probe = on(0).spawn(|| thread::current().id()).unwrap();
    let other = if join(probe) == me { 1 } else { 0 };
    on(other)
        .spawn(move || {
            assert_ne!(thread::current().id(), me, "placed on the other worker");
            Some(f())
        })
        .unwrap()
}

#[test]
fn sync_types_are_send_and_sync_like_std() {
    fn send_sync<T: Send + Sync>() {}
    fn sync<T: Sync>() {}
    send_sync::<Mutex<std::cell::Cell<u32>>>(); // T: Send suffices, as in std
    send_sync::<RwLock<u32>>();
    send_sync::<Condvar>();
    send_sync::<Semaphore>();
    send_sync::<Barrier>();
    send_sync::<WaitGroup>();
    sync::<MutexGuard<'static, u32>>();
}

// ---------------------------------------------------------------------------
// Mutex
// ---------------------------------------------------------------------------

/// Increments `counter` `n` times, reading and writing in two steps with a
/// suspension in between every `yield_every` increments: without mutual exclusion,
/// increments would be lost.
fn increment(counter: &Mutex<u64>, n: u64, yield_every: u64) {
    for i in 0..n {
        let mut guard = counter.lock().unwrap();
        let value = *guard;
        if i % yield_every == 0 {
            stackweave::yield_now(); // still holding the lock: others contend
        }
        *guard = value + 1;
    }
}

#[test]
fn mutex_counter_reaches_a_million_from_a_thousand_coroutines() {
    let _watchdog = Watchdog::new("mutex counter", LIMIT);
    let rt = two_workers();
    let counter = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..1_000)
        .map(|_| {
            let counter = counter.clone();
            rt.spawn(move || increment(&counter, 1_000, 10))
        })
        .collect();
    handles.into_iter().for_each(join);
    assert_eq!(*counter.lock().unwrap(), 1_000_000);
    assert!(!counter.is_poisoned());
}

#[test]
fn mutex_counter_with_threads_mixed_in() {
    let _watchdog = Watchdog::new("mutex counter with threads", LIMIT);
    let rt = two_workers();
    let counter = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counter = counter.clone();
            thread::spawn(move || increment(&counter, 1_000, 10))
        })
        .collect();
    let coroutines: Vec<_> = (0..1_000)
        .map(|_| {
            let counter = counter.clone();
            rt.spawn(move || increment(&counter, 1_000, 10))
        })
        .collect();
    coroutines.into_iter().for_each(join);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*counter.lock().unwrap(), 1_004_000);
}

#[test]
fn a_panic_while_holding_the_lock_poisons_it() {
    let _watchdog = Watchdog::new("poisoning", LIMIT);
    let rt = two_workers();
    let m = Arc::new(Mutex::new(vec![1, 2]));
    let m2 = m.clone();
    let result = rt
        .spawn(move || {
            let mut guard = m2.lock().unwrap();
            guard.push(3);
            panic!("boom while holding the lock");
        })
        .join();
    let payload = result.expect_err("the coroutine panicked");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"boom while holding the lock")
    );
    assert!(m.is_poisoned());

    // lock() fails, but the error carries the guard and the data.
    let err = m.lock().expect_err("poisoned");
    assert_eq!(*err.into_inner(), [1, 2, 3]);
    // So does try_lock, from a coroutine too.
    let m3 = m.clone();
    let poisoned = rt.block_on(move || match m3.try_lock() {
        Err(TryLockError::Poisoned(err)) => err.into_inner().len(),
        other => panic!("expected Poisoned, got {:?}", other.map(|g| g.len())),
    });
    assert_eq!(poisoned, 3);

    m.clear_poison();
    assert!(!m.is_poisoned());
    assert_eq!(m.lock().unwrap().len(), 3);

    // into_inner reports the poison too, and still gives the data.
    let m = Mutex::new(5);
    let _ = std::panic::catch_unwind(|| {
        let _guard = m.lock().unwrap();
        panic!("on a thread, as in std");
    });
    assert!(m.is_poisoned());
    assert_eq!(m.into_inner().expect_err("poisoned").into_inner(), 5);
}

#[test]
fn a_coroutine_unwound_by_shutdown_while_holding_the_lock_poisons_it() {
    let _watchdog = Watchdog::new("poisoning by shutdown", LIMIT);
    let rt = Runtime::builder().workers(1).build().expect("runtime");
    let m = Arc::new(Mutex::new(0));
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let m2 = m.clone();
    let holder = rt.spawn(move || {
        let mut guard = m2.lock().unwrap();
        *guard = 1; // half of an update that would need two steps
        locked_tx.send(()).unwrap();
        loop {
            stackweave::park(); // the shutdown unwinds from here
        }
    });
    locked_rx.recv().unwrap();
    drop(rt);
    let payload = holder.join().expect_err("unwound");
    assert!(payload.is::<stackweave::Unwound>());
    assert!(m.is_poisoned(), "an unwind with the guard held poisons");
    assert_eq!(*m.lock().unwrap_or_else(|e| e.into_inner()), 1);
}

#[test]
fn try_lock_would_block_while_locked_elsewhere() {
    let _watchdog = Watchdog::new("try_lock", LIMIT);
    let rt = two_workers();
    let m = Arc::new(Mutex::new(0));
    let guard = m.lock().unwrap();
    let m2 = m.clone();
    let would_block = rt.block_on(move || matches!(m2.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(would_block);
    drop(guard);
    let m2 = m.clone();
    assert!(rt.block_on(move || m2.try_lock().is_ok()));
    assert!(format!("{m:?}").contains("data: 0"));
}

// ---------------------------------------------------------------------------
// Condvar
// ---------------------------------------------------------------------------

/// A one-item hand-off: a slot, "slot filled" and "slot emptied".
struct Slot {
    item: Mutex<Option<u64>>,
    filled: Condvar,
    emptied: Condvar,
    /// Items taken so far, for `Watchdog::on_progress`.
    taken: Arc<AtomicU64>,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            item: Mutex::new(None),
            filled: Condvar::new(),
            emptied: Condvar::new(),
            taken: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A watchdog on the hand-offs rather than a time limit: a hundred thousand of
    /// them take a second on an idle 2-CPU machine and half a minute on a loaded one.
    fn watchdog(&self, what: &str) -> Watchdog {
        Watchdog::on_progress(what, self.taken.clone(), LIMIT)
    }

    /// Puts `0..n` through the slot one at a time; notifies after unlocking, so every
    /// notification races with the other side going to sleep.
    fn produce(&self, n: u64) {
        for i in 0..n {
            let guard = self.item.lock().unwrap();
            let mut guard = self.emptied.wait_while(guard, |s| s.is_some()).unwrap();
            *guard = Some(i);
            drop(guard);
            self.filled.notify_one();
        }
    }

    /// Takes `n` items and checks they come in order.
    fn consume(&self, n: u64) {
        for i in 0..n {
            let guard = self.item.lock().unwrap();
            let mut guard = self.filled.wait_while(guard, |s| s.is_none()).unwrap();
            assert_eq!(guard.take(), Some(i));
            drop(guard);
            self.taken.fetch_add(1, Ordering::Relaxed);
            self.emptied.notify_one();
        }
    }
}

const ITEMS: u64 = 100_000;

#[test]
fn condvar_hands_items_between_coroutines_on_different_workers() {
    let rt = two_workers();
    let slot = Slot::new();
    let _watchdog = slot.watchdog("condvar between workers");
    rt.block_on(move || {
        let consumer_thread = thread::current().id();
        let slot2 = slot.clone();
        let producer = spawn_on_other_worker(move || {
            slot2.produce(ITEMS);
            thread::current().id()
        });
        slot.consume(ITEMS);
        let producer_thread = join(producer).expect("ran on the other worker");
        assert_ne!(producer_thread, consumer_thread);
    });
}

#[test]
fn condvar_hands_items_between_a_thread_and_a_coroutine() {
    let rt = two_workers();
    // Thread produces, coroutine consumes; then the other way round.
    let slot = Slot::new();
    let watchdog = slot.watchdog("condvar from a thread to a coroutine");
    let slot2 = slot.clone();
    let consumer = rt.spawn(move || slot2.consume(ITEMS / 2));
    slot.produce(ITEMS / 2);
    join(consumer);
    drop(watchdog); // its count stops here
    let slot = Slot::new();
    let _watchdog = slot.watchdog("condvar from a coroutine to a thread");
    let slot2 = slot.clone();
    let producer = rt.spawn(move || slot2.produce(ITEMS / 2));
    slot.consume(ITEMS / 2);
    join(producer);
}

#[test]
fn condvar_wait_timeout_times_out_no_earlier_than_the_timeout() {
    let _watchdog = Watchdog::new("condvar timeouts", LIMIT);
    let rt = two_workers();
    let timeout = Duration::from_millis(30);
    let wait = move || {
        let m = Mutex::new(0);
        let cvar = Condvar::new();
        let start = Instant::now();
        let (guard, result) = cvar.wait_timeout(m.lock().unwrap(), timeout).unwrap();
        assert!(result.timed_out());
        assert!(
            start.elapsed() >= timeout,
            "returned after {:?}",
            start.elapsed()
        );
        drop(guard);
        let start = Instant::now();
        let (guard, result) = cvar
            .wait_timeout_while(m.lock().unwrap(), timeout, |n| *n == 0)
            .unwrap();
        assert!(result.timed_out());
        assert!(
            start.elapsed() >= timeout,
            "returned after {:?}",
            start.elapsed()
        );
        assert_eq!(*guard, 0);
    };
    join(rt.spawn(wait));
    wait(); // on a thread

    // A notification before the deadline ends the wait with timed_out() false.
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let pair2 = pair.clone();
    let waiter = rt.spawn(move || {
        let (flag, cvar) = &*pair2;
        let (_guard, result) = cvar
            .wait_timeout_while(flag.lock().unwrap(), LIMIT, |set| !*set)
            .unwrap();
        result.timed_out()
    });
    let (flag, cvar) = &*pair;
    *flag.lock().unwrap() = true;
    cvar.notify_one();
    assert!(!join(waiter));
}

#[test]
fn condvar_notify_all_wakes_every_waiter_and_notify_one_wakes_one() {
    let _watchdog = Watchdog::new("condvar notify_all", LIMIT);
    let rt = two_workers();
    // (number of waiters that entered wait, generation)
    let state = Arc::new((Mutex::new((0usize, 0u32)), Condvar::new()));
    let woken = Arc::new(AtomicUsize::new(0));
    const WAITERS: usize = 200;
    let handles: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (state, woken) = (state.clone(), woken.clone());
            rt.spawn(move || {
                let (m, cvar) = &*state;
                let mut guard = m.lock().unwrap();
                guard.0 += 1;
                let generation = guard.1;
                cvar.notify_all(); // tell the main thread one more is waiting
                let _guard = cvar.wait_while(guard, |s| s.1 == generation).unwrap();
                woken.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let (m, cvar) = &*state;
    // Wait until all are inside `wait` (they release the lock only there).
    let mut guard = cvar
        .wait_while(m.lock().unwrap(), |s| s.0 < WAITERS)
        .unwrap();
    // notify_one with the condition unchanged wakes one waiter, which waits again.
    drop(guard);
    cvar.notify_one();
    guard = m.lock().unwrap();
    assert_eq!(woken.load(Ordering::SeqCst), 0);
    guard.1 += 1;
    drop(guard);
    cvar.notify_all();
    handles.into_iter().for_each(join);
    assert_eq!(woken.load(Ordering::SeqCst), WAITERS);
}

// ---------------------------------------------------------------------------
// RwLock
// ---------------------------------------------------------------------------

#[test]
fn rwlock_readers_hold_the_lock_together() {
    let _watchdog = Watchdog::new("rwlock readers", LIMIT);
    let rt = two_workers();
    let lock = Arc::new(RwLock::new(7));
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (lock, active, peak) = (lock.clone(), active.clone(), peak.clone());
            rt.spawn(move || {
                let guard = lock.read().unwrap();
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Hold the read lock, suspended, until a second reader is in (bounded:
                // a lock that serialised readers fails the assertion below).
                for _ in 0..100_000 {
                    if peak.load(Ordering::SeqCst) > 1 {
                        break;
                    }
                    stackweave::yield_now();
                }
                active.fetch_sub(1, Ordering::SeqCst);
                *guard
            })
        })
        .collect();
    for h in handles {
        assert_eq!(join(h), 7);
    }
    assert!(peak.load(Ordering::SeqCst) > 1, "readers never overlapped");
}

#[test]
fn rwlock_writers_are_exclusive() {
    let _watchdog = Watchdog::new("rwlock writers", LIMIT);
    let rt = two_workers();
    let lock = Arc::new(RwLock::new(0u64));
    let readers_in = Arc::new(AtomicUsize::new(0));
    let writing = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for i in 0..24 {
        let (lock, readers_in, writing) = (lock.clone(), readers_in.clone(), writing.clone());
        handles.push(rt.spawn(move || {
            for _ in 0..300 {
                if i % 3 == 0 {
                    let mut guard = lock.write().unwrap();
                    assert!(!writing.swap(true, Ordering::SeqCst), "two writers");
                    assert_eq!(readers_in.load(Ordering::SeqCst), 0, "writer with readers");
                    let value = *guard;
                    stackweave::yield_now();
                    *guard = value + 1;
                    writing.store(false, Ordering::SeqCst);
                } else {
                    let guard = lock.read().unwrap();
                    readers_in.fetch_add(1, Ordering::SeqCst);
                    assert!(!writing.load(Ordering::SeqCst), "reader with a writer");
                    stackweave::yield_now();
                    assert!(!writing.load(Ordering::SeqCst), "reader with a writer");
                    readers_in.fetch_sub(1, Ordering::SeqCst);
                    drop(guard);
                }
            }
        }));
    }
    // A thread takes part too.
    let (lock2, readers_in2, writing2) = (lock.clone(), readers_in.clone(), writing.clone());
    let t = thread::spawn(move || {
        for _ in 0..300 {
            let mut guard = lock2.write().unwrap();
            assert!(!writing2.swap(true, Ordering::SeqCst), "two writers");
            assert_eq!(readers_in2.load(Ordering::SeqCst), 0, "writer with readers");
            *guard += 1;
            writing2.store(false, Ordering::SeqCst);
        }
    });
    handles.into_iter().for_each(join);
    t.join().unwrap();
    assert_eq!(*lock.read().unwrap(), 8 * 300 + 300);
}

#[test]
fn rwlock_writer_is_not_starved_by_a_stream_of_readers() {
    let _watchdog = Watchdog::new("rwlock writer starvation", LIMIT);
    let rt = two_workers();
    let lock = Arc::new(RwLock::new(0u32));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    // Readers overlap all the time: each holds the lock across a suspension, and
    // takes it again right after releasing it.
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (lock, stop, reads) = (lock.clone(), stop.clone(), reads.clone());
            rt.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let guard = lock.read().unwrap();
                    reads.fetch_add(1, Ordering::SeqCst);
                    stackweave::yield_now();
                    drop(guard);
                }
            })
        })
        .collect();
    while reads.load(Ordering::SeqCst) < 10_000 {
        thread::yield_now();
    }
    // While they stream, writers (a coroutine and a thread) still get in.
    let lock2 = lock.clone();
    let writer = rt.spawn(move || {
        for _ in 0..100 {
            *lock2.write().unwrap() += 1;
        }
    });
    for _ in 0..100 {
        *lock.write().unwrap() += 1;
    }
    join(writer);
    stop.store(true, Ordering::SeqCst);
    readers.into_iter().for_each(join);
    assert_eq!(*lock.read().unwrap(), 200);
}

#[test]
fn rwlock_poisons_on_a_writer_panic_only() {
    let _watchdog = Watchdog::new("rwlock poisoning", LIMIT);
    let rt = two_workers();
    let lock = Arc::new(RwLock::new(1));
    let l2 = lock.clone();
    assert!(rt
        .spawn(move || {
            let _r = l2.read().unwrap();
            panic!("reader panics");
        })
        .join()
        .is_err());
    assert!(!lock.is_poisoned(), "read guards do not poison");
    let l2 = lock.clone();
    assert!(rt
        .spawn(move || {
            let mut w = l2.write().unwrap();
            *w = 2;
            panic!("writer panics");
        })
        .join()
        .is_err());
    assert!(lock.is_poisoned());
    assert_eq!(*lock.read().expect_err("poisoned").into_inner(), 2);
    assert!(matches!(lock.try_write(), Err(TryLockError::Poisoned(_))));
    lock.clear_poison();
    assert_eq!(*lock.write().unwrap(), 2);
}

// ---------------------------------------------------------------------------
// Semaphore
// ---------------------------------------------------------------------------

#[test]
fn semaphore_limits_concurrency_to_its_permits() {
    let _watchdog = Watchdog::new("semaphore limit", LIMIT);
    const PERMITS: usize = 4;
    let rt = two_workers();
    let sem = Arc::new(Semaphore::new(PERMITS));
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    let mut threads = Vec::new();
    for i in 0..200 {
        let (sem, inside, peak) = (sem.clone(), inside.clone(), peak.clone());
        let task = move || {
            for _ in 0..20 {
                let _permit = sem.acquire();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= PERMITS, "{now} holders of {PERMITS} permits");
                peak.fetch_max(now, Ordering::SeqCst);
                // Hold the permit, suspended, until the semaphore has been full once
                // (bounded), then a little longer.
                for _ in 0..100_000 {
                    if peak.load(Ordering::SeqCst) == PERMITS {
                        break;
                    }
                    stackweave::yield_now();
                }
                stackweave::yield_now();
                inside.fetch_sub(1, Ordering::SeqCst);
            }
        };
        if i % 50 == 0 {
            threads.push(thread::spawn(task)); // a few threads too
        } else {
            handles.push(rt.spawn(task));
        }
    }
    handles.into_iter().for_each(join);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), PERMITS);
    assert_eq!(sem.available_permits(), PERMITS);
}

#[test]
fn semaphore_serves_waiters_first_come_first_served() {
    let _watchdog = Watchdog::new("semaphore fifo", LIMIT);
    // One worker: when the spawner sees a waiter announce itself, that waiter has
    // already queued (nothing else ran in between).
    let rt = Runtime::builder().workers(1).build().expect("runtime");
    let order = rt.block_on(|| {
        const WAITERS: usize = 100;
        let sem = Arc::new(Semaphore::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queued = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..WAITERS)
            .map(|i| {
                let (sem, order, queued2) = (sem.clone(), order.clone(), queued.clone());
                let h = stackweave::spawn(move || {
                    queued2.store(i + 1, Ordering::SeqCst);
                    let _permit = sem.acquire();
                    order.lock().unwrap().push(i);
                    stackweave::yield_now(); // let a newcomer try to overtake
                });
                while queued.load(Ordering::SeqCst) != i + 1 {
                    stackweave::yield_now();
                }
                h
            })
            .collect();
        // A permit freed while waiters queue goes to the first of them, not to
        // whoever asks next.
        sem.add_permits(1);
        assert!(sem.try_acquire().is_none(), "a newcomer overtook the queue");
        assert!(sem.acquire_timeout(Duration::ZERO).is_none());
        handles.into_iter().for_each(join);
        assert_eq!(sem.available_permits(), 1);
        let order = order.lock().unwrap().clone();
        order
    });
    assert_eq!(order, (0..100).collect::<Vec<_>>());
}

#[test]
fn semaphore_acquire_timeout_waits_no_less_and_gets_released_permits() {
    let _watchdog = Watchdog::new("semaphore timeout", LIMIT);
    let rt = two_workers();
    let sem = Arc::new(Semaphore::new(0));
    let timeout = Duration::from_millis(30);
    let sem2 = sem.clone();
    let waited = join(rt.spawn(move || {
        let start = Instant::now();
        assert!(sem2.acquire_timeout(timeout).is_none());
        start.elapsed()
    }));
    assert!(waited >= timeout, "gave up after {waited:?}");
    let start = Instant::now();
    assert!(sem.acquire_timeout(timeout).is_none()); // on a thread
    assert!(start.elapsed() >= timeout);
    assert_eq!(sem.available_permits(), 0, "a timed-out wait takes nothing");

    let sem2 = sem.clone();
    let waiter = rt.spawn(move || sem2.acquire_timeout(LIMIT).map(|p| p.forget()).is_some());
    sem.add_permits(1);
    assert!(join(waiter));
    assert_eq!(sem.available_permits(), 0, "the permit was forgotten");
}

// ---------------------------------------------------------------------------
// Barrier and WaitGroup
// ---------------------------------------------------------------------------

#[test]
fn barrier_of_a_hundred_coroutines_over_ten_generations() {
    let _watchdog = Watchdog::new("barrier", LIMIT);
    const N: usize = 100;
    const GENERATIONS: usize = 10;
    let rt = two_workers();
    let barrier = Arc::new(Barrier::new(N));
    let arrived: Arc<Vec<AtomicUsize>> =
        Arc::new((0..GENERATIONS).map(|_| AtomicUsize::new(0)).collect());
    let leaders: Arc<Vec<AtomicUsize>> =
        Arc::new((0..GENERATIONS).map(|_| AtomicUsize::new(0)).collect());
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (barrier, arrived, leaders) = (barrier.clone(), arrived.clone(), leaders.clone());
            rt.spawn(move || {
                for g in 0..GENERATIONS {
                    arrived[g].fetch_add(1, Ordering::SeqCst);
                    if barrier.wait().is_leader() {
                        leaders[g].fetch_add(1, Ordering::SeqCst);
                    }
                    // Nobody leaves a generation before everyone arrived in it.
                    assert_eq!(arrived[g].load(Ordering::SeqCst), N);
                    stackweave::yield_now();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(join);
    for g in 0..GENERATIONS {
        assert_eq!(leaders[g].load(Ordering::SeqCst), 1, "generation {g}");
    }
}

#[test]
fn wait_group_waits_for_ten_thousand_coroutines() {
    let _watchdog = Watchdog::new("wait group", LIMIT);
    const N: usize = 10_000;
    let rt = two_workers();
    let wg = WaitGroup::new();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..N {
        let (wg, done) = (wg.clone(), done.clone());
        rt.spawn(move || {
            stackweave::yield_now();
            done.fetch_add(1, Ordering::SeqCst);
            drop(wg);
        });
    }
    // Also waited on from a coroutine, at the same time.
    let in_coroutine = wg.clone();
    let done2 = done.clone();
    let waiter = rt.spawn(move || {
        in_coroutine.wait();
        done2.load(Ordering::SeqCst)
    });
    wg.wait();
    assert_eq!(done.load(Ordering::SeqCst), N);
    assert_eq!(join(waiter), N);

    // A member that panics still counts as done.
    let wg = WaitGroup::new();
    let member = wg.clone();
    let h = rt.spawn(move || {
        let _member = member;
        panic!("member panics");
    });
    wg.wait();
    assert!(h.join().is_err());
}

// ---------------------------------------------------------------------------
// Cancellation: a cancelled holder poisons; a cancelled waiter loses nothing
// ---------------------------------------------------------------------------

/// Spawns `f` on the caller's runtime and returns once `f` has run up to its first
/// suspension. Only on a one-worker runtime, and `f` must block at once: the caller
/// yields until `f` has started, and nothing else runs in between.
fn spawn_until_blocked<T, F>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let started = Arc::new(AtomicBool::new(false));
    let started2 = started.clone();
    let h = stackweave::spawn(move || {
        started2.store(true, Ordering::SeqCst);
        f()
    });
    while !started.load(Ordering::SeqCst) {
        stackweave::yield_now();
    }
    h
}

fn one_worker() -> Runtime {
    Runtime::builder().workers(1).build().expect("runtime")
}

fn is_cancelled<T>(h: JoinHandle<T>) -> bool {
    h.join().is_err_and(|p| p.is::<stackweave::Cancelled>())
}

#[test]
fn a_cancelled_holder_poisons_the_mutex() {
    let _watchdog = Watchdog::new("cancelled holder", LIMIT);
    let rt = one_worker();
    let m = Arc::new(Mutex::new(0));
    let m2 = m.clone();
    let poisoned = rt.block_on(move || {
        let m3 = m2.clone();
        let holder = spawn_until_blocked(move || {
            let mut guard = m3.lock().unwrap();
            *guard = 1;
            stackweave::park(); // cancelled here, guard held
            *guard = 2;
        });
        holder.cancel();
        assert!(is_cancelled(holder));
        m2.is_poisoned()
    });
    assert!(poisoned);
    assert_eq!(*m.lock().expect_err("poisoned").into_inner(), 1);
}

#[test]
fn a_cancelled_mutex_waiter_passes_the_unlock_on() {
    let _watchdog = Watchdog::new("cancelled mutex waiter", LIMIT);
    let rt = one_worker();
    rt.block_on(|| {
        let m = Arc::new(Mutex::new(0));
        let guard = m.lock().unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                spawn_until_blocked(move || *m.lock().unwrap() += 1)
            })
            .collect();
        drop(guard); // wakes the first waiter...
        waiters[0].cancel(); // ...which is cancelled before it runs
        let mut waiters = waiters.into_iter();
        assert!(is_cancelled(waiters.next().unwrap()));
        join(waiters.next().unwrap()); // the second one got the lock
        assert_eq!(*m.lock().unwrap(), 1);
        assert!(!m.is_poisoned(), "a cancelled waiter held nothing");
    });
}

#[test]
fn a_cancelled_condvar_waiter_passes_its_notification_on() {
    let _watchdog = Watchdog::new("cancelled condvar waiter", LIMIT);
    let rt = one_worker();
    rt.block_on(|| {
        let state = Arc::new((Mutex::new(false), Condvar::new()));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let state = state.clone();
                spawn_until_blocked(move || {
                    let (ready, cvar) = &*state;
                    drop(cvar.wait_while(ready.lock().unwrap(), |r| !*r).unwrap());
                })
            })
            .collect();
        let (ready, cvar) = &*state;
        *ready.lock().unwrap() = true;
        cvar.notify_one(); // goes to the first waiter...
        waiters[0].cancel(); // ...which is cancelled before it runs
        let mut waiters = waiters.into_iter();
        assert!(is_cancelled(waiters.next().unwrap()));
        join(waiters.next().unwrap()); // woken by the passed-on notification
    });
}

#[test]
fn a_cancelled_semaphore_waiter_passes_its_permit_on() {
    let _watchdog = Watchdog::new("cancelled semaphore waiter", LIMIT);
    let rt = one_worker();
    rt.block_on(|| {
        let sem = Arc::new(Semaphore::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let sem = sem.clone();
                spawn_until_blocked(move || sem.acquire().forget())
            })
            .collect();
        sem.add_permits(1); // granted to the first waiter...
        waiters[0].cancel(); // ...which is cancelled before it runs
        let mut waiters = waiters.into_iter();
        assert!(is_cancelled(waiters.next().unwrap()));
        join(waiters.next().unwrap()); // got the permit
        assert_eq!(sem.available_permits(), 0);
    });
}

#[test]
fn a_cancelled_waiting_writer_lets_the_readers_behind_it_in() {
    let _watchdog = Watchdog::new("cancelled rwlock writer", LIMIT);
    let rt = one_worker();
    rt.block_on(|| {
        let lock = Arc::new(RwLock::new(0));
        let read = lock.read().unwrap();
        let lock2 = lock.clone();
        let writer = spawn_until_blocked(move || *lock2.write().unwrap() = 1);
        // A waiting writer holds new readers back...
        assert!(matches!(lock.try_read(), Err(TryLockError::WouldBlock)));
        let lock2 = lock.clone();
        let reader = spawn_until_blocked(move || *lock2.read().unwrap());
        // ...until it is cancelled.
        writer.cancel();
        assert!(is_cancelled(writer));
        assert_eq!(join(reader), 0);
        drop(read);
        assert!(lock.try_write().is_ok());
    });
}

#[test]
fn a_cancelled_barrier_waiter_withdraws_its_arrival() {
    let _watchdog = Watchdog::new("cancelled barrier waiter", LIMIT);
    let rt = one_worker();
    rt.block_on(|| {
        let barrier = Arc::new(Barrier::new(2));
        let wait = |barrier: &Arc<Barrier>| {
            let barrier = barrier.clone();
            spawn_until_blocked(move || barrier.wait().is_leader())
        };
        let first = wait(&barrier);
        first.cancel();
        assert!(is_cancelled(first));
        // The round still needs two callers.
        let second = wait(&barrier);
        assert!(!second.is_finished(), "released by a cancelled arrival");
        let third = wait(&barrier);
        assert!(join(second) ^ join(third), "exactly one leader");
    });
}
