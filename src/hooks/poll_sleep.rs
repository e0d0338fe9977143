//! `poll`, `ppoll` and the sleeps.
//!
//! Invariant: inside a coroutine these never block the worker: a `poll` whose
//! descriptors are all sockets waits on their reactor slots (any of them moving
//! wakes it, then libc's `poll` with a zero timeout gives the answer); one with any
//! other descriptor (a pipe, a terminal, an fd the reactor refuses) re-polls with
//! zero timeouts between short timer sleeps (1 ms, doubling to 16 ms). Sleeps are
//! the crate's timers. The answers are libc's: a `poll` that returns reports what
//! libc's `poll` reported at that moment, and a sleep never ends before its time
//! unless the coroutine is cancelled or unwound (then it ends at once).

use super::fd_table::{self, SOCKET};
use super::real::call_real;
use super::{catch, deadline_after, errno, in_coroutine, set_errno, sleep_coroutine, timeout_ms};
use crate::rt;
use crate::rt::Direction;
use crate::rt::ScheduledIo;
use crate::rt::{WaitKind, Why};
use libc::{c_int, c_uint, nfds_t, pollfd, sigset_t, timespec};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// libc's `poll`.
pub(super) fn real_poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    call_real!(
        Poll,
        fn(*mut pollfd, nfds_t, c_int) -> c_int,
        (fds, nfds, timeout),
        {
            let ts = timespec {
                tv_sec: (timeout / 1000) as libc::time_t,
                tv_nsec: ((timeout % 1000) * 1_000_000) as libc::c_long,
            };
            let ts_ptr: *const timespec = if timeout < 0 { std::ptr::null() } else { &ts };
            libc::syscall(libc::SYS_ppoll, fds, nfds, ts_ptr, 0usize, 8usize) as c_int
        }
    )
}

/// A timespec as a duration; `None` if it is not a valid one (libc reports it).
fn duration_of(ts: &timespec) -> Option<Duration> {
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Hook of `poll(2)`.
///
/// # Safety
///
/// libc's contract for `poll`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    if !in_coroutine() || timeout == 0 {
        return real_poll(fds, nfds, timeout);
    }
    let deadline = if timeout < 0 {
        None
    } else {
        deadline_after(Duration::from_millis(timeout as u64))
    };
    poll_coroutine(fds, nfds, deadline)
}

/// Hook of `ppoll(2)`: one with a signal mask passes through (the mask must be
/// swapped atomically with the wait, which only the kernel can do).
///
/// # Safety
///
/// libc's contract for `ppoll`.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    tmo: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    let real = || {
        call_real!(
            Ppoll,
            fn(*mut pollfd, nfds_t, *const timespec, *const sigset_t) -> c_int,
            (fds, nfds, tmo, sigmask),
            libc::syscall(libc::SYS_ppoll, fds, nfds, tmo, sigmask, 8usize) as c_int
        )
    };
    if !in_coroutine() || !sigmask.is_null() {
        return real();
    }
    let deadline = if tmo.is_null() {
        None
    } else {
        // SAFETY: a non-null timeout points at a timespec (caller's contract).
        match duration_of(unsafe { &*tmo }) {
            Some(d) if d.is_zero() => return real(),
            Some(d) => deadline_after(d),
            None => return real(),
        }
    };
    poll_coroutine(fds, nfds, deadline)
}

/// The directions a `pollfd`'s events wait for.
fn directions(events: libc::c_short) -> [bool; 2] {
    let read = libc::POLLIN | libc::POLLPRI | libc::POLLRDNORM | libc::POLLRDBAND | libc::POLLRDHUP;
    let write = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND;
    let r = events & read != 0;
    let w = events & write != 0;
    // Only errors and hang-ups asked for: both directions' ticks report them.
    [r || !w, w]
}

/// `poll` inside a coroutine, until `deadline` (`None`: forever).
pub(super) fn poll_coroutine(fds: *mut pollfd, nfds: nfds_t, deadline: Option<Instant>) -> c_int {
    let len = usize::try_from(nfds).unwrap_or(usize::MAX);
    let mut waits: Vec<(&'static ScheduledIo, c_int, Direction, u32)> = Vec::new();
    // Each socket's entry and its count of closes when the wait began.
    let mut entries: Vec<(&'static fd_table::Entry, u32)> = Vec::new();
    let mut stepping = len == 0 || fds.is_null();
    let mut step = Duration::from_millis(1);
    // The reactor's registrations do not report `POLLPRI` (urgent data): a poll
    // that asks for it also wakes in steps of 1 ms doubling to 16 ms to look.
    let mut urgent_step = Duration::from_millis(1);
    loop {
        waits.clear();
        entries.clear();
        let mut urgent = false;
        if !stepping {
            for i in 0..len {
                // SAFETY: `fds` holds `nfds` pollfds (caller's contract).
                let pfd = unsafe { *fds.add(i) };
                if pfd.fd < 0 {
                    continue;
                }
                let (entry, state) = fd_table::classify(pfd.fd);
                let Some(entry) = entry.filter(|_| state & SOCKET != 0) else {
                    stepping = true;
                    break;
                };
                urgent |= pfd.events & libc::POLLPRI != 0;
                let slot = entry.slot();
                entries.push((entry, entry.closes.load(Ordering::SeqCst)));
                let [r, w] = directions(pfd.events);
                if r {
                    waits.push((slot, pfd.fd, Direction::Read, slot.tick(Direction::Read)));
                }
                if w {
                    waits.push((slot, pfd.fd, Direction::Write, slot.tick(Direction::Write)));
                }
            }
        }
        let n = if len == 0 { 0 } else { real_poll(fds, nfds, 0) };
        if n != 0 {
            return n;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return 0;
        }
        if std::thread::panicking() {
            return real_poll(fds, nfds, timeout_ms(deadline));
        }
        if stepping {
            let until = Instant::now() + step;
            let until = deadline.map_or(until, |d| d.min(until));
            step = (step * 2).min(Duration::from_millis(16));
            match sleep_coroutine(until) {
                Some(true) => continue,
                Some(false) => {
                    set_errno(libc::ECANCELED);
                    return -1;
                }
                None => return real_poll(fds, nfds, timeout_ms(deadline)),
            }
        }
        let Some(task) = rt::current_task() else {
            return real_poll(fds, nfds, timeout_ms(deadline));
        };
        let wait_until = if urgent {
            let cap = Instant::now() + urgent_step;
            urgent_step = (urgent_step * 2).min(Duration::from_millis(16));
            Some(deadline.map_or(cap, |d| d.min(cap)))
        } else {
            deadline
        };
        let outcome = catch(|| {
            let mut listed = 0;
            let mut moved = false;
            let mut refused = false;
            for &(slot, fd, dir, seen) in &waits {
                match slot.add_waiter(fd, &task, dir, seen) {
                    Ok(true) => listed += 1,
                    Ok(false) => {
                        moved = true;
                        break;
                    }
                    Err(_) => {
                        refused = true;
                        break;
                    }
                }
            }
            // Takes us off every list however this ends (an unwind included).
            let _unlist = Unlist {
                waits: &waits[..listed],
                task: &task,
            };
            if moved || refused {
                return refused;
            }
            let any_moved = || {
                waits
                    .iter()
                    .any(|&(slot, _, dir, seen)| slot.tick(dir) != seen)
            };
            match wait_until {
                None => {
                    while !any_moved() {
                        rt::wait_current(Why::new(WaitKind::Hooked));
                    }
                }
                Some(d) => {
                    crate::time::suspend_until(d, Why::new(WaitKind::Hooked), any_moved);
                }
            }
            false
        });
        for &(entry, closes) in &entries {
            if entry.closes.load(Ordering::SeqCst) != closes {
                // Closed meanwhile: see `io_calls::wait_and_retry`.
                entry.slot().forget_registration();
            }
        }
        match outcome {
            Err(errno) => {
                set_errno(errno);
                return -1;
            }
            Ok(true) => stepping = true,
            Ok(false) => {}
        }
    }
}

/// Removes a `poll`'s waiters from their slots when dropped.
struct Unlist<'a> {
    waits: &'a [(&'static ScheduledIo, c_int, Direction, u32)],
    task: &'a crate::rt::TaskRef,
}

impl Drop for Unlist<'_> {
    fn drop(&mut self) {
        for &(slot, _, dir, _) in self.waits {
            slot.remove_waiter(self.task, dir);
        }
    }
}

/// Sleeps the coroutine for `duration`: 0 when done (or cut short by a
/// cancellation), `None` when it cannot suspend (the caller calls libc).
fn sleep_for(duration: Duration) -> Option<c_int> {
    let deadline = match deadline_after(duration) {
        Some(d) => d,
        // Further than the clock counts: forever, in long steps.
        None => loop {
            if !sleep_coroutine(Instant::now() + Duration::from_secs(86_400 * 365))? {
                return Some(0);
            }
        },
    };
    sleep_coroutine(deadline).map(|_| 0)
}

/// Hook of `nanosleep(2)`.
///
/// # Safety
///
/// libc's contract for `nanosleep`.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    let real = || {
        call_real!(
            Nanosleep,
            fn(*const timespec, *mut timespec) -> c_int,
            (req, rem),
            libc::syscall(libc::SYS_nanosleep, req, rem) as c_int
        )
    };
    if !in_coroutine() || req.is_null() {
        return real();
    }
    // SAFETY: a non-null request points at a timespec (caller's contract).
    match duration_of(unsafe { &*req }).and_then(sleep_for) {
        Some(r) => r,
        None => real(),
    }
}

/// Hook of `clock_nanosleep(2)`, for the monotonic, boot-time and real-time clocks
/// (others, such as CPU-time clocks, pass through). Returns an error number, as
/// libc's does.
///
/// # Safety
///
/// libc's contract for `clock_nanosleep`.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let real = || {
        call_real!(
            ClockNanosleep,
            fn(libc::clockid_t, c_int, *const timespec, *mut timespec) -> c_int,
            (clock, flags, req, rem),
            match libc::syscall(libc::SYS_clock_nanosleep, clock, flags, req, rem) {
                r if r < 0 => errno(),
                _ => 0,
            }
        )
    };
    let known = matches!(
        clock,
        libc::CLOCK_MONOTONIC | libc::CLOCK_REALTIME | libc::CLOCK_BOOTTIME
    );
    if !in_coroutine() || req.is_null() || !known {
        return real();
    }
    // SAFETY: a non-null request points at a timespec (caller's contract).
    let Some(mut duration) = duration_of(unsafe { &*req }) else {
        return real();
    };
    if flags & libc::TIMER_ABSTIME != 0 {
        let mut now = timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is valid for writing.
        if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
            return real();
        }
        let Some(now) = duration_of(&now) else {
            return real();
        };
        duration = duration.saturating_sub(now);
    }
    match sleep_for(duration) {
        Some(r) => r,
        None => real(),
    }
}

/// Hook of `usleep(3)`.
///
/// # Safety
///
/// None beyond libc's (no pointers).
#[no_mangle]
pub unsafe extern "C" fn usleep(usec: libc::useconds_t) -> c_int {
    if in_coroutine() {
        if let Some(r) = sleep_for(Duration::from_micros(u64::from(usec))) {
            return r;
        }
    }
    call_real!(Usleep, fn(libc::useconds_t) -> c_int, (usec), {
        let ts = timespec {
            tv_sec: (usec / 1_000_000) as libc::time_t,
            tv_nsec: ((usec % 1_000_000) * 1000) as libc::c_long,
        };
        libc::syscall(libc::SYS_nanosleep, &ts, 0usize) as c_int
    })
}

/// Hook of `sleep(3)`: returns the seconds left unslept (0).
///
/// # Safety
///
/// None beyond libc's (no pointers).
#[no_mangle]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    if in_coroutine() {
        if let Some(r) = sleep_for(Duration::from_secs(u64::from(seconds))) {
            return r as c_uint;
        }
    }
    call_real!(Sleep, fn(c_uint) -> c_uint, (seconds), {
        let ts = timespec {
            tv_sec: seconds as libc::time_t,
            tv_nsec: 0,
        };
        libc::syscall(libc::SYS_nanosleep, &ts, 0usize);
        0
    })
}
