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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

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
/// Starts the test named `test` alone in a child process, as [`run_child_with_env`]
/// does, with its stdin, stdout and stderr piped, and returns without waiting:
/// for tests that talk to the child while it runs.
pub fn spawn_child_with_env(test: &str, vars: &[(&str, &str)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("path of the current test executable");
    Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env("RUST_BACKTRACE", "0")
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to start the child test process")
}

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

    /// Aborts the whole test process, naming `what`, if `progress` stays unchanged
    /// for `stall` before this is dropped.
    ///
    /// For the stress tests whose running time is the machine's: hundreds of
    /// thousands of hand-overs between threads take a second on an idle machine and
    /// a minute or more on a loaded one (each wake waits for a CPU), so a fixed limit
    /// either fails slow runs or waits long on a hang; a lost wakeup stops the count.
    pub fn on_progress(what: &str, progress: Arc<AtomicU64>, stall: Duration) -> Watchdog {
        let (done, stop) = mpsc::channel::<()>();
        let what = what.to_owned();
        let thread = thread::spawn(move || {
            let mut last = (progress.load(Ordering::Relaxed), Instant::now());
            while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(STALL_POLL) {
                let now = progress.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > stall {
                    let message = format!(
                        "watchdog: {what} made no progress (stuck at {now}) for {stall:?}; \
                         aborting\n"
                    );
                    let _ = std::io::stderr().write_all(message.as_bytes());
                    std::process::abort();
                }
            }
        });
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

/// How often [`Watchdog::on_progress`] looks at the count.
const STALL_POLL: Duration = Duration::from_millis(100);

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers for the networking and time tests.
// ---------------------------------------------------------------------------

/// A small deterministic pseudo-random generator (splitmix64): tests need varied
/// sizes and payloads, not cryptographic randomness, and must be reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }
}

/// FNV-1a, 64 bits: the checksum carried by test messages.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Builds a framed test message: `len: u32 LE`, payload, `fnv1a(payload): u64 LE`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 12);
    v.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    v.extend_from_slice(payload);
    v.extend_from_slice(&fnv1a(payload).to_le_bytes());
    v
}

/// Reads one frame written by [`frame`]; `Ok(None)` on a clean end of stream before
/// the frame starts. A bad length or checksum is `InvalidData`.
pub fn read_frame(r: &mut impl std::io::Read, max_len: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Error, ErrorKind};
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max_len {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut rest = vec![0; len + 8];
    r.read_exact(&mut rest)?;
    let sum = u64::from_le_bytes(rest[len..].try_into().unwrap());
    rest.truncate(len);
    if fnv1a(&rest) != sum {
        return Err(Error::new(ErrorKind::InvalidData, "checksum mismatch"));
    }
    Ok(Some(rest))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads a valid rlimit; raising the soft limit up to the
        // hard one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    lim.rlim_cur
}

/// Sets the soft and hard `RLIMIT_NOFILE` of this process to `n`.
pub fn set_nofile_limit(n: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit reads a valid rlimit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Sets `SO_LINGER` to {on, 0 s} so that closing `fd` sends a RST instead of a FIN.
pub fn set_linger_zero(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger`, valid for its size, on an fd we hold.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: a zeroed rusage is valid; getrusage writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The `p`-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty());
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Checks a timeout: `attempt` runs one blocking call that must fail with
/// `ErrorKind::TimedOut` after `timeout` and returns (the call's result, how long it
/// took). Every attempt must be `TimedOut` and never early; the upper bound
/// `timeout + slack` must hold for at least one of `tries` attempts, so that one
/// scheduling hiccup of a loaded CI machine does not fail the test while a timer
/// that is systematically late still does. Returns the elapsed times.
pub fn check_timeout_bounds<T: fmt::Debug>(
    what: &str,
    timeout: Duration,
    slack: Duration,
    tries: usize,
    mut attempt: impl FnMut() -> (std::io::Result<T>, Duration),
) -> Vec<Duration> {
    let mut seen = Vec::new();
    for _ in 0..tries {
        let (result, elapsed) = attempt();
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            other => panic!("{what}: expected TimedOut, got {other:?} after {elapsed:?}"),
        }
        assert!(
            elapsed >= timeout,
            "{what}: timed out early, after {elapsed:?} < {timeout:?}"
        );
        seen.push(elapsed);
        if elapsed <= timeout + slack {
            println!("{what}: TimedOut after {elapsed:?} (timeout {timeout:?})");
            return seen;
        }
    }
    panic!("{what}: every attempt timed out later than {timeout:?} + {slack:?}: {seen:?}");
}

/// Takes a mutex even if a test that held it panicked.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sleeps (1 ms at a time) until `cond` holds, failing the test after 60 s: for
/// waits on another thread's progress, bounded far past what a loaded CI machine
/// needs.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}
