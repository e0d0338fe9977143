//! [`UnixStream`], with the API of `std::os::unix::net::UnixStream`.

use super::SocketAddr;
use crate::io::source::Source;
use crate::rt::Direction;
use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net;
use std::path::Path;
use std::time::Duration;

/// The first pause before retrying a connect refused with `WouldBlock`.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(1);
/// The longest pause between two connect retries.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(50);

/// A Unix domain stream socket, like [`std::os::unix::net::UnixStream`].
///
/// Reads and writes suspend only the calling coroutine while the socket is not
/// ready (outside a coroutine they block the thread). `Read` and `Write` are also
/// implemented for `&UnixStream`, and [`try_clone`](UnixStream::try_clone) gives a
/// second handle, so one coroutine can read while another writes. Writes use
/// `MSG_NOSIGNAL`: writing to a stream whose peer is gone is an error
/// (`BrokenPipe`), never a `SIGPIPE`.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use stackweave::os::unix::net::UnixStream;
///
/// let (mut a, mut b) = UnixStream::pair()?;
/// let echo = stackweave::spawn(move || -> std::io::Result<()> {
///     let mut buf = [0; 5];
///     b.read_exact(&mut buf)?; // suspends this coroutine only
///     b.write_all(&buf)
/// });
/// a.write_all(b"hello")?;
/// let mut reply = [0; 5];
/// a.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"hello");
/// echo.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixStream {
    source: Source<net::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket file `path`, like
    /// [`std::os::unix::net::UnixStream::connect`].
    ///
    /// The worker is never blocked: the socket is created non-blocking and the
    /// calling coroutine waits while the connection is in progress. When the
    /// listener's backlog is full, Linux refuses a non-blocking connect with
    /// `EAGAIN` (where std's blocking connect would wait in the kernel); the connect
    /// is then retried after a sleep of 1 ms, doubling up to 50 ms, until the
    /// listener makes room (or refuses the connection).
    ///
    /// # Errors
    ///
    /// As std: `NotFound` when there is no such file, `ConnectionRefused` when
    /// nothing listens on it, `InvalidInput` for a path that is too long or contains
    /// a NUL byte.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::os::unix::net::{UnixListener, UnixStream};
    ///
    /// let path = std::env::temp_dir()
    ///     .join(format!("stackweave-doc-connect-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let listener = UnixListener::bind(&path)?;
    /// let stream = UnixStream::connect(&path)?;
    /// assert_eq!(stream.peer_addr()?.as_pathname(), Some(path.as_path()));
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        UnixStream::connect_addr(&SocketAddr::from_pathname(path)?)
    }

    /// Connects to `addr`, like [`std::os::unix::net::UnixStream::connect_addr`];
    /// otherwise as [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        let mut pause = CONNECT_RETRY_MIN;
        let stream = loop {
            // mio creates the socket non-blocking and starts the connect.
            match mio::net::UnixStream::connect_addr(addr) {
                Ok(stream) => break stream,
                // The backlog is full (Linux): no readiness event tells us when the
                // listener accepts, so poll with a growing pause.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    crate::time::sleep(pause);
                    pause = (pause * 2).min(CONNECT_RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        };
        // SAFETY: the descriptor comes from `into_raw_fd`, so we own it.
        let stream = unsafe { net::UnixStream::from_raw_fd(stream.into_raw_fd()) };
        let source = Source::new(stream)?;
        // Linux connects Unix streams at once; other systems may report
        // `EINPROGRESS`, and the socket becomes writable when the connect is done.
        loop {
            let seen = source.tick(Direction::Write);
            if let Some(e) = source.get_ref().take_error()? {
                return Err(e);
            }
            match source.get_ref().peer_addr() {
                Ok(_) => return Ok(UnixStream { source }),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                Err(e) => return Err(e),
            }
            source.wait_ready(Direction::Write, seen, None)?;
        }
    }

    /// An unnamed pair of connected sockets, like
    /// [`std::os::unix::net::UnixStream::pair`].
    ///
    /// # Errors
    ///
    /// As `socketpair(2)` (`EMFILE`, …).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = net::UnixStream::pair()?;
        Ok((UnixStream::from(a), UnixStream::from(b)))
    }

    /// A second handle to the same connection, with its own registration, so that
    /// one coroutine may read from one handle while another writes to the other,
    /// even on different workers. It starts with this handle's timeouts and mode;
    /// after that each handle keeps its own (unlike std, where timeouts are socket
    /// options shared by all handles).
    ///
    /// # Errors
    ///
    /// When the descriptor cannot be duplicated (`EMFILE`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use stackweave::os::unix::net::UnixStream;
    ///
    /// let (a, mut b) = UnixStream::pair()?;
    /// let mut writer = a.try_clone()?;
    /// let w = stackweave::spawn(move || writer.write_all(b"ping"));
    /// let mut buf = [0; 4];
    /// b.read_exact(&mut buf)?;
    /// w.join().unwrap()?;
    /// assert_eq!(&buf, b"ping");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        let io = self.source.get_ref().try_clone()?;
        Ok(UnixStream {
            source: self.source.clone_with(io)?,
        })
    }

    /// The local address (usually unnamed for a connecting socket).
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().local_addr()
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// As `getpeername(2)`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().peer_addr()
    }

    /// With `true`, reads and writes return `WouldBlock` instead of waiting (the
    /// descriptor itself is always non-blocking).
    ///
    /// # Errors
    ///
    /// None: the `Result` mirrors std.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.source.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Takes the pending `SO_ERROR`.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.source.get_ref().take_error()
    }

    /// Shuts down the read side, the write side or both, like
    /// [`std::os::unix::net::UnixStream::shutdown`]. After `Shutdown::Write` the peer
    /// reads end-of-file once it has read what was sent.
    ///
    /// # Errors
    ///
    /// As `shutdown(2)` (`NotConnected`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::net::Shutdown;
    /// use stackweave::os::unix::net::UnixStream;
    ///
    /// let (mut a, mut b) = UnixStream::pair()?;
    /// a.write_all(b"bye")?;
    /// a.shutdown(Shutdown::Write)?;
    /// let mut rest = Vec::new();
    /// b.read_to_end(&mut rest)?; // the data, then end-of-file
    /// assert_eq!(rest, b"bye");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.source.get_ref().shutdown(how)
    }
}

crate::net::tcp::stream_io_impls!(UnixStream);

crate::net::tcp::timeout_impls!(
    UnixStream,
    read: "read",
    write: "write may wait for buffer space",
    /// # Examples
    ///
    /// ```
    /// use std::io::{ErrorKind, Read};
    /// use std::time::Duration;
    /// use stackweave::os::unix::net::UnixStream;
    ///
    /// let (mut a, _b) = UnixStream::pair()?;
    /// a.set_read_timeout(Some(Duration::from_millis(10)))?;
    /// let err = a.read(&mut [0; 8]).unwrap_err(); // `_b` never writes
    /// assert_eq!(err.kind(), ErrorKind::TimedOut);
    /// assert!(a.set_read_timeout(Some(Duration::ZERO)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
);

impl From<OwnedFd> for UnixStream {
    /// Wraps a connected Unix stream socket, switching it to non-blocking mode.
    ///
    /// # Panics
    ///
    /// If `fcntl` cannot set `O_NONBLOCK` (only for an invalid descriptor).
    fn from(fd: OwnedFd) -> UnixStream {
        UnixStream::from(net::UnixStream::from(fd))
    }
}

crate::net::tcp::fd_impls!(UnixStream, net::UnixStream);
