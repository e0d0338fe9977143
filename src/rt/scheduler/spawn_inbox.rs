//! A worker's spawn inbox: unstarted coroutines that other threads placed on it.
//!
//! Invariant: every task pushed is taken exactly once, by the worker or a thief,
//! and pushing allocates nothing while the ring has room. A fixed ring takes the
//! pushes; only when it is full do they go to an unbounded overflow queue (a
//! crossbeam `Injector`), and while the overflow holds anything every push goes
//! there too, so the ring's tasks are older than the overflow's and taking the
//! ring first keeps the order the tasks were pushed in (up to pushes racing a
//! take, which is all any queue shared by threads promises).
//!
//! Why not the `Injector` alone: it allocates a block per 63 pushes on the
//! pushing thread, and the taker frees it on its own. With a spawner on one
//! worker and the taker on another, glibc's `free` then takes the spawner's arena
//! lock while the spawner allocates its next tasks there, and the two contend.

use crossbeam_deque::{Injector, Steal};
use crossbeam_queue::ArrayQueue;

/// Tasks the ring holds before pushes overflow (a spawn burst's batch or so).
const RING: usize = 256;

/// See the module docs.
pub(crate) struct SpawnInbox<T> {
    ring: ArrayQueue<T>,
    overflow: Injector<T>,
}

impl<T> SpawnInbox<T> {
    /// An empty inbox.
    pub(crate) fn new() -> SpawnInbox<T> {
        SpawnInbox {
            ring: ArrayQueue::new(RING),
            overflow: Injector::new(),
        }
    }

    /// Adds `task` at the back.
    pub(crate) fn push(&self, task: T) {
        if !self.overflow.is_empty() {
            self.overflow.push(task);
        } else if let Err(task) = self.ring.push(task) {
            self.overflow.push(task);
        }
    }

    /// Takes the task at the front, if any.
    pub(crate) fn take(&self) -> Option<T> {
        if let Some(task) = self.ring.pop() {
            return Some(task);
        }
        loop {
            match self.overflow.steal() {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    /// How many tasks it holds (a snapshot, for the metrics).
    pub(crate) fn len(&self) -> usize {
        self.ring.len() + self.overflow.len()
    }

    /// Whether it holds no task (a snapshot).
    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.overflow.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{SpawnInbox, RING};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn keeps_push_order_through_the_overflow() {
        let inbox = SpawnInbox::new();
        for i in 0..RING * 3 {
            inbox.push(i);
        }
        // Taking some frees ring slots, but pushes keep going to the overflow
        // while it holds older tasks.
        for i in 0..RING / 2 {
            assert_eq!(inbox.take(), Some(i));
        }
        for i in RING * 3..RING * 4 {
            inbox.push(i);
        }
        for i in RING / 2..RING * 4 {
            assert_eq!(inbox.take(), Some(i));
        }
        assert_eq!(inbox.take(), None);
        assert!(inbox.is_empty());
    }

    #[test]
    fn every_task_is_taken_once_with_pushers_and_takers_racing() {
        const PUSHERS: usize = 3;
        const EACH: usize = 20_000;
        let inbox = Arc::new(SpawnInbox::new());
        let taken: Arc<Vec<AtomicUsize>> =
            Arc::new((0..PUSHERS * EACH).map(|_| AtomicUsize::new(0)).collect());
        let done = Arc::new(AtomicUsize::new(0));
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|p| {
                let inbox = inbox.clone();
                thread::spawn(move || {
                    for i in 0..EACH {
                        inbox.push(p * EACH + i);
                    }
                })
            })
            .collect();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (inbox, taken, done) = (inbox.clone(), taken.clone(), done.clone());
                thread::spawn(move || {
                    while done.load(Ordering::Acquire) < PUSHERS * EACH {
                        match inbox.take() {
                            Some(i) => {
                                taken[i].fetch_add(1, Ordering::Relaxed);
                                done.fetch_add(1, Ordering::Release);
                            }
                            None => thread::yield_now(),
                        }
                    }
                })
            })
            .collect();
        for t in pushers.into_iter().chain(takers) {
            t.join().unwrap();
        }
        assert!(taken.iter().all(|n| n.load(Ordering::Relaxed) == 1));
        assert!(inbox.is_empty());
    }
}
