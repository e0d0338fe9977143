//! `coroutine_local!` gives each coroutine its own value, kept across suspensions
//! and dropped when the coroutine ends (before its `join` returns); outside a
//! coroutine it behaves like `thread_local!`.

mod common;

use common::Watchdog;
use stackweave::{Runtime, Unwound};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

stackweave::coroutine_local! {
    static COUNTER: Cell<u64> = Cell::new(0);
    static LOG: RefCell<Vec<u64>> = RefCell::new(Vec::new());
}

#[test]
fn each_coroutine_has_its_own_value_across_yields() {
    const N: u64 = 200;
    let _watchdog = Watchdog::new("coroutine locals", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            rt.spawn(move || {
                assert_eq!(COUNTER.with(Cell::get), 0, "a fresh value per coroutine");
                for step in 0..10 {
                    COUNTER.with(|c| c.set(c.get() + i));
                    LOG.with(|l| l.borrow_mut().push(step));
                    // Other coroutines of the same worker run and use theirs.
                    stackweave::yield_now();
                }
                (COUNTER.with(Cell::get), LOG.with(|l| l.borrow().clone()))
            })
        })
        .collect();
    for (i, h) in (0..N).zip(handles) {
        let (counter, log) = h.join().unwrap();
        assert_eq!(counter, 10 * i);
        assert_eq!(log, (0..10).collect::<Vec<_>>());
    }
}

#[test]
fn value_survives_park_and_unpark() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let h = rt.spawn(|| {
        COUNTER.with(|c| c.set(41));
        stackweave::park();
        COUNTER.with(|c| c.get() + 1)
    });
    h.coroutine().unpark();
    assert_eq!(h.join().unwrap(), 42);
}

/// Records its drop in a shared list.
struct Recorded {
    name: &'static str,
    drops: Arc<Mutex<Vec<&'static str>>>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.drops.lock().unwrap().push(self.name);
    }
}

stackweave::coroutine_local! {
    static RECORDED: RefCell<Option<Recorded>> = RefCell::new(None);
}

#[test]
fn values_are_dropped_when_the_coroutine_ends_before_join_returns() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let drops = Arc::new(Mutex::new(Vec::new()));
    let h = rt.spawn({
        let drops = drops.clone();
        move || {
            RECORDED.with(|r| {
                *r.borrow_mut() = Some(Recorded {
                    name: "returned",
                    drops,
                })
            });
            stackweave::yield_now();
        }
    });
    h.join().unwrap();
    assert_eq!(*drops.lock().unwrap(), ["returned"]);
}

#[test]
fn values_are_dropped_when_the_coroutine_panics() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let drops = Arc::new(Mutex::new(Vec::new()));
    let h = rt.spawn({
        let drops = drops.clone();
        move || -> () {
            RECORDED.with(|r| {
                *r.borrow_mut() = Some(Recorded {
                    name: "panicked",
                    drops,
                })
            });
            panic!("with a local");
        }
    });
    assert!(h.join().is_err());
    assert_eq!(*drops.lock().unwrap(), ["panicked"]);
}

#[test]
fn values_are_dropped_when_shutdown_unwinds_the_coroutine() {
    let _watchdog = Watchdog::new("locals at shutdown", Duration::from_secs(30));
    let rt = Runtime::builder().workers(1).build().unwrap();
    let drops = Arc::new(Mutex::new(Vec::new()));
    let parked = Arc::new(AtomicUsize::new(0));
    let h = rt.spawn({
        let (drops, parked) = (drops.clone(), parked.clone());
        move || {
            RECORDED.with(|r| {
                *r.borrow_mut() = Some(Recorded {
                    name: "unwound",
                    drops,
                })
            });
            parked.fetch_add(1, Ordering::SeqCst);
            loop {
                stackweave::park();
            }
        }
    });
    while parked.load(Ordering::SeqCst) == 0 {
        thread::yield_now();
    }
    drop(rt);
    assert!(h.join().unwrap_err().is::<Unwound>());
    assert_eq!(*drops.lock().unwrap(), ["unwound"]);
}

/// Its destructor uses another coroutine-local, re-creating it.
struct UsesOtherOnDrop(Arc<AtomicUsize>);

impl Drop for UsesOtherOnDrop {
    fn drop(&mut self) {
        OTHER.with(|o| o.0.set(self.0.clone()).ok());
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts its drops, once it knows where.
struct CountsDrop(std::sync::OnceLock<Arc<AtomicUsize>>);

impl Drop for CountsDrop {
    fn drop(&mut self) {
        if let Some(count) = self.0.get() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

stackweave::coroutine_local! {
    static FIRST: RefCell<Option<UsesOtherOnDrop>> = RefCell::new(None);
    static OTHER: CountsDrop = CountsDrop(std::sync::OnceLock::new());
}

#[test]
fn destructor_that_uses_another_local_gets_it_and_it_is_dropped_too() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let h = rt.spawn({
        let drops = drops.clone();
        move || FIRST.with(|f| *f.borrow_mut() = Some(UsesOtherOnDrop(drops)))
    });
    h.join().unwrap();
    // FIRST's value, then OTHER's (created by FIRST's destructor).
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn outside_a_coroutine_the_value_is_per_thread() {
    COUNTER.with(|c| c.set(7));
    let other = thread::spawn(|| {
        let before = COUNTER.with(Cell::get);
        COUNTER.with(|c| c.set(99));
        before
    })
    .join()
    .unwrap();
    assert_eq!(other, 0, "another thread starts with its own value");
    assert_eq!(
        COUNTER.with(Cell::get),
        7,
        "this thread's value is untouched"
    );

    // A coroutine does not see the thread's value either.
    let rt = Runtime::builder().workers(1).build().unwrap();
    assert_eq!(rt.block_on(|| COUNTER.with(Cell::get)), 0);
    assert_eq!(COUNTER.with(Cell::get), 7);
}
