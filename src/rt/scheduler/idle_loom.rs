//! loom models of the idle protocol (the `idle` module's invariant), on the real
//! `Idle` and `Parker`: under `--cfg stackweave_loom` their atomics, fence and mutex
//! are loom's, and the parker's waker is [`EventFd`], a stand-in for the eventfd
//! behind a worker's `mio::Waker`.
//!
//! Each worker thread runs the loop of `Worker::run` reduced to what the protocol
//! sees: take work if there is some, else `sleep` (the same steps in the same order
//! as `Worker::sleep` after its spinning: register, look once more, park, poll,
//! end the park, unregister). A publisher makes work visible, then calls
//! `wake_one` (as `Shared::wake_one`: `pick_one`, then `unpark`). The work queue is
//! a counter with release/acquire, the weakest ordering the real queues give. A
//! lost wakeup leaves a worker parked forever with work queued: loom reports the
//! deadlock. Taking out either `SeqCst` fence (in `register` or `pick_one`) makes
//! `loom_work_published_while_a_worker_falls_asleep_is_found` fail.

use super::{Idle, Parker, Wake};
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Notify};
use loom::thread;
use std::io;
use std::sync::atomic::Ordering;

/// The eventfd of a worker's `mio::Waker`, as its blocking `poll` sees it: a write
/// leaves one readiness (writes coalesce), which the next `poll` consumes.
struct EventFd(Notify);

impl Wake for EventFd {
    fn wake(&self) -> io::Result<()> {
        self.0.notify();
        Ok(())
    }
}

/// The runtime as the idle protocol sees it.
struct Model {
    idle: Idle,
    parkers: Vec<Parker<EventFd>>,
    /// Queued work nobody has taken yet (stands for the run queues and injector).
    queued: AtomicUsize,
    /// Items taken (and run).
    taken: AtomicUsize,
    /// Set once every item ran: the workers stop (the runtime's shutdown, which
    /// unparks every worker).
    stop: AtomicBool,
    items: usize,
}

impl Model {
    fn new(workers: usize, items: usize) -> Arc<Model> {
        Arc::new(Model {
            idle: Idle::default(),
            parkers: (0..workers)
                .map(|_| Parker::new(EventFd(Notify::new())))
                .collect(),
            queued: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            items,
        })
    }

    /// A publisher: queues one item, then `Shared::wake_one`.
    fn publish(&self) {
        self.queued.fetch_add(1, Ordering::Release);
        if let Some(w) = self.idle.pick_one() {
            self.parkers[w].unpark();
        }
    }

    /// `Worker::has_work`: anything queued (or the runtime stopping).
    fn has_work(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0 || self.stop.load(Ordering::Acquire)
    }

    /// Takes one queued item, if any.
    fn take(&self) -> bool {
        let mut n = self.queued.load(Ordering::Acquire);
        while n > 0 {
            match self
                .queued
                .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
        false
    }

    /// `Worker::sleep` from the point where it stops spinning (the spin rounds only
    /// call `has_work`, which the model does right before).
    fn sleep(&self, w: usize) {
        self.idle.register(w);
        if self.has_work() {
            self.idle.unregister(w);
            return;
        }
        let parker = &self.parkers[w];
        if parker.begin_park() {
            // The blocking `poll`: returns once the eventfd was written.
            parker.waker.0.wait();
            parker.end_park();
        }
        self.idle.unregister(w);
    }

    /// A worker's loop: run work while there is some, else sleep; stop once every
    /// item ran.
    fn worker(&self, w: usize) {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if self.take() {
                if self.taken.fetch_add(1, Ordering::AcqRel) + 1 == self.items {
                    self.stop.store(true, Ordering::Release);
                    for parker in &self.parkers {
                        parker.unpark();
                    }
                    return;
                }
                continue;
            }
            self.sleep(w);
        }
    }
}

/// The models' preemption bound: `LOOM_MAX_PREEMPTIONS` if set, else 3 (every
/// model here has finished in seconds with it; unbounded takes minutes).
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// `workers` workers, `publishers` threads each publishing one item; every item
/// must run (a lost wakeup deadlocks the model).
fn race(workers: usize, publishers: usize) {
    check(move || {
        let model = Model::new(workers, publishers);
        let mut threads: Vec<_> = (1..workers)
            .map(|w| {
                let model = model.clone();
                thread::spawn(move || model.worker(w))
            })
            .collect();
        threads.extend((0..publishers).map(|_| {
            let model = model.clone();
            thread::spawn(move || model.publish())
        }));
        model.worker(0);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(model.taken.load(Ordering::Acquire), publishers);
    });
}

#[test]
fn loom_work_published_while_a_worker_falls_asleep_is_found() {
    race(1, 1);
}

#[test]
fn loom_two_publishers_and_one_sleeping_worker_lose_no_wakeup() {
    race(1, 2);
}

#[test]
fn loom_one_publisher_wakes_one_of_two_sleeping_workers() {
    race(2, 1);
}

/// The parker alone: an unpark racing the park (before `begin_park`, between it
/// and the poll, or while the poll returns) is never lost.
#[test]
fn loom_an_unpark_racing_a_park_is_never_lost() {
    check(|| {
        let parker = Arc::new(Parker::new(EventFd(Notify::new())));
        let flag = Arc::new(AtomicBool::new(false));
        let (p, f) = (parker.clone(), flag.clone());
        let t = thread::spawn(move || {
            f.store(true, Ordering::Release);
            p.unpark();
        });
        // Sleep until the flag is seen, as a worker sleeps until it has work.
        while !flag.load(Ordering::Acquire) {
            if parker.begin_park() {
                parker.waker.0.wait();
                parker.end_park();
            }
        }
        t.join().unwrap();
    });
}

/// Regression (found by `loom_one_publisher_wakes_one_of_two_sleeping_workers`):
/// two unparks, each announcing its own work, while the worker consumes the first
/// in `begin_park`. The consume used to be a plain store of `EMPTY`, which could
/// land after the second unpark's swap (which found `NOTIFIED` and so wrote no
/// eventfd) without synchronising with it: the worker could then miss the second
/// work and sleep for good.
#[test]
fn loom_a_second_unpark_while_the_first_is_consumed_is_not_lost() {
    check(|| {
        let parker = Arc::new(Parker::new(EventFd(Notify::new())));
        let flags: Arc<[AtomicBool; 2]> =
            Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (p, f) = (parker.clone(), flags.clone());
                thread::spawn(move || {
                    f[i].store(true, Ordering::Release);
                    p.unpark();
                })
            })
            .collect();
        while !flags.iter().all(|f| f.load(Ordering::Acquire)) {
            if parker.begin_park() {
                parker.waker.0.wait();
                parker.end_park();
            }
        }
        for t in threads {
            t.join().unwrap();
        }
    });
}
