//! What the hooks know of each file descriptor number.
//!
//! Invariant: an entry is [`SOCKET`] only while its descriptor is a socket that the
//! hooks put in non-blocking mode underneath (or found already non-blocking), and
//! [`USER_NONBLOCK`] says whether the *program* asked for non-blocking mode (then
//! every call passes through). An entry is set only by a hooked call inside a
//! coroutine ([`classify`]) and cleared by the `close`/`dup2`/`dup3` hooks before the
//! descriptor goes away ([`forget`]), whatever thread calls them; so a number the
//! program closes without the hooks (a raw `syscall`) may keep a stale entry, which
//! costs at most a wait that a retry ends. Pages are `mmap`ed, never freed, and
//! zero is "nothing known": no allocator call and no lock is on any hook's path,
//! so a hook stays async-signal-safe where libc's function is.
//!
//! Each entry owns one readiness slot for life (allocated the first time a
//! coroutine waits on that number, never returned): the number's sockets come and go,
//! the slot is reset (deregistered) at each close, so no other source ever shares it.
//! A waiter that raced with a close from another thread (it may have registered the
//! closing descriptor after the reset) sees the entry's `closes` count move and
//! forgets that registration itself.

use crate::rt::ScheduledIo;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// The descriptor is a socket the hooks manage (see the module invariant).
pub(super) const SOCKET: u32 = 1;
/// The program asked for non-blocking mode: calls pass through.
pub(super) const USER_NONBLOCK: u32 = 2;
/// Classified, not a socket: calls pass through.
pub(super) const OTHER: u32 = 4;
/// Being classified by some thread (for a few system calls).
const CLASSIFYING: u32 = 8;

/// One descriptor number's state.
pub(super) struct Entry {
    pub(super) state: AtomicU32,
    /// Bumped by each [`forget`] of a socket: a waiter that sees it move knows its
    /// registration may belong to a closed descriptor.
    pub(super) closes: AtomicU32,
    slot: AtomicPtr<ScheduledIo>,
    /// Per direction (read, write): [`TIMEOUTS_SET`] + 1 when `getsockopt` last
    /// found no `SO_RCVTIMEO`/`SO_SNDTIMEO` on this number; 0 when unknown. See
    /// [`no_timeout`].
    no_timeout: [AtomicU64; 2],
}

/// How many times a socket timeout was set anywhere in the process (the
/// `setsockopt` hook counts them): a cached "no timeout" from an older count is
/// not trusted, so the cache is never wrong for timeouts set through libc, on any
/// number naming the socket (a duplicate included).
static TIMEOUTS_SET: AtomicU64 = AtomicU64::new(0);

/// Called by the `setsockopt` hook after `SO_RCVTIMEO`/`SO_SNDTIMEO` was set.
pub(super) fn timeouts_changed() {
    TIMEOUTS_SET.fetch_add(1, Ordering::SeqCst);
}

/// Whether `fd` is known to have no timeout for direction `dir` (0 read, 1
/// write); otherwise `ask` (libc's `getsockopt`) says, and a "none" is cached
/// until the next timeout is set anywhere or the number is closed.
pub(super) fn no_timeout(fd: RawFd, dir: usize, ask: impl FnOnce() -> bool) -> bool {
    let entry = get(fd);
    // Before asking: a timeout set while we ask makes the count move past this.
    let count = TIMEOUTS_SET.load(Ordering::SeqCst);
    let closes = entry.map(|e| e.closes.load(Ordering::SeqCst));
    if let Some(e) = entry {
        if e.no_timeout[dir].load(Ordering::SeqCst) == count + 1 {
            return true;
        }
    }
    let none = ask();
    if let (true, Some(e)) = (none, entry) {
        e.no_timeout[dir].store(count + 1, Ordering::SeqCst);
        // A close meanwhile (`forget` bumps `closes`, then clears the cache): the
        // answer was the closed socket's, not for the number's next one.
        if Some(e.closes.load(Ordering::SeqCst)) != closes {
            e.no_timeout[dir].store(0, Ordering::SeqCst);
        }
    }
    none
}

/// Entries per page (32 bytes each: 128 KiB pages).
const PAGE: usize = 4096;
/// Pages: descriptor numbers up to `PAGES * PAGE` (1 Mi) are tracked; calls on
/// higher ones pass through.
const PAGES: usize = 256;

static TABLE: [AtomicPtr<Entry>; PAGES] = [const { AtomicPtr::new(ptr::null_mut()) }; PAGES];

/// The entry of `fd` if its page exists.
#[inline]
pub(super) fn get(fd: RawFd) -> Option<&'static Entry> {
    let fd = usize::try_from(fd).ok()?;
    let page = TABLE.get(fd / PAGE)?.load(Ordering::Acquire);
    if page.is_null() {
        return None;
    }
    // SAFETY: a non-null page holds PAGE entries and is never unmapped; fd % PAGE is
    // in range.
    Some(unsafe { &*page.add(fd % PAGE) })
}

/// The entry of `fd`, making its page if needed; `None` above the tracked range or
/// when no memory is left.
pub(super) fn get_or_make(fd: RawFd) -> Option<&'static Entry> {
    if let Some(entry) = get(fd) {
        return Some(entry);
    }
    let index = usize::try_from(fd).ok()? / PAGE;
    let cell = TABLE.get(index)?;
    let bytes = PAGE * std::mem::size_of::<Entry>();
    // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
    let page = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return None;
    }
    // Zeroed memory is PAGE valid entries (atomics at 0, null slots).
    if cell
        .compare_exchange(
            ptr::null_mut(),
            page.cast(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // SAFETY: our own mapping, which nobody else has seen.
        unsafe { libc::munmap(page, bytes) };
    }
    get(fd)
}

impl Entry {
    /// This number's readiness slot, allocated on first use.
    pub(super) fn slot(&self) -> &'static ScheduledIo {
        let slot = self.slot.load(Ordering::Acquire);
        if !slot.is_null() {
            // SAFETY: slots are never freed (scheduled_io module invariant).
            return unsafe { &*slot };
        }
        let fresh: *const ScheduledIo = ScheduledIo::allocate();
        match self.slot.compare_exchange(
            ptr::null_mut(),
            fresh.cast_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: as above.
            Ok(_) => unsafe { &*fresh },
            Err(theirs) => {
                // SAFETY: as above; `fresh` was never registered, so any fd will do.
                unsafe { &*fresh }.release(-1);
                // SAFETY: as above.
                unsafe { &*theirs }
            }
        }
    }

    /// The slot, if one was ever allocated.
    fn slot_if_any(&self) -> Option<&'static ScheduledIo> {
        let slot = self.slot.load(Ordering::Acquire);
        // SAFETY: slots are never freed.
        (!slot.is_null()).then(|| unsafe { &*slot })
    }
}

/// Classifies `fd` if nothing is known of it: a socket is switched to non-blocking
/// mode underneath (remembering whether it already was); anything else is
/// [`OTHER`]. Returns the entry and its state (0 when `fd` cannot be tracked).
pub(super) fn classify(fd: RawFd) -> (Option<&'static Entry>, u32) {
    let Some(entry) = get_or_make(fd) else {
        return (None, 0);
    };
    loop {
        match entry
            .state
            .compare_exchange(0, CLASSIFYING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            // Another thread is looking at this number: a few system calls.
            Err(CLASSIFYING) => std::thread::yield_now(),
            Err(state) => return (Some(entry), state),
        }
    }
    let state = kind_of(fd);
    // Fails only if `forget` ran meanwhile (the number was closed): nothing known.
    match entry
        .state
        .compare_exchange(CLASSIFYING, state, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => (Some(entry), state),
        Err(_) => (Some(entry), 0),
    }
}

/// What `fd` is (see [`classify`]), switching a blocking socket to non-blocking
/// mode; 0 when that fails (a closed number: the call itself reports it).
fn kind_of(fd: RawFd) -> u32 {
    // A non-socket fails with ENOTSOCK, a closed fd with EBADF.
    let is_socket = crate::net::sockopt::get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).is_ok();
    if is_socket {
        let flags = super::control::real_getfl(fd);
        if flags < 0 {
            0
        } else if flags & libc::O_NONBLOCK != 0 {
            SOCKET | USER_NONBLOCK
        } else if super::control::real_setfl(fd, flags | libc::O_NONBLOCK) < 0 {
            0
        } else {
            SOCKET
        }
    } else if super::errno() == libc::ENOTSOCK {
        OTHER
    } else {
        0
    }
}

/// Forgets `fd` before it is closed (or replaced by `dup2`/`dup3`): wakes the
/// coroutines waiting on it (their retry then fails with `EBADF`) and deregisters
/// it from its reactor while it is still open.
pub(super) fn forget(fd: RawFd) {
    let Some(entry) = get(fd) else {
        return;
    };
    // SeqCst, then the ticks: a waiter that reads a tick after this bump sees the
    // cleared state and does not wait (see `io_calls::wait_for`).
    if entry.state.load(Ordering::Acquire) & SOCKET != 0 {
        entry.closes.fetch_add(1, Ordering::SeqCst);
    }
    for cached in &entry.no_timeout {
        cached.store(0, Ordering::SeqCst);
    }
    if entry.state.swap(0, Ordering::SeqCst) & SOCKET == 0 {
        return;
    }
    if let Some(slot) = entry.slot_if_any() {
        slot.interrupt_all();
        slot.reset(fd);
    }
}

/// Gives `to` the state of `from` (after `dup2(from, to)` and the like: both
/// numbers now name one open file, whose non-blocking flag is shared). An
/// unclassified `from` is classified first: were only one number classified later,
/// the other would see the hooks' `O_NONBLOCK` as the program's.
pub(super) fn copy(from: RawFd, to: RawFd) {
    let (_, state) = classify(from);
    if state & SOCKET == 0 {
        return;
    }
    if let Some(entry) = get_or_make(to) {
        for cached in &entry.no_timeout {
            cached.store(0, Ordering::Release);
        }
        entry.state.store(state, Ordering::Release);
    }
}
