//! Descriptor numbers' lives under the hooks: a close from another thread while a
//! coroutine waits, `dup2` over a registered number, a hooked call from a signal
//! handler, and 10,000 distinct numbers.

use crate::common::raise_nofile_limit;
use crate::support::{flags, serial, two_workers};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn an_fd_closed_while_a_coroutine_waits_on_it_ends_the_wait() {
    let _g = serial();
    let rt = two_workers();
    let (a, _b) = UnixStream::pair().unwrap();
    let fd = a.into_raw_fd();
    let (tx, rx) = mpsc::channel();
    rt.spawn(move || {
        let mut buf = [0u8; 4];
        // SAFETY: a valid buffer; the fd is closed by another thread meanwhile.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        tx.send((r, std::io::Error::last_os_error().raw_os_error()))
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: we own `fd` (taken with into_raw_fd); closed once, here.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    let (r, errno) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiter never woke");
    assert_eq!(r, -1);
    assert_eq!(errno, Some(libc::EBADF));
    // The number is free and works for a new socket.
    let (c, mut d) = UnixStream::pair().unwrap();
    let got = rt.block_on(move || {
        let mut c = c;
        let w = stackweave::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            d.write_all(b"ok").unwrap();
            d
        });
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).unwrap();
        drop(w.join().unwrap());
        buf
    });
    assert_eq!(&got, b"ok");
}

#[test]
fn dup2_over_a_registered_fd() {
    let _g = serial();
    let rt = two_workers();
    rt.block_on(|| {
        let (mut a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        // Make `a` wait once, so that it is registered with the reactor.
        let w = stackweave::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            a_peer.write_all(b"1").unwrap();
            a_peer
        });
        let mut buf = [0u8; 1];
        a.read_exact(&mut buf).unwrap();
        let _a_peer = w.join().unwrap();
        // SAFETY: both descriptors are open; `a`'s number now names `b`'s socket.
        let r = unsafe { libc::dup2(b.as_raw_fd(), a.as_raw_fd()) };
        assert_eq!(r, a.as_raw_fd());
        let w = stackweave::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b_peer.write_all(b"2").unwrap();
            b_peer
        });
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"2");
        drop(w.join().unwrap());
        // Still blocking to the user on both numbers.
        assert_eq!(flags(a.as_raw_fd()) & libc::O_NONBLOCK, 0);
        assert_eq!(flags(b.as_raw_fd()) & libc::O_NONBLOCK, 0);
    });
}

static SIGNAL_FD: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed) as i32;
    // SAFETY: write(2) from a signal handler, as async-signal-safe as libc's.
    unsafe { libc::write(fd, b"s".as_ptr().cast(), 1) };
}

#[test]
fn a_hooked_call_from_a_signal_handler_passes_through() {
    let _g = serial();
    let rt = two_workers();
    let mut fds = [0; 2];
    // SAFETY: a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    SIGNAL_FD.store(fds[1] as u64, Ordering::Relaxed);
    // SAFETY: installs a handler that only calls write(2).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    rt.block_on(|| {
        // The handler runs on this coroutine's stack, on its worker.
        // SAFETY: raising a signal whose handler is installed.
        unsafe { libc::raise(libc::SIGUSR1) };
    });
    let mut b = [0u8; 1];
    // SAFETY: a valid one-byte buffer.
    assert_eq!(unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) }, 1);
    assert_eq!(&b, b"s");
    // SAFETY: our pipe, closed once; the default action restored.
    unsafe {
        libc::signal(libc::SIGUSR1, libc::SIG_DFL);
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

#[test]
fn ten_thousand_distinct_fds() {
    let _g = serial();
    let limit = raise_nofile_limit();
    if limit < 10_300 {
        println!("skipped: RLIMIT_NOFILE hard limit is {limit}, below 10,300");
        return;
    }
    let rt = two_workers();
    let pairs: Vec<(UnixStream, UnixStream)> =
        (0..5000).map(|_| UnixStream::pair().unwrap()).collect();
    let start = Instant::now();
    let mut handles = Vec::new();
    for (mut a, mut b) in pairs {
        handles.push(rt.spawn(move || {
            let mut buf = [0u8; 1];
            a.read_exact(&mut buf).unwrap();
            a.write_all(&buf).unwrap();
        }));
        handles.push(rt.spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            b.write_all(b"z").unwrap();
            let mut buf = [0u8; 1];
            b.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"z");
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "10,000 fds, each waited on by a coroutine: {:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}
