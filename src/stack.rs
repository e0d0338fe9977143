//! Coroutine stacks: reservation, guard pages, pooling, overflow reporting.
//!
//! Invariant: a `Stack` owns the address range `[low, low + guard + usable)` of a
//! private anonymous mapping: either a mapping of its own, or its share of a
//! *chunk*, one mapping carved into many stacks of one size (see the `chunk`
//! module; only with `MADV_GUARD_INSTALL` guards, which do not split a mapping).
//! The lowest `guard` bytes are inaccessible (a guard installed with
//! `MADV_GUARD_INSTALL` where the kernel accepts it, `mprotect` otherwise); the
//! usable part above it is readable and writable and is committed lazily by the
//! kernel, page by page, as the coroutine touches it. Transparent huge pages are
//! always turned off for it (`MADV_NOHUGEPAGE`): with THP a single 2 MiB page can
//! back 32 idle stacks. Dropping a `Stack` unmaps its range.
//!
//! Every `Stack` also owns a `StackRecord` for the overflow handler, registered on
//! the creating thread for exactly as long as the mapping exists (a `Stack` is neither
//! `Send` nor `Sync`, so it is dropped, and unregistered, on that thread). Whoever
//! runs on the stack names itself in the record with `Stack::set_owner`.
//!
//! Running out of address space or of memory maps (`vm.max_map_count`) is reported as
//! an [`io::Error`](std::io::Error) of kind [`io::ErrorKind::OutOfMemory`](std::io::ErrorKind::OutOfMemory), never as a crash.
//!
//! The public part of this module reports the configuration a program runs with: the
//! default size, the kind of guard in use and the cap on live stacks it implies.

pub use crate::rt::stack::{guard_kind, stack_cap, GuardKind, DEFAULT_STACK_SIZE, MIN_STACK_SIZE};

/// Gives back the memory of the stacks that wait, unused, in the process-wide pool,
/// and of the finished coroutines' control blocks that threads keep for their next
/// spawns, now.
///
/// Finished coroutines leave their stacks in pools for the next spawns; a stack the
/// shared pool did not hand out again for a while (half a second to a second) gives
/// its memory back by itself. Call this to do it at once, e.g. before measuring
/// memory. Each thread still keeps the stack it got back last and some more per
/// size for itself (up to 64, and no more than 16 MiB of them: further stacks of
/// 16 MiB or more go straight to the shared pool, where any thread's spawn reuses
/// them). When a new stack cannot be had,
/// the pooled stacks of other sizes are unmapped and the reservation is tried once
/// more before [`io::ErrorKind::OutOfMemory`](std::io::ErrorKind::OutOfMemory) is
/// returned.
///
/// Each thread also keeps the memory of its recently finished coroutines' control
/// blocks (a few hundred bytes each, up to 8 MiB a thread), so that a burst of
/// spawns after a burst of joins does not fault it in again; what no spawn needed
/// for half a second goes back to the allocator while that thread goes on spawning
/// (it looks every 256 spawns and frees). This call frees the calling thread's at
/// once and every other thread's at its next such look.
///
/// # Examples
///
/// ```
/// stackweave::spawn(|| {}).join().unwrap();
/// stackweave::stack::trim_pool();
/// ```
pub fn trim_pool() {
    crate::rt::stack::trim_pool();
    crate::rt::scheduler::trim_task_cache();
}
