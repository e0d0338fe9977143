//! The `hooks` feature: libc's blocking socket, `poll` and sleep calls made
//! cooperative inside coroutines, for code that was written against `std::net`,
//! `std::thread::sleep` or C's sockets and is not changed.
//!
//! The mechanism: this module defines `read`, `recv`, `connect`, `poll`,
//! `nanosleep`, … with `#[no_mangle]`, so that in a binary linked with this crate
//! every call to them from Rust code (std's included) and from statically linked C
//! code lands here; each hook calls libc's definition, found with
//! `dlsym(RTLD_NEXT, …)` ([`real`]). The linker exports them from the executable
//! (libc defines the same names), so shared libraries it loads bind to them too
//! (docs/DECISIONS.md; `tests/hooks/c_code.rs` `dlopen`s one).
//!
//! Invariant (the fast path): a hook called anywhere but inside a coroutine on a
//! worker (the main thread, the blocking pool, foreign threads, the worker's own
//! scheduler context, a signal handler on those) reads one thread-local flag
//! ([`in_coroutine`]) and calls libc's function with the same arguments; it touches
//! nothing else unless libc's answer is `EAGAIN` (or `EINPROGRESS`) on a socket the
//! hooks made non-blocking for a coroutine, which it then waits out with `poll(2)`
//! like the blocking call it emulates. Inside a coroutine, a call on a socket the
//! program left blocking ([`fd_table`]) is tried non-blocking and, while it would
//! block, suspends only that coroutine on its worker's reactor; every other
//! descriptor passes through. `close`, `dup2` and `dup3` keep the table right on any
//! thread. No hook unwinds: a coroutine cancelled or unwound for a shutdown while it
//! waits in a hook gets `ECANCELED`, one past a deadline scope's deadline
//! (`time::timeout`) `ETIMEDOUT` (sleeps end early), and it unwinds at its next
//! stackweave blocking point.

pub(crate) mod real;

mod control;
mod fd_table;
mod fortify;
mod io_calls;
mod mmsg;
mod poll_sleep;
mod select;

use crate::rt;
use crate::rt::deadline::Expired;
use crate::rt::Direction;
use crate::rt::ScheduledIo;
use crate::rt::{WaitKind, Why};
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

pub(crate) use crate::rt::hook_flag::in_coroutine;

/// Resolves libc's functions and keeps the hooks in the binary: the linker takes an
/// object out of this crate's archive only for a symbol someone needs, and std's
/// `read` would otherwise be satisfied by libc. Called when a runtime starts.
pub(crate) fn init() {
    real::resolve();
    let hooks: [*const (); 36] = [
        io_calls::read as *const (),
        io_calls::readv as *const (),
        io_calls::recv as *const (),
        io_calls::recvfrom as *const (),
        io_calls::recvmsg as *const (),
        io_calls::write as *const (),
        io_calls::writev as *const (),
        io_calls::send as *const (),
        io_calls::sendto as *const (),
        io_calls::sendmsg as *const (),
        io_calls::connect as *const (),
        io_calls::accept as *const (),
        io_calls::accept4 as *const (),
        poll_sleep::poll as *const (),
        poll_sleep::ppoll as *const (),
        select::select as *const (),
        select::pselect as *const (),
        poll_sleep::nanosleep as *const (),
        poll_sleep::clock_nanosleep as *const (),
        poll_sleep::usleep as *const (),
        poll_sleep::sleep as *const (),
        control::close as *const (),
        control::dup as *const (),
        control::dup2 as *const (),
        control::dup3 as *const (),
        control::fcntl as *const (),
        control::fcntl64 as *const (),
        control::ioctl as *const (),
        control::setsockopt as *const (),
        fortify::__read_chk as *const (),
        fortify::__recv_chk as *const (),
        fortify::__recvfrom_chk as *const (),
        fortify::__poll_chk as *const (),
        fortify::__ppoll_chk as *const (),
        mmsg::recvmmsg as *const (),
        mmsg::sendmmsg as *const (),
    ];
    std::hint::black_box(hooks);
}

/// This thread's `errno`.
#[inline]
fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's `errno`.
#[inline]
fn set_errno(value: libc::c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}

/// How a coroutine's wait in a hook ended.
enum Waited {
    /// The tick moved (or may have): retry the call.
    Ready,
    /// The deadline passed.
    TimedOut,
    /// The coroutine may not wait any more: cancelled or shut down (`ECANCELED`),
    /// or past a deadline scope's deadline (`ETIMEDOUT`); the errno to return.
    Stopped(libc::c_int),
    /// The reactor refused the descriptor: wait with the thread instead.
    Refused,
}

/// Runs `f`, which may suspend the coroutine, catching the unwind that cancellation,
/// a shutdown, a drain scope (`runtime::until_drain`) or a deadline scope
/// (`time::timeout`) starts there (it must not cross the hook's C frame): the errno
/// the hook returns instead, `ECANCELED` or (for a deadline) `ETIMEDOUT`; the
/// coroutine unwinds at its next stackweave blocking point. Any other panic is a
/// bug of this module: abort, as a panic out of `extern "C"` would.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, libc::c_int> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(p) if p.is::<crate::Unwound>() || p.is::<crate::Cancelled>() => Err(libc::ECANCELED),
        // A drain scope (`runtime::until_drain`) ended: like a cancel.
        Err(p) if p.downcast_ref::<Expired>().is_some_and(|e| e.drained) => Err(libc::ECANCELED),
        Err(p) if p.is::<Expired>() => Err(libc::ETIMEDOUT),
        Err(_) => {
            eprintln!("stackweave: a panic inside a libc hook; aborting");
            std::process::abort()
        }
    }
}

/// Suspends the running coroutine until `slot`'s `dir` tick moves from `seen` or
/// `deadline` passes. `None` when this is not a coroutine that may suspend (the
/// caller waits with the thread).
fn wait_slot(
    slot: &'static ScheduledIo,
    fd: RawFd,
    dir: Direction,
    seen: u32,
    deadline: Option<Instant>,
) -> Option<Waited> {
    if std::thread::panicking() {
        return None;
    }
    let task = rt::current_task()?;
    Some(match catch(|| slot.wait(fd, &task, dir, seen, deadline)) {
        Err(errno) => Waited::Stopped(errno),
        Ok(Ok(())) => Waited::Ready,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => Waited::TimedOut,
        Ok(Err(_)) => Waited::Refused,
    })
}

/// Sleeps the running coroutine until `deadline`: true when it passed, false when
/// the coroutine was cancelled or unwound meanwhile; `None` when this is not a
/// coroutine that may suspend.
fn sleep_coroutine(deadline: Instant) -> Option<bool> {
    if std::thread::panicking() {
        return None;
    }
    match catch(|| crate::time::suspend_until(deadline, Why::new(WaitKind::Hooked), || false)) {
        Err(_) => Some(false),
        Ok(None) => None,
        Ok(Some(_)) => Some(true),
    }
}

/// Blocks the thread until `fd` is ready for `events` or `deadline` passes, with
/// libc's `poll`: the number of ready descriptors (0 on timeout), or -1 and errno.
fn poll_thread(fd: RawFd, events: libc::c_short, deadline: Option<Instant>) -> libc::c_int {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        let timeout = timeout_ms(deadline);
        let n = poll_sleep::real_poll(&mut pfd, 1, timeout);
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n == 0 && deadline.is_some_and(|d| Instant::now() < d) {
            continue;
        }
        return n;
    }
}

/// Milliseconds until `deadline` for `poll(2)`, rounded up; -1 for none.
fn timeout_ms(deadline: Option<Instant>) -> libc::c_int {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            libc::c_int::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
        }
    }
}

/// `deadline` after `timeout` from now (`None`: too far to count, as forever).
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("the `hooks` feature is for Linux with glibc, on x86_64 or aarch64");
