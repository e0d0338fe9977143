//! Helpers for tests whose dangerous part (exhausting memory, overflowing a stack)
//! must run in a child process.
//!
//! The parent re-runs the current test executable with
//! `--exact <test> --nocapture --test-threads=1` and an environment variable naming
//! the test; the same test function, seeing that variable, does the dangerous part,
//! and the parent asserts on the child's exit status and output.

// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::fmt;
use std::io::Write;
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// The environment variable that tells a child process which test's dangerous part
/// to run.
const CHILD_ENV: &str = "STACKWEAVE_TEST_CHILD";

/// Whether this process is the child started by [`run_child`] for `test`.
///
/// In the child, core dumps are turned off: crashing is the point, and a dump would
/// only slow the test down.
pub fn is_child(test: &str) -> bool {
    let child = std::env::var_os(CHILD_ENV).is_some_and(|v| v == test);
    if child {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads a valid rlimit; lowering the core limit affects
        // only this child process.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    }
    child
}

/// What a child process did.
pub struct Child {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "child exited with {:?}\n--- child stdout ---\n{}\n--- child stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs the test named `test` (its full path inside this test crate) alone in a
/// child process and waits for it.
pub fn run_child(test: &str) -> Child {
    run_child_with_env(test, &[])
}

/// [`run_child`], with extra environment variables set in the child.
pub fn run_child_with_env(test: &str, vars: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("path of the current test executable");
    let out = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env("RUST_BACKTRACE", "0")
        .envs(vars.iter().copied())
        .output()
        .expect("failed to start the child test process");
    Child {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).expect("page size")
}

/// A field of /proc/self/status (VmRSS, VmSize, ...) in KiB.
pub fn proc_status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Aborts the whole test process, naming `what`, unless dropped within `limit`.
///
/// Tests of blocking behaviour (lost wakeups, starvation, shutdown) fail by hanging;
/// a watchdog turns a hang into a failure with a reason instead of a stuck CI job.
/// Abort, not panic: the hung coroutines would also keep the runtime's drop waiting.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn new(what: &str, limit: Duration) -> Watchdog {
        let (done, expired) = mpsc::channel::<()>();
        let what = what.to_owned();
        let thread = thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = expired.recv_timeout(limit) {
                // Straight to the process's stderr: the test harness would capture
                // `eprintln!` from this thread, and the abort would lose it.
                let message =
                    format!("watchdog: {what} did not finish within {limit:?}; aborting\n");
                let _ = std::io::stderr().write_all(message.as_bytes());
                std::process::abort();
            }
        });
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
