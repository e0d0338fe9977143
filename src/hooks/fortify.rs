//! glibc's `_FORTIFY_SOURCE` entry points: C code built with
//! `-D_FORTIFY_SOURCE=2` (and optimisation) calls `__read_chk`, `__recv_chk`,
//! `__recvfrom_chk`, `__poll_chk` and `__ppoll_chk` instead of `read`, `recv`,
//! `recvfrom`, `poll` and `ppoll` wherever the compiler knows the buffer's size.
//!
//! Invariant: each checks what glibc's checks (the length asked for against the
//! buffer's size) and, when the check fails, calls glibc's own function with the
//! same arguments, which reports the overflow and aborts the process exactly as it
//! would have; when it passes, the call is the plain function's hook
//! (`io_calls`, `poll_sleep`), so it behaves as that hook does everywhere.

use super::real::{self, Sym};
use libc::{
    c_int, c_void, nfds_t, pollfd, sigset_t, size_t, sockaddr, socklen_t, ssize_t, timespec,
};

/// glibc's fortified function `sym` for a failed check: it reports and aborts.
/// Without it (the table not filled yet), abort as glibc's `__chk_fail` would.
fn fail(sym: Sym, call: impl FnOnce(usize) -> ssize_t) -> ssize_t {
    match real::get(sym) {
        0 => std::process::abort(),
        f => call(f),
    }
}

/// Hook of glibc's `__read_chk`.
///
/// # Safety
///
/// glibc's contract for `__read_chk` (that of `read`, with `buflen` the size of
/// `buf`).
#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    nbytes: size_t,
    buflen: size_t,
) -> ssize_t {
    if nbytes > buflen {
        return fail(Sym::ReadChk, |f| {
            // SAFETY: `f` is glibc's `__read_chk` (real module invariant), given the
            // caller's arguments; it aborts.
            unsafe {
                let f: unsafe extern "C" fn(c_int, *mut c_void, size_t, size_t) -> ssize_t =
                    std::mem::transmute(f);
                f(fd, buf, nbytes, buflen)
            }
        });
    }
    // SAFETY: the check passed: `read`'s contract holds (caller's contract).
    unsafe { super::io_calls::read(fd, buf, nbytes) }
}

/// Hook of glibc's `__recv_chk`.
///
/// # Safety
///
/// glibc's contract for `__recv_chk` (that of `recv`, with `buflen` the size of
/// `buf`).
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if len > buflen {
        return fail(Sym::RecvChk, |f| {
            // SAFETY: as in `__read_chk`.
            unsafe {
                let f: unsafe extern "C" fn(c_int, *mut c_void, size_t, size_t, c_int) -> ssize_t =
                    std::mem::transmute(f);
                f(fd, buf, len, buflen, flags)
            }
        });
    }
    // SAFETY: the check passed: `recv`'s contract holds (caller's contract).
    unsafe { super::io_calls::recv(fd, buf, len, flags) }
}

/// Hook of glibc's `__recvfrom_chk`.
///
/// # Safety
///
/// glibc's contract for `__recvfrom_chk` (that of `recvfrom`, with `buflen` the
/// size of `buf`).
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if len > buflen {
        return fail(Sym::RecvfromChk, |f| {
            type F = unsafe extern "C" fn(
                c_int,
                *mut c_void,
                size_t,
                size_t,
                c_int,
                *mut sockaddr,
                *mut socklen_t,
            ) -> ssize_t;
            // SAFETY: as in `__read_chk`.
            unsafe {
                let f: F = std::mem::transmute(f);
                f(fd, buf, len, buflen, flags, addr, addrlen)
            }
        });
    }
    // SAFETY: the check passed: `recvfrom`'s contract holds (caller's contract).
    unsafe { super::io_calls::recvfrom(fd, buf, len, flags, addr, addrlen) }
}

/// Whether `fdslen` bytes hold fewer than `nfds` pollfds (glibc's check).
fn too_few(nfds: nfds_t, fdslen: size_t) -> bool {
    (fdslen / std::mem::size_of::<pollfd>()) < nfds as size_t
}

/// Hook of glibc's `__poll_chk`.
///
/// # Safety
///
/// glibc's contract for `__poll_chk` (that of `poll`, with `fdslen` the size of
/// `fds` in bytes).
#[no_mangle]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    if too_few(nfds, fdslen) {
        return fail(Sym::PollChk, |f| {
            // SAFETY: as in `__read_chk`.
            unsafe {
                let f: unsafe extern "C" fn(*mut pollfd, nfds_t, c_int, size_t) -> c_int =
                    std::mem::transmute(f);
                f(fds, nfds, timeout, fdslen) as ssize_t
            }
        }) as c_int;
    }
    // SAFETY: the check passed: `poll`'s contract holds (caller's contract).
    unsafe { super::poll_sleep::poll(fds, nfds, timeout) }
}

/// Hook of glibc's `__ppoll_chk`.
///
/// # Safety
///
/// glibc's contract for `__ppoll_chk` (that of `ppoll`, with `fdslen` the size of
/// `fds` in bytes).
#[no_mangle]
pub unsafe extern "C" fn __ppoll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    tmo: *const timespec,
    sigmask: *const sigset_t,
    fdslen: size_t,
) -> c_int {
    if too_few(nfds, fdslen) {
        return fail(Sym::PpollChk, |f| {
            type F = unsafe extern "C" fn(
                *mut pollfd,
                nfds_t,
                *const timespec,
                *const sigset_t,
                size_t,
            ) -> c_int;
            // SAFETY: as in `__read_chk`.
            unsafe {
                let f: F = std::mem::transmute(f);
                f(fds, nfds, tmo, sigmask, fdslen) as ssize_t
            }
        }) as c_int;
    }
    // SAFETY: the check passed: `ppoll`'s contract holds (caller's contract).
    unsafe { super::poll_sleep::ppoll(fds, nfds, tmo, sigmask) }
}
