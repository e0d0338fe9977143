//! A worker's run queue: its started coroutines that are ready to run, first in,
//! first out.
//!
//! Invariant: the queue holds `len` tasks in `slots[head..]` followed, wrapping
//! around, by `slots[..]`; every other slot is `None`; the number of slots is a
//! power of two, so a position is found with a mask, never a division or a branch.
//!
//! It is `VecDeque` cut down to the worker's hot path. A coroutine that yields while
//! another is ready makes the commonest operation "pop the front and push the
//! yielder at the back"; [`RunQueue::rotate`] does both in one step (one slot read,
//! one written, the head moved) instead of a pop and a push that each check the
//! length and recompute a wrapped index.

/// Slots a new queue starts with (it doubles when full).
const INITIAL_SLOTS: usize = 64;

/// See the module docs.
pub(super) struct RunQueue<T> {
    slots: Box<[Option<T>]>,
    head: usize,
    len: usize,
}

impl<T> Default for RunQueue<T> {
    fn default() -> RunQueue<T> {
        RunQueue {
            slots: (0..INITIAL_SLOTS).map(|_| None).collect(),
            head: 0,
            len: 0,
        }
    }
}

impl<T> RunQueue<T> {
    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Number of queued tasks.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether no task is queued.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `task` last.
    #[inline]
    pub(super) fn push_back(&mut self, task: T) {
        if self.len == self.slots.len() {
            self.grow();
        }
        let at = (self.head + self.len) & self.mask();
        debug_assert!(self.slots[at].is_none());
        self.slots[at] = Some(task);
        self.len += 1;
    }

    /// Takes the first task.
    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let task = self.slots[self.head].take();
        debug_assert!(task.is_some());
        self.head = (self.head + 1) & self.mask();
        self.len -= 1;
        task
    }

    /// Takes the first task and queues `task` last, in one step; gives `task` back
    /// when the queue is empty.
    #[inline]
    pub(super) fn rotate(&mut self, task: T) -> T {
        if self.len == 0 {
            return task;
        }
        // The tail slot of the queue without its first task is the one after the
        // current last: (head + len) with the head one further and the length one
        // less is the same slot as before the pop, so write first, then move on.
        let mask = self.mask();
        let at = (self.head + self.len) & mask;
        let first = self.slots[self.head].take();
        // With `len == slots`, `at` is `head`: the slot just emptied.
        self.slots[at] = Some(task);
        self.head = (self.head + 1) & mask;
        first.expect("a queued task in the head slot")
    }

    /// Moves every task out, first to last, leaving the queue empty.
    pub(super) fn take_all(&mut self) -> Vec<T> {
        let mut all = Vec::with_capacity(self.len);
        while let Some(task) = self.pop_front() {
            all.push(task);
        }
        all
    }

    /// Doubles the slots, keeping the order.
    #[cold]
    fn grow(&mut self) {
        let queued = self.take_all();
        let slots = (self.slots.len() * 2).max(INITIAL_SLOTS);
        self.slots = (0..slots).map(|_| None).collect();
        self.head = 0;
        for task in queued {
            self.push_back(task);
        }
    }
}

impl<T> Extend<T> for RunQueue<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, tasks: I) {
        for task in tasks {
            self.push_back(task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunQueue;
    use std::collections::VecDeque;

    /// Every operation against `VecDeque` as the model, through growth and
    /// wrap-around (a small xorshift picks the operations).
    #[test]
    fn behaves_like_a_vecdeque() {
        let mut queue = RunQueue::default();
        let mut model = VecDeque::new();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = 0u32;
        for _ in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Biased to pushes for the first half, so the queue grows, then to pops.
            let push_bias = if model.len() < 300 { 5 } else { 3 };
            match rng % 10 {
                r if r < push_bias => {
                    queue.push_back(next);
                    model.push_back(next);
                    next += 1;
                }
                r if r < 8 => {
                    let rotated = queue.rotate(next);
                    model.push_back(next);
                    assert_eq!(rotated, model.pop_front().unwrap());
                    next += 1;
                }
                _ => assert_eq!(queue.pop_front(), model.pop_front()),
            }
            assert_eq!(queue.len(), model.len());
            assert_eq!(queue.is_empty(), model.is_empty());
        }
        let rest = queue.take_all();
        assert_eq!(rest.len(), model.len());
        assert!(rest.into_iter().eq(model));
        assert!(queue.is_empty());
    }

    #[test]
    fn rotate_on_an_empty_queue_gives_the_task_back() {
        let mut queue = RunQueue::default();
        assert_eq!(queue.rotate(7), 7);
        assert!(queue.is_empty());
    }

    #[test]
    fn rotate_on_a_full_queue_keeps_the_order() {
        let mut queue = RunQueue::default();
        queue.extend(0..64);
        assert_eq!(queue.len(), 64);
        assert_eq!(queue.rotate(64), 0);
        assert_eq!(queue.rotate(65), 1);
        queue.push_back(66);
        let all = queue.take_all();
        assert_eq!(all, (2..67).collect::<Vec<_>>());
    }
}
