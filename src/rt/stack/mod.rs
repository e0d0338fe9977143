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
//! an [`io::Error`] of kind [`io::ErrorKind::OutOfMemory`], never as a crash.
//!
//! The public part of this module reports the configuration a program runs with: the
//! default size, the kind of guard in use and the cap on live stacks it implies.

mod chunk;
mod overflow;
pub(crate) mod pool;

pub(crate) use overflow::Owner;

/// Installs the stack overflow handler (once per process) and an alternate signal
/// stack on the calling thread (once per thread). Threads that run coroutines on
/// stacks they did not allocate themselves (runtime workers) call this first.
pub(crate) fn install_overflow_handler() {
    overflow::install();
}
use overflow::StackRecord;

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

/// Default usable size of a coroutine stack: 256 KiB.
///
/// Only the pages a coroutine touches cost memory (the reservation is lazy and
/// `MAP_NORESERVE`), so the default is chosen for safety rather than smallness. The
/// deepest common workload measured by `examples/stack_usage.rs` — a panic printing
/// its message and a cold `RUST_BACKTRACE=1` backtrace — touched 24 KiB, in release
/// and debug builds alike; 256 KiB leaves 10x headroom for user code with deep
/// recursion or big frames (parsers, TLS, serde). A bigger reservation costs no RSS,
/// only address space (256 KiB × 1,000,000 coroutines = 256 GiB of the 128 TiB user
/// address space) and page tables (about 0.5 KiB per coroutine, against 0.1 KiB
/// at 64 KiB). Use a smaller size per coroutine when you know its needs.
///
/// # Examples
///
/// ```
/// assert_eq!(stackweave::stack::DEFAULT_STACK_SIZE, 256 * 1024);
/// ```
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The smallest usable stack size accepted (16 KiB); smaller requests are rounded up
/// to it.
///
/// Unwinding needs room: a panic, or the forced unwind of a generator dropped while
/// suspended, was measured to use 5–6 KiB of the unwinding stack, and the generator's
/// own data sits at the top of its stack. 16 KiB keeps a shallow coroutine able to
/// panic and be dropped cleanly; size stacks for the deepest path they take.
///
/// # Examples
///
/// ```
/// assert!(stackweave::stack::MIN_STACK_SIZE >= 4096);
/// ```
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// How the guard page below each stack is made inaccessible.
///
/// # Examples
///
/// ```
/// use stackweave::stack::{guard_kind, GuardKind};
/// match guard_kind() {
///     GuardKind::GuardInstall => println!("MADV_GUARD_INSTALL: one memory map per stack"),
///     GuardKind::Mprotect => println!("mprotect: two memory maps per stack"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardKind {
    /// `madvise(MADV_GUARD_INSTALL)` (Linux 6.13 and later): the guard lives in the
    /// page tables, the stack stays a single memory map, and neighbouring stacks can
    /// even share one map, so `vm.max_map_count` does not cap the number of stacks.
    GuardInstall,
    /// `mprotect(PROT_NONE)`: the guard is a memory map of its own, so every stack
    /// costs two of the `vm.max_map_count` maps a process may hold.
    Mprotect,
}

/// The kind of guard page this process uses, probing the kernel on first use.
///
/// # Examples
///
/// ```
/// let kind = stackweave::stack::guard_kind();
/// println!("guard pages use {kind:?}");
/// ```
pub fn guard_kind() -> GuardKind {
    match GUARD.load(Ordering::Relaxed) {
        GUARD_INSTALL => GuardKind::GuardInstall,
        GUARD_MPROTECT => GuardKind::Mprotect,
        _ => {
            // Probe with a throwaway stack; its allocation settles GUARD.
            drop(Stack::new(MIN_STACK_SIZE));
            if GUARD.load(Ordering::Relaxed) == GUARD_INSTALL {
                GuardKind::GuardInstall
            } else {
                GuardKind::Mprotect
            }
        }
    }
}

/// The most stacks this process can hold at once because of `vm.max_map_count`, or
/// `None` when the guard kind does not consume memory maps per stack (or the limit
/// cannot be read).
///
/// With `mprotect` guards every stack costs two maps, so the default limit of 65,530
/// caps a process near 32,700 live coroutines (less the maps the program itself uses).
///
/// # Examples
///
/// ```
/// match stackweave::stack::stack_cap() {
///     Some(n) => println!("at most about {n} stacks at once"),
///     None => println!("stacks are not capped by vm.max_map_count"),
/// }
/// ```
pub fn stack_cap() -> Option<usize> {
    if guard_kind() == GuardKind::GuardInstall {
        return None;
    }
    let text = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
    let maps: usize = text.trim().parse().ok()?;
    Some(maps / 2)
}

/// Gives back the memory of the stacks in the shared pool now (the public
/// `stack::trim_pool`).
pub(crate) fn trim_pool() {
    pool::trim();
}

const GUARD_UNKNOWN: u8 = 0;
pub(super) const GUARD_INSTALL: u8 = 1;
const GUARD_MPROTECT: u8 = 2;
pub(super) static GUARD: AtomicU8 = AtomicU8::new(GUARD_UNKNOWN);

/// `MADV_GUARD_INSTALL` from the Linux UAPI headers (not yet in every libc release).
#[cfg(target_os = "linux")]
pub(super) const MADV_GUARD_INSTALL: libc::c_int = 102;

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    })
}

/// One coroutine stack: a mapping with a guard at its low end.
///
/// Two words, so that moving one (in and out of the pool, into a context) stays in
/// registers: the mapping's geometry lives in its overflow record.
///
/// A `Stack` is `Send`: it is plain memory, and its record is process-wide. Whoever
/// runs code on it decides whether that code may change threads.
pub(crate) struct Stack {
    /// This stack's overflow record, registered until `Drop` unregisters it; it also
    /// holds the mapping's address and sizes.
    record: &'static StackRecord,
    /// Bytes at the very top set aside for the owner's data (see `reserve_top`);
    /// the context runs below them.
    reserved: usize,
    /// No context has run on it since its memory was mapped or given back, so its
    /// first use faults its pages in (see `pool::for_first_run`). A hint only: a
    /// wrong value costs a page fault or a needless swap, nothing else.
    fresh: bool,
    /// Usable bytes: the record's, kept here too, so that telling pooled stacks
    /// apart does not read a record that may be long out of the cache.
    size: usize,
}

impl Stack {
    /// Reserves a stack with at least `size` usable bytes (rounded up to whole pages,
    /// and to at least [`MIN_STACK_SIZE`]).
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        overflow::install();
        let page = page_size();
        let usable = round_size(size)?;
        let guard = page;
        let len = usable.checked_add(guard).ok_or_else(too_big)?;
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | map_stack(),
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(out_of_memory("mmap", len));
        }
        let stack = Stack {
            record: overflow::register(ptr as usize, guard, usable),
            reserved: 0,
            fresh: true,
            size: usable,
        };
        stack.no_huge_pages();
        stack.install_guard()?;
        Ok(stack)
    }

    /// A stack on a range of a chunk whose guard is already installed (see the
    /// `chunk` module).
    ///
    /// # Safety
    ///
    /// `[low, low + guard + usable)` is a page-aligned range of a live private
    /// anonymous read-write mapping that nothing else uses or will unmap, with
    /// `MADV_NOHUGEPAGE` applied and a guard installed on its lowest `guard` bytes.
    /// The new `Stack` owns the range (and unmaps it when dropped).
    unsafe fn carved(low: usize, guard: usize, usable: usize) -> Stack {
        Stack {
            record: overflow::register(low, guard, usable),
            reserved: 0,
            fresh: true,
            size: usable,
        }
    }

    /// The whole range this stack owns: its low address and its length (guard
    /// included).
    fn range(&self) -> (usize, usize) {
        (self.record.low(), self.record.guard() + self.record.size())
    }

    /// Lowest address of the mapping (the start of the guard).
    #[inline]
    fn low(&self) -> *mut u8 {
        self.record.low() as *mut u8
    }

    /// Highest address a context may use (exclusive), 16-byte aligned: stacks grow
    /// down from here. It lies below the area set aside by `reserve_top`.
    #[inline]
    pub(crate) fn top(&self) -> *mut u8 {
        let r = self.record;
        // SAFETY: reserved <= usable, and guard + usable is the mapping's length.
        unsafe { self.low().add(r.guard() + r.size() - self.reserved) }
    }

    /// Sets aside an area for `layout` at the very top of the stack, for the owner's
    /// data, and returns its address; the context's stack then starts below it (still
    /// 16-byte aligned). The previous reservation, if any, is replaced. Returns
    /// `None` when the area would take more than half of the stack or needs an
    /// alignment above the page size.
    #[inline]
    pub(crate) fn reserve_top(&mut self, layout: std::alloc::Layout) -> Option<NonNull<u8>> {
        // The full top is page-aligned, so any multiple of the alignment below it is
        // aligned too.
        let align = layout.align().max(16);
        if align > 16 && align > page_size() {
            return None;
        }
        let bytes = layout.size().checked_add(align - 1)? & !(align - 1);
        if bytes > self.size() / 2 {
            return None;
        }
        self.reserved = bytes;
        NonNull::new(self.top())
    }

    /// Makes the stack idle again for reuse: no reserved area, no owner.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.reserved = 0;
        // The frames of the context that ran on it may have left ASan redzones
        // poisoned (its entry frame never returns): the next user starts clean.
        crate::rt::context::asan::unpoison_stack(|| (self.limit(), self.size));
        // SAFETY: null is always a valid owner.
        unsafe { self.set_owner(std::ptr::null()) };
    }

    /// Names `owner` as the user of this stack in stack overflow reports (null: idle).
    ///
    /// # Safety
    ///
    /// `owner` stays alive and unchanged at its address until the owner is set again
    /// (by `set_owner` or `reset`) or the stack is dropped.
    #[inline]
    pub(crate) unsafe fn set_owner(&self, owner: *const Owner) {
        // SAFETY: the contract is forwarded.
        unsafe { self.record.set_owner(owner) };
    }

    /// Lowest usable address: the end of the guard.
    #[inline]
    pub(crate) fn limit(&self) -> *mut u8 {
        // SAFETY: guard < length of the mapping.
        unsafe { self.low().add(self.record.guard()) }
    }

    /// Usable bytes (excluding the guard).
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The guard's address range `[start, end)`.
    #[cfg(test)]
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        let start = self.low() as usize;
        (start, start + self.record.guard())
    }

    fn no_huge_pages(&self) {
        #[cfg(target_os = "linux")]
        // SAFETY: advice on our own mapping; failure only means THP stays as configured.
        unsafe {
            libc::madvise(self.limit().cast(), self.size(), libc::MADV_NOHUGEPAGE);
        }
    }

    fn install_guard(&self) -> io::Result<()> {
        let low = self.low().cast::<libc::c_void>();
        let guard = self.record.guard();
        #[cfg(target_os = "linux")]
        if GUARD.load(Ordering::Relaxed) != GUARD_MPROTECT {
            // SAFETY: the guard range is the first page(s) of our own fresh mapping.
            let rc = unsafe { libc::madvise(low, guard, MADV_GUARD_INSTALL) };
            if rc == 0 {
                GUARD.store(GUARD_INSTALL, Ordering::Relaxed);
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                // The kernel does not know the advice: fall back for good.
                Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EPERM) => {
                    GUARD.store(GUARD_MPROTECT, Ordering::Relaxed)
                }
                _ => return Err(out_of_memory("madvise(MADV_GUARD_INSTALL)", guard)),
            }
        }
        // SAFETY: as above; PROT_NONE on the guard range of our own mapping.
        let rc = unsafe { libc::mprotect(low, guard, libc::PROT_NONE) };
        if rc != 0 {
            // Dropping `self` (by the caller's `?`) unmaps the reservation.
            return Err(out_of_memory("mprotect", guard));
        }
        GUARD.store(GUARD_MPROTECT, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let (low, len) = self.range();
        // A later mapping at these addresses must not inherit stale poisoning.
        crate::rt::context::asan::unpoison_stack(|| (self.limit(), self.size));
        // SAFETY: registered by `new`/`carved`; this `Stack` was its only user and is
        // going.
        unsafe { overflow::unregister(self.record) };
        // SAFETY: we own the range and nothing runs on it any more (a context never
        // outlives the stack it borrows).
        unsafe { unmap(low, len) };
    }
}

/// Unmaps `[low, low + len)`, whole stacks that nobody uses any more. Unmapping
/// part of a chunk splits its mapping in two, which fails when the process is out
/// of memory maps (`vm.max_map_count`): then the range only gives its memory back
/// (its guards stay, see `release_range`) and its address space stays reserved,
/// unused, for the life of the process.
///
/// # Safety
///
/// The range is made of whole stacks (guards included) that no `Stack` owns any
/// more and nothing runs on.
unsafe fn unmap(low: usize, len: usize) {
    // SAFETY: the caller's contract: the range is ours and unused.
    if unsafe { libc::munmap(low as *mut libc::c_void, len) } != 0 {
        // SAFETY: as above; DONTNEED on our own unused range.
        unsafe { release_range(low, len) };
    }
}

/// Gives the physical memory of `[low, low + len)` back to the kernel, keeping the
/// reservation and the guards: a guard installed with `MADV_GUARD_INSTALL` survives
/// `MADV_DONTNEED` (measured on Linux 6.18, and documented in `madvise(2)`), so with
/// such guards the range may span several stacks and the guards between them.
///
/// # Safety
///
/// The range lies in our own mappings and nothing runs on it; with `mprotect`
/// guards it holds no guard page.
unsafe fn release_range(low: usize, len: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        libc::madvise(low as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("top", &self.top())
            .field("size", &self.size())
            .finish()
    }
}

/// Gives back the memory of pooled stacks in as few system calls as possible: with
/// `MADV_GUARD_INSTALL` guards, stacks that lie next to each other (a chunk's, see
/// the `chunk` module) are released by one `madvise` over them and the guards
/// between them, which keeps those guards (see `release_range`). One call flushes
/// the other CPUs' TLBs once for the whole run instead of once per stack.
///
/// Sound with respect to `mprotect` guards: `GUARD` becomes `GUARD_MPROTECT` before
/// the first `mprotect` guard is made and never changes back, so while it reads
/// `GUARD_INSTALL` no stack has an `mprotect` guard.
pub(super) fn release_all(stacks: &mut [Stack]) {
    let coalesce = GUARD.load(Ordering::Relaxed) == GUARD_INSTALL;
    let ranges = stacks.iter().map(|s| {
        if coalesce {
            s.range()
        } else {
            (s.limit() as usize, s.size())
        }
    });
    for (low, len) in coalesced(ranges.collect()) {
        // SAFETY: the ranges are pooled stacks of ours, unused; a range spans guards
        // only when they are `MADV_GUARD_INSTALL` guards (see above).
        unsafe { release_range(low, len) };
    }
    for stack in stacks {
        stack.fresh = true;
    }
}

/// Unmaps pooled stacks, with one `munmap` for each run of neighbouring stacks.
pub(super) fn unmap_all(stacks: Vec<Stack>) {
    let mut ranges = Vec::with_capacity(stacks.len());
    for stack in stacks {
        let stack = std::mem::ManuallyDrop::new(stack);
        ranges.push(stack.range());
        // SAFETY: registered by `new`/`carved`; this `Stack` was its only user and is
        // forgotten here (its range is unmapped below).
        unsafe { overflow::unregister(stack.record) };
    }
    for (low, len) in coalesced(ranges) {
        // SAFETY: whole stacks that no `Stack` owns any more, unused.
        unsafe { unmap(low, len) };
    }
}

/// Sorts `(low, len)` ranges and merges those that touch.
fn coalesced(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (low, len) in ranges {
        match out.last_mut() {
            Some((l, n)) if *l + *n == low => *n += len,
            _ => out.push((low, len)),
        }
    }
    out
}

/// Rounds a requested size up to whole pages, at least [`MIN_STACK_SIZE`].
pub(crate) fn round_size(size: usize) -> io::Result<usize> {
    let page = page_size();
    let size = size.max(MIN_STACK_SIZE);
    size.checked_add(page - 1)
        .map(|s| s & !(page - 1))
        .ok_or_else(too_big)
}

fn too_big() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "requested coroutine stack size is too large",
    )
}

fn out_of_memory(what: &str, len: usize) -> io::Error {
    let os = io::Error::last_os_error();
    let hint = if os.raw_os_error() == Some(libc::ENOMEM) {
        // Read GUARD without probing: probing allocates a stack, which just failed.
        let cap = match GUARD.load(Ordering::Relaxed) {
            GUARD_MPROTECT => stack_cap(),
            _ => None,
        };
        match cap {
            Some(cap) => format!(
                "; out of memory or of memory maps (vm.max_map_count allows about {cap} stacks)"
            ),
            None => "; out of memory or of memory maps (see vm.max_map_count)".to_string(),
        }
    } else {
        String::new()
    };
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("cannot allocate a coroutine stack: {what} of {len} bytes failed: {os}{hint}"),
    )
}

#[cfg(target_os = "linux")]
fn map_stack() -> libc::c_int {
    libc::MAP_STACK
}

#[cfg(not(target_os = "linux"))]
fn map_stack() -> libc::c_int {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_pages_and_minimum() {
        let page = page_size();
        assert_eq!(round_size(0).unwrap(), MIN_STACK_SIZE);
        assert_eq!(
            round_size(MIN_STACK_SIZE + 1).unwrap(),
            MIN_STACK_SIZE + page
        );
        assert!(round_size(usize::MAX).is_err());
    }

    #[test]
    fn stack_is_usable_and_aligned() {
        let s = Stack::new(64 * 1024).unwrap();
        assert_eq!(s.top() as usize % 16, 0);
        assert_eq!(s.size(), 64 * 1024);
        // The whole usable range can be written.
        // SAFETY: [limit, top) is the usable, writable part of our own mapping.
        unsafe { std::ptr::write_bytes(s.limit(), 0xAB, s.size()) };
        let (g0, g1) = s.guard_range();
        assert_eq!(g1, s.limit() as usize);
        assert_eq!(g1 - g0, page_size());
    }
}
