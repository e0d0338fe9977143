//! What the hook tests share: the lock that runs them one at a time, the runtime
//! they use, a heartbeat coroutine that measures how long its worker was held, and
//! the descriptor flags as the kernel and as the hooks report them.

use stackweave::Runtime;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn two_workers() -> Runtime {
    Runtime::builder().workers(2).build().expect("runtime")
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
