//! Pools of unused stacks: one per thread, and one shared by the process.
//!
//! Invariant: every pooled stack is unused (no context lives on it, no owner is set,
//! nothing is reserved at its top). The most recently returned stack waits in the
//! thread's `spare` slot, so the common create-run-drop cycle takes and gives it back
//! with a few loads and stores and no search. Older ones are grouped by size class:
//! each thread keeps up to [`LOCAL`] per class with their memory, and no more than
//! [`LOCAL_BYTES`] of them; past that it moves a batch of them at once to the shared
//! pool (one lock for many stacks), and it refills from there a batch at a time. Any
//! thread finds stacks there: a runtime worker that spawns many coroutines takes the
//! stacks that other workers' finished coroutines gave back. When a reservation
//! fails, the pooled stacks of other sizes are unmapped and it is tried once more.
//! A coroutine's first run trades the untouched stack its spawn reserved for the
//! thread's used spare (`for_first_run`), so stacks reserved in a burst stay
//! untouched, and cost no memory, until a spawn needs them running.
//!
//! The shared pool keeps *warm* stacks (with their memory) and *cold* ones (memory
//! given back). A stack stays warm for as long as it is likely to be reused soon: a
//! reaper thread looks every [`TICK`] at how low each class's warm list went since
//! its last look, and gives back the memory of the stacks below that mark — they
//! were not needed during a whole tick — in a few `madvise` calls over neighbouring
//! stacks (see `release_all`). So a burst of coroutines followed by another reuses
//! the first burst's stacks without a page fault or a system call, and memory
//! unused for one to two ticks goes back to the kernel (like jemalloc's decay of
//! dirty pages). The warm list is capped at [`WARM_MAX`] per class; cold stacks past
//! [`COLD_MAX`] per class are unmapped, also by the reaper. Both are system calls
//! that shoot down the other CPUs' TLBs, which the workers never make.
//!
//! A thread with no pooled stack of a size carves one from its chunk of that size
//! (see the `chunk` module), or maps one on its own when chunks are not in use. The
//! per-thread pool is const-initialised, so reaching it costs a TLS access and a
//! check of its destructor's registration, not a lazy initialisation.

use super::chunk::Chunk;
use super::Stack;
use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, Instant};

/// Most stacks per size class each thread keeps with their memory (besides the
/// spare).
const LOCAL: usize = 64;
/// Most usable bytes per size class each thread keeps (besides the spare): 64
/// default-size stacks. Bigger stacks are kept in fewer numbers, and those of 16 MiB
/// or more go to the shared pool at once, where every thread finds them: a pool
/// bounded by count alone let each worker hoard dozens of huge stacks that a spawn
/// from another thread then could not have.
const LOCAL_BYTES: usize = LOCAL * super::DEFAULT_STACK_SIZE;
/// Most stacks moved at once between a thread's pool and the shared pool.
const BATCH: usize = 32;
/// How often the reaper gives back the memory of warm stacks that were not needed.
const TICK: Duration = Duration::from_millis(500);
/// Most warm stacks per size class in the shared pool; past it, a returned stack's
/// memory is given back at once.
const WARM_MAX: usize = 1 << 18;
/// Warm stacks per size class kept without a reaper thread (it could not start).
const WARM_NO_REAPER: usize = 1024;
/// Most cold stacks per size class in the shared pool; past it they are unmapped.
const COLD_MAX: usize = 4096;

/// One size class of the shared pool.
struct Class {
    size: usize,
    /// Stacks with their memory, most recently returned last.
    warm: Vec<Stack>,
    /// The lowest `warm.len()` since the reaper last looked.
    low_water: usize,
    /// Stacks whose memory was given back.
    cold: Vec<Stack>,
}

/// The shared pool, and what the reaper needs to know.
struct Shared {
    classes: Vec<Class>,
    /// Stacks whose memory must be given back now (warm list full).
    release: Vec<Stack>,
    /// The reaper waits without a timeout (nothing warm to watch).
    reaper_asleep: bool,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    classes: Vec::new(),
    release: Vec::new(),
    reaper_asleep: false,
});
static READY: Condvar = Condvar::new();
static START: Once = Once::new();
static REAPER: AtomicBool = AtomicBool::new(false);

/// How many stacks of `size` usable bytes a thread keeps per class (besides the
/// spare): [`LOCAL`], fewer for big stacks ([`LOCAL_BYTES`]).
fn local_cap(size: usize) -> usize {
    LOCAL.min(LOCAL_BYTES / size.max(1))
}

fn lock() -> std::sync::MutexGuard<'static, Shared> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

fn class_mut(classes: &mut Vec<Class>, size: usize) -> &mut Class {
    match classes.iter().position(|c| c.size == size) {
        Some(i) => &mut classes[i],
        None => {
            classes.push(Class {
                size,
                warm: Vec::new(),
                low_water: 0,
                cold: Vec::new(),
            });
            classes.last_mut().expect("just pushed")
        }
    }
}

/// Moves up to `n` stacks of `size` from the shared pool to `out`, warm ones first.
fn shared_take(size: usize, n: usize, out: &mut Vec<Stack>) {
    let mut shared = lock();
    let Some(class) = shared.classes.iter_mut().find(|c| c.size == size) else {
        return;
    };
    let from_warm = n.min(class.warm.len());
    out.extend(class.warm.drain(class.warm.len() - from_warm..));
    class.low_water = class.low_water.min(class.warm.len());
    let from_cold = (n - from_warm).min(class.cold.len());
    out.extend(class.cold.drain(class.cold.len() - from_cold..));
}

/// Moves `stacks` (all of usable size `size`) to the shared pool's warm list.
fn shared_give(size: usize, stacks: impl Iterator<Item = Stack>, start_reaper: bool) {
    if start_reaper {
        START.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("stackweave-stack-reaper".into())
                .spawn(reaper);
            REAPER.store(spawned.is_ok(), Ordering::Release);
        });
    }
    let reaper = REAPER.load(Ordering::Acquire);
    let cap = if reaper { WARM_MAX } else { WARM_NO_REAPER };
    let mut shared = lock();
    let class = class_mut(&mut shared.classes, size);
    class.warm.extend(stacks);
    let excess = class.warm.len().saturating_sub(cap);
    // The oldest ones go: the warm list is taken from its end.
    let mut excess: Vec<Stack> = class.warm.drain(..excess).collect();
    class.low_water = class.low_water.min(class.warm.len());
    if !reaper {
        drop(shared);
        super::release_all(&mut excess);
        stash_cold(size, excess);
        return;
    }
    shared.release.extend(excess);
    if shared.reaper_asleep || !shared.release.is_empty() {
        shared.reaper_asleep = false;
        READY.notify_one();
    }
}

/// Puts stacks whose memory was given back on their class's cold list, and unmaps
/// what exceeds [`COLD_MAX`].
fn stash_cold(size: usize, stacks: Vec<Stack>) {
    let mut shared = lock();
    let class = class_mut(&mut shared.classes, size);
    class.cold.extend(stacks);
    let excess = class.cold.len().saturating_sub(COLD_MAX);
    let excess: Vec<Stack> = class.cold.drain(..excess).collect();
    drop(shared);
    super::unmap_all(excess);
}

/// The reaper thread: gives back the memory of warm stacks that were not needed
/// during a whole tick, and of those the warm list had no room for.
fn reaper() {
    let mut last_look = Instant::now();
    loop {
        let mut shared = lock();
        if shared.release.is_empty() {
            if shared.classes.iter().all(|c| c.warm.is_empty()) {
                shared.reaper_asleep = true;
                while shared.reaper_asleep && shared.release.is_empty() {
                    shared = READY.wait(shared).unwrap_or_else(|e| e.into_inner());
                }
                shared.reaper_asleep = false;
            } else {
                shared = READY
                    .wait_timeout(shared, TICK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        // Unneeded warm stacks: the ones below each class's low-water mark, once a
        // whole tick has passed since the last look.
        let mut batches: Vec<(usize, Vec<Stack>)> = Vec::new();
        if last_look.elapsed() >= TICK {
            last_look = Instant::now();
            for class in shared.classes.iter_mut() {
                let unneeded = class.low_water.min(class.warm.len());
                if unneeded > 0 {
                    batches.push((class.size, class.warm.drain(..unneeded).collect()));
                }
                class.low_water = class.warm.len();
            }
        }
        let release = std::mem::take(&mut shared.release);
        drop(shared);
        for stack in release {
            let size = stack.size();
            match batches.iter_mut().find(|(s, _)| *s == size) {
                Some((_, batch)) => batch.push(stack),
                None => batches.push((size, vec![stack])),
            }
        }
        for (size, mut batch) in batches {
            super::release_all(&mut batch);
            stash_cold(size, batch);
        }
    }
}

/// Gives back the memory of every stack in the shared pool now (stacks that threads
/// keep for themselves, at most [`LOCAL`] + 1 per size class each, keep theirs).
pub(super) fn trim() {
    let mut batches: Vec<(usize, Vec<Stack>)> = Vec::new();
    {
        let mut shared = lock();
        for class in shared.classes.iter_mut() {
            batches.push((class.size, std::mem::take(&mut class.warm)));
            class.low_water = 0;
        }
    }
    for (size, mut batch) in batches {
        super::release_all(&mut batch);
        stash_cold(size, batch);
    }
}

/// Unused stacks of one thread: the last one returned, the others grouped by usable
/// size (most recently returned last), and the chunks stacks are carved from.
#[derive(Default)]
pub(crate) struct StackPool {
    spare: Option<Stack>,
    classes: Vec<(usize, Vec<Stack>)>,
    chunks: Vec<Chunk>,
}

impl StackPool {
    const fn new() -> Self {
        StackPool {
            spare: None,
            classes: Vec::new(),
            chunks: Vec::new(),
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
        let i = match self.classes.iter().position(|(s, _)| *s == size) {
            Some(i) => i,
            None => {
                self.classes.push((size, Vec::new()));
                self.classes.len() - 1
            }
        };
        let stacks = &mut self.classes[i].1;
        if stacks.is_empty() {
            // No more than the thread may keep (and at least the one asked for).
            shared_take(size, local_cap(size).clamp(1, BATCH), stacks);
        }
        stacks.pop()
    }

    /// A stack of exactly `size` usable bytes (`size` already rounded by
    /// [`super::round_size`]), reused when one is pooled. When no memory can be had,
    /// the pooled stacks of other sizes are unmapped and it tries once more.
    pub(crate) fn get(&mut self, size: usize) -> io::Result<Stack> {
        match self.get_once(size) {
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                self.unmap_other_sizes(size);
                self.get_once(size)
            }
            result => result,
        }
    }

    /// Memory pressure: unmaps every pooled stack whose size is not `size`, this
    /// thread's and the shared pool's, and this thread's uncarved chunks of other
    /// sizes, so that their address space and memory maps serve a new stack.
    #[cold]
    fn unmap_other_sizes(&mut self, size: usize) {
        let mut unused: Vec<Stack> = Vec::new();
        if self.spare.as_ref().is_some_and(|s| s.size() != size) {
            unused.extend(self.spare.take());
        }
        for (class_size, stacks) in self.classes.iter_mut() {
            if *class_size != size {
                unused.append(stacks);
            }
        }
        self.chunks.retain(|c| c.usable() == size);
        {
            let mut shared = lock();
            for class in shared.classes.iter_mut().filter(|c| c.size != size) {
                unused.append(&mut class.warm);
                unused.append(&mut class.cold);
                class.low_water = 0;
            }
            let (other, same): (Vec<Stack>, Vec<Stack>) = std::mem::take(&mut shared.release)
                .into_iter()
                .partition(|s| s.size() != size);
            shared.release = same;
            unused.extend(other);
        }
        super::unmap_all(unused);
    }

    fn get_once(&mut self, size: usize) -> io::Result<Stack> {
        if let Some(stack) = self.reuse(size) {
            return Ok(stack);
        }
        let guard = super::page_size();
        loop {
            match self.chunks.iter_mut().position(|c| c.usable() == size) {
                Some(i) => match self.chunks[i].carve() {
                    Some(stack) => return Ok(stack),
                    None => {
                        self.chunks.swap_remove(i);
                    }
                },
                None => match Chunk::new(guard, size) {
                    Some(chunk) => self.chunks.push(chunk),
                    None => return Stack::new(size),
                },
            }
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
        let stacks = match self.classes.iter().position(|(s, _)| *s == size) {
            Some(i) => &mut self.classes[i].1,
            None => {
                self.classes.push((size, Vec::new()));
                &mut self.classes.last_mut().expect("just pushed").1
            }
        };
        stacks.push(stack);
        let cap = local_cap(size);
        if stacks.len() > cap {
            // The oldest ones go, a batch at a time (all of them past a small cap);
            // the newest stay, their pages likely in the cache.
            let n = if cap >= 2 * BATCH {
                BATCH
            } else {
                stacks.len() - cap / 2
            };
            shared_give(size, stacks.drain(..n), true);
        }
    }

    /// Number of pooled stacks (all classes).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.spare.is_some()) + self.classes.iter().map(|(_, v)| v.len()).sum::<usize>()
    }
}

impl Drop for StackPool {
    /// A thread that exits hands its stacks to the shared pool.
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            shared_give(spare.size(), std::iter::once(spare), false);
        }
        for (size, stacks) in self.classes.drain(..) {
            shared_give(size, stacks.into_iter(), false);
        }
    }
}

thread_local! {
    static POOL: RefCell<StackPool> = const { RefCell::new(StackPool::new()) };
}

/// A stack of `size` (rounded) usable bytes from this thread's pool.
#[inline]
pub(crate) fn take(size: usize) -> io::Result<Stack> {
    // Fast path: the spare, of exactly the requested size (the default size and
    // other whole-page sizes need no rounding).
    if let Ok(Some(stack)) = POOL.try_with(|p| {
        let mut pool = p.borrow_mut();
        match &pool.spare {
            Some(spare) if spare.size() == size => pool.spare.take(),
            _ => None,
        }
    }) {
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

/// Gives an unused stack back to this thread's pool (or to the shared pool while
/// the thread is exiting).
#[inline]
pub(crate) fn give(stack: Stack) {
    let mut stack = Some(stack);
    let _ = POOL.try_with(|p| p.borrow_mut().put(stack.take().expect("once")));
    if let Some(mut stack) = stack {
        // This thread's pool is gone (thread exit).
        stack.reset();
        shared_give(stack.size(), std::iter::once(stack), false);
    }
}

/// The stack a coroutine's first run uses in place of `stack`, the one its spawn
/// reserved. When `stack` is fresh (its pages were never touched) and this thread's
/// spare is a used stack of the same size, the run takes the spare, whose pages are
/// in memory and likely in the cache, and `stack` goes to the pool untouched, for a
/// later spawn to reserve. So a burst of spawns that all reserve their stacks before
/// any of them runs (100,000 spawns, then 100,000 joins) faults in about as many
/// stacks as run at once, not one per spawn: a page fault and a page to clear cost
/// more than the whole rest of a spawn.
#[inline]
pub(crate) fn for_first_run(stack: Stack) -> Stack {
    let mut stack = if stack.fresh {
        swap_for_used(stack)
    } else {
        stack
    };
    stack.fresh = false;
    stack
}

/// `for_first_run`'s swap: the spare if it is a used stack of `stack`'s size (and
/// `stack` pooled), otherwise `stack`.
fn swap_for_used(stack: Stack) -> Stack {
    let size = stack.size();
    let mut slot = Some(stack);
    let _ = POOL.try_with(|p| {
        let mut pool = p.borrow_mut();
        if pool
            .spare
            .as_ref()
            .is_some_and(|spare| spare.size() == size && !spare.fresh)
        {
            let used = pool.spare.take().expect("just checked");
            let fresh = slot.replace(used).expect("set above");
            pool.put_older(fresh);
        }
    });
    slot.expect("put back")
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
    fn a_first_run_takes_the_used_spare_and_pools_the_fresh_stack() {
        // A size no other test uses, so this thread's classes of it are ours.
        let size = super::super::MIN_STACK_SIZE + 7 * super::super::page_size();
        let size = super::super::round_size(size).unwrap();
        let fresh = take(size).unwrap();
        assert!(fresh.fresh);
        let fresh_top = fresh.top();
        // A stack that ran a coroutine and was given back: the spare.
        let used = for_first_run(take(size).unwrap());
        assert!(!used.fresh);
        let used_top = used.top();
        give(used);
        let run = for_first_run(fresh);
        assert_eq!(run.top(), used_top, "the used spare was taken");
        assert!(!run.fresh);
        // The fresh one was pooled untouched; a spawn reserves it next.
        let again = take(size).unwrap();
        assert_eq!(again.top(), fresh_top);
        assert!(again.fresh);
        // With no used spare, a fresh stack runs as it is.
        let kept = for_first_run(again);
        assert_eq!(kept.top(), fresh_top);
        drop((run, kept));
    }

    #[test]
    fn pool_is_bounded_and_shares_its_overflow() {
        let mut pool = StackPool::default();
        // A size no other test uses, so the shared pool's class is ours here.
        let size = super::super::MIN_STACK_SIZE + 3 * super::super::page_size();
        let n = LOCAL + 10;
        let stacks: Vec<_> = (0..n).map(|_| pool.get(size).unwrap()).collect();
        for s in stacks {
            pool.put(s);
        }
        // At most LOCAL in the size class, plus the spare; a batch went to the shared
        // pool, where another thread's pool finds it.
        assert!(pool.len() <= LOCAL + 1);
        let shared = n - pool.len();
        assert_eq!(shared, BATCH);
        let mut other = StackPool::default();
        let taken: Vec<_> = (0..shared).map(|_| other.reuse(size).unwrap()).collect();
        assert!(
            other.reuse(size).is_none(),
            "the shared pool is empty again"
        );
        drop(taken);
    }

    #[test]
    fn trimmed_stacks_are_reused_and_zeroed() {
        let mut pool = StackPool::default();
        let size = super::super::MIN_STACK_SIZE + 5 * super::super::page_size();
        let stacks: Vec<_> = (0..LOCAL + BATCH + 1)
            .map(|_| pool.get(size).unwrap())
            .collect();
        for s in &stacks {
            // SAFETY: the top word of our own unused stack.
            unsafe { s.top().cast::<u64>().sub(1).write(7) };
        }
        for s in stacks {
            pool.put(s);
        }
        trim();
        let mut other = StackPool::default();
        let s = other.reuse(size).expect("a cold stack");
        // SAFETY: as above; its memory was given back, so it reads zero.
        assert_eq!(unsafe { s.top().cast::<u64>().sub(1).read() }, 0);
    }
}
