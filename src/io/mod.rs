//! Blocking-style I/O on any pollable file descriptor.
//!
//! [`Pollable`] is what the socket types of [`crate::net`] are built on, offered for
//! any other non-blocking descriptor: a pipe, an eventfd, a socket made by a
//! third-party crate.

pub(crate) mod source;

use crate::rt::Direction;
use source::Source;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// Wraps a file descriptor that supports non-blocking mode and readiness polling
/// (`epoll`) so that it can be used blocking-style: an operation that would block
/// suspends only the calling coroutine until the descriptor is ready (outside a
/// coroutine, blocks the thread with `poll(2)`).
///
/// [`new`](Pollable::new) switches the descriptor to non-blocking mode. Operations go
/// through [`read_with`](Pollable::read_with) / [`write_with`](Pollable::write_with)
/// (and their `_mut` forms): the closure does the non-blocking system call and is
/// called again each time the descriptor becomes ready, until it returns something
/// other than `ErrorKind::WouldBlock`. `Read` and `Write` are implemented on top of
/// them when `T` implements them.
///
/// Regular files are not pollable (`epoll` refuses them): use a thread for those.
///
/// # Examples
///
/// A socket pair from std, made coroutine-friendly:
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use stackweave::io::Pollable;
///
/// let (a, b) = UnixStream::pair()?;
/// let (mut a, mut b) = (Pollable::new(a)?, Pollable::new(b)?);
/// let reader = stackweave::spawn(move || {
///     let mut buf = [0; 5];
///     b.read_exact(&mut buf).map(|_| buf) // suspends until the writer writes
/// });
/// a.write_all(b"hello")?;
/// assert_eq!(&reader.join().unwrap()?, b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A raw system call through the closure: a coroutine waits on an eventfd that a
/// thread signals.
///
/// ```
/// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
/// use std::sync::Arc;
/// use stackweave::io::Pollable;
///
/// // SAFETY: eventfd returns a new descriptor, which we own from here on.
/// let efd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_CLOEXEC)) };
/// let efd = Arc::new(Pollable::new(efd)?);
/// let waiter = efd.clone();
/// let h = stackweave::spawn(move || {
///     waiter.read_with(|fd| {
///         let mut v = 0u64;
///         // SAFETY: reads at most 8 bytes into `v`.
///         let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
///         if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(v) }
///     })
/// });
/// let one = 1u64;
/// // SAFETY: writes 8 bytes from `one`.
/// unsafe { libc::write(efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
/// assert_eq!(h.join().unwrap()?, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Pollable<T: AsFd> {
    source: Source<T>,
}

impl<T: AsFd> Pollable<T> {
    /// Wraps `io`, switching its descriptor to non-blocking mode.
    ///
    /// # Errors
    ///
    /// When `fcntl` cannot set `O_NONBLOCK`.
    pub fn new(io: T) -> io::Result<Pollable<T>> {
        Ok(Pollable {
            source: Source::new(io)?,
        })
    }

    /// The wrapped object.
    pub fn get_ref(&self) -> &T {
        self.source.get_ref()
    }

    /// The wrapped object, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        self.source.get_mut()
    }

    /// Unwraps the object (its descriptor stays in non-blocking mode).
    pub fn into_inner(self) -> T {
        self.source.into_inner()
    }

    /// Calls `op` until it returns anything but `WouldBlock`, waiting for the
    /// descriptor to become readable in between (up to the read timeout:
    /// `ErrorKind::TimedOut`).
    ///
    /// # Errors
    ///
    /// Whatever `op` returns; `TimedOut`; a failure to register with the reactor.
    pub fn read_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.source.do_io(Direction::Read, op)
    }

    /// As [`read_with`](Self::read_with), with mutable access to the object.
    ///
    /// # Errors
    ///
    /// As [`read_with`](Self::read_with).
    pub fn read_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        let source = &mut self.source;
        let (ptr, source) = (source.get_mut() as *mut T, &*source);
        // SAFETY: `do_io` hands the closure a shared reference it ignores here; the
        // only access to the object during the call is through `ptr`, derived from
        // our exclusive borrow of `self`.
        source.do_io(Direction::Read, |_| op(unsafe { &mut *ptr }))
    }

    /// Calls `op` until it returns anything but `WouldBlock`, waiting for the
    /// descriptor to become writable in between (up to the write timeout).
    ///
    /// # Errors
    ///
    /// As [`read_with`](Self::read_with).
    pub fn write_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.source.do_io(Direction::Write, op)
    }

    /// As [`write_with`](Self::write_with), with mutable access to the object.
    ///
    /// # Errors
    ///
    /// As [`read_with`](Self::read_with).
    pub fn write_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        let source = &mut self.source;
        let (ptr, source) = (source.get_mut() as *mut T, &*source);
        // SAFETY: as in `read_with_mut`.
        source.do_io(Direction::Write, |_| op(unsafe { &mut *ptr }))
    }

    /// Sets how long a read may wait (`None`: forever); zero is `InvalidInput`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.source.set_timeout(Direction::Read, timeout)
    }

    /// Sets how long a write may wait (`None`: forever); zero is `InvalidInput`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.source.set_timeout(Direction::Write, timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.source.timeout(Direction::Read)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.source.timeout(Direction::Write)
    }
}

impl<T: AsFd + Read> Read for Pollable<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with_mut(|io| io.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_with_mut(|io| io.read_vectored(bufs))
    }
}

impl<T: AsFd + Write> Write for Pollable<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with_mut(|io| io.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_with_mut(|io| io.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_with_mut(|io| io.flush())
    }
}

impl<'a, T: AsFd> Read for &'a Pollable<T>
where
    &'a T: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let this: &'a Pollable<T> = self;
        this.read_with(|_| this.get_ref().read(buf))
    }
}

impl<'a, T: AsFd> Write for &'a Pollable<T>
where
    &'a T: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let this: &'a Pollable<T> = self;
        this.write_with(|_| this.get_ref().write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        let this: &'a Pollable<T> = self;
        this.write_with(|_| this.get_ref().flush())
    }
}

impl<T: AsFd> AsFd for Pollable<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.source.get_ref().as_fd()
    }
}

impl<T: AsFd> AsRawFd for Pollable<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.source.get_ref().as_fd().as_raw_fd()
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for Pollable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pollable")
            .field("io", self.source.get_ref())
            .finish()
    }
}
