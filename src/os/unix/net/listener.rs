//! [`UnixListener`], with the API of `std::os::unix::net::UnixListener`.

use super::{SocketAddr, UnixStream};
use crate::io::source::Source;
use crate::rt::Direction;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net;
use std::path::Path;

/// A Unix domain socket server, listening for connections, like
/// [`std::os::unix::net::UnixListener`].
///
/// [`accept`](UnixListener::accept) suspends only the calling coroutine until a
/// connection arrives (outside a coroutine it blocks the thread). As with std, the
/// socket file is not removed when the listener is dropped.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use stackweave::os::unix::net::{UnixListener, UnixStream};
///
/// let path = std::env::temp_dir()
///     .join(format!("stackweave-doc-listener-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let listener = UnixListener::bind(&path)?;
/// // An echo server, one coroutine per connection.
/// stackweave::spawn(move || {
///     for stream in listener.incoming() {
///         let Ok(mut stream) = stream else { continue };
///         stackweave::spawn(move || {
///             let mut buf = [0; 1024];
///             while let Ok(n @ 1..) = stream.read(&mut buf) {
///                 if stream.write_all(&buf[..n]).is_err() {
///                     return;
///                 }
///             }
///         });
///     }
/// });
/// let mut client = UnixStream::connect(&path)?;
/// client.write_all(b"ping")?;
/// let mut reply = [0; 4];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"ping");
/// std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixListener {
    source: Source<net::UnixListener>,
}

/// An iterator over the connections of a [`UnixListener`], from
/// [`UnixListener::incoming`]; it never returns `None`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl UnixListener {
    /// Creates a listener bound to the socket file `path`, like
    /// [`std::os::unix::net::UnixListener::bind`].
    ///
    /// # Errors
    ///
    /// As std: `AddrInUse` when the file exists (remove a stale one first),
    /// `InvalidInput` for a path that is too long or contains a NUL byte, permission
    /// errors from the file system.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::os::unix::net::UnixListener;
    ///
    /// let path = std::env::temp_dir()
    ///     .join(format!("stackweave-doc-bind-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let listener = UnixListener::bind(&path)?;
    /// assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        net::UnixListener::bind(path).map(UnixListener::from)
    }

    /// Creates a listener bound to `addr`, like
    /// [`std::os::unix::net::UnixListener::bind_addr`] (for example the address of
    /// another socket, or an abstract address on Linux).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        net::UnixListener::bind_addr(addr).map(UnixListener::from)
    }

    /// Waits for a connection and returns it with the peer's address (usually
    /// unnamed: clients rarely bind). A failure of the accept itself (for example
    /// `EMFILE`) comes back at once as an error; the listener stays usable.
    ///
    /// # Errors
    ///
    /// As std; `WouldBlock` in non-blocking mode when no connection is pending.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let slot = self.source.slot();
        let (stream, addr) = self.source.do_io(Direction::Read, |l| {
            crate::runtime::accepting(slot)?;
            l.accept()
        })?;
        Ok((UnixStream::from(stream), addr))
    }

    /// An endless iterator of accepted connections, like
    /// [`std::os::unix::net::UnixListener::incoming`].
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().local_addr()
    }

    /// A second handle to the same socket (its own registration: it may wait on
    /// another worker than this one), starting in this handle's mode.
    ///
    /// # Errors
    ///
    /// When the descriptor cannot be duplicated (`EMFILE`).
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        let io = self.source.get_ref().try_clone()?;
        Ok(UnixListener {
            source: self.source.clone_with(io)?,
        })
    }

    /// Takes the pending `SO_ERROR`.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.source.get_ref().take_error()
    }

    /// With `true`, [`accept`](Self::accept) returns `WouldBlock` instead of waiting
    /// (the descriptor itself is always non-blocking).
    ///
    /// # Errors
    ///
    /// None: the `Result` mirrors std.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.source.set_nonblocking(nonblocking);
        Ok(())
    }
}

impl<'a> Iterator for Incoming<'a> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        match self.listener.accept() {
            // The runtime drains: the iteration ends (see `Runtime::shutdown_timeout`).
            Err(e) if crate::runtime::is_drain_error(&e) => None,
            accepted => Some(accepted.map(|(s, _)| s)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Endless, except on a draining runtime.
        (0, None)
    }
}

impl<'a> IntoIterator for &'a UnixListener {
    type Item = io::Result<UnixStream>;
    type IntoIter = Incoming<'a>;

    fn into_iter(self) -> Incoming<'a> {
        self.incoming()
    }
}

impl From<OwnedFd> for UnixListener {
    /// Wraps a listening Unix socket, switching it to non-blocking mode.
    ///
    /// # Panics
    ///
    /// If `fcntl` cannot set `O_NONBLOCK` (only for an invalid descriptor).
    fn from(fd: OwnedFd) -> UnixListener {
        UnixListener::from(net::UnixListener::from(fd))
    }
}

crate::net::tcp::fd_impls!(UnixListener, net::UnixListener);
