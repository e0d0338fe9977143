//! Unix signals, received blocking-style: a coroutine that waits for `SIGTERM`
//! suspends like one that waits for a socket, and its worker runs the others.
//!
//! ```no_run
//! use stackweave::signal::{self, SIGINT, SIGTERM};
//!
//! let rt = stackweave::Runtime::new()?;
//! rt.block_on(|| -> std::io::Result<()> {
//!     // ... start the server's coroutines ...
//!     let which = signal::wait(&[SIGINT, SIGTERM])?;
//!     eprintln!("signal {which}: stopping");
//!     Ok(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Invariant: nothing runs in the signal handler but what async-signal-safety
//! allows. The handler (signal-hook's) records the signal in a flag and writes a
//! byte to a socket pair without blocking; a [`Signals`] waits for that socket to
//! become readable, exactly as the net types wait, then drains it and takes the
//! recorded signals. A signal that arrives between the drain and the wait leaves a
//! byte behind, so it wakes the wait instead of being lost.
//!
//! Registering a signal here replaces its default action for the rest of the
//! process's life, even after every [`Signals`] for it is dropped (the rule of
//! signal-hook and of `tokio::signal`): after a server has waited for `SIGINT`, a
//! second Ctrl-C no longer kills it by itself. Exit from the code that received the
//! signal instead, or send `SIGKILL`.

use crate::io::source::Source;
use crate::rt::Direction;
use crate::sync::mpsc;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use libc::{
    SIGALRM, SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM, SIGTSTP, SIGUSR1,
    SIGUSR2, SIGWINCH,
};

/// Signals that cannot be received here: those the kernel does not let a process
/// catch (`SIGKILL`, `SIGSTOP`), the ones a program raises when it faults
/// (`SIGILL`, `SIGFPE`, `SIGSEGV`, `SIGBUS`: the runtime's stack-overflow detection
/// uses the last two).
const FORBIDDEN: [i32; 6] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGBUS,
];

/// A set of signals to receive, like signal-hook's iterator, with waits that
/// suspend only the calling coroutine (and block a plain thread as usual).
///
/// Each `Signals` receives every signal of its set that arrives while it exists;
/// several may wait for the same signal. A signal that arrives several times
/// before it is taken is reported once, as the kernel does.
///
/// # Examples
///
/// ```
/// use stackweave::signal::{Signals, SIGUSR1};
///
/// let mut signals = Signals::new([SIGUSR1])?;
/// // SAFETY: `raise` has no preconditions.
/// unsafe { libc::raise(SIGUSR1) };
/// assert_eq!(signals.wait()?, SIGUSR1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Signals {
    /// Readiness of the read end of the socket pair the handler writes to.
    source: Source<Arc<UnixStream>>,
    /// signal-hook's registration, owning both ends of the pair.
    delivery: SignalDelivery<Arc<UnixStream>, SignalOnly>,
    /// Signals taken from `delivery` and not returned yet.
    taken: VecDeque<i32>,
    signals: Vec<i32>,
}

impl Signals {
    /// Registers for `signals` (e.g. [`SIGINT`], [`SIGTERM`]).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a signal that cannot be caught or that the runtime
    /// needs (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`, `SIGBUS`) or is
    /// not a signal number; the socket pair's errors (e.g. out of file
    /// descriptors) as they are.
    pub fn new<I: IntoIterator<Item = i32>>(signals: I) -> io::Result<Signals> {
        let signals: Vec<i32> = signals.into_iter().collect();
        for &signal in &signals {
            check(signal)?;
        }
        let (read, write) = UnixStream::pair()?;
        let read = Arc::new(read);
        let source = Source::new(read.clone())?;
        write.set_nonblocking(true)?;
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, &signals)?;
        Ok(Signals {
            source,
            delivery,
            taken: VecDeque::new(),
            signals,
        })
    }

    /// The signals this set receives.
    pub fn signals(&self) -> &[i32] {
        &self.signals
    }

    /// Waits for the next signal of the set and returns its number. Inside a
    /// coroutine only the coroutine waits.
    ///
    /// # Errors
    ///
    /// Only what waiting for the socket pair can fail with (which it does not in
    /// practice); a coroutine being cancelled unwinds as at any blocking point.
    pub fn wait(&mut self) -> io::Result<i32> {
        match self.wait_until(None)? {
            Some(signal) => Ok(signal),
            None => unreachable!("no deadline, so no timeout"),
        }
    }

    /// As [`wait`](Signals::wait), giving up after `timeout`: `Ok(None)` if no
    /// signal came.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::signal::{Signals, SIGUSR2};
    ///
    /// let mut signals = Signals::new([SIGUSR2])?;
    /// assert_eq!(signals.wait_timeout(Duration::from_millis(10))?, None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<i32>> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// The next signal that has already arrived, without waiting.
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.taken.is_empty() {
            self.taken.extend(self.delivery.pending());
        }
        self.taken.pop_front()
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> io::Result<Option<i32>> {
        if let Some(signal) = self.try_wait() {
            return Ok(Some(signal));
        }
        let delivery = &mut self.delivery;
        let taken = &mut self.taken;
        let waited = self.source.do_io_until(Direction::Read, deadline, |_| {
            // Drains the socket, then takes what the handler recorded: a signal
            // that comes after this leaves a new byte, so the wait sees it.
            taken.extend(delivery.pending());
            if taken.is_empty() {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match waited {
            Ok(()) => Ok(self.taken.pop_front()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut && deadline.is_some() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Blocks until a signal in the set arrives, forever: a `for` loop over a
/// `Signals` handles every signal as it comes. Ends only if waiting fails.
impl Iterator for Signals {
    type Item = i32;

    fn next(&mut self) -> Option<i32> {
        self.wait().ok()
    }
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("signals", &self.signals)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

/// Waits for the first of `signals` to arrive and returns its number: the usual
/// last line of a server's main coroutine.
///
/// # Errors
///
/// As [`Signals::new`] and [`Signals::wait`].
///
/// # Examples
///
/// ```
/// use stackweave::signal::{self, SIGHUP, SIGWINCH};
///
/// let waiter = stackweave::spawn(|| signal::wait(&[SIGHUP, SIGWINCH]));
/// // Until the waiter has registered, a SIGWINCH is ignored (its default action).
/// while !waiter.is_finished() {
///     // SAFETY: `raise` has no preconditions.
///     unsafe { libc::raise(SIGWINCH) };
///     std::thread::sleep(std::time::Duration::from_millis(5));
/// }
/// assert_eq!(waiter.join().unwrap()?, SIGWINCH);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait(signals: &[i32]) -> io::Result<i32> {
    Signals::new(signals.iter().copied())?.wait()
}

/// The signals of the set as messages on a channel, for [`select!`](crate::select)
/// beside other channels: a thread of its own (`stackweave-signal`) waits and sends
/// each signal as it arrives. The thread ends at the first signal after the
/// receiver is dropped.
///
/// # Errors
///
/// As [`Signals::new`], or if the thread cannot be started.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackweave::select;
/// use stackweave::signal::{self, SIGCHLD};
/// use stackweave::sync::mpsc;
///
/// let signals = signal::channel(&[SIGCHLD])?;
/// let (_work_tx, work) = mpsc::channel::<u32>();
/// // SAFETY: `raise` has no preconditions.
/// unsafe { libc::raise(SIGCHLD) };
/// let got = select! {
///     recv(signals) -> signal => signal.ok(),
///     recv(work) -> _ => None,
///     default(Duration::from_secs(10)) => None,
/// };
/// assert_eq!(got, Some(SIGCHLD));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn channel(signals: &[i32]) -> io::Result<mpsc::Receiver<i32>> {
    let mut set = Signals::new(signals.iter().copied())?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("stackweave-signal".into())
        .spawn(move || {
            while let Ok(signal) = set.wait() {
                if tx.send(signal).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

pub(crate) fn check(signal: i32) -> io::Result<()> {
    if FORBIDDEN.contains(&signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "signal {signal} cannot be received with stackweave::signal: the kernel \
                 does not let it be caught, or a fault raises it (SIGSEGV and SIGBUS also \
                 detect stack overflows)"
            ),
        ));
    }
    let max = libc::SIGRTMAX();
    if signal < 1 || signal > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{signal} is not a signal number (1..={max})"),
        ));
    }
    Ok(())
}
