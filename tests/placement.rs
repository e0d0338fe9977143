//! Where coroutines start: the accept pattern spreads over the workers, spawns from
//! outside go to the least-loaded worker, pinned placements are honoured, and no
//! placement ever moves a started coroutine.

mod common;

use common::Watchdog;
use stackweave::net::TcpListener;
use stackweave::{Builder, Placement, Runtime};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The name of the worker thread the caller runs on.
fn worker_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

/// How many of `names` each distinct name has, sorted by name.
fn tally(names: &[String]) -> Vec<(String, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> =
        counts.into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
    counts.sort();
    counts
}

/// When the clients of an [`accept_loop_trial`] connect.
#[derive(Clone, Copy)]
enum Arrival {
    /// While the accept loop runs: it accepts a few at a time.
    Spread,
    /// All before the accept loop starts: it accepts them in one run, a burst of
    /// spawns.
    Burst,
}

/// One trial of the README's server pattern: one accept loop, a coroutine per
/// connection; `clients` connections from plain threads. Returns the worker each
/// handler started on.
fn accept_loop_trial(clients: usize, arrival: Arrival) -> Vec<String> {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connect = || {
        (0..clients)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect::<Vec<_>>()
    };
    let early = match arrival {
        Arrival::Burst => Some(connect()),
        Arrival::Spread => None,
    };
    let started = Arc::new(Mutex::new(Vec::new()));
    let server = rt.spawn({
        let started = started.clone();
        move || {
            for _ in 0..clients {
                let (mut stream, _) = listener.accept()?;
                let started = started.clone();
                stackweave::spawn(move || {
                    started.lock().unwrap().push(worker_name());
                    let mut byte = [0u8; 1];
                    while stream.read(&mut byte)? == 1 {
                        stream.write_all(&byte)?;
                    }
                    Ok::<_, io::Error>(())
                });
            }
            Ok::<_, io::Error>(())
        }
    });
    // Connect them all first (the handlers stay alive), then talk on each.
    let mut streams = early.unwrap_or_else(connect);
    for (i, s) in streams.iter_mut().enumerate() {
        s.write_all(&[i as u8]).unwrap();
        let mut back = [0u8; 1];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back[0], i as u8);
    }
    server.join().unwrap().unwrap();
    drop(streams);
    let names = started.lock().unwrap().clone();
    assert_eq!(names.len(), clients);
    names
}

#[test]
fn connections_from_one_accept_loop_start_on_both_workers() {
    assert_both_workers_start_connections(Arrival::Spread);
}

#[test]
fn a_burst_of_pending_connections_starts_on_both_workers() {
    assert_both_workers_start_connections(Arrival::Burst);
}

/// Runs accept-loop trials and checks that each worker started at least 30% of the
/// connections.
fn assert_both_workers_start_connections(arrival: Arrival) {
    const CLIENTS: usize = 100;
    const TRIALS: usize = 5;
    let _watchdog = Watchdog::new("accept placement", Duration::from_secs(120));
    for trial in 0..TRIALS {
        let counts = tally(&accept_loop_trial(CLIENTS, arrival));
        eprintln!("trial {trial}: {counts:?}");
        // Balanced placement keeps the two within a few connections of each other;
        // the bound is wide so a loaded machine cannot make it flake.
        assert_eq!(counts.len(), 2, "trial {trial}: {counts:?}");
        for (name, count) in &counts {
            assert!(
                *count >= CLIENTS * 3 / 10,
                "trial {trial}: {name} started only {count} of {CLIENTS}: {counts:?}"
            );
        }
    }
}

#[test]
fn spawns_from_outside_go_to_the_least_loaded_worker() {
    const N: usize = 200;
    let rt = Runtime::builder().workers(2).build().unwrap();
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let tx = tx.clone();
            rt.spawn(move || {
                tx.send(worker_name()).unwrap();
                stackweave::park(); // stay homed, so the load stays counted
            })
        })
        .collect();
    let names: Vec<String> = (0..N).map(|_| rx.recv().unwrap()).collect();
    let counts = tally(&names);
    assert_eq!(counts.len(), 2, "{counts:?}");
    for (name, count) in &counts {
        assert!(
            *count >= N / 4,
            "{name} started only {count} of {N}: {counts:?}"
        );
    }
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn pinned_placements_are_honoured_from_inside_and_outside() {
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 250;
    let rt = Runtime::builder().workers(WORKERS).build().unwrap();
    // From outside: each one starts on its worker and stays there across yields.
    let outside: Vec<_> = (0..WORKERS * PER_WORKER)
        .map(|i| {
            let w = i % WORKERS;
            rt.handle()
                .try_spawn(Builder::new().placement(Placement::Worker(w)), move || {
                    let first = worker_name();
                    stackweave::yield_now();
                    stackweave::time::sleep(Duration::from_millis(1));
                    (w, first, worker_name())
                })
                .unwrap()
        })
        .collect();
    for h in outside {
        let (w, first, last) = h.join().unwrap();
        assert_eq!(first, format!("stackweave-worker-{w}"));
        assert_eq!(last, first);
    }
    // From inside, from every worker: `Worker(n)` goes to n, `SameWorker` stays.
    let spawners: Vec<_> = (0..WORKERS)
        .map(|me| {
            rt.handle()
                .try_spawn(Builder::new().placement(Placement::Worker(me)), move || {
                    let here = worker_name();
                    let mut wrong = Vec::new();
                    for i in 0..PER_WORKER {
                        let target = (me + i) % WORKERS;
                        let pinned = Builder::new()
                            .placement(Placement::Worker(target))
                            .spawn(worker_name)
                            .unwrap();
                        let near = Builder::new()
                            .placement(Placement::SameWorker)
                            .spawn(worker_name)
                            .unwrap();
                        let (pinned, near) = (pinned.join().unwrap(), near.join().unwrap());
                        if pinned != format!("stackweave-worker-{target}") || near != here {
                            wrong.push((target, pinned, near));
                        }
                    }
                    (here, wrong)
                })
                .unwrap()
        })
        .collect();
    for (me, h) in spawners.into_iter().enumerate() {
        let (here, wrong) = h.join().unwrap();
        assert_eq!(here, format!("stackweave-worker-{me}"));
        assert!(wrong.is_empty(), "from {here}: {wrong:?}");
    }
}

#[test]
fn a_worker_index_past_the_last_is_an_invalid_input_error() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let err = rt
        .handle()
        .try_spawn(Builder::new().placement(Placement::Worker(2)), || ())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("no worker 2"), "{err}");
    // Inside a coroutine too; the runtime keeps working.
    let inside = rt.block_on(|| {
        Builder::new()
            .placement(Placement::Worker(usize::MAX))
            .spawn(|| ())
            .map(drop)
            .map_err(|e| e.kind())
    });
    assert_eq!(inside, Err(io::ErrorKind::InvalidInput));
    assert_eq!(rt.block_on(|| 5), 5);
}

#[test]
fn started_coroutines_never_change_thread_under_every_placement() {
    const SPAWNERS: usize = 8;
    const CHILDREN: usize = 500;
    let _watchdog = Watchdog::new("placement pinning", Duration::from_secs(120));
    let rt = Runtime::builder().workers(3).build().unwrap();
    let moved = Arc::new(AtomicUsize::new(0));
    let placements = [
        Placement::Balanced,
        Placement::SameWorker,
        Placement::LeastLoaded,
        Placement::Worker(0),
        Placement::Worker(2),
    ];
    let spawners: Vec<_> = (0..SPAWNERS)
        .map(|s| {
            let moved = moved.clone();
            rt.spawn(move || {
                let mut children = Vec::with_capacity(CHILDREN);
                for i in 0..CHILDREN {
                    let moved = moved.clone();
                    let placement = placements[(s + i) % placements.len()];
                    children.push(
                        Builder::new()
                            .placement(placement)
                            .spawn(move || {
                                let home = thread::current().id();
                                for round in 0..10 {
                                    if round % 3 == 0 {
                                        stackweave::time::sleep(Duration::from_micros(100));
                                    } else {
                                        stackweave::yield_now();
                                    }
                                    if thread::current().id() != home {
                                        moved.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            })
                            .unwrap(),
                    );
                    if i % 50 == 0 {
                        stackweave::yield_now();
                    }
                }
                for child in children {
                    child.join().unwrap();
                }
            })
        })
        .collect();
    for s in spawners {
        s.join().unwrap();
    }
    assert_eq!(
        moved.load(Ordering::Relaxed),
        0,
        "a started coroutine moved"
    );
    let m = rt.metrics();
    assert_eq!(m.live_coroutines, 0, "{m:?}");
}

#[test]
fn a_spawn_pinned_to_a_busy_worker_waits_for_it_and_others_are_not_stolen_from_it() {
    // Worker 0 is held by a coroutine that never yields until told to; a
    // coroutine pinned to worker 0 meanwhile must not start elsewhere.
    let _watchdog = Watchdog::new(
        "a worker held by a long computation",
        Duration::from_secs(60),
    );
    let rt = Runtime::builder().workers(2).build().unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let release = Arc::new(AtomicUsize::new(0));
    let hog = rt
        .handle()
        .try_spawn(Builder::new().placement(Placement::Worker(0)), {
            let release = release.clone();
            move || {
                held_tx.send(()).unwrap();
                while release.load(Ordering::Acquire) == 0 {
                    thread::yield_now(); // the OS thread's yield: keeps the worker
                }
            }
        })
        .unwrap();
    held_rx.recv().unwrap();
    let pinned = rt
        .handle()
        .try_spawn(Builder::new().placement(Placement::Worker(0)), worker_name)
        .unwrap();
    // A Balanced spawn meanwhile is started by the free worker.
    let free = rt.spawn(worker_name);
    assert_eq!(free.join().unwrap(), "stackweave-worker-1");
    thread::sleep(Duration::from_millis(5));
    release.store(1, Ordering::Release);
    assert_eq!(pinned.join().unwrap(), "stackweave-worker-0");
    hog.join().unwrap();
}
