//! Graceful drain: [`Runtime::shutdown_timeout`] lets the work in flight finish, up
//! to a deadline, before the usual shutdown ends the rest.
//!
//! Invariant: once `Shared::draining` is set, no accept on one of the runtime's
//! listeners returns a new connection, and no spawn from outside the runtime
//! succeeds; the runtime's own coroutines go on (they are the work in flight, and
//! may spawn helpers for it). Every listener that accepted on the runtime's
//! coroutines has its readiness slot in `Shared::listeners` (added before its
//! accept first tries, at most once per slot); the drain sets the flag, then makes
//! each of those slots' readers look again, so an accept that was waiting tries
//! once more, sees the flag and returns the drain error. An accept that lists its
//! slot after the drain took the list has taken the same lock since, so it sees the
//! flag too. A slot whose listener has closed may stay listed (slots are reused):
//! the only cost is one spurious wake of whatever socket uses it at the drain.

use super::Runtime;
use crate::rt::reactor::scheduled_io::ScheduledIo;
use crate::rt::scheduler::{self, deadline};
use std::error::Error;
use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What [`Runtime::shutdown_timeout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Coroutines that finished by themselves during the drain (those in flight
    /// when it began, and any they spawned meanwhile).
    pub finished: u64,
    /// Coroutines still running at the deadline, unwound with
    /// [`Unwound`](crate::Unwound) (destructors run) as [`Runtime::shutdown`] does.
    pub cancelled: usize,
    /// How long the drain took, the final shutdown included.
    pub elapsed: Duration,
}

impl fmt::Display for Drained {
    /// `drained in 12.3ms (201 coroutines finished, 0 cancelled at the deadline)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drained in {:.1?} ({} coroutines finished, {} cancelled at the deadline)",
            self.elapsed, self.finished, self.cancelled
        )
    }
}

/// The runtime began to drain ([`Runtime::shutdown_timeout`]): the error of an
/// [`until_drain`] scope whose body was waiting, and, inside an [`io::Error`] of
/// kind [`Other`](io::ErrorKind::Other), of an accept on a draining runtime's
/// listener.
///
/// # Examples
///
/// ```
/// use stackweave::runtime::Draining;
///
/// let e = std::io::Error::from(Draining::default());
/// assert!(e.get_ref().is_some_and(|inner| inner.is::<Draining>()));
/// assert_eq!(e.kind(), std::io::ErrorKind::Other);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Draining;

impl fmt::Display for Draining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the runtime is draining (Runtime::shutdown_timeout)")
    }
}

impl Error for Draining {}

impl From<Draining> for io::Error {
    /// Kind [`Other`](io::ErrorKind::Other): not `Interrupted` or
    /// `ConnectionAborted`, which robust loops retry.
    fn from(e: Draining) -> io::Error {
        io::Error::other(e)
    }
}

/// Runs `body`, ending it if the runtime begins to drain while it waits: for the
/// idle part of a connection, such as a keep-alive HTTP connection waiting for its
/// next request, so that [`Runtime::shutdown_timeout`] closes it at once instead of
/// waiting for the deadline.
///
/// While `body` runs, every wait of this coroutine inside it (socket I/O, channels,
/// locks, sleeps, joins, [`yield_now`](crate::yield_now), hooked libc calls) that
/// would happen once the drain has begun unwinds back here instead, and
/// `until_drain` returns `Err(Draining)`: at the first wait if the drain began
/// before it, or when the drain begins if `body` is waiting then. Work that does not wait is never cut:
/// a read whose bytes are already there returns them. Destructors run on the way
/// out, as for cancellation (a `MutexGuard` dropped by it poisons its mutex), and
/// coroutines spawned by `body` are not covered. Nested inside a
/// [`time::deadline`](crate::time::deadline) scope or around one, each scope ends
/// by its own rule; nested drain scopes end together, at the outermost.
///
/// Costs one uncontended lock of the home worker's list at the start and the end,
/// and nothing on the waits of coroutines outside a scope.
///
/// # Panics
///
/// If called outside a coroutine (a plain thread has no drain to wait for).
///
/// # Examples
///
/// A keep-alive echo server whose idle connections end at the drain:
///
/// ```
/// use stackweave::net::TcpListener;
/// use stackweave::runtime::until_drain;
/// use std::io::{Read, Write};
/// use std::time::Duration;
///
/// let rt = stackweave::Runtime::builder().workers(2).build()?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// rt.spawn(move || {
///     for stream in listener.incoming() {
///         let Ok(mut stream) = stream else { continue };
///         stackweave::spawn(move || {
///             let mut buf = [0; 1024];
///             loop {
///                 // Idle between requests: a drain ends the wait for the next one.
///                 let n = match until_drain(|| stream.read(&mut buf)) {
///                     Ok(Ok(n)) if n > 0 => n,
///                     _ => return,
///                 };
///                 // Answering is work in flight: the drain waits for it.
///                 if stream.write_all(&buf[..n]).is_err() {
///                     return;
///                 }
///             }
///         });
///     }
/// });
/// // A client that gets one answer and keeps its connection open.
/// let mut client = std::net::TcpStream::connect(addr)?;
/// client.write_all(b"ping")?;
/// let mut answer = [0; 4];
/// client.read_exact(&mut answer)?;
///
/// let drained = rt.shutdown_timeout(Duration::from_secs(60))?;
/// // The accept loop and the idle connection both ended by themselves.
/// assert_eq!((drained.finished, drained.cancelled), (2, 0));
/// assert_eq!(client.read(&mut answer)?, 0, "closed by the server");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn until_drain<T>(body: impl FnOnce() -> T) -> Result<T, Draining> {
    let Some(entered) = deadline::enter_drain() else {
        crate::time::outside_coroutine("runtime::until_drain");
    };
    deadline::within(entered, body).map_err(|drained| {
        debug_assert!(drained, "a deadline ends deadline scopes only");
        Draining
    })
}

/// Whether `e` is the error an accept returns on a draining runtime: `incoming()`
/// ends on it.
pub(crate) fn is_drain_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Draining>())
}

/// Called by a listener's accept before each try, with the listener's readiness
/// slot: the drain error if this thread's runtime drains (module invariant); lists
/// the slot for the drain the first time. Nothing outside a runtime's workers.
pub(crate) fn accepting(slot: &'static ScheduledIo) -> io::Result<()> {
    scheduler::with_current_runtime(|shared| {
        if !slot.list_for_drain(shared) {
            let mut listeners = shared.listeners.lock().unwrap_or_else(|e| e.into_inner());
            if !listeners.iter().any(|&l| std::ptr::eq(l, slot)) {
                listeners.push(slot);
            }
        }
        if shared.draining.load(Ordering::Acquire) {
            Err(io::Error::other(Draining))
        } else {
            Ok(())
        }
    })
    .unwrap_or(Ok(()))
}

impl Runtime {
    /// Shuts the runtime down gracefully: the coroutines in flight get until
    /// `timeout` to finish, then the rest are unwound as by [`shutdown`].
    ///
    /// From the call on, the runtime's listeners accept no more connections: a
    /// waiting `accept` returns an error and `incoming()` ends, so an accept loop
    /// written as `for stream in listener.incoming()` returns by itself, and once it
    /// drops its listener, new connections are refused. Spawns from outside the
    /// runtime fail as they do after [`shutdown`]: [`Handle::try_spawn`] and
    /// `Builder::spawn` return the error (with a [`RuntimeShutdown`] payload), [`Runtime::spawn`] and
    /// [`Runtime::block_on`] panic with it; the runtime's own coroutines may still
    /// spawn, since they are the work in flight. Returns as soon as every coroutine has finished, or at the
    /// deadline, with what happened.
    ///
    /// A second signal during the drain (an impatient operator's second Ctrl-C) is
    /// the caller's to watch for: e.g. a thread waiting on a
    /// [`Signals`](crate::signal::Signals) that exits the process.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Deadlock`] if called from one of this runtime's own
    /// coroutines (it would wait for itself); the runtime is left as it was.
    ///
    /// [`shutdown`]: Runtime::shutdown
    /// [`Handle::try_spawn`]: super::Handle::try_spawn
    /// [`RuntimeShutdown`]: super::RuntimeShutdown
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = stackweave::Runtime::builder().workers(2).build()?;
    /// let listener = stackweave::net::TcpListener::bind("127.0.0.1:0")?;
    /// // An accept loop: it ends by itself once the drain begins (never before, so
    /// // it is counted in `finished` however late this thread gets to the drain).
    /// let server = rt.spawn(move || listener.incoming().count());
    /// let stuck = rt.spawn(|| loop {
    ///     stackweave::park();
    /// });
    /// let drained = rt.shutdown_timeout(Duration::from_millis(500))?;
    /// assert_eq!((drained.finished, drained.cancelled), (1, 1));
    /// assert_eq!(server.join().unwrap(), 0);
    /// assert!(stuck.join().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown_timeout(&self, timeout: Duration) -> io::Result<Drained> {
        let start = Instant::now();
        let shared = &self.handle.shared;
        if shared.is_own_worker() {
            return Err(io::Error::new(
                io::ErrorKind::Deadlock,
                "Runtime::shutdown_timeout called from one of the runtime's own coroutines \
                 (it would wait for itself)",
            ));
        }
        let completed_before = shared.metrics().completed;
        shared.draining.store(true, Ordering::SeqCst);
        let listeners = shared
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for slot in listeners {
            slot.interrupt_read();
        }
        deadline::wake_drain_scopes(shared);
        let deadline = start.checked_add(timeout);
        let mut pause = Duration::from_micros(100);
        loop {
            let live = shared.metrics().live_coroutines;
            let now = Instant::now();
            if live == 0 || deadline.is_some_and(|d| now >= d) {
                break;
            }
            // Polls the count: a drain lasts as long as its slowest request, and
            // nothing on the coroutines' paths pays for it.
            let left = deadline.map_or(pause, |d| d - now);
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        let metrics = shared.metrics();
        let cancelled = metrics.live_coroutines;
        self.shutdown_inner();
        Ok(Drained {
            finished: metrics.completed - completed_before,
            cancelled,
            elapsed: start.elapsed(),
        })
    }
}
