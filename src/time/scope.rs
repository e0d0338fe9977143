//! Deadline scopes: one deadline for every blocking call inside a block of code,
//! however deep, with nothing passed down.
//!
//! Invariant: while the body of [`deadline`] (or [`timeout`]) runs, every blocking
//! point of its coroutine that would wait after the deadline unwinds instead, back
//! to that scope, which returns [`Elapsed`]; nested scopes apply the earliest of
//! their deadlines, and a scope whose deadline is not the earliest passes the
//! unwind on to the one whose it is. The checks live in the scheduler
//! (`scheduler::deadline`); this module is the public face.

use crate::rt::deadline;
use std::error::Error;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// The error of a [`timeout`] or [`deadline`] scope whose deadline passed while its
/// body was waiting.
///
/// Converts into an [`io::Error`] of kind [`TimedOut`](io::ErrorKind::TimedOut), so
/// `?` works in functions that return `io::Result`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackweave::time::{self, Elapsed};
///
/// let h = stackweave::spawn(|| {
///     time::timeout(Duration::from_millis(10), || time::sleep(Duration::from_secs(60)))
/// });
/// let elapsed: Elapsed = h.join().unwrap().unwrap_err();
/// let err: std::io::Error = elapsed.into();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    deadline: Instant,
}

impl Elapsed {
    /// The deadline that passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let at = Instant::now() + Duration::from_millis(5);
    /// let h = stackweave::spawn(move || {
    ///     stackweave::time::deadline(at, || loop {
    ///         stackweave::park();
    ///     })
    /// });
    /// assert_eq!(h.join().unwrap().unwrap_err().deadline(), at);
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(e: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// Runs `body` with a deadline `duration` from now on every blocking call inside
/// it; see [`deadline`].
///
/// A `duration` too long for the clock to count means no deadline.
///
/// # Panics
///
/// When called outside a coroutine (see [`deadline`]), and whatever `body` panics
/// with.
///
/// # Examples
///
/// A request handler that gives the whole exchange one second, however many reads
/// and writes it takes:
///
/// ```
/// use std::io::{self, Read, Write};
/// use std::time::Duration;
/// use stackweave::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// // A client that connects and then says nothing for a second.
/// let _silent = stackweave::spawn(move || -> io::Result<()> {
///     let _stream = TcpStream::connect(addr)?;
///     stackweave::time::sleep(Duration::from_secs(1));
///     Ok(())
/// });
/// let server = stackweave::spawn(move || -> io::Result<Vec<u8>> {
///     let (mut stream, _) = listener.accept()?;
///     stackweave::time::timeout(Duration::from_millis(50), || {
///         let mut request = Vec::new();
///         stream.read_to_end(&mut request)?;
///         stream.write_all(b"done")?;
///         Ok(request)
///     })?
/// });
/// let err = server.join().unwrap().unwrap_err();
/// assert_eq!(err.kind(), io::ErrorKind::TimedOut);
/// # Ok::<(), io::Error>(())
/// ```
pub fn timeout<T>(duration: Duration, body: impl FnOnce() -> T) -> Result<T, Elapsed> {
    match Instant::now().checked_add(duration) {
        Some(at) => deadline(at, body),
        None => {
            if crate::rt::current_task().is_none() {
                outside_coroutine("time::timeout");
            }
            Ok(body())
        }
    }
}

/// Runs `body` with deadline `at` on every blocking call inside it, however deep:
/// socket I/O, connect and accept, channel sends and receives, `select!`, locks,
/// condition variables, semaphores, barriers, sleeps, joins, `park`, `yield_now`.
/// Returns `Ok` with what `body` returned, or [`Elapsed`] if the deadline passed
/// while it waited.
///
/// **How it ends the body:** a blocking call that would wait once the deadline has
/// passed (or is waiting when it passes) does not return: it unwinds, like
/// [`JoinHandle::cancel`](crate::JoinHandle::cancel), up to this scope, running
/// destructors on the way (so the body's sockets close, and its locks are released
/// — a `std` or `stackweave` `Mutex` guard dropped on the way is poisoned, as by
/// any unwind). Unwinding is what lets every blocking point honour the deadline,
/// including those with no error to return (`Mutex::lock`, `JoinHandle::join`,
/// `Receiver::recv`'s disconnection-only error), and it stops the body at its first
/// wait instead of trusting each caller to pass a timeout error up. The same
/// caution as for cancellation applies: a destructor that blocks while the body
/// unwinds aborts the process (a coroutine cannot be suspended mid-unwind).
///
/// * Work that never waits is not interrupted: a body that computes past the
///   deadline without blocking returns `Ok` (`yield_now` counts as a wait).
/// * Nested scopes apply the earliest deadline; the scope it belongs to returns
///   `Elapsed`, the inner ones unwind through. Per-call timeouts inside
///   (`set_read_timeout`, `recv_timeout`, …) still apply, whichever comes first.
/// * Coroutines that `body` spawns are not covered: they are not inside the call.
///   Give them their own scope.
/// * A scope whose deadline has already passed returns `Elapsed` at the body's
///   first wait.
/// * Nothing is lost when the deadline and the operation's completion meet: a call
///   that completed returns its result (bytes read, a message received), and the
///   deadline ends the body at its next wait; a message handed to a receive that
///   unwinds goes back to the channel, first in line.
/// * With the `hooks` feature, a hooked libc call (`std::net`, `std::thread::sleep`
///   inside the body) cannot unwind through libc's frame: it returns `ETIMEDOUT`
///   (an `io::Error` of kind `TimedOut`; a sleep ends early), and the body unwinds
///   at its next stackweave wait.
/// * [`park`](crate::park) may return when the deadline passes (a spurious wakeup,
///   as its contract allows); the next wait unwinds.
///
/// A check costs one load on each blocking call outside any scope, and a clock read
/// per wait inside one; each scope arms one timer on its coroutine's worker.
///
/// # Panics
///
/// When called outside a coroutine (on a thread that is not one of a runtime's
/// workers running a coroutine): there, blocking calls block the thread and cannot
/// be interrupted. Run the code in a coroutine instead, e.g. with
/// [`Runtime::block_on`](crate::Runtime::block_on). Also whatever `body` panics
/// with (the panic goes on unwinding once the scope has ended).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use stackweave::sync::mpsc;
/// use stackweave::time;
///
/// let (tx, rx) = mpsc::channel::<u32>();
/// let h = stackweave::spawn(move || {
///     let at = Instant::now() + Duration::from_millis(20);
///     // The scope covers the receive, however deep in the call it is.
///     time::deadline(at, || rx.recv())
/// });
/// assert!(h.join().unwrap().is_err(), "nothing was sent in time");
/// drop(tx);
/// ```
pub fn deadline<T>(at: Instant, body: impl FnOnce() -> T) -> Result<T, Elapsed> {
    let Some(entered) = deadline::enter(at) else {
        outside_coroutine("time::deadline");
    };
    deadline::within(entered, body).map_err(|drained| {
        debug_assert!(!drained, "a drain ends drain scopes only");
        Elapsed { deadline: at }
    })
}

/// The panic of a scope entered outside a coroutine.
#[cold]
pub(crate) fn outside_coroutine(what: &str) -> ! {
    panic!(
        "stackweave::{what} called outside a coroutine: blocking calls there \
         block the thread and cannot be interrupted (run it in a coroutine, e.g. with \
         Runtime::block_on)"
    )
}
