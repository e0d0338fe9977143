//! Chunks: many stacks of one size carved from one mapping.
//!
//! Invariant: a `Chunk` owns the uncarved tail `[next, end)` of one private
//! anonymous `MAP_NORESERVE` mapping laid out as back-to-back *slots* of
//! `guard + usable` bytes. The whole mapping got `MADV_NOHUGEPAGE`, and every slot of
//! the tail already has its guard, installed with `MADV_GUARD_INSTALL` on its lowest
//! `guard` bytes. [`Chunk::carve`] hands the lowest slot of the tail to a new
//! [`Stack`], which owns it from then on (and unmaps just its slot when dropped);
//! dropping the chunk unmaps the tail.
//!
//! Chunks are made only while the process uses `MADV_GUARD_INSTALL` guards: they
//! live in the page tables, so a chunk stays a single memory map however many guards
//! it holds. With `mprotect` guards every guard would split the mapping (two maps a
//! stack, like separate mappings) and a chunk would save nothing; stacks are then
//! mapped one by one by [`Stack::new`], which also probes the kernel for the guard
//! kind.
//!
//! Why: mapping a stack on its own costs an `mmap` and two `madvise` calls (~2 µs
//! measured here) and, once given back, an `munmap` that shoots down the other CPUs'
//! TLBs; a chunk pays one `mmap` and one `MADV_NOHUGEPAGE` for up to
//! [`STACKS_PER_CHUNK`] stacks, and neighbouring stacks of a chunk are given back
//! together (see `release_all` and `unmap_all`).

use super::{overflow, Stack, GUARD, GUARD_INSTALL, MADV_GUARD_INSTALL};
use std::sync::atomic::Ordering;

/// Most stacks carved from one chunk.
const STACKS_PER_CHUNK: usize = 64;
/// Most bytes of address space one chunk reserves.
const MAX_CHUNK_BYTES: usize = 64 << 20;

/// The uncarved tail of a chunk (module invariant).
pub(super) struct Chunk {
    next: usize,
    end: usize,
    guard: usize,
    usable: usize,
}

impl Chunk {
    /// Maps a chunk for stacks of `usable` bytes (already rounded to pages) with a
    /// `guard`-byte guard each. `None` when chunks are not used (guards are not
    /// `MADV_GUARD_INSTALL` ones, or a stack is too big to share a chunk) or the
    /// chunk cannot be made: the caller maps one stack on its own, which reports
    /// the error if there is one.
    #[cfg(target_os = "linux")]
    pub(super) fn new(guard: usize, usable: usize) -> Option<Chunk> {
        if GUARD.load(Ordering::Relaxed) != GUARD_INSTALL {
            return None;
        }
        let slot = guard.checked_add(usable)?;
        let count = (MAX_CHUNK_BYTES / slot).min(STACKS_PER_CHUNK);
        if count < 2 {
            return None;
        }
        let len = slot * count;
        overflow::install();
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let chunk = Chunk {
            next: ptr as usize,
            end: ptr as usize + len,
            guard,
            usable,
        };
        // SAFETY: advice on our own fresh mapping; failure only means THP stays as
        // configured.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        let mut low = chunk.next;
        while low < chunk.end {
            // SAFETY: the first `guard` bytes of a slot of our own fresh mapping.
            let rc = unsafe { libc::madvise(low as *mut libc::c_void, guard, MADV_GUARD_INSTALL) };
            if rc != 0 {
                // Dropping the chunk unmaps it all; a stack of its own will retry (and
                // fall back to `mprotect` or report the error).
                return None;
            }
            low += slot;
        }
        Some(chunk)
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn new(_guard: usize, _usable: usize) -> Option<Chunk> {
        None
    }

    /// Usable size of the stacks this chunk holds.
    pub(super) fn usable(&self) -> usize {
        self.usable
    }

    /// The next stack of the chunk, or `None` when it is used up.
    pub(super) fn carve(&mut self) -> Option<Stack> {
        if self.next >= self.end {
            return None;
        }
        let low = self.next;
        self.next += self.guard + self.usable;
        // SAFETY: the lowest slot of the tail we own (module invariant): a range of
        // our live mapping with NOHUGEPAGE and its guard, which we hand over and no
        // longer own.
        Some(unsafe { Stack::carved(low, self.guard, self.usable) })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.next < self.end {
            // SAFETY: the tail is ours and unused (module invariant).
            unsafe { super::unmap(self.next, self.end - self.next) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::stack::{guard_kind, page_size, GuardKind};

    #[test]
    fn carved_stacks_are_neighbours_with_guards() {
        if guard_kind() != GuardKind::GuardInstall {
            return; // no chunks with `mprotect` guards
        }
        let page = page_size();
        let usable = 16 * page;
        let mut chunk = Chunk::new(page, usable).expect("a chunk");
        let a = chunk.carve().unwrap();
        let b = chunk.carve().unwrap();
        assert_eq!(a.size(), usable);
        assert_eq!(
            b.guard_range().0,
            a.top() as usize,
            "b's guard sits on a's top"
        );
        // SAFETY: the usable parts of our own stacks.
        unsafe {
            std::ptr::write_bytes(a.limit(), 1, a.size());
            std::ptr::write_bytes(b.limit(), 2, b.size());
        }
        let mut rest = 2;
        while chunk.carve().is_some() {
            rest += 1;
        }
        assert_eq!(rest, STACKS_PER_CHUNK);
        drop(a);
        // b survives its neighbour's unmapping.
        // SAFETY: b's usable part is still ours.
        assert_eq!(unsafe { *b.limit() }, 2);
    }
}
