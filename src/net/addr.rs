//! Turning what users write as an address into socket addresses, without blocking a
//! worker on DNS.

use std::io;
use std::iter::Cloned;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::{option, slice, vec};

/// Values that name one or more socket addresses, like [`std::net::ToSocketAddrs`]
/// and implemented for the same types (`"host:port"` strings, `(host, port)` pairs,
/// IP addresses and socket addresses, slices of them).
///
/// The difference from std: a host name that needs resolving is looked up on a small
/// internal thread pool while only the calling coroutine waits, so a slow DNS server
/// never blocks a worker. Strings that are already IP addresses are parsed at once.
///
/// # Examples
///
/// ```
/// use stackweave::net::ToSocketAddrs;
///
/// let addrs: Vec<_> = ("127.0.0.1", 8080).to_socket_addrs()?.collect();
/// assert_eq!(addrs, ["127.0.0.1:8080".parse().unwrap()]);
/// let local = stackweave::spawn(|| "localhost:80".to_socket_addrs().map(|a| a.count()));
/// assert!(local.join().unwrap()? >= 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait ToSocketAddrs {
    /// The addresses a value names.
    type Iter: Iterator<Item = SocketAddr>;

    /// The socket addresses this value names, resolving host names off the worker.
    ///
    /// # Errors
    ///
    /// When a string is not `host:port` or the host does not resolve.
    fn to_socket_addrs(&self) -> io::Result<Self::Iter>;
}

macro_rules! already_resolved {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {
            type Iter = option::IntoIter<SocketAddr>;
            fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
                Ok(Some(SocketAddr::from(*self)).into_iter())
            }
        }
    )*};
}

already_resolved!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

/// Resolves `host` on the blocking pool (or on this thread outside a coroutine).
fn resolve(host: String) -> io::Result<vec::IntoIter<SocketAddr>> {
    crate::spawn_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&host).map(|a| a.collect::<Vec<_>>())
    })
    .map(Vec::into_iter)
}

impl ToSocketAddrs for str {
    type Iter = vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(vec![addr].into_iter());
        }
        resolve(self.to_owned())
    }
}

impl ToSocketAddrs for String {
    type Iter = vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        self.as_str().to_socket_addrs()
    }
}

impl ToSocketAddrs for (&str, u16) {
    type Iter = vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        let (host, port) = *self;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)].into_iter());
        }
        let host = host.to_owned();
        crate::spawn_blocking(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .map(|a| a.collect::<Vec<_>>())
        })
        .map(Vec::into_iter)
    }
}

impl ToSocketAddrs for (String, u16) {
    type Iter = vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        (self.0.as_str(), self.1).to_socket_addrs()
    }
}

impl<'a> ToSocketAddrs for &'a [SocketAddr] {
    type Iter = Cloned<slice::Iter<'a, SocketAddr>>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        Ok(self.iter().cloned())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {
    type Iter = T::Iter;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        (**self).to_socket_addrs()
    }
}

/// Calls `f` with each address `addr` names until one succeeds, like std: the last
/// error if all fail.
pub(crate) fn each_addr<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match f(&addr) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}
