//! A per-thread cache of task allocations.
//!
//! Invariant: every block in a thread's cache is unused memory, allocated from the
//! global allocator with [`block_layout`] of its class, and no longer reachable
//! through any task pointer; a block leaves the cache either to hold one new task
//! or back to the global allocator with that same layout. So a block may be freed by
//! any thread, cached or not: [`alloc`] and [`free`] agree on the layout from the
//! task's own layout alone.
//!
//! Why: a burst of spawns followed by their joins (a server's accept burst, a
//! fork-join wave) allocates thousands of task blocks of one size, then frees them
//! all. glibc's `free` then gives the top of the heap back to the kernel (past
//! 128 KiB free there), and the next burst faults every page in again: ~11% of the
//! compare bench's spawn-waves row was those page faults. The cache keeps the blocks
//! of one thread's recent tasks, per size class, so the next burst pops them off a
//! list without a lock, a system call or a fault.
//!
//! Bounds: at most [`LOCAL_BYTES`] per thread. Memory that no allocation needed for
//! a whole [`DECAY`] goes back to the global allocator: each class remembers the
//! lowest its list went since the last decay, and that many blocks (not needed in
//! the meantime) are freed at the next one. The clock is read every [`CHECK_EVERY`]
//! operations, so a thread that stops spawning keeps what it holds (at most the
//! bound) until it spawns again, a `stack::trim_pool()` (which empties the caller's
//! cache at once, and every other thread's at that thread's next look at the clock),
//! or its exit.
//!
//! Blocks of more than [`CLASSES`] × [`GRAIN`] bytes, or aligned to more than
//! [`ALIGN`], are not cached.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size-class width: a block's size is its task's, rounded up to this.
const GRAIN: usize = 64;
/// Number of classes: tasks of up to `CLASSES * GRAIN` bytes are cached.
const CLASSES: usize = 24;
/// The alignment every cached block is allocated with.
const ALIGN: usize = 16;
/// Most bytes one thread keeps: 16,384 blocks of 512 bytes, a burst of ten
/// thousand plain coroutines with room to spare.
const LOCAL_BYTES: usize = 8 << 20;
/// Memory unused for this long goes back to the global allocator.
const DECAY_NANOS: u64 = 500_000_000;
/// How often (in cache operations) the clock is read for the decay.
const CHECK_EVERY: u32 = 256;

/// Bumped by [`trim`]: a thread that sees a new value empties its cache.
static TRIMS: AtomicUsize = AtomicUsize::new(0);

/// A cached block: the first word links it to the next one of its class.
struct Free {
    next: *mut Free,
}

/// One class's list of blocks.
#[derive(Clone, Copy)]
struct List {
    head: *mut Free,
    len: usize,
    /// The lowest `len` since the last decay.
    low: usize,
}

const EMPTY: List = List {
    head: ptr::null_mut(),
    len: 0,
    low: 0,
};

/// One thread's cache.
struct Cache {
    lists: [List; CLASSES],
    /// Bytes in all lists.
    bytes: usize,
    /// Operations until the next look at the clock.
    countdown: u32,
    /// When the last decay ran, on the coarse clock.
    decayed_at: u64,
    /// The value of `TRIMS` this cache last emptied itself for.
    trims: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache {
            lists: [EMPTY; CLASSES],
            bytes: 0,
            countdown: CHECK_EVERY,
            decayed_at: 0,
            trims: 0,
        })
    };
}

/// The class of a task of `layout`, if it is cached.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    (layout.align() <= ALIGN && layout.size() <= CLASSES * GRAIN)
        .then(|| layout.size().saturating_sub(1) / GRAIN)
}

/// The layout blocks of `class` are allocated with.
#[inline]
fn class_layout(class: usize) -> Layout {
    // SAFETY: the size is a positive multiple of `GRAIN` ≤ `CLASSES * GRAIN`, far
    // below `isize::MAX`, and `ALIGN` is a power of two.
    unsafe { Layout::from_size_align_unchecked((class + 1) * GRAIN, ALIGN) }
}

/// The layout a block for a task of `layout` is allocated (and freed) with.
#[inline]
pub(crate) fn block_layout(layout: Layout) -> Layout {
    match class_of(layout) {
        Some(class) => class_layout(class),
        None => layout,
    }
}

/// A block for a task of `layout` (its size is not zero): from this thread's cache,
/// or from the global allocator. Aborts like `Box::new` when memory is exhausted.
#[inline]
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    debug_assert!(layout.size() > 0);
    if let Some(class) = class_of(layout) {
        let cached = CACHE
            .try_with(|cache| cache.borrow_mut().pop(class))
            .ok()
            .flatten();
        if let Some(block) = cached {
            return block;
        }
    }
    let layout = block_layout(layout);
    // SAFETY: `layout` has a non-zero size (a task is never zero-sized).
    let block = unsafe { alloc::alloc(layout) };
    NonNull::new(block).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// Gives back the block of a task of `layout`, whose task was dropped.
///
/// # Safety
///
/// `block` came from [`alloc`] with the same `layout` (on any thread), and nothing
/// uses it any more.
#[inline]
pub(crate) unsafe fn free(block: NonNull<u8>, layout: Layout) {
    if let Some(class) = class_of(layout) {
        let kept = CACHE
            .try_with(|cache| {
                // SAFETY: forwarded from the caller.
                unsafe { cache.borrow_mut().push(class, block) }
            })
            .unwrap_or(false);
        if kept {
            return;
        }
    }
    // SAFETY: `alloc` allocated it with this layout (module invariant), and it is
    // unused (contract).
    unsafe { alloc::dealloc(block.as_ptr(), block_layout(layout)) };
}

/// Empties the calling thread's cache now, and every other thread's at its next
/// check (within [`CHECK_EVERY`] allocations and frees of task blocks there).
pub(crate) fn trim() {
    TRIMS.fetch_add(1, Ordering::Relaxed);
    let _ = CACHE.try_with(|cache| cache.borrow_mut().release_all());
}

impl Cache {
    #[inline]
    fn pop(&mut self, class: usize) -> Option<NonNull<u8>> {
        self.tick();
        let list = &mut self.lists[class];
        let block = NonNull::new(list.head)?;
        // SAFETY: cached blocks are unused memory whose first word this cache wrote
        // (module invariant).
        list.head = unsafe { (*list.head).next };
        list.len -= 1;
        list.low = list.low.min(list.len);
        self.bytes -= class_layout(class).size();
        Some(block.cast())
    }

    /// Keeps `block`; false if the cache is full.
    ///
    /// # Safety
    ///
    /// As [`free`].
    #[inline]
    unsafe fn push(&mut self, class: usize, block: NonNull<u8>) -> bool {
        self.tick();
        let size = class_layout(class).size();
        if self.bytes + size > LOCAL_BYTES {
            return false;
        }
        let list = &mut self.lists[class];
        let node = block.cast::<Free>().as_ptr();
        // SAFETY: the block is unused (contract), at least `GRAIN` bytes and
        // `ALIGN`-aligned (its class layout), so a `Free` fits at its start.
        unsafe { node.write(Free { next: list.head }) };
        list.head = node;
        list.len += 1;
        self.bytes += size;
        true
    }

    /// Counts an operation; every `CHECK_EVERY`, looks for a trim and at the clock.
    #[inline]
    fn tick(&mut self) {
        self.countdown -= 1;
        if self.countdown == 0 {
            self.countdown = CHECK_EVERY;
            self.check();
        }
    }

    #[cold]
    fn check(&mut self) {
        let trims = TRIMS.load(Ordering::Relaxed);
        if trims != self.trims {
            self.trims = trims;
            self.release_all();
            return;
        }
        let now = super::wait::coarse_now();
        if now.wrapping_sub(self.decayed_at) < DECAY_NANOS {
            return;
        }
        self.decayed_at = now;
        for class in 0..CLASSES {
            let unused = self.lists[class].low;
            self.release(class, unused);
            let list = &mut self.lists[class];
            list.low = list.len;
        }
    }

    /// Frees `count` blocks of `class` to the global allocator.
    fn release(&mut self, class: usize, count: usize) {
        let layout = class_layout(class);
        for _ in 0..count {
            let list = &mut self.lists[class];
            let Some(block) = NonNull::new(list.head) else {
                break;
            };
            // SAFETY: a cached block (module invariant): unused, its first word ours.
            list.head = unsafe { (*block.as_ptr()).next };
            list.len -= 1;
            self.bytes -= layout.size();
            // SAFETY: allocated with its class layout (module invariant), unused.
            unsafe { alloc::dealloc(block.as_ptr().cast(), layout) };
        }
        let list = &mut self.lists[class];
        list.low = list.low.min(list.len);
    }

    fn release_all(&mut self) {
        for class in 0..CLASSES {
            self.release(class, usize::MAX);
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_block_is_reused_for_the_next_task_of_its_class() {
        let layout = Layout::from_size_align(300, 8).unwrap();
        let a = alloc(layout);
        // SAFETY: from `alloc` with this layout, unused.
        unsafe { free(a, layout) };
        // A neighbour of the same class (320 bytes) gets it back.
        let b = alloc(Layout::from_size_align(290, 16).unwrap());
        assert_eq!(a, b);
        // SAFETY: as above; the class layout is the same.
        unsafe { free(b, layout) };
    }

    #[test]
    fn big_or_overaligned_tasks_bypass_the_cache() {
        let big = Layout::from_size_align(CLASSES * GRAIN + 1, 8).unwrap();
        let aligned = Layout::from_size_align(128, 64).unwrap();
        assert_eq!(block_layout(big), big);
        assert_eq!(block_layout(aligned), aligned);
        for layout in [big, aligned] {
            let block = alloc(layout);
            assert_eq!(block.as_ptr() as usize % layout.align(), 0);
            // SAFETY: from `alloc` with this layout, unused.
            unsafe { free(block, layout) };
        }
    }

    #[test]
    fn the_cache_stays_within_its_bound_and_trim_empties_it() {
        let layout = Layout::from_size_align(CLASSES * GRAIN, 8).unwrap();
        let blocks: Vec<_> = (0..LOCAL_BYTES / layout.size() + 100)
            .map(|_| alloc(layout))
            .collect();
        for block in blocks {
            // SAFETY: from `alloc` with this layout, unused.
            unsafe { free(block, layout) };
        }
        CACHE.with(|cache| assert!(cache.borrow().bytes <= LOCAL_BYTES));
        trim();
        CACHE.with(|cache| assert_eq!(cache.borrow().bytes, 0));
    }

    #[test]
    fn a_block_freed_on_another_thread_is_valid_there() {
        let layout = Layout::from_size_align(200, 8).unwrap();
        let block = alloc(layout).as_ptr() as usize;
        std::thread::spawn(move || {
            let block = NonNull::new(block as *mut u8).unwrap();
            // SAFETY: from `alloc` with this layout, unused; any thread may free it.
            unsafe { free(block, layout) };
            // Reused by that thread's next task of the class.
            assert_eq!(alloc(layout), block);
            // SAFETY: as above.
            unsafe { free(block, layout) };
        })
        .join()
        .unwrap();
    }
}
