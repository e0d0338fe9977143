//! Dump on a signal (`Builder::dump_on_signal`, `STACKWEAVE_DUMP_SIGNAL`): the
//! signal prints the runtime's coroutine dump to stderr and the program goes on,
//! as Go and the JVM do on `SIGQUIT`.
//!
//! Invariant: nothing runs in the signal handler but signal-hook's, which records
//! the signal and writes a byte to a pipe (async-signal-safe). A thread of the
//! runtime's own waits on that pipe and does the work: it takes the dump as any
//! caller would (so a busy worker cannot hang it past the dump's timeout) and
//! writes it in one call to stderr. The thread holds the runtime only weakly
//! between signals, and the runtime stops it before its workers.

use super::{take, DEFAULT_DUMP_TIMEOUT};
use crate::rt::scheduler::Shared;
use signal_hook::iterator::{Handle, Signals};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

/// The environment variable that turns the dump on a signal on for every runtime
/// built without [`Builder::dump_on_signal`](crate::runtime::Builder::dump_on_signal):
/// a signal's name (`SIGQUIT`, `QUIT`, `USR1`, ...) or number; `0`, `off` or empty:
/// off.
pub(crate) const ENV: &str = "STACKWEAVE_DUMP_SIGNAL";

/// The signal `STACKWEAVE_DUMP_SIGNAL` names, if it is set to one.
pub(crate) fn from_env() -> Option<i32> {
    let value = std::env::var(ENV).ok()?;
    let value = value.trim();
    if value.is_empty() || value == "0" || value.eq_ignore_ascii_case("off") {
        return None;
    }
    if let Ok(n) = value.parse::<i32>() {
        return Some(n);
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let signal = match name {
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "TERM" => libc::SIGTERM,
        "WINCH" => libc::SIGWINCH,
        "PWR" => return pwr(),
        _ => {
            eprintln!("stackweave: {ENV}={value} names no signal this runtime knows; ignored");
            return None;
        }
    };
    Some(signal)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn pwr() -> Option<i32> {
    Some(libc::SIGPWR)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn pwr() -> Option<i32> {
    None
}

/// The thread that prints a dump on each signal.
pub(crate) struct SignalDumper {
    signals: Handle,
    thread: thread::JoinHandle<()>,
}

impl SignalDumper {
    /// Registers for `signal` and starts the thread.
    pub(crate) fn start(shared: &Arc<Shared>, signal: i32) -> io::Result<SignalDumper> {
        crate::signal::check(signal)?;
        let mut signals = Signals::new([signal])?;
        let handle = signals.handle();
        let weak = Arc::downgrade(shared);
        let thread = thread::Builder::new()
            .name("stackweave-dump".into())
            .spawn(move || {
                for _ in signals.forever() {
                    let Some(shared) = weak.upgrade() else { break };
                    if shared.shutdown.load(Ordering::Acquire) {
                        break;
                    }
                    let dump = take(&shared, DEFAULT_DUMP_TIMEOUT);
                    drop(shared);
                    let text = format!("{dump}\n");
                    let _ = io::stderr().lock().write_all(text.as_bytes());
                }
            })?;
        Ok(SignalDumper {
            signals: handle,
            thread,
        })
    }

    /// Unregisters and joins the thread (after the dump it may be printing).
    pub(crate) fn stop(self) {
        self.signals.close();
        let _ = self.thread.join();
    }
}
