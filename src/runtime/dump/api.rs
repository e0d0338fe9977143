//! The coroutine dump's entry points on the runtime's types (see the dump module).

use super::{take, Dump, DEFAULT_DUMP_TIMEOUT};
use crate::runtime::{Builder, Handle, Runtime};
use std::time::Duration;

impl Builder {
    /// Makes `signal` (e.g. [`SIGQUIT`](crate::signal::SIGQUIT)) print the
    /// runtime's [coroutine dump](Runtime::dump) to stderr, after which the program
    /// goes on, as Go and the JVM do on `SIGQUIT`; `None` turns it off. Off unless
    /// set, or unless the environment variable `STACKWEAVE_DUMP_SIGNAL` names a
    /// signal (`SIGQUIT`, `QUIT`, `USR1`, … or a number; `off`: off) when the
    /// builder is made, which lets a program that never asked for it be dumped:
    /// `STACKWEAVE_DUMP_SIGNAL=QUIT ./server`, then `kill -QUIT <pid>`.
    ///
    /// The signal handler only wakes a thread of the runtime, which takes the dump
    /// and prints it. As with [`signal::Signals`](crate::signal::Signals), the
    /// signal's default action is replaced for the rest of the process's life (a
    /// `SIGQUIT` no longer ends the process).
    ///
    /// # Errors
    ///
    /// [`build`](Builder::build) fails with `InvalidInput` for a signal that
    /// cannot be caught or that the runtime needs (`SIGKILL`, `SIGSEGV`, …).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::signal::SIGUSR2;
    ///
    /// let rt = stackweave::Runtime::builder()
    ///     .workers(1)
    ///     .dump_on_signal(Some(SIGUSR2))
    ///     .build()?;
    /// rt.spawn(|| stackweave::time::sleep(std::time::Duration::from_millis(50)));
    /// // SAFETY: `raise` has no preconditions.
    /// unsafe { libc::raise(SIGUSR2) }; // the dump goes to stderr
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn dump_on_signal(mut self, signal: Option<i32>) -> Builder {
        self.dump_signal = signal;
        self
    }
}

impl Runtime {
    /// A dump of every live coroutine of this runtime: what each waits for, since
    /// when, and the backtrace of its suspended stack; see [`Handle::dump`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackweave::Runtime::builder().workers(1).build()?;
    /// let dump = rt.dump();
    /// assert!(dump.coroutines().is_empty());
    /// eprintln!("{dump}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn dump(&self) -> Dump {
        self.handle.dump()
    }
}

impl Handle {
    /// A dump of every live coroutine of the runtime, like Go's goroutine dump:
    /// for each started coroutine its id, name, home worker, state (running,
    /// ready, waiting), what it waits for (a socket read or write with its peer, a
    /// timer, a channel, a lock, a `join`, …) and for how long, where it was
    /// spawned, and the symbolized backtrace of its suspended stack from the
    /// blocking call it made. Print it with `{}`.
    ///
    /// Each worker lists its own coroutines between two runs, and each suspended
    /// coroutine walks its own stack on its worker, before any of its code runs
    /// again (nothing is unwound from another thread, and no wake is lost or
    /// invented: see `docs/DECISIONS.md`). A worker that does not get to it within
    /// [`DEFAULT_DUMP_TIMEOUT`] — a coroutine runs on it without suspending — is
    /// reported busy, with the coroutine it runs; its other coroutines are only
    /// counted. Coroutines that have not started yet are counted, not listed.
    /// Callable from any thread or coroutine (it suspends only the caller).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::runtime::{CoroutineState, Handle, WaitingFor};
    ///
    /// let rt = stackweave::Runtime::builder().workers(1).build()?;
    /// let (tx, rx) = stackweave::sync::mpsc::channel::<()>();
    /// let h = rt.spawn(move || rx.recv());
    /// let handle: Handle = rt.handle();
    /// let dump = loop {
    ///     let dump = handle.dump();
    ///     if dump.coroutines().iter().any(|c| c.state() == CoroutineState::Waiting) {
    ///         break dump;
    ///     }
    ///     std::thread::yield_now();
    /// };
    /// assert_eq!(dump.coroutines()[0].waiting_for(), Some(WaitingFor::Channel));
    /// drop(tx);
    /// assert!(h.join().unwrap().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn dump(&self) -> Dump {
        self.dump_timeout(DEFAULT_DUMP_TIMEOUT)
    }

    /// [`dump`](Handle::dump), waiting at most `timeout` for each worker to begin
    /// (a worker that has begun is waited for until it is done).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = stackweave::Runtime::builder().workers(2).build()?;
    /// let dump = rt.handle().dump_timeout(Duration::from_secs(10));
    /// assert_eq!(dump.workers().len(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn dump_timeout(&self, timeout: Duration) -> Dump {
        take(&self.shared, timeout)
    }
}

/// A dump of every live coroutine of the current runtime (the calling coroutine's,
/// or the default one): [`Handle::current`]`().`[`dump`](Handle::dump)`()`.
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| stackweave::runtime::dump());
/// let dump = h.join().unwrap();
/// // The caller itself is listed, waiting for the dump.
/// assert!(!dump.coroutines().is_empty());
/// ```
pub fn dump() -> Dump {
    Handle::current().dump()
}
