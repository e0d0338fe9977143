//! Idle workers: parking, and waking exactly one when work appears for anyone.
//!
//! Invariant: a worker that is about to sleep first registers in `sleepers`, then
//! looks for work once more, and only then parks; whoever publishes work first makes
//! it visible, then (after a `SeqCst` fence) reads `num_sleepers`. One of the two
//! always sees the other, so work is never left behind while every worker sleeps.
//! Each [`Parker`] keeps one token, so an unpark that comes before the park is not
//! lost.

use std::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};

/// Blocks one worker thread until it is unparked.
///
/// A three-state word over the thread's own `std::thread::park`: unparking a worker
/// that is not asleep costs one atomic swap and no system call, and waking a sleeping
/// one costs one futex wake. The word, not std's token, decides when `park` returns,
/// so user code that calls `std::thread::park` on a worker thread cannot swallow a
/// wakeup.
pub(crate) struct Parker {
    state: AtomicU8,
    thread: OnceLock<Thread>,
}

const EMPTY: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

impl Default for Parker {
    fn default() -> Parker {
        Parker {
            state: AtomicU8::new(EMPTY),
            thread: OnceLock::new(),
        }
    }
}

impl Parker {
    /// Blocks until `unpark` is called (or returns at once if it already was since
    /// the last `park`). Only the thread that owns the parker may call it.
    pub(crate) fn park(&self) {
        let _ = self.thread.get_or_init(thread::current);
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        if self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            // NOTIFIED arrived in between.
            self.state.store(EMPTY, Ordering::Release);
            return;
        }
        loop {
            thread::park();
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Wakes the parked worker, or makes its next `park` return at once.
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::Release) == PARKED {
            // PARKED is only set after `thread` was initialised.
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// The set of sleeping workers.
#[derive(Default)]
pub(crate) struct Idle {
    sleepers: Mutex<Vec<usize>>,
    num_sleepers: AtomicUsize,
}

impl Idle {
    /// Registers `worker` as about to sleep. The caller must look for work once more
    /// before it parks (module invariant).
    pub(crate) fn register(&self, worker: usize) {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.push(worker);
        self.num_sleepers.fetch_add(1, Ordering::SeqCst);
        drop(sleepers);
        fence(Ordering::SeqCst);
    }

    /// Removes `worker` from the sleepers if it is still there (it found work, or was
    /// woken by someone who did not pick it from the list).
    pub(crate) fn unregister(&self, worker: usize) {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = sleepers.iter().position(|&w| w == worker) {
            sleepers.swap_remove(i);
            self.num_sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Picks one sleeping worker to wake, if any sleeps. Called after publishing work.
    pub(crate) fn pick_one(&self) -> Option<usize> {
        fence(Ordering::SeqCst);
        if self.num_sleepers.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        let worker = sleepers.pop()?;
        self.num_sleepers.fetch_sub(1, Ordering::SeqCst);
        Some(worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn unpark_before_park_is_not_lost() {
        let p = Parker::default();
        p.unpark();
        p.park(); // returns at once
    }

    #[test]
    fn pick_one_takes_each_sleeper_once() {
        let idle = Idle::default();
        assert_eq!(idle.pick_one(), None);
        idle.register(3);
        idle.register(5);
        let mut picked = vec![idle.pick_one().unwrap(), idle.pick_one().unwrap()];
        picked.sort();
        assert_eq!(picked, [3, 5]);
        assert_eq!(idle.pick_one(), None);
        idle.register(1);
        idle.unregister(1);
        assert_eq!(idle.pick_one(), None);
    }

    #[test]
    fn parked_thread_wakes_on_unpark() {
        let p = Arc::new(Parker::default());
        let q = p.clone();
        let t = std::thread::spawn(move || q.park());
        p.unpark();
        t.join().unwrap();
    }
}
