//! The started, unfinished coroutines whose home is one worker.
//!
//! Invariant: a worker holds one strong reference to each of its started,
//! unfinished tasks here, in the slot whose index the task keeps in its worker part
//! (`WorkerPart::slot`); so a suspended coroutine that nobody else references stays
//! alive until shutdown unwinds it, and its context's data pointer stays valid. Only
//! the home worker's thread touches its set: no hashing, no locks, and the freed
//! slots are reused (last freed, first reused).

use super::TaskRef;

/// A slab of started tasks.
#[derive(Default)]
pub(super) struct Started {
    slots: Vec<Option<TaskRef>>,
    free: Vec<usize>,
    len: usize,
}

impl Started {
    /// Keeps `task`; returns its slot.
    pub(super) fn insert(&mut self, task: TaskRef) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                debug_assert!(self.slots[slot].is_none());
                self.slots[slot] = Some(task);
                slot
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }

    /// Gives back the task kept in `slot` (returned by [`insert`](Self::insert)).
    pub(super) fn remove(&mut self, slot: usize) -> Option<TaskRef> {
        let task = self.slots.get_mut(slot)?.take()?;
        self.len -= 1;
        self.free.push(slot);
        Some(task)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every task kept.
    pub(super) fn tasks(&self) -> impl Iterator<Item = &TaskRef> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused() {
        let rt = crate::Runtime::builder().workers(1).build().unwrap();
        // Real tasks: spawn some and keep clones of their `TaskRef`s.
        let tasks: Vec<TaskRef> = (0..3)
            .map(|_| {
                let h = rt.spawn(|| {});
                let task = h.coroutine().as_task().expect("a coroutine").clone();
                h.join().unwrap();
                task
            })
            .collect();
        let mut started = Started::default();
        assert!(started.is_empty());
        let a = started.insert(tasks[0].clone());
        let b = started.insert(tasks[1].clone());
        assert_ne!(a, b);
        assert_eq!(started.tasks().count(), 2);
        assert!(TaskRef::ptr_eq(&started.remove(a).unwrap(), &tasks[0]));
        assert!(
            started.remove(a).is_none(),
            "a slot gives its task back once"
        );
        let c = started.insert(tasks[2].clone());
        assert_eq!(c, a, "the freed slot is reused");
        started.remove(b);
        started.remove(c);
        assert!(started.is_empty());
    }
}
