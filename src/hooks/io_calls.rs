//! The socket calls: reads, writes, `connect` and `accept`.
//!
//! Invariant: each hook returns exactly what libc's function would have returned
//! for a descriptor in the mode the program set, with the same `errno`: on a socket
//! the program left blocking, `EAGAIN` from the non-blocking call underneath is never
//! seen by the caller, except after the socket's `SO_RCVTIMEO`/`SO_SNDTIMEO` (as the
//! kernel does); `connect` in progress is waited out and reports `SO_ERROR`; and
//! `write`, `send` and `sendto` on such a socket take all their bytes, as a
//! blocking stream socket does (`writev` and `sendmsg` may return a partial count,
//! which callers of those loop on anyway).

use super::fd_table::{self, Entry, SOCKET, USER_NONBLOCK};
use super::real::call_real;
use super::{errno, in_coroutine, poll_thread, set_errno, wait_slot, Waited};
use crate::rt::Direction;
use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Runs `op`, libc's call on `fd`, the way a blocking call on `fd` behaves (see the
/// module invariant). `op` returns -1 with errno on failure.
#[inline(always)]
pub(super) fn blocking(fd: RawFd, dir: Direction, mut op: impl FnMut() -> ssize_t) -> ssize_t {
    if !in_coroutine() {
        let r = op();
        if r < 0 {
            return outside(fd, dir, op);
        }
        return r;
    }
    inside(fd, dir, op)
}

/// A write of `len` bytes from `buf` the way a blocking stream socket takes it: all
/// of it, waiting for room between partial writes (a partial count only when an
/// error or a timeout stops it after some bytes, as the kernel does). `op(p, n)`
/// writes `n` bytes from `p`.
#[inline(always)]
fn blocking_write(
    fd: RawFd,
    buf: *const c_void,
    len: size_t,
    mut op: impl FnMut(*const c_void, size_t) -> ssize_t,
) -> ssize_t {
    let r = blocking(fd, Direction::Write, || op(buf, len));
    if r <= 0 || r as size_t >= len {
        return r;
    }
    write_rest(fd, buf, len, r as size_t, op)
}

/// The rest of a partial [`blocking_write`]: only for a socket the program left
/// blocking (a non-blocking one reports the partial count).
#[cold]
fn write_rest(
    fd: RawFd,
    buf: *const c_void,
    len: size_t,
    mut done: size_t,
    mut op: impl FnMut(*const c_void, size_t) -> ssize_t,
) -> ssize_t {
    while done < len && managed(fd) {
        // SAFETY: `done < len`: inside the caller's buffer.
        let rest = unsafe { buf.cast::<u8>().add(done) }.cast::<c_void>();
        let r = blocking(fd, Direction::Write, || op(rest, len - done));
        if r <= 0 {
            break;
        }
        done += r as size_t;
    }
    done as ssize_t
}

/// Outside a coroutine, after `op` failed: a socket the hooks made non-blocking for
/// a coroutine, which the program left blocking, blocks this thread.
#[cold]
fn outside(fd: RawFd, dir: Direction, mut op: impl FnMut() -> ssize_t) -> ssize_t {
    if errno() != libc::EAGAIN || !managed(fd) {
        return -1;
    }
    let deadline = so_timeout(fd, dir);
    loop {
        let n = poll_thread(fd, events(dir), deadline);
        if n == 0 {
            set_errno(libc::EAGAIN);
            return -1;
        }
        if n < 0 {
            return -1;
        }
        let r = op();
        if r >= 0 || errno() != libc::EAGAIN {
            return r;
        }
    }
}

/// Inside a coroutine.
#[inline(never)]
fn inside(fd: RawFd, dir: Direction, mut op: impl FnMut() -> ssize_t) -> ssize_t {
    match fd_table::classify(fd) {
        (Some(entry), state) if state & (SOCKET | USER_NONBLOCK) == SOCKET => {
            wait_and_retry(entry, fd, dir, op)
        }
        _ => op(),
    }
}

/// A call on a socket the program left blocking, inside a coroutine: tries it
/// (the slot's tick read first, so that the call's `EAGAIN` can be waited out at
/// once) and, while it would block, waits and retries.
fn wait_and_retry(
    entry: &'static Entry,
    fd: RawFd,
    dir: Direction,
    mut op: impl FnMut() -> ssize_t,
) -> ssize_t {
    let slot = entry.slot();
    let closes = entry.closes.load(Ordering::SeqCst);
    // Read on the first wait (a system call, unless cached: see `so_timeout`).
    let mut deadline = None;
    let mut first = true;
    loop {
        let seen = slot.tick(dir);
        // After the tick (see `fd_table::forget`): a close from another thread, or
        // the program switching to non-blocking mode, ends the waiting.
        let state = entry.state.load(Ordering::SeqCst);
        let r = op();
        if r >= 0 || errno() != libc::EAGAIN || state & (SOCKET | USER_NONBLOCK) != SOCKET {
            return r;
        }
        if first {
            first = false;
            deadline = so_timeout(fd, dir);
        }
        let waited = wait_slot(slot, fd, dir, seen, deadline);
        if entry.closes.load(Ordering::SeqCst) != closes {
            // Closed by another thread meanwhile: the wait may have registered the
            // closing descriptor (see `fd_table::forget`). The retry reports it.
            slot.forget_registration();
            return op();
        }
        match waited {
            Some(Waited::Ready) => {}
            Some(Waited::TimedOut) => {
                set_errno(libc::EAGAIN);
                return -1;
            }
            Some(Waited::Stopped(errno)) => {
                set_errno(errno);
                return -1;
            }
            Some(Waited::Refused) | None => {
                if poll_thread(fd, events(dir), deadline) == 0 {
                    set_errno(libc::EAGAIN);
                    return -1;
                }
            }
        }
    }
}

/// Whether `fd` is a socket the hooks made non-blocking and the program did not.
pub(super) fn managed(fd: RawFd) -> bool {
    fd_table::get(fd)
        .is_some_and(|e| e.state.load(Ordering::Acquire) & (SOCKET | USER_NONBLOCK) == SOCKET)
}

/// `poll(2)` events for `dir`.
fn events(dir: Direction) -> libc::c_short {
    match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    }
}

/// The deadline that `SO_RCVTIMEO` (reads) or `SO_SNDTIMEO` (writes) sets from now.
/// A "none" is cached per number until a timeout is set anywhere through libc
/// ([`fd_table::no_timeout`]), so a program that never sets one makes one
/// `getsockopt` per socket and direction, not one per wait.
fn so_timeout(fd: RawFd, dir: Direction) -> Option<Instant> {
    let (option, index) = match dir {
        Direction::Read => (libc::SO_RCVTIMEO, 0),
        Direction::Write => (libc::SO_SNDTIMEO, 1),
    };
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let none = fd_table::no_timeout(fd, index, || {
        let mut len = std::mem::size_of::<libc::timeval>() as socklen_t;
        // SAFETY: `tv` and `len` are valid for writing.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&mut tv as *mut libc::timeval).cast(),
                &mut len,
            )
        };
        r != 0 || (tv.tv_sec <= 0 && tv.tv_usec <= 0)
    });
    if none {
        return None;
    }
    let timeout = Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64);
    super::deadline_after(timeout)
}

/// Defines the hook of `$name`, a call that may block on `$dir`: libc's, the way a
/// blocking call behaves ([`blocking`]); with `[flags = f]`, `MSG_DONTWAIT` in `f`
/// passes straight through. The fallback while libc's table is being filled is the
/// system call `$sys` with `$sysarg`s.
macro_rules! blocking_hook {
    ($(
        $name:ident($fd:ident: c_int $(, $arg:ident: $ty:ty)*) $([flags = $flags:ident])?
            => $sym:ident, $dir:ident, $sys:ident($($sysarg:expr),*);
    )*) => {$(
        #[doc = concat!("Hook of `", stringify!($name), "(2)`.")]
        ///
        /// # Safety
        ///
        #[doc = concat!("libc's contract for `", stringify!($name), "`.")]
        #[no_mangle]
        pub unsafe extern "C" fn $name($fd: c_int $(, $arg: $ty)*) -> ssize_t {
            let op = || {
                call_real!(
                    $sym,
                    fn(c_int $(, $ty)*) -> ssize_t,
                    ($fd $(, $arg)*),
                    libc::syscall(libc::$sys $(, $sysarg)*) as ssize_t
                )
            };
            $(
                if $flags & libc::MSG_DONTWAIT != 0 {
                    return op();
                }
            )?
            blocking($fd, Direction::$dir, op)
        }
    )*};
}

/// As [`blocking_hook`], for the writes of one buffer that a blocking stream socket
/// takes whole ([`blocking_write`]).
macro_rules! write_hook {
    ($(
        $name:ident($fd:ident: c_int, $buf:ident: *const c_void, $len:ident: size_t
            $(, $arg:ident: $ty:ty)*) $([flags = $flags:ident])?
            => $sym:ident, $sys:ident($($sysarg:expr),*);
    )*) => {$(
        #[doc = concat!("Hook of `", stringify!($name), "(2)`.")]
        ///
        /// # Safety
        ///
        #[doc = concat!("libc's contract for `", stringify!($name), "`.")]
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            $fd: c_int,
            $buf: *const c_void,
            $len: size_t
            $(, $arg: $ty)*
        ) -> ssize_t {
            let op = |$buf: *const c_void, $len: size_t| {
                call_real!(
                    $sym,
                    fn(c_int, *const c_void, size_t $(, $ty)*) -> ssize_t,
                    ($fd, $buf, $len $(, $arg)*),
                    libc::syscall(libc::$sys $(, $sysarg)*) as ssize_t
                )
            };
            $(
                if $flags & libc::MSG_DONTWAIT != 0 {
                    return op($buf, $len);
                }
            )?
            blocking_write($fd, $buf, $len, op)
        }
    )*};
}

blocking_hook! {
    read(fd: c_int, buf: *mut c_void, count: size_t) => Read, Read, SYS_read(fd, buf, count);
    readv(fd: c_int, iov: *const iovec, iovcnt: c_int)
        => Readv, Read, SYS_readv(fd, iov, iovcnt);
    recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) [flags = flags]
        => Recv, Read, SYS_recvfrom(fd, buf, len, flags, 0usize, 0usize);
    recvfrom(
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        addrlen: *mut socklen_t
    ) [flags = flags]
        => Recvfrom, Read, SYS_recvfrom(fd, buf, len, flags, addr, addrlen);
    recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) [flags = flags]
        => Recvmsg, Read, SYS_recvmsg(fd, msg, flags);
    writev(fd: c_int, iov: *const iovec, iovcnt: c_int)
        => Writev, Write, SYS_writev(fd, iov, iovcnt);
    sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) [flags = flags]
        => Sendmsg, Write, SYS_sendmsg(fd, msg, flags);
}

write_hook! {
    write(fd: c_int, buf: *const c_void, count: size_t) => Write, SYS_write(fd, buf, count);
    send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) [flags = flags]
        => Send, SYS_sendto(fd, buf, len, flags, 0usize, 0usize);
    sendto(
        fd: c_int,
        buf: *const c_void,
        len: size_t,
        flags: c_int,
        addr: *const sockaddr,
        addrlen: socklen_t
    ) [flags = flags]
        => Sendto, SYS_sendto(fd, buf, len, flags, addr, addrlen);
}

/// Hook of `accept(2)`.
///
/// # Safety
///
/// libc's contract for `accept`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    blocking(fd, Direction::Read, || {
        call_real!(
            Accept,
            fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int,
            (fd, addr, len),
            libc::syscall(libc::SYS_accept4, fd, addr, len, 0) as c_int
        ) as ssize_t
    }) as c_int
}

/// Hook of `accept4(2)`.
///
/// # Safety
///
/// libc's contract for `accept4`.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    blocking(fd, Direction::Read, || {
        call_real!(
            Accept4,
            fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int,
            (fd, addr, len, flags),
            libc::syscall(libc::SYS_accept4, fd, addr, len, flags) as c_int
        ) as ssize_t
    }) as c_int
}

/// Hook of `connect(2)`: on a socket the program left blocking, a connect in
/// progress is waited for (up to `SO_SNDTIMEO`, then `EINPROGRESS` as the kernel
/// reports it) and its outcome read from `SO_ERROR`.
///
/// # Safety
///
/// libc's contract for `connect`.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let op = || {
        call_real!(
            Connect,
            fn(c_int, *const sockaddr, socklen_t) -> c_int,
            (fd, addr, len),
            libc::syscall(libc::SYS_connect, fd, addr, len) as c_int
        )
    };
    if !in_coroutine() {
        let r = op();
        if r < 0 && errno() == libc::EINPROGRESS && managed(fd) {
            return connect_outside(fd);
        }
        return r;
    }
    let (entry, state) = fd_table::classify(fd);
    if state & (SOCKET | USER_NONBLOCK) != SOCKET {
        return op();
    }
    let entry = entry.expect("a classified socket has an entry");
    let slot = entry.slot();
    let mut seen = slot.tick(Direction::Write);
    let r = op();
    if r == 0 || errno() != libc::EINPROGRESS {
        return r;
    }
    let deadline = so_timeout(fd, Direction::Write);
    loop {
        // Done when poll says writable (or in error).
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        if super::poll_sleep::real_poll(&mut pfd, 1, 0) != 0 {
            return connect_result(fd);
        }
        let waited = if entry.state.load(Ordering::SeqCst) & SOCKET == 0 {
            None
        } else {
            wait_slot(slot, fd, Direction::Write, seen, deadline)
        };
        match waited {
            Some(Waited::Ready) => {}
            Some(Waited::TimedOut) => {
                set_errno(libc::EINPROGRESS);
                return -1;
            }
            Some(Waited::Stopped(errno)) => {
                set_errno(errno);
                return -1;
            }
            Some(Waited::Refused) | None => return connect_outside(fd),
        }
        seen = slot.tick(Direction::Write);
    }
}

/// A blocking connect in progress, waited for with the thread.
#[cold]
fn connect_outside(fd: RawFd) -> c_int {
    match poll_thread(fd, libc::POLLOUT, so_timeout(fd, Direction::Write)) {
        0 => {
            set_errno(libc::EINPROGRESS);
            -1
        }
        n if n < 0 => -1,
        _ => connect_result(fd),
    }
}

/// The outcome of a finished connect: 0, or -1 with `SO_ERROR` as errno.
fn connect_result(fd: RawFd) -> c_int {
    match crate::net::sockopt::get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
        // errno is getsockopt's.
        Err(_) => -1,
        Ok(0) => 0,
        Ok(err) => {
            set_errno(err);
            -1
        }
    }
}
