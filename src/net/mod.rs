//! Networking with the API of `std::net`: TCP and UDP sockets whose blocking calls
//! suspend only the calling coroutine.
//!
//! Port a thread-per-connection program by changing `use std::net::…` to
//! `use stackweave::net::…` and `std::thread::spawn` to `stackweave::spawn`. Every
//! call also works outside a coroutine, blocking the thread like std.
//!
//! How it works: sockets are always in non-blocking mode. A call tries its system
//! call first; on `WouldBlock` the coroutine registers interest with its worker's
//! reactor (`epoll`, through `mio`) and suspends until the socket is ready or its
//! timeout passes (`ErrorKind::TimedOut`). Writes use `MSG_NOSIGNAL`: a peer that
//! went away gives `BrokenPipe`/`ConnectionReset` errors, never `SIGPIPE`.
//!
//! Host names are resolved on a small internal thread pool (see
//! [`ToSocketAddrs`]), never on a worker.
//!
//! [`ListenOptions`] sets what `bind` cannot: the listen backlog and `SO_REUSEPORT`.
//!
//! Unix domain sockets are in [`crate::os::unix::net`].

mod addr;
mod listen;
mod per_worker;
pub(crate) mod sockopt;
pub(crate) mod tcp;
mod udp;

pub use addr::ToSocketAddrs;
pub use listen::{ListenOptions, DEFAULT_BACKLOG};
pub use per_worker::{serve_per_worker, PerWorker};
pub use std::net::{
    AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6,
};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
