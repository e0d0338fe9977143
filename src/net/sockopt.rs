//! Socket options that `std::net` does not set (or sets only on nightly): TCP
//! keepalive and `SO_LINGER`, read and written with `getsockopt`/`setsockopt` on
//! the socket's descriptor.
//!
//! Invariant: every function here takes a descriptor that the caller keeps open for
//! the duration of the call, and passes the kernel a pointer to a live value of
//! exactly the size it names; nothing here changes the socket's blocking mode.

use super::tcp::TcpStream;
pub(crate) use crate::rt::sockopt::{check, get_int};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// The options of this module on a stream (the rest of its methods are in
/// `tcp.rs`).
impl TcpStream {
    /// Turns TCP keepalive on, with the first probe after the connection has been
    /// idle for `idle` (`SO_KEEPALIVE` and `TCP_KEEPIDLE`, whole seconds, rounded
    /// up), or off with `None`. The kernel's probe interval and count apply; a
    /// peer that stops answering them makes blocked calls fail with `TimedOut`.
    /// Not in `std` (the `socket2` crate has it).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero `idle`; the system call's error otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let stream = TcpStream::connect(listener.local_addr()?)?;
    /// stream.set_keepalive(Some(Duration::from_secs(60)))?;
    /// assert_eq!(stream.keepalive()?, Some(Duration::from_secs(60)));
    /// stream.set_keepalive(None)?;
    /// assert_eq!(stream.keepalive()?, None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        set_keepalive(self.as_raw_fd(), idle)
    }

    /// The keepalive idle time if TCP keepalive is on (see
    /// [`set_keepalive`](TcpStream::set_keepalive)).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let stream = TcpStream::connect(listener.local_addr()?)?;
    /// assert_eq!(stream.keepalive()?, None); // off unless asked for
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn keepalive(&self) -> io::Result<Option<Duration>> {
        keepalive(self.as_raw_fd())
    }

    /// Sets `SO_LINGER`, like the (nightly) `std` method of the same name.
    ///
    /// `Some(Duration::ZERO)` makes dropping the stream abort the connection: the
    /// peer gets a reset (`ConnectionReset`) instead of an orderly end of stream,
    /// and the socket skips `TIME_WAIT`. A non-zero time makes the kernel's
    /// `close` wait up to that long for unsent data, blocking the worker's thread
    /// (every coroutine homed there) meanwhile: prefer `shutdown(Write)` and a read
    /// to the end of stream for a graceful close. `None` (the default) closes in
    /// the background.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{ErrorKind, Read};
    /// use std::time::Duration;
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let mut client = TcpStream::connect(listener.local_addr()?)?;
    /// let (server_side, _) = listener.accept()?;
    /// server_side.set_linger(Some(Duration::ZERO))?;
    /// drop(server_side); // aborts the connection
    /// let err = client.read(&mut [0; 1]).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        set_linger(self.as_raw_fd(), linger)
    }

    /// `SO_LINGER`'s time if it is on (see [`set_linger`](TcpStream::set_linger)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let stream = TcpStream::connect(listener.local_addr()?)?;
    /// assert_eq!(stream.linger()?, None);
    /// stream.set_linger(Some(Duration::ZERO))?;
    /// assert_eq!(stream.linger()?, Some(Duration::ZERO));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        linger(self.as_raw_fd())
    }
}

/// Sets the `int`-valued option `level`/`name` of `fd`.
pub(crate) fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the value points at a live c_int and its size is passed (module
    // invariant: `fd` is open).
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// Whole seconds for a keepalive or linger time: at least 1 unless zero, at most
/// what a C `int` holds.
fn whole_seconds(d: Duration) -> libc::c_int {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(libc::c_int::MAX as u64) as libc::c_int
}

/// `SO_KEEPALIVE` on, with the first probe after `idle` (`TCP_KEEPIDLE`), or off.
pub(crate) fn set_keepalive(fd: RawFd, idle: Option<Duration>) -> io::Result<()> {
    match idle {
        None => set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0),
        Some(idle) if idle.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a keepalive idle time of zero is not valid (use None to turn keepalive off)",
        )),
        Some(idle) => {
            set_int(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPIDLE,
                whole_seconds(idle),
            )?;
            set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
        }
    }
}

/// The keepalive idle time if `SO_KEEPALIVE` is on.
pub(crate) fn keepalive(fd: RawFd) -> io::Result<Option<Duration>> {
    if get_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? == 0 {
        return Ok(None);
    }
    let idle = get_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?;
    Ok(Some(Duration::from_secs(idle.max(0) as u64)))
}

/// `SO_LINGER`: on with `linger` (whole seconds, rounded up), or off.
pub(crate) fn set_linger(fd: RawFd, linger: Option<Duration>) -> io::Result<()> {
    let value = libc::linger {
        l_onoff: libc::c_int::from(linger.is_some()),
        l_linger: linger.map_or(0, whole_seconds),
    };
    // SAFETY: the value points at a live linger and its size is passed (module
    // invariant: `fd` is open).
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&value as *const libc::linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
}

/// `SO_LINGER`'s time if it is on.
pub(crate) fn linger(fd: RawFd) -> io::Result<Option<Duration>> {
    let mut value = libc::linger {
        l_onoff: 0,
        l_linger: 0,
    };
    let mut len = mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: value and len are live and len holds value's size (module invariant:
    // `fd` is open).
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&mut value as *mut libc::linger).cast(),
            &mut len,
        )
    })?;
    Ok((value.l_onoff != 0).then(|| Duration::from_secs(value.l_linger.max(0) as u64)))
}
