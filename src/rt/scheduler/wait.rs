//! What a suspended coroutine waits for: the cheap record each blocking point leaves
//! for the coroutine dump (`runtime::dump`).
//!
//! Invariant: a task's [`WaitRecord`] is written only by the coroutine itself, on
//! its home worker, right before it switches out to wait (in `suspend_current`),
//! and read only by that same worker's thread while it holds the right to run the
//! task (the dump claims it first, see `scheduler::dump`). Both sides are one
//! thread and the switch orders them, so the record needs no atomics: writing it
//! costs the blocking point one copy of a small `Copy` value and of the worker's
//! last reading of the coarse clock (taken at each reactor poll, not at the wait),
//! and a yield writes nothing.

use std::time::Instant;

/// What a blocking point waits for (the kind of a [`Why`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitKind {
    /// Readiness of a socket (or other file descriptor) for reading.
    Read,
    /// Readiness for writing.
    Write,
    /// A timer: `sleep`.
    Sleep,
    /// A channel operation (send, receive, select).
    Channel,
    /// `sync::Mutex`.
    Mutex,
    /// `sync::RwLock`.
    RwLock,
    /// `sync::Condvar`.
    Condvar,
    /// `sync::Barrier`.
    Barrier,
    /// `sync::WaitGroup`.
    WaitGroup,
    /// `sync::Semaphore`.
    Semaphore,
    /// `JoinHandle::join` of the coroutine whose id is in `arg`.
    Join,
    /// `park` / `park_timeout`.
    Park,
    /// A `Future` in `future::block_on`.
    Future,
    /// A job on the blocking pool (`spawn_blocking`).
    Blocking,
    /// A libc call made cooperative by the `hooks` feature.
    #[cfg_attr(not(feature = "hooks"), allow(dead_code))]
    Hooked,
    /// The other workers' part of a coroutine dump (`Runtime::dump`).
    Dump,
}

/// One blocking point's reason, as it suspends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Why {
    pub(crate) kind: WaitKind,
    /// The file descriptor of a `Read` or `Write` wait (-1 otherwise).
    pub(crate) fd: i32,
    /// The joined coroutine's id, for `Join` (0 otherwise).
    pub(crate) arg: u64,
    /// When the wait gives up, if it has a timeout (or when a sleep ends).
    pub(crate) deadline: Option<Instant>,
}

impl Why {
    /// A wait of `kind` with no further detail.
    #[inline]
    pub(crate) const fn new(kind: WaitKind) -> Why {
        Why {
            kind,
            fd: -1,
            arg: 0,
            deadline: None,
        }
    }

    /// The same wait, giving up at `deadline`.
    #[inline]
    pub(crate) const fn until(mut self, deadline: Instant) -> Why {
        self.deadline = Some(deadline);
        self
    }

    /// An I/O wait on `fd`, for reading when `read`.
    #[inline]
    pub(crate) const fn io(read: bool, fd: i32) -> Why {
        let mut why = Why::new(if read {
            WaitKind::Read
        } else {
            WaitKind::Write
        });
        why.fd = fd;
        why
    }

    /// A `join` of the coroutine numbered `id`.
    #[inline]
    pub(crate) const fn join(id: u64) -> Why {
        let mut why = Why::new(WaitKind::Join);
        why.arg = id;
        why
    }
}

/// The record a task keeps of its latest wait (module invariant).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitRecord {
    /// `None` until the task first waits.
    pub(crate) why: Option<Why>,
    /// When it switched out for that wait, on the [`coarse_now`] clock, as its
    /// worker last read it (at most `FAIRNESS_TICKS` runs early).
    pub(crate) since: u64,
}

impl WaitRecord {
    pub(crate) const fn new() -> WaitRecord {
        WaitRecord {
            why: None,
            since: 0,
        }
    }
}

/// Nanoseconds on a monotonic clock that is cheap to read: Linux's coarse clock (a
/// read of the vDSO page, a few nanoseconds, ticking every 1 to 4 ms: enough for
/// "how long has it waited"), the plain monotonic clock elsewhere.
#[inline]
pub(crate) fn coarse_now() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is supported on
    // the targets it is chosen for. On failure `ts` stays zero (no UB).
    unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}
