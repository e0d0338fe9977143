//! The counted pointer to a task: what `TaskRef` was, with the memory from the
//! task cache.
//!
//! Invariant: a [`TaskRef`] points at a live `Task<B>` (for the `B` it was made
//! with) in a block from [`task_cache::alloc`] for `Layout::new::<Task<B>>()`, and
//! counts for one in the task's `refs`. The count only reaches zero in the drop of
//! the last `TaskRef`, which then drops the task and gives its block back; so a task
//! outlives every `TaskRef` to it, exactly as with an `Arc`. The orderings are
//! `Arc`'s: a new reference is made from an existing one (relaxed increment), and
//! the decrement is a release, with an acquire fence before the last one drops the
//! task, so every use through any reference happens before the drop.
//!
//! Why not `Arc`: the standard `Arc` allocates from the global allocator, and on
//! stable Rust cannot take another one, so its memory could not come from the task
//! cache (see the task_cache module for what that saves).

use super::task::{Body, Task};
use super::task_cache;
use std::alloc::Layout;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{self, Ordering};

/// A counted reference to a task (module invariant).
pub(crate) struct TaskRef {
    ptr: NonNull<Task>,
}

// SAFETY: a `TaskRef` is a shared reference to a `Task`, which is `Send` and `Sync`
// (the task module's invariant); its count is atomic.
unsafe impl Send for TaskRef {}
// SAFETY: as above.
unsafe impl Sync for TaskRef {}

/// Most references (like `Arc`'s limit): past it the process aborts, since a
/// count that wrapped would free a task still in use.
const MAX_REFS: usize = isize::MAX as usize;

impl TaskRef {
    /// Moves `task` into a block of its own: the first reference to it.
    pub(crate) fn new<B: Body>(task: Task<B>) -> TaskRef {
        let block = task_cache::alloc(Layout::new::<Task<B>>()).cast::<Task<B>>();
        // SAFETY: the block is fresh, unused memory with room and alignment for a
        // `Task<B>` (`task_cache::alloc` for its layout).
        unsafe { block.as_ptr().write(task) };
        // `Task::new` starts the count at one: this reference.
        debug_assert_eq!(
            // SAFETY: written just now.
            unsafe { block.as_ref() }.refs.load(Ordering::Relaxed),
            1
        );
        TaskRef { ptr: block }
    }

    /// The task's address, as `Arc::as_ptr`.
    #[inline]
    pub(crate) fn as_ptr(this: &TaskRef) -> *const Task {
        this.ptr.as_ptr()
    }

    /// Whether both point at the same task, as `Arc::ptr_eq`.
    #[inline]
    pub(crate) fn ptr_eq(a: &TaskRef, b: &TaskRef) -> bool {
        ptr::addr_eq(a.ptr.as_ptr(), b.ptr.as_ptr())
    }

    /// A new reference to the task at `task`.
    ///
    /// # Safety
    ///
    /// `task` is [`as_ptr`](TaskRef::as_ptr) of a `TaskRef` that stays alive for
    /// the duration of this call.
    #[inline]
    pub(crate) unsafe fn clone_from_ptr(task: *const Task) -> TaskRef {
        // SAFETY: a live reference holds it (contract), so it is a live task.
        let task = unsafe { &*task };
        TaskRef::count_one_more(task);
        TaskRef {
            ptr: NonNull::from(task),
        }
    }

    #[inline]
    fn count_one_more(task: &Task) {
        // Relaxed as in `Arc::clone`: the new reference is made from a live one, which
        // keeps the task alive; the ordering with the drop is the decrement's.
        if task.refs.fetch_add(1, Ordering::Relaxed) > MAX_REFS {
            std::process::abort();
        }
    }
}

impl Clone for TaskRef {
    #[inline]
    fn clone(&self) -> TaskRef {
        TaskRef::count_one_more(self);
        TaskRef { ptr: self.ptr }
    }
}

impl Deref for TaskRef {
    type Target = Task;

    #[inline]
    fn deref(&self) -> &Task {
        // SAFETY: the task outlives every reference to it (module invariant).
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for TaskRef {
    #[inline]
    fn drop(&mut self) {
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every use through the other references (their decrements are releases)
        // happens before the drop below.
        atomic::fence(Ordering::Acquire);
        // The layout `TaskRef::new` allocated with: that of the `Task<B>` behind the
        // vtable.
        let layout = Layout::for_value::<Task>(self);
        // SAFETY: this was the last reference, so nothing else reaches the task; it
        // is dropped once, and then its block, from `task_cache::alloc` for
        // `layout` (module invariant), is unused.
        unsafe {
            ptr::drop_in_place(self.ptr.as_ptr());
            task_cache::free(self.ptr.cast(), layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_task_lives_until_its_last_reference_is_dropped() {
        let rt = crate::Runtime::builder().workers(2).build().unwrap();
        for _ in 0..100 {
            let dropped = Arc::new(AtomicBool::new(false));
            let flag = DropFlag(dropped.clone());
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            // The result waits in the task's body (a detached handle leaves it there)
            // until the task itself is dropped.
            let h = rt.spawn(move || {
                done_tx.send(()).unwrap();
                flag
            });
            let task = h.coroutine().as_task().expect("a coroutine").clone();
            drop(h);
            done_rx.recv().unwrap();
            let clones: Vec<TaskRef> = (0..1000).map(|_| task.clone()).collect();
            assert!(clones.iter().all(|c| TaskRef::ptr_eq(c, &task)));
            std::thread::scope(|s| {
                for chunk in clones.chunks(250) {
                    let chunk = chunk.to_vec();
                    s.spawn(move || drop(chunk));
                }
            });
            drop(clones);
            assert!(!dropped.load(Ordering::SeqCst), "dropped while referenced");
            assert_eq!(task.owner.kind, "coroutine");
            drop(task);
            // The worker drops its own reference just after the coroutine ends.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !dropped.load(Ordering::SeqCst) {
                assert!(std::time::Instant::now() < deadline, "never dropped");
                std::thread::yield_now();
            }
        }
    }

    #[test]
    fn a_plain_coroutines_task_fits_the_task_cache() {
        let rt = crate::Runtime::builder().workers(1).build().unwrap();
        let size = rt
            .spawn(|| {
                let task = crate::rt::current_task().expect("inside a coroutine");
                Layout::for_value::<Task>(&task).size()
            })
            .join()
            .unwrap();
        // The figure the cache's bound was sized with (task_cache::LOCAL_BYTES).
        eprintln!("a plain coroutine's task: {size} bytes");
        assert!(size <= 512, "a coroutine's task is {size} bytes");
    }
}
