//! `JoinHandle::cancel`: a coroutine blocked at any kind of blocking point unwinds
//! there (its destructors run), its join reports `Cancelled` (not a panic), and
//! nothing leaks.

mod common;

use stackweave::net::{TcpListener, TcpStream};
use stackweave::{Cancelled, Runtime};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts its drops: proof that the cancelled coroutine's destructors ran.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits until `n` coroutines have reached their blocking point.
fn wait_for(counter: &AtomicUsize, n: usize) {
    let start = Instant::now();
    while counter.load(Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "coroutines never blocked"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let them get from "about to block" to blocked.
    std::thread::sleep(Duration::from_millis(20));
}

/// Spawns `n` coroutines that each block with `block`, cancels them all, and checks
/// the outcome and that the runtime's counters return to their baseline.
/// `block` gets a function to call just before it blocks.
fn cancel_blocked(what: &str, n: usize, block: impl Fn(&dyn Fn()) + Send + Sync + 'static) {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let blocked = Arc::new(AtomicUsize::new(0));
    let block = Arc::new(block);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (drops, blocked, block) = (drops.clone(), blocked.clone(), block.clone());
            rt.spawn(move || {
                let _guard = Dropped(drops);
                block(&|| {
                    blocked.fetch_add(1, Ordering::SeqCst);
                });
                unreachable!("not cancelled");
            })
        })
        .collect();
    wait_for(&blocked, n);
    for h in &handles {
        h.cancel();
        h.cancel(); // twice is harmless
    }
    for h in handles {
        let payload = h.join().expect_err("cancelled");
        assert!(
            payload.is::<Cancelled>(),
            "{what}: not reported as cancelled"
        );
    }
    assert_eq!(
        drops.load(Ordering::SeqCst),
        n,
        "{what}: destructors did not all run"
    );
    let m = rt.metrics();
    assert_eq!(m.live_coroutines, 0, "{what}: {m:?}");
}

#[test]
fn cancelling_parked_coroutines_unwinds_them() {
    cancel_blocked("park", 1000, |ready| {
        ready();
        loop {
            stackweave::park();
        }
    });
}

#[test]
fn cancelling_sleeping_coroutines_unwinds_them_and_their_timers() {
    cancel_blocked("sleep", 1000, |ready| {
        ready();
        stackweave::time::sleep(Duration::from_secs(3600));
    });
}

#[test]
fn cancelling_park_timeout_unwinds() {
    cancel_blocked("park_timeout", 200, |ready| {
        ready();
        loop {
            stackweave::park_timeout(Duration::from_secs(3600));
        }
    });
}

#[test]
fn cancelling_a_yielding_loop_unwinds_at_the_yield() {
    cancel_blocked("yield_now", 50, |ready| {
        ready();
        loop {
            stackweave::yield_now();
        }
    });
}

#[test]
fn cancelling_a_joiner_unwinds_it_and_leaves_the_joined_alone() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let target = rt.spawn(|| {
        stackweave::park();
        7
    });
    let target_handle = target.coroutine().clone();
    let joining = Arc::new(AtomicUsize::new(0));
    let j = joining.clone();
    let joiner = rt.spawn(move || {
        j.fetch_add(1, Ordering::SeqCst);
        target.join().unwrap()
    });
    // Cancelled before it started, it would never have waited in `join` at all.
    wait_for(&joining, 1);
    joiner.cancel();
    assert!(joiner.join().unwrap_err().is::<Cancelled>());
    // The joined coroutine is still there and finishes normally when woken.
    target_handle.unpark();
    let start = Instant::now();
    while rt.metrics().live_coroutines != 0 {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn cancelling_readers_blocked_on_sockets_unwinds_them_and_closes_their_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The peers stay open and silent: the readers would wait forever.
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let acceptor = {
        let peers = peers.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().take(200) {
                peers.lock().unwrap().push(s.unwrap());
            }
        })
    };
    cancel_blocked("socket read", 200, move |ready| {
        let mut s = TcpStream::connect(addr).unwrap();
        ready();
        let mut buf = [0; 16];
        let _ = s.read(&mut buf);
    });
    acceptor.join().unwrap();
    // Each reader's socket was dropped by the unwind: the peers read end-of-file.
    for mut p in peers.lock().unwrap().drain(..) {
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(p.read(&mut [0; 8]).unwrap(), 0);
    }
}

#[test]
fn cancelling_an_accept_loop_unwinds_it() {
    cancel_blocked("accept", 10, |ready| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        ready();
        let _ = l.accept();
    });
}

#[test]
fn a_cancelled_coroutine_that_never_started_never_runs() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    // Occupy the only worker so the others stay unstarted while we cancel them.
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let blocker = {
        let gate = gate.clone();
        rt.spawn(move || {
            while !gate.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let ran = ran.clone();
            rt.spawn(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in &handles {
        h.cancel();
    }
    gate.store(true, Ordering::SeqCst);
    blocker.join().unwrap();
    for h in handles {
        assert!(h.join().unwrap_err().is::<Cancelled>());
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(rt.metrics().live_coroutines, 0);
}

#[test]
fn cancelling_a_finished_coroutine_changes_nothing() {
    let h = stackweave::spawn(|| 5);
    while !h.is_finished() {
        std::thread::yield_now();
    }
    h.cancel();
    assert_eq!(h.join().unwrap(), 5);
}

#[test]
fn a_panic_is_not_reported_as_a_cancellation() {
    let h = stackweave::spawn(|| panic!("boom"));
    let payload = h.join().unwrap_err();
    assert!(!payload.is::<Cancelled>());
}

#[test]
fn a_coroutine_that_catches_the_cancellation_is_unwound_again_at_its_next_block() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let caught = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let (c, i) = (caught.clone(), inside.clone());
    let h = rt.spawn(move || {
        let r = std::panic::catch_unwind(|| {
            i.fetch_add(1, Ordering::SeqCst);
            loop {
                stackweave::park();
            }
        });
        assert!(r.unwrap_err().is::<Cancelled>());
        c.fetch_add(1, Ordering::SeqCst);
        stackweave::park(); // unwinds again
        unreachable!();
    });
    // Cancelled before it started, it would never run (and never catch anything).
    wait_for(&inside, 1);
    h.cancel();
    assert!(h.join().unwrap_err().is::<Cancelled>());
    assert_eq!(caught.load(Ordering::SeqCst), 1);
}

#[test]
fn cancelling_channel_receivers_and_senders_unwinds_them_and_keeps_the_channel_usable() {
    use stackweave::sync::mpsc;
    let (tx, rx) = mpsc::sync_channel::<u64>(0);
    let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
    // Senders blocked on a rendezvous channel nobody receives from.
    {
        let tx = tx.clone();
        cancel_blocked("sync_channel(0) send", 100, move |ready| {
            ready();
            let _ = tx.send(1);
        });
    }
    // Receivers blocked on empty channels.
    cancel_blocked("recv", 100, |ready| {
        let (_tx, rx) = mpsc::channel::<u64>();
        ready();
        let _ = rx.recv();
    });
    // After the cancelled senders left, the channel still works, and none of their
    // messages was delivered.
    let rx = rx.lock().unwrap().take().unwrap();
    let h = stackweave::spawn(move || tx.send(7));
    assert_eq!(rx.recv().unwrap(), 7);
    h.join().unwrap().unwrap();
    assert!(rx.try_recv().is_err());
}

#[test]
fn cancelling_a_select_unwinds_it() {
    use stackweave::sync::mpmc;
    let (_tx, rx) = mpmc::unbounded::<u64>();
    let (_tx2, rx2) = mpmc::bounded::<u64>(1);
    cancel_blocked("select", 100, move |ready| {
        let (rx, rx2) = (rx.clone(), rx2.clone());
        ready();
        stackweave::select! {
            recv(rx) -> _ => {},
            recv(rx2) -> _ => {},
        }
    });
}

#[test]
fn cancelling_lock_waiters_unwinds_them_and_leaves_the_locks_usable() {
    use stackweave::sync::{Condvar, Mutex, Semaphore};
    let m = Arc::new(Mutex::new(0u32));
    let held = m.lock().unwrap();
    {
        let m = m.clone();
        cancel_blocked("mutex lock", 100, move |ready| {
            ready();
            let _ = m.lock();
        });
    }
    drop(held);
    assert!(!m.is_poisoned(), "waiters never held it");
    *m.lock().unwrap() += 1;

    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    {
        let pair = pair.clone();
        cancel_blocked("condvar wait", 100, move |ready| {
            let (lock, cv) = &*pair;
            let guard = lock.lock().unwrap();
            ready();
            let _ = cv.wait_while(guard, |done| !*done);
        });
    }
    assert!(
        pair.0.try_lock().is_ok(),
        "the condvar waiters released the mutex"
    );

    let sem = Arc::new(Semaphore::new(0));
    {
        let sem = sem.clone();
        cancel_blocked("semaphore acquire", 100, move |ready| {
            ready();
            let _ = sem.acquire();
        });
    }
    sem.add_permits(1);
    assert!(
        sem.try_acquire().is_some(),
        "a cancelled waiter did not take the permit"
    );
}

#[test]
fn cancelling_a_coroutine_waiting_on_a_future_or_the_blocking_pool_unwinds_it() {
    cancel_blocked("future::block_on", 50, |ready| {
        ready();
        stackweave::future::block_on(std::future::pending::<()>());
    });
    cancel_blocked("spawn_blocking", 4, |ready| {
        ready();
        stackweave::spawn_blocking(|| std::thread::sleep(Duration::from_millis(300)));
    });
}
