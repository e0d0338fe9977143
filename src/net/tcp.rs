//! TCP: [`TcpListener`] and [`TcpStream`], with the API of `std::net`.

use super::addr::{each_addr, ToSocketAddrs};
use crate::io::source::Source;
use crate::rt::Direction;
use std::fmt;
use std::io;
use std::net::{self, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A TCP socket server, listening for connections, like [`std::net::TcpListener`].
///
/// [`accept`](TcpListener::accept) suspends only the calling coroutine until a
/// connection arrives (outside a coroutine it blocks the thread).
///
/// # Examples
///
/// ```no_run
/// use std::io::{Read, Write};
/// use stackweave::net::TcpListener;
///
/// let listener = TcpListener::bind("127.0.0.1:7878")?;
/// for stream in listener.incoming() {
///     let mut stream = stream?;
///     stackweave::spawn(move || {
///         let mut buf = [0; 1024];
///         loop {
///             match stream.read(&mut buf) {
///                 Ok(0) | Err(_) => return,
///                 Ok(n) => {
///                     if stream.write_all(&buf[..n]).is_err() {
///                         return;
///                     }
///                 }
///             }
///         }
///     });
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpListener {
    source: Source<net::TcpListener>,
}

/// A TCP connection, like [`std::net::TcpStream`].
///
/// Reads and writes suspend only the calling coroutine while the socket is not
/// ready (outside a coroutine they block the thread). `Read` and `Write` are also
/// implemented for `&TcpStream`, and [`try_clone`](TcpStream::try_clone) gives a
/// second handle, so one coroutine can read while another writes.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use stackweave::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let server = stackweave::spawn(move || -> std::io::Result<()> {
///     let (mut stream, _) = listener.accept()?;
///     let mut buf = [0; 5];
///     stream.read_exact(&mut buf)?;
///     stream.write_all(&buf)
/// });
/// let mut client = TcpStream::connect(addr)?;
/// client.write_all(b"hello")?;
/// let mut reply = [0; 5];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"hello");
/// server.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpStream {
    source: Source<net::TcpStream>,
}

/// An iterator over the connections of a [`TcpListener`], from
/// [`TcpListener::incoming`]; it never returns `None`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

/// Wraps a std object whose descriptor we own, switching it to non-blocking mode.
pub(crate) fn wrap<T: AsFd>(io: T) -> Source<T> {
    Source::new(io).unwrap_or_else(|e| {
        panic!("stackweave: cannot make a socket non-blocking (fcntl failed: {e})")
    })
}

impl TcpListener {
    /// Creates a listener bound to `addr` (the first of its addresses that binds),
    /// like [`std::net::TcpListener::bind`]. Port 0 asks the OS for a free port.
    ///
    /// # Errors
    ///
    /// As std: the address is in use, not local, or does not resolve.
    ///
    /// # Examples
    ///
    /// ```
    /// let listener = stackweave::net::TcpListener::bind("127.0.0.1:0")?;
    /// assert_ne!(listener.local_addr()?.port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |a| net::TcpListener::bind(a)).map(TcpListener::from)
    }

    /// Waits for a connection and returns it with the peer's address. A failure of
    /// the accept itself (for example `EMFILE` when the process is out of file
    /// descriptors) comes back at once as an error; the listener stays usable.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let client = TcpStream::connect(listener.local_addr()?)?;
    /// let (server_side, peer) = listener.accept()?;
    /// assert_eq!(peer, client.local_addr()?);
    /// assert_eq!(server_side.peer_addr()?, peer);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let slot = self.source.slot();
        let (stream, addr) = self.source.do_io(Direction::Read, |l| {
            crate::runtime::accepting(slot)?;
            l.accept()
        })?;
        Ok((TcpStream::from(stream), addr))
    }

    /// An endless iterator of accepted connections, like
    /// [`std::net::TcpListener::incoming`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let _client = TcpStream::connect(listener.local_addr()?)?;
    /// let first = listener.incoming().next().unwrap()?;
    /// assert!(first.peer_addr().is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().local_addr()
    }

    /// A second handle to the same socket (its own registration: it may wait on
    /// another worker than this one).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        let io = self.source.get_ref().try_clone()?;
        Ok(TcpListener {
            source: self.source.clone_with(io)?,
        })
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.source.get_ref().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.source.get_ref().ttl()
    }

    /// Takes the pending `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.source.get_ref().take_error()
    }

    /// With `true`, [`accept`](Self::accept) returns `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.source.set_nonblocking(nonblocking);
        Ok(())
    }
}

impl<'a> Iterator for Incoming<'a> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        match self.listener.accept() {
            // The runtime drains: the iteration ends (see `Runtime::shutdown_timeout`).
            Err(e) if crate::runtime::is_drain_error(&e) => None,
            accepted => Some(accepted.map(|(s, _)| s)),
        }
    }
}

impl TcpStream {
    /// Opens a connection to `addr`, trying each of its addresses in turn, like
    /// [`std::net::TcpStream::connect`]; the calling coroutine waits while the
    /// handshake is in flight.
    ///
    /// # Errors
    ///
    /// As std: `ConnectionRefused`, unreachable networks, names that do not resolve
    /// (the last address's error when several fail).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let stream = TcpStream::connect(listener.local_addr()?)?;
    /// assert_eq!(stream.peer_addr()?, listener.local_addr()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |a| TcpStream::connect_until(a, None))
    }

    /// Opens a connection to `addr`, giving up with `ErrorKind::TimedOut` after
    /// `timeout`, like [`std::net::TcpStream::connect_timeout`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero timeout; otherwise as [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let s = TcpStream::connect_timeout(&listener.local_addr()?, Duration::from_secs(1))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_until(addr, Instant::now().checked_add(timeout))
    }

    fn connect_until(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        // mio creates the socket non-blocking and starts the handshake.
        let stream = mio::net::TcpStream::connect(*addr)?;
        // SAFETY: the descriptor comes from `into_raw_fd`, so we own it.
        let stream = unsafe { net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
        let source = Source::new(stream)?;
        loop {
            let seen = source.tick(Direction::Write);
            if let Some(e) = source.get_ref().take_error()? {
                return Err(e);
            }
            match source.get_ref().peer_addr() {
                Ok(_) => return Ok(TcpStream { source }),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                Err(e) => return Err(e),
            }
            source.wait_ready(Direction::Write, seen, deadline)?;
        }
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.source.get_ref().local_addr()
    }

    /// Shuts down the read side, the write side or both, like
    /// [`std::net::TcpStream::shutdown`]. After `Shutdown::Write` the peer reads
    /// end-of-file once it has read what was sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::Shutdown;
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let client = TcpStream::connect(listener.local_addr()?)?;
    /// let (mut server, _) = listener.accept()?;
    /// client.shutdown(Shutdown::Write)?;
    /// assert_eq!(server.read(&mut [0; 8])?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.source.get_ref().shutdown(how)
    }

    /// A second handle to the same connection, with its own registration, so
    /// that one coroutine may read from one handle while another writes to the
    /// other, even on different workers. It starts with this handle's timeouts; after
    /// that each handle keeps its own (unlike std, where they are socket options
    /// shared by all handles).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let client = TcpStream::connect(listener.local_addr()?)?;
    /// let (mut server, _) = listener.accept()?;
    /// let mut writer = client.try_clone()?;
    /// let w = stackweave::spawn(move || writer.write_all(b"ping"));
    /// let mut buf = [0; 4];
    /// server.read_exact(&mut buf)?;
    /// w.join().unwrap()?;
    /// assert_eq!(&buf, b"ping");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        let io = self.source.get_ref().try_clone()?;
        Ok(TcpStream {
            source: self.source.clone_with(io)?,
        })
    }

    /// Reads without removing the data from the socket's queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.source.do_io(Direction::Read, |s| s.peek(buf))
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.source.get_ref().set_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.source.get_ref().nodelay()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.source.get_ref().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.source.get_ref().ttl()
    }

    /// Takes the pending `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.source.get_ref().take_error()
    }

    /// With `true`, reads and writes return `WouldBlock` instead of waiting (the
    /// descriptor itself is always non-blocking).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.source.set_nonblocking(nonblocking);
        Ok(())
    }
}

/// `Read` and `Write` for a stream socket type and for shared references to it, over
/// its `source` field: reads through `Source::do_read`, writes with `MSG_NOSIGNAL`.
macro_rules! stream_io_impls {
    ($ours:ident) => {
        impl std::io::Read for &$ours {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.source
                    .do_read(buf.len(), |mut s| std::io::Read::read(&mut s, buf))
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.source
                    .do_read(len, |mut s| std::io::Read::read_vectored(&mut s, bufs))
            }
        }

        impl std::io::Write for &$ours {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                use std::os::fd::AsRawFd;
                let fd = self.source.get_ref().as_raw_fd();
                self.source.do_io($crate::rt::Direction::Write, |_| {
                    $crate::io::source::send(fd, buf, 0)
                })
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                use std::os::fd::AsRawFd;
                let fd = self.source.get_ref().as_raw_fd();
                self.source.do_io($crate::rt::Direction::Write, |_| {
                    $crate::io::source::send_vectored(fd, bufs)
                })
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Read for $ours {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl std::io::Write for $ours {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use stream_io_impls;

stream_io_impls!(TcpStream);

/// The read and write timeouts of a socket type, over its `source` field:
/// `set_read_timeout`, `set_write_timeout`, `read_timeout` and `write_timeout`, with
/// their docs. `read` names the read operation in the docs ("read" or "receive"),
/// `write` says what a write waits for ("write may wait for buffer space"); the doc
/// comments after them are the example of `set_read_timeout` (each type's own, so
/// that it compiles against that type).
macro_rules! timeout_impls {
    ($ours:ident, read: $read:literal, write: $write:literal, $(#[$example:meta])*) => {
        impl $ours {
            #[doc = concat!(
                "Sets how long a ", $read, " may wait before it fails with ",
                "`ErrorKind::TimedOut` (`None`: forever)."
            )]
            ///
            /// # Errors
            ///
            /// `InvalidInput` for a zero duration, as in std.
            ///
            $(#[$example])*
            pub fn set_read_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.source
                    .set_timeout($crate::rt::Direction::Read, timeout)
            }

            #[doc = concat!(
                "Sets how long a ", $write, " before it fails with ",
                "`ErrorKind::TimedOut` (`None`: forever)."
            )]
            ///
            /// # Errors
            ///
            /// `InvalidInput` for a zero duration, as in std.
            pub fn set_write_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.source
                    .set_timeout($crate::rt::Direction::Write, timeout)
            }

            /// The read timeout.
            ///
            /// # Errors
            ///
            /// None: the `Result` mirrors std.
            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.source.timeout($crate::rt::Direction::Read))
            }

            /// The write timeout.
            ///
            /// # Errors
            ///
            /// None: the `Result` mirrors std.
            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.source.timeout($crate::rt::Direction::Write))
            }
        }
    };
}
pub(crate) use timeout_impls;

timeout_impls!(
    TcpStream,
    read: "read",
    write: "write may wait for buffer space",
    /// # Examples
    ///
    /// ```
    /// use std::io::{ErrorKind, Read};
    /// use std::time::Duration;
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let mut client = TcpStream::connect(listener.local_addr()?)?;
    /// client.set_read_timeout(Some(Duration::from_millis(10)))?;
    /// let err = client.read(&mut [0; 8]).unwrap_err(); // the server never writes
    /// assert_eq!(err.kind(), ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
);

macro_rules! fd_impls {
    ($ours:ident, $std:ty) => {
        impl From<$std> for $ours {
            /// Wraps a std socket, switching it to non-blocking mode.
            ///
            /// # Panics
            ///
            /// If `fcntl` cannot set `O_NONBLOCK` (only for an invalid descriptor).
            fn from(io: $std) -> $ours {
                $ours {
                    source: $crate::net::tcp::wrap(io),
                }
            }
        }

        impl AsFd for $ours {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.source.get_ref().as_fd()
            }
        }

        impl AsRawFd for $ours {
            fn as_raw_fd(&self) -> RawFd {
                self.source.get_ref().as_raw_fd()
            }
        }

        impl IntoRawFd for $ours {
            /// The descriptor, still in non-blocking mode.
            fn into_raw_fd(self) -> RawFd {
                self.source.into_inner().into_raw_fd()
            }
        }

        impl From<$ours> for OwnedFd {
            /// The descriptor, still in non-blocking mode.
            fn from(io: $ours) -> OwnedFd {
                io.source.into_inner().into()
            }
        }

        impl FromRawFd for $ours {
            /// # Safety
            ///
            /// `fd` is an open socket of the right kind that the caller owns.
            unsafe fn from_raw_fd(fd: RawFd) -> $ours {
                // SAFETY: the caller's contract is std's.
                $ours::from(unsafe { <$std>::from_raw_fd(fd) })
            }
        }

        impl fmt::Debug for $ours {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.source.get_ref().fmt(f)
            }
        }
    };
}
pub(crate) use fd_impls;

fd_impls!(TcpListener, net::TcpListener);
fd_impls!(TcpStream, net::TcpStream);
