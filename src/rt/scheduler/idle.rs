//! Idle workers: parking, and waking exactly one when work appears for anyone.
//!
//! Invariant: a worker that is about to sleep first registers in `sleepers`, then
//! looks for work once more, and only then parks; whoever publishes work first makes
//! it visible, then (after a `SeqCst` fence) reads `num_sleepers`. One of the two
//! always sees the other, so work is never left behind while every worker sleeps.
//! Each [`Parker`] keeps one token, so an unpark that comes before the park is not
//! lost; a parked worker sleeps in its reactor's `poll`, so I/O and timers wake it too.

// The loom build swaps in loom's atomics, fence and mutex (the models at the end).
#[cfg(stackweave_loom)]
use loom::sync::{
    atomic::{fence, AtomicU8, AtomicUsize},
    Mutex,
};
use std::io;
use std::sync::atomic::Ordering;
#[cfg(not(stackweave_loom))]
use std::sync::{
    atomic::{fence, AtomicU8, AtomicUsize},
    Mutex,
};

/// What wakes a worker blocked in its reactor's `poll`: its `mio::Waker` (the loom
/// models put a stand-in for the eventfd here).
pub(crate) trait Wake {
    /// Makes the blocked `poll` return, or the next one return at once.
    fn wake(&self) -> io::Result<()>;
}

impl Wake for mio::Waker {
    #[inline]
    fn wake(&self) -> io::Result<()> {
        mio::Waker::wake(self)
    }
}

/// Lets other threads wake one worker that sleeps in its reactor's `poll`.
///
/// A three-state word in front of the worker's `mio::Waker`: unparking a worker that
/// is not asleep costs one atomic swap and no system call, and waking a sleeping one
/// costs one eventfd write. An unpark that arrives while the worker is awake is kept
/// in the word, so the worker's next sleep returns at once.
pub(crate) struct Parker<W: Wake = mio::Waker> {
    state: AtomicU8,
    waker: W,
}

const EMPTY: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

impl<W: Wake> Parker<W> {
    /// A parker whose unpark wakes the `Poll` that `waker` belongs to.
    pub(crate) fn new(waker: W) -> Parker<W> {
        Parker {
            state: AtomicU8::new(EMPTY),
            waker,
        }
    }

    /// Called by the owning worker before it blocks in `poll`: false (and the pending
    /// unpark consumed) if it was unparked since its last sleep, so it must not block.
    pub(crate) fn begin_park(&self) -> bool {
        match self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                // NOTIFIED: consume it, with a swap: a plain store could land
                // after a second unpark's swap (which found NOTIFIED and so
                // woke nobody) without synchronising with it, and erase it; the
                // work that unpark announced might then go unseen while the
                // worker sleeps (the loom models found this).
                self.state.swap(EMPTY, Ordering::AcqRel);
                false
            }
        }
    }

    /// Called by the owning worker once its blocking `poll` returned.
    pub(crate) fn end_park(&self) {
        self.state.swap(EMPTY, Ordering::AcqRel);
    }

    /// Wakes the worker if it sleeps, or makes its next sleep return at once.
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            // A failed eventfd write means the counter is full: a wakeup is pending.
            let _ = self.waker.wake();
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

#[cfg(all(test, stackweave_loom))]
#[path = "idle_loom.rs"]
mod loom_models;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn parker() -> (mio::Poll, Parker) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        (poll, Parker::new(waker))
    }

    #[test]
    fn unpark_before_park_is_not_lost() {
        let (_poll, p) = parker();
        p.unpark();
        assert!(!p.begin_park(), "a pending unpark keeps the worker awake");
        assert!(p.begin_park(), "and is consumed");
        p.end_park();
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
    fn parked_poll_wakes_on_unpark() {
        let (mut poll, p) = parker();
        let p = Arc::new(p);
        assert!(p.begin_park());
        let q = p.clone();
        let t = std::thread::spawn(move || q.unpark());
        let mut events = mio::Events::with_capacity(4);
        // Returns once the waker fires (no timeout: a lost wakeup would hang here).
        while events.is_empty() {
            poll.poll(&mut events, None).unwrap();
        }
        p.end_park();
        t.join().unwrap();
    }
}
