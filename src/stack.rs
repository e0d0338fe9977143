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

pub use crate::rt::stack::{
    guard_kind, stack_cap, trim_pool, GuardKind, DEFAULT_STACK_SIZE, MIN_STACK_SIZE,
};
