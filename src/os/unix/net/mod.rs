//! Unix domain sockets with the API of `std::os::unix::net`: [`UnixListener`],
//! [`UnixStream`] and [`UnixDatagram`], whose blocking calls suspend only the
//! calling coroutine.
//!
//! Port a program by changing `use std::os::unix::net::…` to
//! `use stackweave::os::unix::net::…`. Every call also works outside a coroutine,
//! blocking the thread like std. [`SocketAddr`] is std's own type.
//!
//! How it works (as for [`crate::net`]): sockets are always in non-blocking mode; a
//! call tries its system call first and, on `WouldBlock`, waits for readiness on the
//! worker's reactor (or with `poll(2)` on a plain thread), up to its timeout
//! (`ErrorKind::TimedOut`). Stream writes use `MSG_NOSIGNAL`: writing to a stream
//! whose peer went away is a `BrokenPipe` (or `ConnectionReset`) error, never a
//! `SIGPIPE`.
//!
//! # Examples
//!
//! ```
//! use std::io::{Read, Write};
//! use stackweave::os::unix::net::{UnixListener, UnixStream};
//!
//! let path = std::env::temp_dir().join(format!("stackweave-doc-mod-{}.sock", std::process::id()));
//! let _ = std::fs::remove_file(&path);
//! let listener = UnixListener::bind(&path)?;
//! let server = stackweave::spawn(move || -> std::io::Result<()> {
//!     let (mut stream, _) = listener.accept()?;
//!     let mut buf = [0; 5];
//!     stream.read_exact(&mut buf)?;
//!     stream.write_all(&buf)
//! });
//! let mut client = UnixStream::connect(&path)?;
//! client.write_all(b"hello")?;
//! let mut reply = [0; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//! server.join().unwrap()?;
//! std::fs::remove_file(&path)?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod datagram;
mod listener;
mod stream;

pub use datagram::UnixDatagram;
pub use listener::{Incoming, UnixListener};
pub use std::os::unix::net::SocketAddr;
pub use stream::UnixStream;
