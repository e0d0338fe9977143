//! Faults from the network and the OS never panic or kill the process: writes to a
//! closed peer (even with `SIGPIPE` at its default action), running out of file
//! descriptors (`EMFILE`), peers that send garbage, and floods of connections that
//! close at once.
//!
//! The tests that change process-wide state (the `SIGPIPE` action, `RLIMIT_NOFILE`)
//! run in a child process (see `common::run_child`).

mod common;

use common::{
    frame, is_child, lock, process_cpu_time, read_frame, run_child, set_linger_zero,
    set_nofile_limit, Rng, Watchdog,
};
use stackweave::net::{Shutdown, TcpListener, TcpStream};
use stackweave::time::sleep;
use stackweave::{JoinHandle, Runtime};
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Printed by a child that got to its end alive.
const SURVIVED: &str = "child survived to the end";

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = stackweave::net::ListenOptions::new()
        .backlog(4096)
        .bind("127.0.0.1:0")
        .expect("bind");
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn pair() -> (TcpStream, TcpStream) {
    let (l, addr) = listener();
    let c = TcpStream::connect(addr).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
}

/// Writes to a connection whose peer has closed until a write fails; the failure
/// must be BrokenPipe or ConnectionReset (and the process must still be alive).
fn write_to_closed_peer(what: &str, vectored: bool) {
    let (mut c, s) = pair();
    drop(s);
    let chunk = [0x5A; 1024];
    for i in 0..10_000 {
        let r = if vectored {
            c.write_vectored(&[IoSlice::new(&chunk), IoSlice::new(&chunk)])
        } else {
            c.write(&chunk)
        };
        match r {
            Ok(_) => sleep(Duration::from_millis(1)), // the RST is on its way
            Err(e) => {
                assert!(is_peer_gone(&e), "{what}: unexpected error {e}");
                println!("{what}: write {i} failed with {:?}", e.kind());
                // And again: still an error, still no signal.
                let again = c.write(&chunk).unwrap_err();
                assert!(is_peer_gone(&again), "{what}: then {again}");
                return;
            }
        }
    }
    panic!("{what}: 10,000 writes to a closed peer succeeded");
}

#[test]
fn writing_to_a_closed_peer_is_an_error_even_with_sigpipe_at_its_default() {
    const NAME: &str = "writing_to_a_closed_peer_is_an_error_even_with_sigpipe_at_its_default";
    if is_child(NAME) {
        // SAFETY: setting a signal disposition to SIG_DFL, in the child process.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let _watchdog = Watchdog::new("SIGPIPE child", Duration::from_secs(60));
        write_to_closed_peer("thread, write", false);
        write_to_closed_peer("thread, write_vectored", true);
        join(stackweave::spawn(|| {
            write_to_closed_peer("coroutine, write", false);
            write_to_closed_peer("coroutine, write_vectored", true);
        }));
        // After our own shutdown(Write), a write is EPIPE at once.
        let (c, _s) = pair();
        c.shutdown(Shutdown::Write).unwrap();
        let e = (&c).write(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
        let e = join(stackweave::spawn(move || (&c).write(b"y").unwrap_err()));
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
        println!("{SURVIVED}");
        return;
    }
    let _serial = lock(&SERIAL);
    let child = run_child(NAME);
    println!("--- child stdout ---\n{}", child.stdout.trim_end());
    assert!(
        child.status.success() && child.stdout.contains(SURVIVED),
        "{child}"
    );
}

fn is_emfile(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMFILE)
}

/// The child's part of the EMFILE test, in a coroutine of a 1-worker runtime.
fn exhaust_descriptors(listener: TcpListener, addr: SocketAddr) {
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    // Open connections until the process runs out of descriptors, on either side.
    let accept_failed = loop {
        match TcpStream::connect(addr) {
            Ok(c) => clients.push(c),
            Err(e) => {
                assert!(is_emfile(&e), "connect: expected EMFILE, got {e}");
                break false;
            }
        }
        let t = Instant::now();
        match listener.accept() {
            Ok((s, _)) => servers.push(s),
            Err(e) => {
                assert!(is_emfile(&e), "accept: expected EMFILE, got {e}");
                assert!(t.elapsed() < Duration::from_secs(10));
                break true;
            }
        }
        assert!(clients.len() < 1000, "RLIMIT_NOFILE was not lowered");
    };
    println!(
        "out of descriptors after {} connections (at {})",
        clients.len(),
        if accept_failed { "accept" } else { "connect" }
    );
    if !accept_failed {
        // Free one descriptor, spend it on a client: its connection waits in the
        // accept queue with no descriptor left to accept it with.
        drop(servers.pop());
        clients.push(TcpStream::connect(addr).expect("connect with one free fd"));
    }
    // A connection is pending and accept cannot take it: an error every time, at
    // once, and the listener stays usable.
    for _ in 0..3 {
        let t = Instant::now();
        let e = listener
            .accept()
            .expect_err("accept with no free descriptor");
        assert!(is_emfile(&e), "expected EMFILE, got {e}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "accept took {:?} to fail",
            t.elapsed()
        );
    }
    // Not a busy loop: with the pending connection still readable on the listener,
    // an idle worker sleeps.
    let cpu = process_cpu_time();
    let wall = Instant::now();
    sleep(Duration::from_millis(300));
    let (cpu, wall) = (process_cpu_time() - cpu, wall.elapsed());
    println!("idle {wall:?} with accept at EMFILE: {cpu:?} CPU");
    assert!(cpu < wall / 2, "{cpu:?} of CPU in {wall:?}: a busy loop?");

    // Close some descriptors: accept works again and takes the pending connection.
    let pending_client = clients.pop().unwrap();
    clients.truncate(clients.len().saturating_sub(4));
    servers.truncate(servers.len().saturating_sub(4));
    let (mut s, peer) = listener.accept().expect("accept after closing some fds");
    assert_eq!(peer, pending_client.local_addr().unwrap());
    (&pending_client).write_all(b"alive").unwrap();
    let mut buf = [0; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"alive");
    // And a new connection, accepted while the accept is already waiting.
    let acceptor = stackweave::spawn(move || listener.accept().map(|(s, _)| s));
    sleep(Duration::from_millis(20));
    let c = TcpStream::connect(addr).expect("connect after closing some fds");
    let s2 = join(acceptor).expect("a waiting accept");
    assert_eq!(s2.peer_addr().unwrap(), c.local_addr().unwrap());
}

#[test]
fn accept_at_emfile_fails_promptly_and_recovers_when_descriptors_are_freed() {
    const NAME: &str = "accept_at_emfile_fails_promptly_and_recovers_when_descriptors_are_freed";
    if is_child(NAME) {
        let _watchdog = Watchdog::new("EMFILE child", Duration::from_secs(60));
        // Everything that needs descriptors of its own is made first.
        let rt = Runtime::builder().workers(1).build().unwrap();
        rt.block_on(|| sleep(Duration::from_millis(1)));
        let (listener, addr) = listener();
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count();
        let limit = (open as libc::rlim_t + 24).max(64);
        println!("{open} descriptors open; lowering RLIMIT_NOFILE to {limit}");
        set_nofile_limit(limit);
        rt.block_on(move || exhaust_descriptors(listener, addr));

        // On a plain thread too: accept fails with EMFILE, then works.
        let (listener, addr) = self::listener();
        let mut hold = Vec::new();
        loop {
            match TcpStream::connect(addr) {
                Ok(c) => hold.push(c),
                Err(e) => {
                    assert!(is_emfile(&e), "{e}");
                    break;
                }
            }
        }
        // The queue holds connections but there is no descriptor to accept into.
        let e = listener.accept().expect_err("thread accept at EMFILE");
        assert!(is_emfile(&e), "{e}");
        hold.truncate(hold.len() - 2);
        listener.accept().expect("thread accept after freeing fds");
        println!("{SURVIVED}");
        return;
    }
    let _serial = lock(&SERIAL);
    let child = run_child(NAME);
    println!("--- child stdout ---\n{}", child.stdout.trim_end());
    assert!(
        child.status.success() && child.stdout.contains(SURVIVED),
        "{child}"
    );
}

/// Runs an accept loop on `rt` whose handlers are `serve`; their join handles come
/// out of the returned channel, in accept order. The counter counts connections that
/// went away before they could be accepted (`ConnectionAborted`).
fn serve_on<T: Send + 'static>(
    rt: &Runtime,
    listener: TcpListener,
    serve: fn(TcpStream) -> T,
) -> (mpsc::Receiver<JoinHandle<T>>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::channel();
    let aborted = Arc::new(AtomicUsize::new(0));
    let counter = aborted.clone();
    rt.spawn(move || loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if tx.send(stackweave::spawn(move || serve(stream))).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => panic!("accept: {e}"),
        }
    });
    (rx, aborted)
}

/// A framed echo server: gives up with an error on the first bad frame.
fn serve_frames(stream: TcpStream) -> io::Result<usize> {
    let mut frames = 0;
    while let Some(payload) = read_frame(&mut &stream, 64 * 1024)? {
        (&stream).write_all(&frame(&payload))?;
        frames += 1;
    }
    Ok(frames)
}

fn good_client(addr: SocketAddr, seed: u64) {
    let mut c = TcpStream::connect(addr).unwrap();
    let mut rng = Rng::new(seed);
    for _ in 0..20 {
        let len = rng.range(0, 5000) as usize;
        let payload = rng.bytes(len);
        c.write_all(&frame(&payload)).unwrap();
        assert_eq!(read_frame(&mut c, 64 * 1024).unwrap(), Some(payload));
    }
}

/// A peer that sends garbage of some kind and goes away in some way.
fn garbage_client(addr: SocketAddr, seed: u64) {
    let mut rng = Rng::new(seed);
    let Ok(c) = TcpStream::connect(addr) else {
        panic!("garbage client {seed}: connect failed");
    };
    let mut bytes = match seed % 4 {
        // Random bytes (probably an absurd length).
        0 => {
            let len = rng.range(1, 100_000) as usize;
            rng.bytes(len)
        }
        // A plausible length, then random bytes: a checksum mismatch.
        1 => {
            let mut v = 1000u32.to_le_bytes().to_vec();
            v.extend(rng.bytes(1008));
            v
        }
        // A good frame, then a truncated one.
        2 => {
            let mut v = frame(&rng.bytes(100));
            v.extend_from_slice(&frame(&rng.bytes(100))[..50]);
            v
        }
        // The largest length there is, and nothing after it.
        _ => u32::MAX.to_le_bytes().to_vec(),
    };
    if seed % 7 == 0 {
        bytes.truncate(rng.range(0, bytes.len() as u64) as usize);
    }
    let _ = (&c).write_all(&bytes);
    match seed % 3 {
        0 => drop(c),
        1 => {
            set_linger_zero(c.as_raw_fd());
            drop(c);
        }
        _ => {
            let _ = c.shutdown(Shutdown::Write);
            let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
            let _ = io::copy(&mut &c, &mut io::sink());
        }
    }
}

#[test]
fn peers_sending_garbage_and_closing_never_panic_the_server() {
    let _serial = lock(&SERIAL);
    const GARBAGE: u64 = 200;
    let _watchdog = Watchdog::new("garbage peers", Duration::from_secs(90));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let (listener, addr) = listener();
    let (handlers, aborted) = serve_on(&rt, listener, serve_frames);
    good_client(addr, 0);
    let garbage: Vec<_> = (1..=GARBAGE)
        .map(|i| rt.spawn(move || garbage_client(addr, i)))
        .collect();
    // Well-behaved clients at the same time.
    let good: Vec<_> = (0..10)
        .map(|i| rt.spawn(move || good_client(addr, 1000 + i)))
        .collect();
    for h in garbage.into_iter().chain(good) {
        join(h);
    }
    good_client(addr, 2000);
    // The last client was served, so every earlier connection has been through the
    // accept loop.
    let aborted = aborted.load(Ordering::SeqCst) as u64;
    let mut errors = std::collections::BTreeMap::new();
    for i in 0..GARBAGE + 12 - aborted {
        let h = handlers
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("connection {i} never accepted"));
        match h.join() {
            Ok(Ok(_)) => *errors.entry("none".to_owned()).or_insert(0) += 1,
            Ok(Err(e)) => {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::InvalidData
                            | ErrorKind::UnexpectedEof
                            | ErrorKind::ConnectionReset
                            | ErrorKind::BrokenPipe
                    ),
                    "unexpected server error {e}"
                );
                *errors.entry(format!("{:?}", e.kind())).or_insert(0) += 1;
            }
            Err(_) => panic!("a server handler panicked"),
        }
    }
    println!("server handlers ended with: {errors:?}; {aborted} aborted before accept");
}

/// Reads until end of stream or an error; never panics.
fn drain(mut stream: TcpStream) -> io::Result<u64> {
    io::copy(&mut stream, &mut io::sink())
}

#[test]
fn the_process_survives_a_thousand_connections_that_close_at_once() {
    let _serial = lock(&SERIAL);
    const CONNS: usize = 1000;
    // Up to both ends of every connection at once, in this process.
    common::raise_nofile_limit();
    let _watchdog = Watchdog::new("connect and close", Duration::from_secs(90));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let (listener, addr) = listener();
    let (handlers, aborted) = serve_on(&rt, listener, drain);
    let refused = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let refused = refused.clone();
            rt.spawn(move || match TcpStream::connect(addr) {
                Ok(c) if i % 3 == 0 => {
                    set_linger_zero(c.as_raw_fd());
                    drop(c);
                }
                Ok(c) if i % 3 == 1 => {
                    let _ = c.shutdown(Shutdown::Both);
                }
                Ok(c) => drop(c),
                Err(e) => {
                    println!("connect {i}: {e}");
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for c in clients {
        join(c);
    }
    assert_eq!(refused.load(Ordering::SeqCst), 0, "connections failed");
    // Still serving.
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"still here").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // Every connection reached a handler that finished without panicking; the last
    // one (accepted last: the queue is FIFO) read what the last client sent.
    let mut finished = 0;
    loop {
        let h = handlers
            .recv_timeout(Duration::from_secs(30))
            .expect("the last client was never accepted");
        let r = h.join().expect("a handler panicked");
        finished += 1;
        if matches!(r, Ok(10)) {
            break;
        }
    }
    let aborted = aborted.load(Ordering::SeqCst);
    println!("{finished} connections accepted and finished, {aborted} aborted before accept");
    assert_eq!(finished + aborted, CONNS + 1);
    drop(c);
}
