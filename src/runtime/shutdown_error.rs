//! The error of a spawn that a shutting-down runtime refused.

use std::error::Error;
use std::fmt;
use std::io;

/// The runtime is shutting down ([`Runtime::shutdown`](crate::Runtime::shutdown) or
/// a dropped [`Runtime`](crate::Runtime) began, or
/// [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout) drains it and the
/// spawn came from outside its coroutines): the payload of the [`io::Error`] of a
/// spawn it refused ([`Builder::spawn`](crate::Builder::spawn),
/// [`Handle::try_spawn`](crate::runtime::Handle::try_spawn),
/// [`serve_per_worker`](crate::net::serve_per_worker)).
///
/// The error's kind is [`Other`](io::ErrorKind::Other) (std has no kind for this
/// one, and `Other` is not one that retry loops retry, see `docs/DECISIONS.md`); tell
/// it from other errors by downcasting its payload, as below. The spawning functions
/// that panic instead ([`spawn`](crate::spawn), [`Runtime::spawn`](crate::Runtime::spawn),
/// [`Handle::spawn`](crate::runtime::Handle::spawn)) panic with it in the message.
///
/// # Examples
///
/// ```
/// use stackweave::runtime::RuntimeShutdown;
///
/// let rt = stackweave::Runtime::builder().workers(1).build()?;
/// let handle = rt.handle();
/// rt.shutdown();
/// let e = handle.try_spawn(stackweave::Builder::new(), || ()).unwrap_err();
/// assert_eq!(e.kind(), std::io::ErrorKind::Other);
/// let payload = e.get_ref().and_then(|e| e.downcast_ref::<RuntimeShutdown>());
/// assert_eq!(payload, Some(&RuntimeShutdown::default()));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeShutdown;

impl fmt::Display for RuntimeShutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the runtime is shutting down")
    }
}

impl Error for RuntimeShutdown {}

impl From<RuntimeShutdown> for io::Error {
    /// Kind [`Other`](io::ErrorKind::Other), with the `RuntimeShutdown` as its
    /// payload.
    fn from(e: RuntimeShutdown) -> io::Error {
        io::Error::other(e)
    }
}
