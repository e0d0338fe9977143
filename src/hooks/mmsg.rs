//! `recvmmsg` and `sendmmsg`: several datagrams in one call.
//!
//! Invariant: on a socket the program left blocking and the hooks made
//! non-blocking underneath, each returns what the blocking call would have
//! (Linux's algorithm, `net/socket.c`): `recvmmsg` waits for the first message,
//! then (without `MSG_WAITFORONE`) goes on until `vlen` messages or, checked after
//! each batch as the kernel checks after each message, the `timeout` (the time left
//! written back when messages came); `sendmmsg` sends all `vlen` messages, waiting
//! for room between batches. `vlen` is capped at `UIO_MAXIOV` (1024) as the kernel
//! caps it. An error after some messages returns their count (the kernel would
//! also keep the error for the next call; here the next call meets it again, if it
//! persists). The waits are `io_calls::blocking`'s: a coroutine's suspend it, a
//! plain thread's `poll`. Every other socket, `MSG_DONTWAIT` and a plain thread's
//! call on a socket the hooks never touched go to libc unchanged.

use super::fd_table::{self, SOCKET, USER_NONBLOCK};
use super::io_calls::{blocking, managed};
use super::real::call_real;
use super::{deadline_after, in_coroutine};
use crate::rt::Direction;
use libc::{c_int, c_uint, mmsghdr, ssize_t, timespec};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// The kernel's cap on `vlen` (`UIO_MAXIOV`).
const MAX_VLEN: c_uint = 1024;

/// libc's `recvmmsg`.
fn real_recvmmsg(
    fd: c_int,
    msgvec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut timespec,
) -> c_int {
    call_real!(
        Recvmmsg,
        fn(c_int, *mut mmsghdr, c_uint, c_int, *mut timespec) -> c_int,
        (fd, msgvec, vlen, flags, timeout),
        libc::syscall(libc::SYS_recvmmsg, fd, msgvec, vlen, flags, timeout) as c_int
    )
}

/// libc's `sendmmsg`.
fn real_sendmmsg(fd: c_int, msgvec: *mut mmsghdr, vlen: c_uint, flags: c_int) -> c_int {
    call_real!(
        Sendmmsg,
        fn(c_int, *mut mmsghdr, c_uint, c_int) -> c_int,
        (fd, msgvec, vlen, flags),
        libc::syscall(libc::SYS_sendmmsg, fd, msgvec, vlen, flags) as c_int
    )
}

/// Whether a call on `fd` is emulated here: a socket the program left blocking
/// that the hooks manage (classified first inside a coroutine).
fn emulated(fd: RawFd) -> bool {
    if in_coroutine() {
        let (_, state) = fd_table::classify(fd);
        state & (SOCKET | USER_NONBLOCK) == SOCKET
    } else {
        managed(fd)
    }
}

/// Hook of `recvmmsg(2)`.
///
/// # Safety
///
/// libc's contract for `recvmmsg`.
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgvec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut timespec,
) -> c_int {
    if flags & libc::MSG_DONTWAIT != 0 || vlen == 0 || msgvec.is_null() || !emulated(fd) {
        return real_recvmmsg(fd, msgvec, vlen, flags, timeout);
    }
    let end = if timeout.is_null() {
        None
    } else {
        // SAFETY: a non-null timeout points at a timespec (caller's contract).
        let ts = unsafe { *timeout };
        if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
            // libc's EINVAL.
            return real_recvmmsg(fd, msgvec, vlen, flags, timeout);
        }
        deadline_after(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    };
    let vlen = vlen.min(MAX_VLEN);
    let mut got: c_uint = 0;
    loop {
        // SAFETY: `got < vlen`: inside the caller's vector.
        let rest = unsafe { msgvec.add(got as usize) };
        let r = blocking(fd, Direction::Read, || {
            real_recvmmsg(fd, rest, vlen - got, flags, std::ptr::null_mut()) as ssize_t
        });
        if r <= 0 {
            if got == 0 {
                return r as c_int;
            }
            break;
        }
        got += r as c_uint;
        if got >= vlen || flags & libc::MSG_WAITFORONE != 0 {
            break;
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
    }
    if let (false, Some(end)) = (timeout.is_null(), end) {
        let left = end.saturating_duration_since(Instant::now());
        // SAFETY: as above, writable (Linux writes the time left back).
        unsafe {
            (*timeout).tv_sec = left.as_secs() as libc::time_t;
            (*timeout).tv_nsec = left.subsec_nanos() as libc::c_long;
        }
    }
    got as c_int
}

/// Hook of `sendmmsg(2)`.
///
/// # Safety
///
/// libc's contract for `sendmmsg`.
#[no_mangle]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgvec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    if flags & libc::MSG_DONTWAIT != 0 || vlen == 0 || msgvec.is_null() || !emulated(fd) {
        return real_sendmmsg(fd, msgvec, vlen, flags);
    }
    let vlen = vlen.min(MAX_VLEN);
    let mut sent: c_uint = 0;
    while sent < vlen {
        // SAFETY: `sent < vlen`: inside the caller's vector.
        let rest = unsafe { msgvec.add(sent as usize) };
        let r = blocking(fd, Direction::Write, || {
            real_sendmmsg(fd, rest, vlen - sent, flags) as ssize_t
        });
        if r <= 0 {
            if sent == 0 {
                return r as c_int;
            }
            break;
        }
        sent += r as c_uint;
    }
    sent as c_int
}
