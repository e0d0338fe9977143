//! The timers of one worker: a binary heap of deadlines over a slab of live timers.
//!
//! Invariant: a timer is live while its slab entry holds its task and its key's
//! generation matches the entry's. The heap may also hold entries of cancelled
//! timers (cancelling is O(1): it only frees the slab entry); they are skipped when
//! they reach the top, and the heap is rebuilt from the live entries whenever the
//! cancelled ones outnumber the live ones, so memory stays within twice the live
//! timers. Only the worker that owns the queue touches it (no locks).
//!
//! Why a heap and not a wheel: most timers here are I/O deadlines that are cancelled
//! long before they fire; a heap insert and an O(1) cancel measured cheaper than the
//! bookkeeping of a hierarchical wheel at the counts a worker holds (see
//! docs/DECISIONS.md), and a heap fires in deadline order with no granularity of its
//! own (the poll timeout's millisecond is the only rounding).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Names one inserted timer, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: u32,
    generation: u32,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Timers carrying a `T` (the task to wake), fired in deadline order.
pub(crate) struct TimerQueue<T> {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    slab: Vec<Entry<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    /// Adds a timer that fires at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slab.push(Entry {
                    generation: 0,
                    value: None,
                });
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 timers per worker")
            }
        };
        let entry = &mut self.slab[slot as usize];
        entry.value = Some(value);
        self.live += 1;
        self.heap.push(Reverse((deadline, slot, entry.generation)));
        TimerKey {
            slot,
            generation: entry.generation,
        }
    }

    /// Cancels a timer; returns its value if it had not fired yet.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.slab.get_mut(key.slot as usize)?;
        if entry.generation != key.generation {
            return None;
        }
        let value = entry.value.take()?;
        self.release(key.slot);
        if self.heap.len() > 2 * self.live + 64 {
            let slab = &self.slab;
            self.heap.retain(|Reverse((_, slot, generation))| {
                slab[*slot as usize].generation == *generation
            });
        }
        Some(value)
    }

    fn release(&mut self, slot: u32) {
        let entry = &mut self.slab[slot as usize];
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
    }

    /// The earliest deadline of a live timer.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, slot, generation))) = self.heap.peek().copied() {
            if self.slab[slot as usize].generation == generation {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes the timers due at `now` and hands each value to `fire`, earliest first.
    /// Returns how many fired.
    pub(crate) fn fire_due(&mut self, now: Instant, mut fire: impl FnMut(T)) -> usize {
        let mut fired = 0;
        while let Some(Reverse((deadline, slot, generation))) = self.heap.peek().copied() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if self.slab[slot as usize].generation != generation {
                continue;
            }
            let value = self.slab[slot as usize].value.take();
            self.release(slot);
            if let Some(value) = value {
                fire(value);
                fired += 1;
            }
        }
        fired
    }

    /// Live timers.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Takes every live timer out, in no particular order.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.heap.clear();
        let mut out = Vec::with_capacity(self.live);
        for slot in 0..self.slab.len() {
            if let Some(value) = self.slab[slot].value.take() {
                self.release(slot as u32);
                out.push(value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order_and_skips_cancelled() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let ms = Duration::from_millis;
        q.insert(t0 + ms(30), 3);
        let k = q.insert(t0 + ms(10), 1);
        q.insert(t0 + ms(20), 2);
        assert_eq!(q.cancel(k), Some(1));
        assert_eq!(q.cancel(k), None, "cancelled twice");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_deadline(), Some(t0 + ms(20)));
        let mut fired = Vec::new();
        assert_eq!(q.fire_due(t0 + ms(25), |v| fired.push(v)), 1);
        assert_eq!(fired, [2]);
        q.fire_due(t0 + ms(30), |v| fired.push(v));
        assert_eq!(fired, [2, 3]);
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn cancel_after_fire_and_slot_reuse_do_not_mix_timers() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let a = q.insert(t0, "a");
        q.fire_due(t0, |_| {});
        let b = q.insert(t0, "b"); // reuses a's slot
        assert_eq!(q.cancel(a), None);
        assert_eq!(q.cancel(b), Some("b"));
    }

    #[test]
    fn cancelled_entries_do_not_pile_up() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let _keep = q.insert(t0 + Duration::from_secs(60), 0);
        for i in 0..100_000 {
            let k = q.insert(t0 + Duration::from_secs(30), i);
            q.cancel(k);
        }
        assert!(
            q.heap.len() <= 2 * q.live + 65,
            "heap holds {}",
            q.heap.len()
        );
        assert_eq!(q.drain(), [0]);
    }
}
