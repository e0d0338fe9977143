//! [`ListenOptions`]: the socket options std's `TcpListener::bind` does not expose,
//! set before the socket listens.
//!
//! Invariant: every option is applied between `socket(2)` and `listen(2)`, so the
//! listener never accepts a connection with options other than the ones asked for;
//! any failing step closes the socket and returns its `io::Error`.

use super::addr::{each_addr, ToSocketAddrs};
use super::sockopt;
use super::tcp::TcpListener;
use std::io;
use std::mem;
use std::net::{self, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The listen backlog [`ListenOptions`] uses unless told otherwise. std uses 128,
/// which overflows (and drops connections) under an accept storm; the kernel still
/// caps it at `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Options for a [`TcpListener`] that must be set before it listens: the listen
/// backlog, `SO_REUSEADDR` and `SO_REUSEPORT`.
///
/// `TcpListener::bind(addr)` is `ListenOptions::new().backlog(128).bind(addr)`.
/// With [`reuse_port`](ListenOptions::reuse_port), several listeners (say one per
/// worker) can bind the same address and the kernel spreads new connections over
/// them.
///
/// # Examples
///
/// ```
/// use stackweave::net::{ListenOptions, TcpStream};
///
/// let first = ListenOptions::new().reuse_port(true).bind("127.0.0.1:0")?;
/// let addr = first.local_addr()?;
/// // A second listener on the same port: allowed because both asked for it.
/// let second = ListenOptions::new().reuse_port(true).backlog(4096).bind(addr)?;
/// assert_eq!(second.local_addr()?, addr);
/// let _client = TcpStream::connect(addr)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOptions {
    backlog: u32,
    reuse_address: bool,
    reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions::new()
    }
}

impl ListenOptions {
    /// Backlog [`DEFAULT_BACKLOG`], `SO_REUSEADDR` on (as std sets it on Unix),
    /// `SO_REUSEPORT` off.
    ///
    /// # Examples
    ///
    /// ```
    /// let listener = stackweave::net::ListenOptions::new().bind("127.0.0.1:0")?;
    /// assert_ne!(listener.local_addr()?.port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub const fn new() -> ListenOptions {
        ListenOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_address: true,
            reuse_port: false,
        }
    }

    /// How many connections the kernel queues before they are accepted (capped by
    /// the kernel at `net.core.somaxconn`; values past `i32::MAX` are `i32::MAX`).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = stackweave::net::ListenOptions::new().backlog(4096);
    /// let _listener = options.bind("127.0.0.1:0")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub const fn backlog(mut self, backlog: u32) -> ListenOptions {
        self.backlog = backlog;
        self
    }

    /// `SO_REUSEADDR`: bind even while connections of an earlier listener on the
    /// port linger in `TIME_WAIT` (on by default, as with std).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = stackweave::net::ListenOptions::new().reuse_address(false);
    /// let _listener = options.bind("127.0.0.1:0")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub const fn reuse_address(mut self, on: bool) -> ListenOptions {
        self.reuse_address = on;
        self
    }

    /// `SO_REUSEPORT`: let several sockets that all set it bind the same address;
    /// the kernel load-balances new connections across them (off by default).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::ListenOptions;
    ///
    /// let a = ListenOptions::new().reuse_port(true).bind("127.0.0.1:0")?;
    /// let b = ListenOptions::new().reuse_port(true).bind(a.local_addr()?)?;
    /// assert_eq!(a.local_addr()?, b.local_addr()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub const fn reuse_port(mut self, on: bool) -> ListenOptions {
        self.reuse_port = on;
        self
    }

    /// Creates a listener on `addr` (the first of its addresses that binds) with
    /// these options.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`]: `AddrInUse` when the address is taken (by a socket
    /// without `SO_REUSEPORT`, or when this one does not set it),
    /// `AddrNotAvailable` when it is not local, and resolution errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use stackweave::net::ListenOptions;
    ///
    /// let taken = ListenOptions::new().bind("127.0.0.1:0")?;
    /// let again = ListenOptions::new().bind(taken.local_addr()?);
    /// assert_eq!(again.unwrap_err().kind(), ErrorKind::AddrInUse);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind<A: ToSocketAddrs>(&self, addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |a| self.listen_on(*a)).map(TcpListener::from)
    }

    fn listen_on(&self, addr: SocketAddr) -> io::Result<net::TcpListener> {
        let domain = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        // SAFETY: socket(2) takes no pointers; the result is checked below.
        let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns; `OwnedFd` closes it on
        // every early return.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if self.reuse_address {
            sockopt::set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        }
        if self.reuse_port {
            sockopt::set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        let (storage, len) = socket_address(addr);
        // SAFETY: `storage` holds a valid sockaddr of `len` bytes for `addr`'s family.
        sockopt::check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&storage as *const libc::sockaddr_storage).cast(),
                len,
            )
        })?;
        let backlog = i32::try_from(self.backlog).unwrap_or(i32::MAX);
        // SAFETY: listen(2) takes no pointers; `fd` is a bound socket we own.
        sockopt::check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
        Ok(net::TcpListener::from(fd))
    }
}

/// `addr` as a C socket address and its length.
fn socket_address(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage` (plain integers).
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in`.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in6`.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
