//! Reading a socket option, for the engine's own needs (the coroutine dump asks
//! whether a descriptor listens); the public socket options are `net::sockopt`'s,
//! built on these.
//!
//! Invariant: every function here takes a descriptor that the caller keeps open for
//! the duration of the call, and passes the kernel a pointer to a live value of
//! exactly the size it names.

use std::io;
use std::mem;
use std::os::fd::RawFd;

/// Reads the `int`-valued option `level`/`name` of `fd`.
pub(crate) fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live and len holds value's size (module invariant:
    // `fd` is open).
    check(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// A system call's `0`-or-`-1` result as an `io::Result` (errno on failure).
pub(crate) fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
