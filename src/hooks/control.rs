//! The calls that change what a descriptor number is or how it blocks: `close`,
//! `dup`/`dup2`/`dup3`, `fcntl`, `ioctl(FIONBIO)` and `setsockopt` (socket
//! timeouts).
//!
//! Invariant: for a socket the hooks manage, `O_NONBLOCK` stays set underneath
//! whatever the program asks; the program's own choice lives in the fd table's
//! `USER_NONBLOCK`, which `F_GETFL` reports and `F_SETFL`/`FIONBIO` change. A number
//! is forgotten (its waiters woken, its registration dropped) before libc closes or
//! replaces it, and a duplicate inherits its original's state.

use super::fd_table::{self, SOCKET, USER_NONBLOCK};
use super::real::{self, call_real, Sym};
use libc::{c_int, c_ulong, c_void};
use std::sync::atomic::Ordering;

/// libc's `fcntl(fd, F_GETFL)`.
pub(super) fn real_getfl(fd: c_int) -> c_int {
    real_fcntl(Sym::Fcntl, fd, libc::F_GETFL, 0)
}

/// libc's `fcntl(fd, F_SETFL, flags)`.
pub(super) fn real_setfl(fd: c_int, flags: c_int) -> c_int {
    real_fcntl(Sym::Fcntl, fd, libc::F_SETFL, flags as c_ulong)
}

/// libc's `fcntl` (or `fcntl64`), with one argument word.
fn real_fcntl(sym: Sym, fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let f = real::get(sym);
    if f == 0 {
        // SAFETY: the hooked call's arguments, passed on to the kernel.
        return unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) as c_int };
    }
    // SAFETY: `f` is libc's variadic fcntl (real module invariant).
    let f: unsafe extern "C" fn(c_int, c_int, ...) -> c_int = unsafe { std::mem::transmute(f) };
    // SAFETY: the hooked call's arguments; every fcntl command takes at most one
    // argument word, which is passed on as it came.
    unsafe { f(fd, cmd, arg) }
}

/// Records the program's non-blocking choice for a managed socket.
fn set_user_nonblock(entry: &fd_table::Entry, nonblocking: bool) {
    if nonblocking {
        entry.state.fetch_or(USER_NONBLOCK, Ordering::AcqRel);
    } else {
        entry.state.fetch_and(!USER_NONBLOCK, Ordering::AcqRel);
    }
}

/// The entry of `fd` if it is a managed socket.
fn managed_entry(fd: c_int) -> Option<&'static fd_table::Entry> {
    fd_table::get(fd).filter(|e| e.state.load(Ordering::Acquire) & SOCKET != 0)
}

fn fcntl_hook(sym: Sym, fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    match cmd {
        libc::F_GETFL => {
            let flags = real_fcntl(sym, fd, cmd, arg);
            match managed_entry(fd) {
                Some(entry) if flags >= 0 => {
                    let user = entry.state.load(Ordering::Acquire) & USER_NONBLOCK != 0;
                    (flags & !libc::O_NONBLOCK) | if user { libc::O_NONBLOCK } else { 0 }
                }
                _ => flags,
            }
        }
        libc::F_SETFL => match managed_entry(fd) {
            Some(entry) => {
                let r = real_fcntl(sym, fd, cmd, arg | libc::O_NONBLOCK as c_ulong);
                if r >= 0 {
                    set_user_nonblock(entry, arg & libc::O_NONBLOCK as c_ulong != 0);
                }
                r
            }
            None => real_fcntl(sym, fd, cmd, arg),
        },
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let r = real_fcntl(sym, fd, cmd, arg);
            if r >= 0 {
                fd_table::copy(fd, r);
            }
            r
        }
        _ => real_fcntl(sym, fd, cmd, arg),
    }
}

/// Hook of `fcntl(2)` (C declares it variadic; every command takes at most one
/// argument word, passed in the same register either way on the targets this
/// module is built for).
///
/// # Safety
///
/// libc's contract for `fcntl`.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    fcntl_hook(Sym::Fcntl, fd, cmd, arg)
}

/// Hook of `fcntl64` (glibc's name for `fcntl` with 64-bit offsets), as `fcntl`.
///
/// # Safety
///
/// libc's contract for `fcntl64`.
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    fcntl_hook(Sym::Fcntl64, fd, cmd, arg)
}

/// Hook of `ioctl(2)`: `FIONBIO` on a managed socket records the program's choice
/// and keeps the socket non-blocking underneath; everything else passes through.
///
/// # Safety
///
/// libc's contract for `ioctl`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    let call = |arg: *mut c_void| {
        let f = real::get(Sym::Ioctl);
        if f == 0 {
            // SAFETY: the hooked call's arguments, passed on to the kernel.
            return unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) as c_int };
        }
        // SAFETY: `f` is libc's variadic ioctl (real module invariant).
        let f: unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int =
            unsafe { std::mem::transmute(f) };
        // SAFETY: the hooked call's arguments, passed on unchanged (or, for FIONBIO,
        // a pointer to a live int).
        unsafe { f(fd, request, arg) }
    };
    if request != libc::FIONBIO as c_ulong || arg.is_null() {
        return call(arg);
    }
    match managed_entry(fd) {
        Some(entry) => {
            // SAFETY: FIONBIO's argument is a pointer to an int (caller's contract).
            let user = unsafe { *arg.cast::<c_int>() } != 0;
            let mut on: c_int = 1;
            let r = call((&mut on as *mut c_int).cast());
            if r >= 0 {
                set_user_nonblock(entry, user);
            }
            r
        }
        None => call(arg),
    }
}

/// Hook of `close(2)`: forgets the number first (see the module invariant).
///
/// # Safety
///
/// libc's contract for `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    fd_table::forget(fd);
    call_real!(
        Close,
        fn(c_int) -> c_int,
        (fd),
        libc::syscall(libc::SYS_close, fd) as c_int
    )
}

/// Hook of `dup(2)`: the duplicate inherits the original's state.
///
/// # Safety
///
/// libc's contract for `dup`.
#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let r = call_real!(
        Dup,
        fn(c_int) -> c_int,
        (fd),
        libc::syscall(libc::SYS_dup, fd) as c_int
    );
    if r >= 0 {
        fd_table::copy(fd, r);
    }
    r
}

/// `dup2`/`dup3` with the table kept right: `new` is forgotten before libc replaces
/// it (only when `old` is open: a failing call leaves `new` as it was).
fn replace(old: c_int, new: c_int, op: impl FnOnce() -> c_int) -> c_int {
    if old != new && real_fcntl(Sym::Fcntl, old, libc::F_GETFD, 0) >= 0 {
        fd_table::forget(new);
    }
    let r = op();
    if r >= 0 && old != new {
        fd_table::copy(old, new);
    }
    r
}

/// Hook of `dup2(2)`.
///
/// # Safety
///
/// libc's contract for `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    replace(old, new, || {
        call_real!(
            Dup2,
            fn(c_int, c_int) -> c_int,
            (old, new),
            if old == new {
                match libc::syscall(libc::SYS_fcntl, old, libc::F_GETFD) {
                    r if r < 0 => -1,
                    _ => old,
                }
            } else {
                libc::syscall(libc::SYS_dup3, old, new, 0) as c_int
            }
        )
    })
}

/// Hook of `dup3(2)`.
///
/// # Safety
///
/// libc's contract for `dup3`.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    replace(old, new, || {
        call_real!(
            Dup3,
            fn(c_int, c_int, c_int) -> c_int,
            (old, new, flags),
            libc::syscall(libc::SYS_dup3, old, new, flags) as c_int
        )
    })
}

/// `SO_RCVTIMEO_NEW` and `SO_SNDTIMEO_NEW` (asm-generic; on these 64-bit targets
/// glibc passes the plain `SO_RCVTIMEO`/`SO_SNDTIMEO`, but a caller may use these).
const SO_TIMEO_NEW: [c_int; 2] = [66, 67];

/// Hook of `setsockopt(2)`: libc's, and a socket timeout that was set invalidates
/// the hooks' cached "no timeout" answers (`fd_table::no_timeout`).
///
/// # Safety
///
/// libc's contract for `setsockopt`.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: libc::socklen_t,
) -> c_int {
    let r = call_real!(
        Setsockopt,
        fn(c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int,
        (fd, level, name, value, len),
        libc::syscall(libc::SYS_setsockopt, fd, level, name, value, len) as c_int
    );
    let timeout =
        matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO) || SO_TIMEO_NEW.contains(&name);
    if r == 0 && level == libc::SOL_SOCKET && timeout {
        fd_table::timeouts_changed();
    }
    r
}
