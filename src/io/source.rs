//! A non-blocking file descriptor made blocking-style: the retry loop that every
//! socket type of this crate goes through.
//!
//! Invariant: the descriptor is always in non-blocking mode. Every operation tries
//! its system call first and waits only on `WouldBlock`: inside a coroutine on the
//! reactor (suspending only that coroutine, see `reactor::scheduled_io` for why no
//! edge is lost), on a thread with `poll(2)`. A source is deregistered from its
//! worker's `Poll` before its descriptor is closed. A coroutine that unwinds never
//! waits: an operation that would fails instead (see `unwinding`).

use crate::rt;
use crate::rt::Direction;
use crate::rt::ScheduledIo;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An I/O object `T` with its registration slot and its timeouts.
pub(crate) struct Source<T: AsFd> {
    io: ManuallyDrop<T>,
    slot: &'static ScheduledIo,
    /// Read and write timeouts in nanoseconds; 0 is none.
    timeouts: [AtomicU64; 2],
    /// `set_nonblocking(true)`: `WouldBlock` goes back to the caller.
    nonblocking: AtomicBool,
    /// After a short stream read: `DRAINED | tick`, the read tick seen before that
    /// read (see [`Source::do_read`]); 0 otherwise.
    drained: AtomicU64,
}

/// Marks `Source::drained` as set.
const DRAINED: u64 = 1 << 32;

impl<T: AsFd> Source<T> {
    /// Wraps `io`, switching its descriptor to non-blocking mode.
    pub(crate) fn new(io: T) -> io::Result<Source<T>> {
        set_nonblocking(io.as_fd().as_raw_fd())?;
        Ok(Source {
            io: ManuallyDrop::new(io),
            slot: ScheduledIo::allocate(),
            timeouts: [AtomicU64::new(0), AtomicU64::new(0)],
            nonblocking: AtomicBool::new(false),
            drained: AtomicU64::new(0),
        })
    }

    /// The readiness slot (for a listener's drain, see `runtime::drain`).
    pub(crate) fn slot(&self) -> &'static ScheduledIo {
        self.slot
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Deregisters and returns the I/O object (still in non-blocking mode).
    pub(crate) fn into_inner(self) -> T {
        let mut this = ManuallyDrop::new(self);
        this.slot.release(this.io.as_fd().as_raw_fd());
        // SAFETY: `this` is never used or dropped again, so `io` is taken once.
        unsafe { ManuallyDrop::take(&mut this.io) }
    }

    /// Runs `op` until it does not fail with `WouldBlock`, waiting for `dir`
    /// readiness in between, up to the `dir` timeout (`ErrorKind::TimedOut`).
    pub(crate) fn do_io<R>(
        &self,
        dir: Direction,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        self.do_io_until(dir, None, op)
    }

    /// A stream read into `len` bytes of buffers. Like [`do_io`](Self::do_io), with
    /// one difference: a read that returned fewer bytes than asked for emptied the
    /// socket's queue, so the next read waits for new readiness first (if none came
    /// in between) instead of failing once with `WouldBlock`: one system call less
    /// per request in a request/response loop (`strace` of the echo server: 0.69
    /// failed `recvfrom` per request before this). Only for stream sockets, where a
    /// short read means the queue was empty. Not once the read side is closed: the
    /// end-of-file may have come with the data the short read returned, and no new
    /// edge will follow it.
    pub(crate) fn do_read(
        &self,
        len: usize,
        mut op: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut deadline = None;
        let drained = self.drained.swap(0, Ordering::Relaxed);
        if drained != 0 && len > 0 && !self.nonblocking.load(Ordering::Relaxed) {
            let seen = drained as u32;
            if self.slot.tick(Direction::Read) == seen
                && !self.slot.is_read_closed()
                && !std::thread::panicking()
            {
                deadline = self
                    .timeout(Direction::Read)
                    .and_then(|t| Instant::now().checked_add(t));
                self.wait_ready(Direction::Read, seen, deadline)?;
            }
        }
        let mut seen = 0;
        let result = self.do_io_until(Direction::Read, deadline, |io| {
            seen = self.slot.tick(Direction::Read);
            op(io)
        });
        if let Ok(n) = result {
            if n > 0 && n < len {
                self.drained
                    .store(DRAINED | u64::from(seen), Ordering::Relaxed);
            }
        }
        result
    }

    /// As [`do_io`](Self::do_io), with an explicit deadline (the `dir` timeout is
    /// then not used).
    pub(crate) fn do_io_until<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut deadline = deadline;
        let mut task = None;
        loop {
            let seen = self.slot.tick(dir);
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return result,
            }
            if self.nonblocking.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if deadline.is_none() {
                if let Some(timeout) = self.timeout(dir) {
                    deadline = Instant::now().checked_add(timeout);
                }
            }
            if task.is_none() {
                task = Some(rt::current_task());
            }
            match task.as_ref().expect("set above") {
                Some(_) if std::thread::panicking() => return Err(unwinding()),
                Some(task) => {
                    self.slot
                        .wait(self.io.as_fd().as_raw_fd(), task, dir, seen, deadline)?
                }
                None => rt::block_thread_on(self.io.as_fd().as_raw_fd(), dir, deadline)?,
            }
        }
    }

    /// Waits until the descriptor is ready for `dir` (or `deadline`), without doing
    /// any I/O. `seen` is the tick read before the system call that would block.
    pub(crate) fn wait_ready(
        &self,
        dir: Direction,
        seen: u32,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        match rt::current_task() {
            Some(_) if std::thread::panicking() => Err(unwinding()),
            Some(task) => self
                .slot
                .wait(self.io.as_fd().as_raw_fd(), &task, dir, seen, deadline),
            None => rt::block_thread_on(self.io.as_fd().as_raw_fd(), dir, deadline),
        }
    }

    /// The current readiness tick of `dir` (see [`wait_ready`](Self::wait_ready)).
    pub(crate) fn tick(&self, dir: Direction) -> u32 {
        self.slot.tick(dir)
    }

    /// The timeout of `dir`.
    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        match self.timeouts[dir as usize].load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// Sets the timeout of `dir`; a zero duration is `InvalidInput`, as in std.
    pub(crate) fn set_timeout(&self, dir: Direction, timeout: Option<Duration>) -> io::Result<()> {
        let nanos = match timeout {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        };
        self.timeouts[dir as usize].store(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// `set_nonblocking`: whether calls return `WouldBlock` instead of waiting.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
    }

    /// A new source over `io` (a duplicate of this one's descriptor) with the same
    /// timeouts and mode.
    pub(crate) fn clone_with(&self, io: T) -> io::Result<Source<T>> {
        let source = Source::new(io)?;
        for dir in [Direction::Read, Direction::Write] {
            source.timeouts[dir as usize].store(
                self.timeouts[dir as usize].load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        source.set_nonblocking(self.nonblocking.load(Ordering::Relaxed));
        Ok(source)
    }
}

impl<T: AsFd> Drop for Source<T> {
    fn drop(&mut self) {
        self.slot.release(self.io.as_fd().as_raw_fd());
        // SAFETY: dropped once, here; `io` is not used again.
        unsafe { ManuallyDrop::drop(&mut self.io) };
    }
}

impl<T: AsFd + std::fmt::Debug> std::fmt::Debug for Source<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.io.fmt(f)
    }
}

/// The error of an operation that would have to wait while its coroutine unwinds
/// (in a destructor during a panic or a runtime shutdown): a coroutine cannot be
/// suspended mid-unwind (std's panic state belongs to the OS thread), and blocking
/// the worker thread could hang it, so the operation fails instead. A `BufWriter`
/// dropped during a panic loses what the socket could not take at once, no more.
fn unwinding() -> io::Error {
    io::Error::other(
        "stackweave: cannot wait for I/O while the coroutine is unwinding \
         (a destructor running during a panic or a runtime shutdown)",
    )
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; no pointers involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `send(2)` with `MSG_NOSIGNAL`: a write to a closed stream socket is `EPIPE`, never
/// `SIGPIPE`.
pub(crate) fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendmsg(2)` of several buffers with `MSG_NOSIGNAL`.
pub(crate) fn send_vectored(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix (std guarantees it).
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len().min(libc::c_int::MAX as usize) as _;
    // SAFETY: msg points at `bufs`, valid for the call; sendmsg only reads them.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
