//! What the hook tests share: the lock that runs them one at a time, the runtimes
//! they use, a heartbeat coroutine that measures how long its worker was held, the
//! socket pairs and pipes they wait on, and the descriptor flags as the kernel and
//! as the hooks report them.

use stackweave::{JoinHandle, Runtime};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn two_workers() -> Runtime {
    Runtime::builder().workers(2).build().expect("runtime")
}

/// A runtime of one worker: a coroutine that held it would hold everyone.
pub fn one_worker() -> Runtime {
    Runtime::builder().workers(1).build().expect("runtime")
}

/// A connected pair of `std::net` TCP streams on the loopback: the connecting end
/// and the accepted one. Called in a coroutine, both go through the hooks.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    (s, peer)
}

/// A pipe: its read end and its write end.
pub fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

/// Closes both ends of a [`pipe`].
pub fn close_pipe((r, w): (i32, i32)) {
    // SAFETY: the pipe's ends, closed once (the caller's pipe, no longer used).
    unsafe {
        libc::close(r);
        libc::close(w);
    }
}

/// Writes one byte to `fd` with libc's `write`.
pub fn write_byte(fd: i32, byte: u8) {
    // SAFETY: one byte from a valid buffer.
    assert_eq!(unsafe { libc::write(fd, [byte].as_ptr().cast(), 1) }, 1);
}

/// A coroutine (on the caller's runtime) that writes `bytes` to `w` after `delay`
/// and hands `w` back, so that it stays open until joined.
pub fn write_later<W: Write + Send + 'static>(
    mut w: W,
    delay: Duration,
    bytes: &'static [u8],
) -> JoinHandle<W> {
    stackweave::spawn(move || {
        std::thread::sleep(delay);
        w.write_all(bytes).unwrap();
        w
    })
}

/// A coroutine on `rt` that writes `byte` to the pipe end `fd` after `delay` (a
/// hooked `std::thread::sleep`, so its worker is not held meanwhile).
pub fn write_byte_later(rt: &Runtime, fd: i32, delay: Duration, byte: u8) -> JoinHandle<()> {
    rt.spawn(move || {
        std::thread::sleep(delay);
        write_byte(fd, byte);
    })
}

/// Waits (up to 30 s) until `count` coroutines said they are about to wait, then
/// 50 ms more for them to get into the wait.
pub fn until_waiting(count: &AtomicUsize, n: usize) {
    let start = Instant::now();
    while count.load(Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "coroutines stalled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
}

/// A coroutine that ticks every 10 ms until stopped and reports its longest gap.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    handle: stackweave::JoinHandle<Duration>,
}

impl Heartbeat {
    pub fn start(rt: &Runtime) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = rt.spawn(move || {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            while !s.load(Ordering::Relaxed) {
                stackweave::time::sleep(Duration::from_millis(10));
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
            }
            longest
        });
        Heartbeat { stop, handle }
    }

    pub fn longest_gap(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }

    /// Stops the heartbeat and asserts that its worker was never held for 1 s;
    /// returns the longest gap.
    pub fn assert_kept_ticking(self) -> Duration {
        let gap = self.longest_gap();
        assert!(gap < Duration::from_secs(1), "heartbeat gap {gap:?}");
        gap
    }
}

/// The flags the kernel has for `fd` (not the hook's answer).
pub fn kernel_flags(fd: i32) -> i32 {
    // SAFETY: a raw fcntl(F_GETFL); no pointers.
    unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) as i32 }
}

/// `fcntl(F_GETFL)` through the hook.
pub fn flags(fd: i32) -> i32 {
    // SAFETY: fcntl(F_GETFL); no pointers.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}
