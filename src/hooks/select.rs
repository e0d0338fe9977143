//! `select(2)`, answered by the `poll` hook's wait over the same descriptors.
//!
//! Invariant: inside a coroutine a `select` with `0 <= nfds <= FD_SETSIZE` and a
//! valid non-zero (or null) timeout never blocks the worker, and what it returns is
//! what Linux's `select` returns for the readiness libc's zero-timeout `poll`
//! reported at that moment: each set rewritten to the ready descriptors of its kind
//! (with the kernel's masks: readable on `POLLIN`/`POLLHUP`/`POLLERR`, writable on
//! `POLLOUT`/`POLLERR`, exceptional on `POLLPRI`), the count of set bits, `EBADF`
//! for a descriptor that is not open, and the timeout rewritten to the time left
//! (glibc's `select` does, after the kernel). Only the `ceil(nfds / 64)` words of
//! each set that the kernel reads are read and written. No descriptor to watch is a
//! sleep. Anywhere else, with `nfds` outside that range, or with a zero or invalid
//! timeout, it is libc's call with the same arguments. `pselect` without a signal
//! mask is the same wait (its `timespec` is not written back, as Linux's is not).

use super::poll_sleep::poll_coroutine;
use super::real::call_real;
use super::{catch, deadline_after, in_coroutine, set_errno};
use crate::rt::{WaitKind, Why};
use libc::{c_int, c_ulong, fd_set, pollfd, sigset_t, timespec, timeval};
use std::time::{Duration, Instant};

/// Bits per word of an `fd_set`.
const WORD: usize = c_ulong::BITS as usize;

/// What `select` watches for in each set, as `poll` events.
const READ_EVENTS: libc::c_short = libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND;
const WRITE_EVENTS: libc::c_short = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND;
const EXCEPT_EVENTS: libc::c_short = libc::POLLPRI;

/// The `revents` that make a descriptor readable, writable or exceptional to the
/// kernel's `select` (`POLLIN_SET`, `POLLOUT_SET`, `POLLEX_SET` in fs/select.c).
const READY_READ: libc::c_short = READ_EVENTS | libc::POLLHUP | libc::POLLERR;
const READY_WRITE: libc::c_short = WRITE_EVENTS | libc::POLLERR;
const READY_EXCEPT: libc::c_short = libc::POLLPRI;

/// libc's `select`.
///
/// # Safety
///
/// libc's contract for `select`.
unsafe fn real_select(
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    call_real!(
        Select,
        fn(c_int, *mut fd_set, *mut fd_set, *mut fd_set, *mut timeval) -> c_int,
        (nfds, readfds, writefds, exceptfds, timeout),
        {
            // Only while libc's table is being filled: the kernel's own `select`
            // (x86_64; it updates the timeout) or `pselect6` (which does not).
            #[cfg(target_arch = "x86_64")]
            let r = libc::syscall(
                libc::SYS_select,
                nfds,
                readfds,
                writefds,
                exceptfds,
                timeout,
            );
            #[cfg(not(target_arch = "x86_64"))]
            let r = {
                let ts = (!timeout.is_null()).then(|| libc::timespec {
                    tv_sec: (*timeout).tv_sec,
                    tv_nsec: (*timeout).tv_usec * 1000,
                });
                let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
                libc::syscall(
                    libc::SYS_pselect6,
                    nfds,
                    readfds,
                    writefds,
                    exceptfds,
                    ts_ptr,
                    0usize,
                )
            };
            r as c_int
        }
    )
}

/// The words of one set the kernel looks at (a null set: none, all zero).
struct Words {
    set: *mut c_ulong,
    words: [c_ulong; libc::FD_SETSIZE / WORD],
}

impl Words {
    /// Reads the first `n` words of `set`.
    ///
    /// # Safety
    ///
    /// `set` is null or points at `n` readable words (`select`'s contract).
    unsafe fn read(set: *mut fd_set, n: usize) -> Words {
        let set = set.cast::<c_ulong>();
        let mut words = [0; libc::FD_SETSIZE / WORD];
        if !set.is_null() {
            // SAFETY: `n` words are readable (caller's contract); `n` <= the array's
            // length (nfds <= FD_SETSIZE).
            unsafe { std::ptr::copy_nonoverlapping(set, words.as_mut_ptr(), n) };
        }
        Words { set, words }
    }

    fn has(&self, fd: usize) -> bool {
        self.words[fd / WORD] & (1 << (fd % WORD)) != 0
    }

    /// Writes `ready`'s first `n` words back into the caller's set.
    ///
    /// # Safety
    ///
    /// As for [`Words::read`], writable.
    unsafe fn write_back(&self, ready: &[c_ulong], n: usize) {
        if !self.set.is_null() {
            // SAFETY: `n` words are writable (caller's contract).
            unsafe { std::ptr::copy_nonoverlapping(ready.as_ptr(), self.set, n) };
        }
    }
}

/// A `timeval` as a duration, normalised as glibc does (`tv_usec` of a second or
/// more carries into the seconds); `None` for a negative field (libc's `EINVAL`).
fn duration_of(tv: &timeval) -> Option<Duration> {
    if tv.tv_sec < 0 || tv.tv_usec < 0 {
        return None;
    }
    let usec = tv.tv_usec as u64;
    let secs = (tv.tv_sec as u64).saturating_add(usec / 1_000_000);
    Some(Duration::new(secs, (usec % 1_000_000) as u32 * 1000))
}

/// Hook of `select(2)`.
///
/// A signal does not end a hooked `select` early (no `EINTR`: the kernel would
/// interrupt the worker's wait, not this coroutine's, as for the `poll` hook); a
/// program cannot count on `EINTR` anyway, since any of its threads may take the
/// signal.
///
/// # Safety
///
/// libc's contract for `select`.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    // SAFETY: the caller's arguments, unchanged.
    let real = || unsafe { real_select(nfds, readfds, writefds, exceptfds, timeout) };
    if !in_coroutine() || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        return real();
    }
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: a non-null timeout points at a timeval (caller's contract).
        match duration_of(unsafe { &*timeout }) {
            Some(d) if !d.is_zero() => deadline_after(d),
            // A zero timeout does not wait; a negative one is libc's EINVAL.
            _ => return real(),
        }
    };
    // SAFETY: the caller's sets (caller's contract).
    let r = unsafe { select_in(nfds as usize, readfds, writefds, exceptfds, deadline) };
    if !timeout.is_null() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            // SAFETY: as above, and writable (Linux writes the time left back).
            unsafe {
                (*timeout).tv_sec = left.as_secs() as libc::time_t;
                (*timeout).tv_usec = left.subsec_micros() as libc::suseconds_t;
            }
        }
    }
    r
}

/// Hook of `pselect(2)`: one with a signal mask passes through (the mask must be
/// swapped atomically with the wait, which only the kernel can do); without one it
/// is the `select` hook's wait, with a `timespec` that is not written back.
///
/// # Safety
///
/// libc's contract for `pselect`.
#[no_mangle]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    let real = || {
        call_real!(
            Pselect,
            fn(
                c_int,
                *mut fd_set,
                *mut fd_set,
                *mut fd_set,
                *const timespec,
                *const sigset_t,
            ) -> c_int,
            (nfds, readfds, writefds, exceptfds, timeout, sigmask),
            {
                // The kernel's pselect6 takes the mask with its size, and writes
                // the time left back, which pselect must not: a copy.
                let mask = [sigmask as usize, 8usize];
                let mask_ptr = if sigmask.is_null() {
                    0
                } else {
                    mask.as_ptr() as usize
                };
                let mut copy = (!timeout.is_null()).then(|| *timeout);
                let timeout = copy
                    .as_mut()
                    .map_or(std::ptr::null_mut(), |t| t as *mut timespec);
                libc::syscall(
                    libc::SYS_pselect6,
                    nfds,
                    readfds,
                    writefds,
                    exceptfds,
                    timeout,
                    mask_ptr,
                ) as c_int
            }
        )
    };
    if !in_coroutine() || !sigmask.is_null() || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        return real();
    }
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: a non-null timeout points at a timespec (caller's contract).
        let ts = unsafe { *timeout };
        if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
            // libc's EINVAL.
            return real();
        }
        let d = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        if d.is_zero() {
            return real();
        }
        deadline_after(d)
    };
    // SAFETY: the caller's sets (caller's contract).
    unsafe { select_in(nfds as usize, readfds, writefds, exceptfds, deadline) }
}

/// `select` inside a coroutine over `nfds` descriptors, until `deadline`: the count
/// of ready bits (the sets rewritten), or -1 with errno.
///
/// # Safety
///
/// `nfds <= FD_SETSIZE`; each set is null or holds `nfds` bits, readable and
/// writable (`select`'s contract).
unsafe fn select_in(
    nfds: usize,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    deadline: Option<Instant>,
) -> c_int {
    let n = nfds.div_ceil(WORD);
    // SAFETY: each non-null set holds the words for `nfds` bits (caller's contract).
    let sets = unsafe {
        [
            Words::read(readfds, n),
            Words::read(writefds, n),
            Words::read(exceptfds, n),
        ]
    };
    let mut fds: Vec<pollfd> = Vec::new();
    for fd in 0..nfds {
        let events = [READ_EVENTS, WRITE_EVENTS, EXCEPT_EVENTS]
            .iter()
            .zip(&sets)
            .filter(|(_, set)| set.has(fd))
            .fold(0, |acc, (&e, _)| acc | e);
        if events != 0 {
            fds.push(pollfd {
                fd: fd as c_int,
                events,
                revents: 0,
            });
        }
    }
    let ready = match wait(&mut fds, deadline) {
        Ok(ready) => ready,
        Err(errno) => {
            set_errno(errno);
            return -1;
        }
    };
    let mut count = 0;
    for (k, set) in sets.iter().enumerate() {
        // SAFETY: as above, writable (select rewrites the sets).
        unsafe { set.write_back(&ready[k], n) };
        count += ready[k]
            .iter()
            .map(|w| w.count_ones() as c_int)
            .sum::<c_int>();
    }
    count
}

/// Ready bits per set (read, write, except).
type Ready = [[c_ulong; libc::FD_SETSIZE / WORD]; 3];

/// Waits until one of `fds` is ready in a way `select` reports, or `deadline`:
/// the ready bits (all zero on timeout), or the errno to fail with.
fn wait(fds: &mut [pollfd], deadline: Option<Instant>) -> Result<Ready, c_int> {
    let mut step = Duration::from_millis(1);
    loop {
        let n = if fds.is_empty() {
            sleep_until(deadline)?
        } else {
            for p in fds.iter_mut() {
                p.revents = 0;
            }
            poll_coroutine(fds.as_mut_ptr(), fds.len() as libc::nfds_t, deadline)
        };
        if n < 0 {
            return Err(super::errno());
        }
        let mut ready: Ready = [[0; libc::FD_SETSIZE / WORD]; 3];
        if n == 0 {
            return Ok(ready);
        }
        let mut any = false;
        for p in fds.iter() {
            if p.revents & libc::POLLNVAL != 0 {
                return Err(libc::EBADF);
            }
            let fd = p.fd as usize;
            let masks = [
                (READ_EVENTS, READY_READ),
                (WRITE_EVENTS, READY_WRITE),
                (EXCEPT_EVENTS, READY_EXCEPT),
            ];
            for (k, (asked, ready_on)) in masks.into_iter().enumerate() {
                if p.events & asked != 0 && p.revents & ready_on != 0 {
                    ready[k][fd / WORD] |= 1 << (fd % WORD);
                    any = true;
                }
            }
        }
        if any {
            return Ok(ready);
        }
        // Only what this select does not report (a hang-up on a descriptor watched
        // for writing or exceptions alone): the kernel would go on waiting, and a
        // re-poll would answer at once, so wait out short steps instead.
        let until = Instant::now() + step;
        step = (step * 2).min(Duration::from_millis(16));
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Ok(ready);
        }
        sleep_until(Some(deadline.map_or(until, |d| d.min(until))))?;
    }
}

/// Sleeps the coroutine until `deadline` (`None`: until it is cancelled): 0, or
/// the errno a cancellation, shutdown or deadline scope ends it with. A caller that
/// cannot suspend (unwinding) sleeps with the thread.
fn sleep_until(deadline: Option<Instant>) -> Result<c_int, c_int> {
    loop {
        let until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        if std::thread::panicking() {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        } else if catch(|| crate::time::suspend_until(until, Why::new(WaitKind::Hooked), || false))?
            .is_none()
        {
            // Not a coroutine that may suspend after all: the thread waits.
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        if deadline.is_some() {
            return Ok(0);
        }
    }
}
