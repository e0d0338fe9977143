//! [`UnixDatagram`], with the API of `std::os::unix::net::UnixDatagram`.

use super::SocketAddr;
use crate::io::source::{self, Source};
use crate::rt::Direction;
use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net;
use std::path::Path;
use std::time::{Duration, Instant};

/// The first re-check of an unconnected send that found the receiver full.
const SEND_TO_RECHECK_MIN: Duration = Duration::from_millis(1);
/// The longest wait between two such re-checks.
const SEND_TO_RECHECK_MAX: Duration = Duration::from_millis(50);

/// A Unix domain datagram socket, like [`std::os::unix::net::UnixDatagram`]:
/// receives suspend only the calling coroutine until a datagram arrives, sends until
/// the receiver has room (outside a coroutine they block the thread).
///
/// # Examples
///
/// ```
/// use stackweave::os::unix::net::UnixDatagram;
///
/// let dir = std::env::temp_dir();
/// let id = std::process::id();
/// let server_path = dir.join(format!("stackweave-doc-dgram-s-{id}.sock"));
/// let client_path = dir.join(format!("stackweave-doc-dgram-c-{id}.sock"));
/// let _ = std::fs::remove_file(&server_path);
/// let _ = std::fs::remove_file(&client_path);
///
/// let server = UnixDatagram::bind(&server_path)?;
/// let echo = stackweave::spawn(move || -> std::io::Result<()> {
///     let mut buf = [0; 64];
///     let (n, from) = server.recv_from(&mut buf)?; // suspends this coroutine only
///     server.send_to(&buf[..n], from.as_pathname().unwrap())?;
///     Ok(())
/// });
/// let client = UnixDatagram::bind(&client_path)?;
/// client.connect(&server_path)?;
/// client.send(b"ping")?;
/// let mut buf = [0; 64];
/// let n = client.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"ping");
/// echo.join().unwrap()?;
/// std::fs::remove_file(&server_path)?;
/// std::fs::remove_file(&client_path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixDatagram {
    source: Source<net::UnixDatagram>,
}

impl UnixDatagram {
    /// Creates a socket bound to the file `path`, like
    /// [`std::os::unix::net::UnixDatagram::bind`].
    ///
    /// # Errors
    ///
    /// As std: `AddrInUse` when the file exists, `InvalidInput` for a path that is
    /// too long or contains a NUL byte.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        net::UnixDatagram::bind(path).map(UnixDatagram::from)
    }

    /// Creates a socket bound to `addr`, like
    /// [`std::os::unix::net::UnixDatagram::bind_addr`].
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixDatagram> {
        net::UnixDatagram::bind_addr(addr).map(UnixDatagram::from)
    }

    /// Creates a socket bound to no address. It can send to named sockets, but
    /// nothing can address a datagram to it unless it is [`connect`](Self::connect)ed
    /// to a peer that is connected back.
    ///
    /// # Errors
    ///
    /// As `socket(2)`.
    pub fn unbound() -> io::Result<UnixDatagram> {
        net::UnixDatagram::unbound().map(UnixDatagram::from)
    }

    /// An unnamed pair of connected sockets, like
    /// [`std::os::unix::net::UnixDatagram::pair`].
    ///
    /// # Errors
    ///
    /// As `socketpair(2)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::os::unix::net::UnixDatagram;
    ///
    /// let (a, b) = UnixDatagram::pair()?;
    /// let r = stackweave::spawn(move || {
    ///     let mut buf = [0; 16];
    ///     b.recv(&mut buf).map(|n| buf[..n].to_vec())
    /// });
    /// a.send(b"one datagram")?;
    /// assert_eq!(r.join().unwrap()?, b"one datagram");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from(a), UnixDatagram::from(b)))
    }

    /// Sets the peer for [`send`](Self::send) and [`recv`](Self::recv), and filters
    /// received datagrams to it. Does not wait.
    ///
    /// # Errors
    ///
    /// As std: `NotFound`, `ConnectionRefused`, `InvalidInput` for a bad path.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.source.get_ref().connect(path)
    }

    /// As [`connect`](Self::connect), to an address.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_addr(&self, addr: &SocketAddr) -> io::Result<()> {
        self.source.get_ref().connect_addr(addr)
    }

    /// A second handle to the same socket, with its own registration, starting with
    /// this handle's timeouts and mode (after that each handle keeps its own).
    ///
    /// # Errors
    ///
    /// When the descriptor cannot be duplicated (`EMFILE`).
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        let io = self.source.get_ref().try_clone()?;
        Ok(UnixDatagram {
            source: self.source.clone_with(io)?,
        })
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` when not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().peer_addr()
    }

    /// Waits for a datagram and returns its length and sender. A datagram longer
    /// than `buf` is truncated.
    ///
    /// Once the read side is shut down ([`shutdown`](Self::shutdown)) and the queue
    /// is empty, returns `Ok(0)` with an unnamed address at once, as std's blocking
    /// call does, also in non-blocking mode (where std says `WouldBlock`): the
    /// kernel answers a non-blocking receive with `EAGAIN` there, and waiting for
    /// readiness would never end.
    ///
    /// # Errors
    ///
    /// As std; `TimedOut` after the read timeout; `WouldBlock` in non-blocking mode.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let fd = self.source.get_ref().as_raw_fd();
        self.source
            .do_io(Direction::Read, |s| match s.recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && read_shut_down(fd) => {
                    // What std's blocking `recvfrom` returns: no data, no sender.
                    Ok((0, SocketAddr::from_pathname("")?))
                }
                result => result,
            })
    }

    /// Waits for a datagram and returns its length (truncated to `buf`); `Ok(0)`
    /// once the read side is shut down, as [`recv_from`](Self::recv_from).
    ///
    /// # Errors
    ///
    /// As [`recv_from`](Self::recv_from).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.source.get_ref().as_raw_fd();
        self.source.do_io(Direction::Read, |s| match s.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && read_shut_down(fd) => Ok(0),
            result => result,
        })
    }

    /// Sends a datagram to the socket file `path`, waiting while the receiver's
    /// queue is full.
    ///
    /// Linux signals no readiness to an unconnected sender when a receiver it does
    /// not own datagrams in makes room, so while it waits the send is also retried
    /// every 1 ms, doubling up to 50 ms.
    ///
    /// # Errors
    ///
    /// As std: `NotFound`, `ConnectionRefused`, `InvalidInput` for a bad path;
    /// `TimedOut` after the write timeout.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.send_unconnected(|s| s.send_to(buf, path))
    }

    /// As [`send_to`](Self::send_to), to an address.
    ///
    /// # Errors
    ///
    /// As [`send_to`](Self::send_to).
    pub fn send_to_addr(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
        self.send_unconnected(|s| s.send_to_addr(buf, addr))
    }

    /// Sends a datagram to the connected peer, waiting while its queue is full.
    ///
    /// # Errors
    ///
    /// As std: `NotConnected`, `ConnectionRefused` once the peer is gone, `BrokenPipe`
    /// after `shutdown(Write)` (never a `SIGPIPE`); `TimedOut` after the write timeout.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.source.get_ref().as_raw_fd();
        self.source
            .do_io(Direction::Write, |_| source::send(fd, buf, 0))
    }

    /// `do_io` for a send that may not be woken by readiness (see
    /// [`send_to`](Self::send_to)): waits in growing slices, up to the write timeout.
    fn send_unconnected(
        &self,
        mut op: impl FnMut(&net::UnixDatagram) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let deadline = self
            .source
            .timeout(Direction::Write)
            .and_then(|t| Instant::now().checked_add(t));
        let mut slice = SEND_TO_RECHECK_MIN;
        loop {
            let recheck = Instant::now().checked_add(slice);
            let until = match (deadline, recheck) {
                (Some(d), Some(r)) => Some(d.min(r)),
                (d, r) => d.or(r),
            };
            match self.source.do_io_until(Direction::Write, until, &mut op) {
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    slice = (slice * 2).min(SEND_TO_RECHECK_MAX);
                }
                result => return result,
            }
        }
    }

    /// With `true`, calls return `WouldBlock` instead of waiting.
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
    /// [`std::os::unix::net::UnixDatagram::shutdown`]: after `Shutdown::Read`,
    /// receives (including one already waiting, on any handle) return `Ok(0)` once
    /// the queue is empty; after `Shutdown::Write`, sends fail with `BrokenPipe`.
    ///
    /// # Errors
    ///
    /// As `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.source.get_ref().shutdown(how)
    }
}

/// Whether the read side of the socket `fd` is shut down. A non-blocking receive on
/// such a datagram socket fails with `EAGAIN` where std's blocking one returns 0
/// at once; `poll` reports `POLLRDHUP` for it (only for that, on a datagram socket).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_shut_down(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; a zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLRDHUP != 0
}

/// Elsewhere, no portable test: the receive waits as usual.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_shut_down(_fd: RawFd) -> bool {
    false
}

impl From<OwnedFd> for UnixDatagram {
    /// Wraps a Unix datagram socket, switching it to non-blocking mode.
    ///
    /// # Panics
    ///
    /// If `fcntl` cannot set `O_NONBLOCK` (only for an invalid descriptor).
    fn from(fd: OwnedFd) -> UnixDatagram {
        UnixDatagram::from(net::UnixDatagram::from(fd))
    }
}

crate::net::tcp::timeout_impls!(
    UnixDatagram,
    read: "receive",
    write: "send may wait for room",
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::os::unix::net::UnixDatagram;
    ///
    /// let socket = UnixDatagram::unbound()?;
    /// socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    /// let err = socket.recv_from(&mut [0; 8]).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
);

crate::net::tcp::fd_impls!(UnixDatagram, net::UnixDatagram);
