//! The `select` hook: the sets, the count, the timeout (null, zero, the time left
//! written back), `nfds = 0` as a sleep, descriptors the reactor cannot take
//! (pipes, regular files), `EBADF`, and a thousand coroutines selecting at once.

use crate::support::{
    close_pipe, one_worker, pipe, serial, tcp_pair, two_workers, until_waiting, write_byte_later,
    write_later, Heartbeat,
};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An `fd_set` holding `fds`.
fn set_of(fds: &[i32]) -> libc::fd_set {
    // SAFETY: an all-zero fd_set is an empty one; FD_SET on numbers below
    // FD_SETSIZE (asserted) stays inside it.
    unsafe {
        let mut set: libc::fd_set = std::mem::zeroed();
        for &fd in fds {
            assert!((0..libc::FD_SETSIZE as i32).contains(&fd), "fd {fd}");
            libc::FD_SET(fd, &mut set);
        }
        set
    }
}

fn is_set(set: &libc::fd_set, fd: i32) -> bool {
    // SAFETY: a valid set; fd below FD_SETSIZE.
    unsafe { libc::FD_ISSET(fd, set) }
}

fn tv(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

fn micros(tv: &libc::timeval) -> libc::time_t {
    tv.tv_sec * 1_000_000 + tv.tv_usec
}

/// `select` for reading on `fd` with `timeout` (`None`: null); its result, the
/// read set afterwards and errno.
fn select_read(fd: i32, timeout: Option<&mut libc::timeval>) -> (i32, libc::fd_set, Option<i32>) {
    let mut r = set_of(&[fd]);
    let t = timeout.map_or(std::ptr::null_mut(), |t| t as *mut _);
    // SAFETY: a valid set for fd + 1 bits; a null or valid timeout.
    let n = unsafe {
        libc::select(
            fd + 1,
            &mut r,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            t,
        )
    };
    (n, r, std::io::Error::last_os_error().raw_os_error())
}

#[test]
fn a_thousand_coroutines_select_on_one_socket_while_a_heartbeat_ticks() {
    let _g = serial();
    let rt = two_workers();
    let (a, mut b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let beat = Heartbeat::start(&rt);
    let waiting = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..1000)
        .map(|_| {
            let waiting = waiting.clone();
            rt.spawn(move || {
                let mut t = tv(Duration::from_secs(30));
                waiting.fetch_add(1, Ordering::SeqCst);
                let (n, r, _) = select_read(fd, Some(&mut t));
                assert_eq!(n, 1);
                assert!(is_set(&r, fd));
                // The time left is written back, less than asked.
                assert!(micros(&t) < 30_000_000, "{}", micros(&t));
            })
        })
        .collect();
    // Every coroutine is in (or about to enter) its select before the byte is sent:
    // a worker blocked in libc's select would hold the others back here.
    let start = Instant::now();
    until_waiting(&waiting, 1000);
    b.write_all(b"x").unwrap();
    for h in handles {
        h.join().unwrap();
    }
    let gap = beat.assert_kept_ticking();
    println!(
        "1000 coroutines in select on one socket: {:?}, heartbeat gap {gap:?}",
        start.elapsed()
    );
    // Nobody consumed the byte: select only looks.
    let mut got = [0u8; 1];
    (&a).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"x");
}

#[test]
fn select_timeout_null_zero_and_the_time_left() {
    let _g = serial();
    let rt = one_worker();
    let beat = Heartbeat::start(&rt);
    rt.block_on(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
        // Nothing to read: the timeout ends it, with empty sets and no time left.
        let mut t = tv(Duration::from_millis(100));
        let start = Instant::now();
        let (n, r, _) = select_read(fa, Some(&mut t));
        assert_eq!(n, 0);
        assert!(!is_set(&r, fa));
        assert_eq!(micros(&t), 0);
        assert!(start.elapsed() >= Duration::from_millis(99));
        // A zero timeout polls once.
        let mut t = tv(Duration::ZERO);
        assert_eq!(select_read(fa, Some(&mut t)).0, 0);
        // Read set and write set together: only the ready bits stay, and the count
        // is theirs. `b` is writable at once; tv_usec of a whole second carries
        // into the seconds, as glibc normalises it.
        let mut r = set_of(&[fa, fb]);
        let mut w = set_of(&[fb]);
        let mut t = libc::timeval {
            tv_sec: 0,
            tv_usec: 1_000_000,
        };
        // SAFETY: valid sets and timeout.
        let n =
            unsafe { libc::select(fa.max(fb) + 1, &mut r, &mut w, std::ptr::null_mut(), &mut t) };
        assert_eq!(n, 1);
        assert!(!is_set(&r, fa) && !is_set(&r, fb));
        assert!(is_set(&w, fb));
        assert!(micros(&t) <= 1_000_000);
        // A null timeout waits for as long as it takes.
        let writer = write_later(b, Duration::from_millis(50), b"y");
        let (n, r, _) = select_read(fa, None);
        assert_eq!((n, is_set(&r, fa)), (1, true));
        drop(writer.join().unwrap());
        // A negative timeout is libc's EINVAL.
        let mut t = libc::timeval {
            tv_sec: -1,
            tv_usec: 0,
        };
        let (n, _, errno) = select_read(fa, Some(&mut t));
        assert_eq!((n, errno), (-1, Some(libc::EINVAL)));
    });
    beat.assert_kept_ticking();
}

#[test]
fn select_with_no_descriptors_is_a_sleep() {
    let _g = serial();
    let rt = one_worker();
    let start = Instant::now();
    let handles: Vec<_> = (0..50)
        .map(|_| {
            rt.spawn(|| {
                let before = Instant::now();
                let mut t = tv(Duration::from_millis(100));
                let null = std::ptr::null_mut();
                // SAFETY: no sets; a valid timeout.
                let n = unsafe { libc::select(0, null, null, null, &mut t) };
                assert_eq!(n, 0);
                assert_eq!(micros(&t), 0);
                assert!(before.elapsed() >= Duration::from_millis(99));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Serially 5 s on the one worker.
    let total = start.elapsed();
    assert!(total < Duration::from_millis(2500), "took {total:?}");
}

#[test]
fn select_on_a_pipe_a_closed_fd_and_outside_coroutines() {
    let _g = serial();
    let rt = one_worker();
    let (r, w) = pipe();
    let beat = Heartbeat::start(&rt);
    // A pipe has no reactor registration: the hook re-polls between short sleeps,
    // and the heartbeat on the same worker keeps ticking.
    let writer = write_byte_later(&rt, w, Duration::from_millis(100), b'p');
    rt.block_on(move || {
        let mut t = tv(Duration::from_secs(10));
        let (n, set, _) = select_read(r, Some(&mut t));
        assert_eq!((n, is_set(&set, r)), (1, true));
    });
    writer.join().unwrap();
    beat.assert_kept_ticking();
    // A regular file (epoll refuses it) is always ready, as the kernel says.
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let ffd = file.as_raw_fd();
    let (n, set) = rt.block_on(move || {
        let mut t = tv(Duration::from_secs(10));
        let (n, set, _) = select_read(ffd, Some(&mut t));
        (n, is_set(&set, ffd))
    });
    assert_eq!((n, set), (1, true));
    drop(file);
    // A closed number is EBADF, as the kernel says.
    close_pipe((r, w));
    let (n, errno) = rt.block_on(move || {
        let mut t = tv(Duration::from_secs(1));
        let (n, _, errno) = select_read(r, Some(&mut t));
        (n, errno)
    });
    assert_eq!((n, errno), (-1, Some(libc::EBADF)));
    // Outside coroutines it is libc's select.
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"z").unwrap();
    let mut t = tv(Duration::from_secs(5));
    let (n, set, _) = select_read(a.as_raw_fd(), Some(&mut t));
    assert_eq!((n, is_set(&set, a.as_raw_fd())), (1, true));
}

#[test]
fn select_reports_out_of_band_data_in_the_except_set() {
    let _g = serial();
    let rt = two_workers();
    rt.block_on(move || {
        let (s, peer) = tcp_pair();
        let fd = s.as_raw_fd();
        let sender = stackweave::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: one byte from a valid buffer, sent as urgent data.
            let n = unsafe { libc::send(peer.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
            assert_eq!(n, 1);
            peer
        });
        let mut e = set_of(&[fd]);
        let mut t = tv(Duration::from_secs(10));
        let null = std::ptr::null_mut();
        // SAFETY: a valid set and timeout.
        let n = unsafe { libc::select(fd + 1, null, null, &mut e, &mut t) };
        assert_eq!(n, 1);
        assert!(is_set(&e, fd));
        drop(sender.join().unwrap());
    });
}

#[test]
fn pselect_without_a_mask_is_the_same_wait_and_leaves_its_timeout() {
    let _g = serial();
    let rt = two_workers();
    let (a, mut b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let beat = Heartbeat::start(&rt);
    let waiting = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let waiting = waiting.clone();
            rt.spawn(move || {
                let mut r = set_of(&[fd]);
                let ts = libc::timespec {
                    tv_sec: 30,
                    tv_nsec: 0,
                };
                let null = std::ptr::null_mut();
                waiting.fetch_add(1, Ordering::SeqCst);
                // SAFETY: a valid set and timeout; no signal mask.
                let n = unsafe { libc::pselect(fd + 1, &mut r, null, null, &ts, std::ptr::null()) };
                assert_eq!(n, 1);
                assert!(is_set(&r, fd));
                assert_eq!((ts.tv_sec, ts.tv_nsec), (30, 0));
            })
        })
        .collect();
    until_waiting(&waiting, 100);
    b.write_all(b"x").unwrap();
    for h in handles {
        h.join().unwrap();
    }
    beat.assert_kept_ticking();
    // No descriptors: a sleep.
    rt.block_on(|| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        let null = std::ptr::null_mut();
        let before = Instant::now();
        // SAFETY: no sets; a valid timeout; no mask.
        let n = unsafe { libc::pselect(0, null, null, null, &ts, std::ptr::null()) };
        assert_eq!(n, 0);
        assert!(before.elapsed() >= Duration::from_millis(99));
    });
}
