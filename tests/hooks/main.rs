//! The `hooks` feature (`cargo test --release --features hooks --test hooks`):
//! unmodified `std::net`, `std::thread::sleep` and libc calls inside coroutines
//! suspend only their coroutine, and behave as libc's everywhere else.
//!
//! Every test takes `SERIAL`: the timing bounds (all generous: CI is a loaded
//! two-core machine) must not share the CPUs with the heavy tests.

mod c_code;
#[path = "../common/mod.rs"]
mod common;
mod crates;
mod drain;
mod fds;
mod mmsg;
mod select;
mod support;

use common::raise_nofile_limit;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{
    close_pipe, flags, kernel_flags, one_worker, pipe, serial, tcp_pair, two_workers,
    write_byte_later, write_later, Heartbeat,
};

#[test]
fn std_thread_sleep_in_1000_coroutines_overlaps() {
    let _g = serial();
    let rt = two_workers();
    let beat = Heartbeat::start(&rt);
    let start = Instant::now();
    let handles: Vec<_> = (0..1000)
        .map(|_| rt.spawn(|| std::thread::sleep(Duration::from_millis(100))))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = start.elapsed();
    let gap = beat.assert_kept_ticking();
    println!("1000 x std::thread::sleep(100 ms): {total:?}, heartbeat's longest gap {gap:?}");
    assert!(total >= Duration::from_millis(100));
    // Serially this is 100 s (50 s on two workers).
    assert!(total < Duration::from_secs(5), "took {total:?}");
}

#[test]
fn other_sleeps_are_hooked_too() {
    let _g = serial();
    let rt = one_worker();
    let start = Instant::now();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            rt.spawn(move || {
                let before = Instant::now();
                // SAFETY: plain libc sleeps, no pointers except the valid timespecs.
                unsafe {
                    match i % 3 {
                        0 => {
                            libc::usleep(100_000);
                        }
                        1 => {
                            let ts = libc::timespec {
                                tv_sec: 0,
                                tv_nsec: 100_000_000,
                            };
                            assert_eq!(
                                libc::clock_nanosleep(
                                    libc::CLOCK_MONOTONIC,
                                    0,
                                    &ts,
                                    std::ptr::null_mut()
                                ),
                                0
                            );
                        }
                        _ => {
                            let mut now = libc::timespec {
                                tv_sec: 0,
                                tv_nsec: 0,
                            };
                            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
                            now.tv_nsec += 100_000_000;
                            if now.tv_nsec >= 1_000_000_000 {
                                now.tv_nsec -= 1_000_000_000;
                                now.tv_sec += 1;
                            }
                            assert_eq!(
                                libc::clock_nanosleep(
                                    libc::CLOCK_MONOTONIC,
                                    libc::TIMER_ABSTIME,
                                    &now,
                                    std::ptr::null_mut()
                                ),
                                0
                            );
                        }
                    }
                }
                assert!(before.elapsed() >= Duration::from_millis(99));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = start.elapsed();
    // Serially 5 s on the one worker.
    assert!(total < Duration::from_millis(2500), "took {total:?}");
    // An invalid request is libc's EINVAL.
    let r = rt.block_on(|| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        // SAFETY: a valid pointer to an (invalid) timespec.
        let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        (r, std::io::Error::last_os_error().raw_os_error())
    });
    assert_eq!(r, (-1, Some(libc::EINVAL)));
}

/// A server of `std::net` in coroutines that answers each line after 100 ms, and
/// `clients` coroutines that each make one request with `std::net`.
#[test]
fn std_net_clients_and_server_in_coroutines_overlap() {
    let _g = serial();
    let limit = raise_nofile_limit();
    let clients = if limit >= 2300 {
        1000
    } else {
        (limit as usize - 300) / 2
    };
    if clients < 1000 {
        println!("RLIMIT_NOFILE is {limit}: {clients} clients instead of 1000");
    }
    let rt = two_workers();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(move || {
        for stream in listener.incoming() {
            // At the runtime's shutdown the waiting accept fails with ECANCELED.
            let Ok(mut stream) = stream else { return };
            stackweave::spawn(move || {
                let mut buf = [0u8; 64];
                let mut got = 0;
                while !buf[..got].contains(&b'\n') {
                    match stream.read(&mut buf[got..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
                stream.write_all(&buf[..got]).unwrap();
            });
        }
    });
    let beat = Heartbeat::start(&rt);
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            rt.spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let line = format!("hello {i}\n");
                s.write_all(line.as_bytes()).unwrap();
                let mut reply = vec![0u8; line.len()];
                s.read_exact(&mut reply).unwrap();
                assert_eq!(reply, line.as_bytes());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = start.elapsed();
    let gap = beat.assert_kept_ticking();
    println!("{clients} std::net requests answered after 100 ms: {total:?}, heartbeat gap {gap:?}");
    assert!(total < Duration::from_secs(5), "took {total:?}");
}

#[test]
fn echo_of_std_net_in_coroutines_moves_a_megabyte() {
    let _g = serial();
    let rt = two_workers();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let client = rt.spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        let mut r = s.try_clone().unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        // Writes bigger than the socket buffers: the writer and reader must overlap.
        let mut w = s;
        let writer = stackweave::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == expect, "echo differs");
    });
    client.join().unwrap();
    server.join().unwrap();
}

#[test]
fn readv_and_writev_wait_like_read_and_write() {
    let _g = serial();
    let rt = one_worker();
    let beat = Heartbeat::start(&rt);
    rt.block_on(|| {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let writer = stackweave::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let bufs = [std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"cd")];
            assert_eq!(b.write_vectored(&bufs).unwrap(), 4);
            b
        });
        // std's read_vectored is readv(2): it waits for the writer's bytes.
        let (mut x, mut y) = ([0u8; 2], [0u8; 2]);
        let mut bufs = [
            std::io::IoSliceMut::new(&mut x),
            std::io::IoSliceMut::new(&mut y),
        ];
        // One writev of 4 bytes on a Unix stream socket arrives as one piece.
        assert_eq!(a.read_vectored(&mut bufs).unwrap(), 4);
        assert_eq!((&x, &y), (b"ab", b"cd"));
        drop(writer.join().unwrap());
    });
    beat.assert_kept_ticking();
}

#[test]
fn a_socket_the_user_made_nonblocking_passes_through() {
    let _g = serial();
    let rt = two_workers();
    rt.block_on(move || {
        let (s, _peer) = tcp_pair();
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        let e = (&s).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert_ne!(flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
    });
}

#[test]
fn f_getfl_reports_what_the_user_set() {
    let _g = serial();
    let rt = two_workers();
    rt.block_on(move || {
        let (mut s, peer) = tcp_pair();
        let fd = s.as_raw_fd();
        // connect went through the hook: non-blocking underneath, blocking to the user.
        assert_ne!(kernel_flags(fd) & libc::O_NONBLOCK, 0);
        assert_eq!(flags(fd) & libc::O_NONBLOCK, 0);
        s.set_nonblocking(true).unwrap();
        assert_ne!(flags(fd) & libc::O_NONBLOCK, 0);
        s.set_nonblocking(false).unwrap();
        assert_eq!(flags(fd) & libc::O_NONBLOCK, 0);
        assert_ne!(kernel_flags(fd) & libc::O_NONBLOCK, 0);
        // F_SETFL too.
        // SAFETY: fcntl on our own descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags(fd) | libc::O_NONBLOCK) };
        assert_ne!(flags(fd) & libc::O_NONBLOCK, 0);
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags(fd) & !libc::O_NONBLOCK) };
        assert_eq!(flags(fd) & libc::O_NONBLOCK, 0);
        // Blocking again: the read waits (cooperatively) for the peer's byte.
        let writer = write_later(peer, Duration::from_millis(50), b"x");
        assert_eq!(s.read(&mut buf).unwrap(), 1);
        drop(writer.join().unwrap());
    });
}

#[test]
fn calls_outside_coroutines_are_libcs() {
    let _g = serial();
    let rt = two_workers();
    // The main thread: a blocking read that a plain thread's write ends.
    let (mut s, mut peer) = tcp_pair();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        peer.write_all(b"abc").unwrap();
        peer
    });
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abc");
    drop(t.join().unwrap());
    // The hooks never touched these sockets' modes.
    assert_eq!(kernel_flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
    // The blocking pool is a plain thread too.
    let slept = rt.block_on(|| {
        stackweave::spawn_blocking(|| {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            t.elapsed()
        })
    });
    assert!(slept >= Duration::from_millis(20));
    drop(rt);
}

#[test]
fn a_socket_accepted_in_a_coroutine_still_blocks_on_a_plain_thread() {
    let _g = serial();
    let rt = two_workers();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    rt.spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Read once in the coroutine: the hooks make it non-blocking underneath.
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).unwrap();
        tx.send(s).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"1").unwrap();
    let mut s = rx.recv().unwrap();
    assert_ne!(kernel_flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
    // On this plain thread the read must block as the user expects, not WouldBlock.
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        c.write_all(b"2").unwrap();
        c
    });
    let mut buf = [0u8; 1];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"2");
    drop(t.join().unwrap());
}

#[test]
fn so_rcvtimeo_ends_a_read_with_would_block() {
    let _g = serial();
    let rt = two_workers();
    let beat = Heartbeat::start(&rt);
    rt.block_on(move || {
        let (mut s, _peer) = tcp_pair();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        let e = s.read(&mut [0u8; 4]).unwrap_err();
        let waited = start.elapsed();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e:?}"
        );
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    });
    beat.assert_kept_ticking();
}

#[test]
fn a_timeout_set_after_a_wait_and_on_a_duplicate_is_honoured() {
    let _g = serial();
    let rt = two_workers();
    rt.block_on(move || {
        let (mut s, peer) = tcp_pair();
        // A wait without a timeout: the hooks remember that this socket has none.
        let writer = write_later(peer, Duration::from_millis(20), b"1");
        s.read_exact(&mut [0u8; 1]).unwrap();
        let _peer = writer.join().unwrap();
        // Set through a duplicate (another number, the same socket): the next wait
        // on the first number still ends after it, with WouldBlock, not TimedOut
        // from the guarding scope.
        let dup = s.try_clone().unwrap();
        dup.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let start = Instant::now();
        let got = stackweave::time::timeout(Duration::from_secs(20), || {
            s.read(&mut [0u8; 1]).map_err(|e| e.kind())
        });
        assert_eq!(got, Ok(Err(ErrorKind::WouldBlock)));
        assert!(start.elapsed() >= Duration::from_millis(99));
    });
}

#[test]
fn connect_timeout_goes_through_the_poll_hook() {
    let _g = serial();
    let rt = one_worker();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handles: Vec<_> = (0..20)
        .map(|_| {
            rt.spawn(move || {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
                assert_eq!(flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // A poll on a socket that becomes readable later, and poll() as a sleep.
    let (a, mut b) = UnixStream::pair().unwrap();
    let writer = rt.spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        b.write_all(b"x").unwrap();
        b
    });
    let n = rt.block_on(move || {
        let mut pfd = libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert_ne!(pfd.revents & libc::POLLIN, 0);
        let t = Instant::now();
        // SAFETY: no descriptors.
        assert_eq!(unsafe { libc::poll(std::ptr::null_mut(), 0, 30) }, 0);
        assert!(t.elapsed() >= Duration::from_millis(29));
        n
    });
    assert_eq!(n, 1);
    drop(writer.join().unwrap());
}

#[test]
fn a_poll_on_a_pipe_and_its_timeout() {
    let _g = serial();
    let rt = one_worker();
    let (r, w) = pipe();
    let beat = Heartbeat::start(&rt);
    let writer = write_byte_later(&rt, w, Duration::from_millis(100), b'p');
    rt.block_on(move || {
        let mut pfd = libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        };
        let t = Instant::now();
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20) }, 0);
        assert!(t.elapsed() >= Duration::from_millis(19));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
        assert_ne!(pfd.revents & libc::POLLIN, 0);
    });
    writer.join().unwrap();
    beat.assert_kept_ticking();
    close_pipe((r, w));
}

#[test]
fn a_big_write_on_a_blocking_socket_takes_all_its_bytes() {
    let _g = serial();
    let rt = one_worker();
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let reader = rt.spawn(move || {
        let mut total = 0;
        let mut buf = [0u8; 65536];
        loop {
            // Slowly: the writer must wait for room several times.
            std::thread::sleep(Duration::from_millis(1));
            match b.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    let big = vec![7u8; 4 << 20];
    let n = rt.block_on(move || {
        // One `write` (std's is one send): a blocking socket takes it all.
        let n = a.write(&big).unwrap();
        drop(a);
        n
    });
    assert_eq!(n, 4 << 20);
    assert_eq!(reader.join().unwrap(), 4 << 20);
}

#[test]
fn a_deadline_scope_ends_a_hooked_read_with_timed_out_not_an_abort() {
    let _g = serial();
    let rt = two_workers();
    rt.block_on(move || {
        let (mut s, _peer) = tcp_pair();
        let start = Instant::now();
        // The unwind cannot cross libc's frame: the hooked read returns ETIMEDOUT,
        // which std reports as `TimedOut`, and the body returns it.
        let got = stackweave::time::timeout(Duration::from_millis(50), || {
            s.read(&mut [0u8; 4]).map_err(|e| e.kind())
        });
        match got {
            Ok(Err(kind)) => assert_eq!(kind, ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() >= Duration::from_millis(50));
        // A scope that reaches a stackweave wait after the hooked call unwinds there.
        let got = stackweave::time::timeout(Duration::from_millis(20), || {
            let _ = s.read(&mut [0u8; 4]);
            stackweave::time::sleep(Duration::from_secs(60));
        });
        assert!(got.is_err());
    });
}
