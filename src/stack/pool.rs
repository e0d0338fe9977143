//! A LIFO pool of stacks, one per thread.
//!
//! Invariant: every stack in a pool is unused (no context lives on it, no owner is
//! set, nothing is reserved at its top). The most recently returned stack waits in
//! the thread's `spare` slot, so the common create-run-drop cycle takes and gives it
//! back with a few loads and stores and no search. Older stacks are grouped by size
//! class; each thread keeps up to [`HOT`] per class with their memory, so reusing
//! one costs a `Vec` pop. Past that watermark a returned stack moves to the
//! process-wide overflow pool, keeping its memory for the first [`WARM`] of a
//! class, giving it back to the kernel (`MADV_DONTNEED`) past that, and unmapped past
//! [`MAX`] (both done by a reaper thread, off the workers). Any thread finds stacks
//! there: a
//! runtime worker that spawns many coroutines takes the stacks that other workers'
//! finished coroutines gave back. A fresh `mmap` with its guard costs about 10 µs
//! and an `munmap` as much again (it shoots down other CPUs' TLBs); a pooled stack
//! costs nanoseconds, an overflow one about a microsecond.
//!
//! The per-thread pool is const-initialised, so reaching it costs a TLS access and a
//! check of its destructor's registration, not a lazy initialisation.

use super::Stack;
use std::cell::RefCell;
use std::io;
use std::sync::Mutex;

/// Stacks per size class each thread keeps with their memory (besides the spare).
const HOT: usize = 16;
/// Stacks per size class the overflow pool keeps with their memory: a burst of
/// spawns on one worker reuses what another worker's finished coroutines left, with
/// no system call (releasing memory costs an `madvise` and TLB shootdowns).
const WARM: usize = 1024;
/// Stacks per size class kept in the process-wide overflow pool.
const MAX: usize = 4096;

/// The process-wide overflow pool: stacks without their memory, by size class.
static OVERFLOW: Mutex<Vec<(usize, Vec<Stack>)>> = Mutex::new(Vec::new());

/// The stacks of size class `size`, created empty if there is none yet.
fn class_mut(classes: &mut Vec<(usize, Vec<Stack>)>, size: usize) -> &mut Vec<Stack> {
    match classes.iter().position(|(s, _)| *s == size) {
        Some(i) => &mut classes[i].1,
        None => {
            classes.push((size, Vec::new()));
            &mut classes.last_mut().expect("just pushed").1
        }
    }
}

fn overflow_take(size: usize) -> Option<Stack> {
    let mut classes = OVERFLOW.lock().unwrap_or_else(|e| e.into_inner());
    let (_, stacks) = classes.iter_mut().find(|(s, _)| *s == size)?;
    stacks.pop()
}

fn overflow_give(stack: Stack) {
    let mut classes = OVERFLOW.lock().unwrap_or_else(|e| e.into_inner());
    let stacks = class_mut(&mut classes, stack.size());
    if stacks.len() < WARM {
        stacks.push(stack);
        return;
    }
    drop(classes);
    reaper::hand_over(stack);
}

/// Gives back the memory of stacks past the warm part of the overflow pool, or
/// unmaps them past [`MAX`], on a thread of its own.
///
/// Both are system calls that shoot down the TLBs of the other CPUs, ~10 µs each:
/// when a burst of 100,000 coroutines finished, the workers spent a third of their
/// time in them and the timers of the coroutines still sleeping fired late. A
/// worker now only pushes the stack on a queue.
mod reaper {
    use super::{class_mut, Stack, MAX, OVERFLOW};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Condvar, Mutex, Once};

    static QUEUE: Mutex<Vec<Stack>> = Mutex::new(Vec::new());
    static READY: Condvar = Condvar::new();
    static START: Once = Once::new();
    static RUNNING: AtomicBool = AtomicBool::new(false);

    pub(super) fn hand_over(stack: Stack) {
        START.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("stackweave-stack-reaper".into())
                .spawn(run);
            RUNNING.store(spawned.is_ok(), Ordering::Release);
        });
        if !RUNNING.load(Ordering::Acquire) {
            // The thread could not be started: the caller does the work.
            reap(stack);
            return;
        }
        let mut queue = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        queue.push(stack);
        if queue.len() == 1 {
            READY.notify_one();
        }
    }

    fn run() {
        let mut batch = Vec::new();
        loop {
            {
                let mut queue = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
                while queue.is_empty() {
                    queue = READY.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
                std::mem::swap(&mut *queue, &mut batch);
            }
            for stack in batch.drain(..) {
                reap(stack);
            }
        }
    }

    fn reap(stack: Stack) {
        let size = stack.size();
        let len = {
            let mut classes = OVERFLOW.lock().unwrap_or_else(|e| e.into_inner());
            class_mut(&mut classes, size).len()
        };
        if len >= MAX {
            drop(stack); // unmapped, outside the lock
            return;
        }
        // Keep the reservation, give the memory back (outside the lock).
        stack.release_memory();
        let mut classes = OVERFLOW.lock().unwrap_or_else(|e| e.into_inner());
        // Cold stacks go under the warm ones: takers pop warm stacks first.
        class_mut(&mut classes, size).insert(0, stack);
    }
}

/// Unused stacks: the last one returned, and the others grouped by usable size, most
/// recently returned last.
#[derive(Default)]
pub(crate) struct StackPool {
    spare: Option<Stack>,
    classes: Vec<(usize, Vec<Stack>)>,
}

impl StackPool {
    const fn new() -> Self {
        StackPool {
            spare: None,
            classes: Vec::new(),
        }
    }

    /// A pooled stack of exactly `size` usable bytes, if there is one.
    #[inline]
    fn reuse(&mut self, size: usize) -> Option<Stack> {
        match &self.spare {
            Some(spare) if spare.size() == size => self.spare.take(),
            _ => self.reuse_older(size),
        }
    }

    #[cold]
    fn reuse_older(&mut self, size: usize) -> Option<Stack> {
        let local = self
            .classes
            .iter_mut()
            .find(|(s, _)| *s == size)
            .and_then(|(_, stacks)| stacks.pop());
        local.or_else(|| overflow_take(size))
    }

    /// A stack of exactly `size` usable bytes (`size` already rounded by
    /// [`super::round_size`]), reused when one is pooled.
    pub(crate) fn get(&mut self, size: usize) -> io::Result<Stack> {
        match self.reuse(size) {
            Some(stack) => Ok(stack),
            None => Stack::new(size),
        }
    }

    /// Returns an unused stack to the pool.
    #[inline]
    pub(crate) fn put(&mut self, mut stack: Stack) {
        stack.reset();
        if let Some(older) = self.spare.replace(stack) {
            self.put_older(older);
        }
    }

    #[cold]
    fn put_older(&mut self, stack: Stack) {
        let size = stack.size();
        let stacks = class_mut(&mut self.classes, size);
        if stacks.len() < HOT {
            stacks.push(stack);
        } else {
            overflow_give(stack);
        }
    }

    /// Number of pooled stacks (all classes).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.spare.is_some()) + self.classes.iter().map(|(_, v)| v.len()).sum::<usize>()
    }
}

thread_local! {
    static POOL: RefCell<StackPool> = const { RefCell::new(StackPool::new()) };
}

/// A stack of `size` (rounded) usable bytes from this thread's pool.
#[inline]
pub(crate) fn take(size: usize) -> io::Result<Stack> {
    // Fast path: a pooled stack of exactly the requested size (the default size and
    // other whole-page sizes need no rounding).
    if let Ok(Some(stack)) = POOL.try_with(|p| p.borrow_mut().reuse(size)) {
        return Ok(stack);
    }
    take_slow(size)
}

#[cold]
fn take_slow(size: usize) -> io::Result<Stack> {
    let size = super::round_size(size)?;
    POOL.try_with(|p| p.borrow_mut().get(size))
        .unwrap_or_else(|_| Stack::new(size))
}

/// Gives an unused stack back to this thread's pool (or unmaps it while the thread
/// is exiting).
#[inline]
pub(crate) fn give(stack: Stack) {
    // If the pool is gone (thread exit), `stack` is dropped here: unmapped.
    let _ = POOL.try_with(move |p| p.borrow_mut().put(stack));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_the_last_returned_stack() {
        let mut pool = StackPool::default();
        let a = pool.get(64 * 1024).unwrap();
        let top = a.top();
        pool.put(a);
        assert_eq!(pool.len(), 1);
        let b = pool.get(64 * 1024).unwrap();
        assert_eq!(b.top(), top);
        // A different size never gets a pooled stack of another size.
        let c = pool.get(128 * 1024).unwrap();
        assert_eq!(c.size(), 128 * 1024);
        pool.put(b);
        pool.put(c);
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn pool_is_bounded() {
        let mut pool = StackPool::default();
        // A size no other test uses, so the shared overflow pool is ours here.
        let size = super::super::MIN_STACK_SIZE + 3 * super::super::page_size();
        let stacks: Vec<_> = (0..HOT + 10).map(|_| pool.get(size).unwrap()).collect();
        for s in stacks {
            pool.put(s);
        }
        // HOT in the size class, plus the spare; the rest went to the overflow pool,
        // where the next takes find them.
        assert_eq!(pool.len(), HOT + 1);
        let again: Vec<_> = (0..HOT + 10).map(|_| pool.get(size).unwrap()).collect();
        assert_eq!(pool.len(), 0);
        drop(again);
    }
}
