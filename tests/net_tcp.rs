//! TCP with real sockets on 127.0.0.1: `stackweave::net::{TcpListener, TcpStream}`
//! behave like their `std::net` counterparts, inside coroutines (where a blocking
//! call suspends only the caller) and on plain threads (where it blocks the thread).
//!
//! Every test takes `SERIAL`: the heavy ones (a thousand echo connections, ten
//! thousand idle ones) would otherwise share the two CPUs of the CI machine with the
//! tests that check timeout bounds, and would share the process's descriptors.

mod common;

use common::{
    check_timeout_bounds, fnv1a, frame, lock, proc_status_kib, raise_nofile_limit, read_frame,
    set_linger_zero, Rng, Watchdog,
};
use stackweave::net::{ListenOptions, Shutdown, TcpListener, TcpStream};
use stackweave::time::sleep;
use stackweave::{JoinHandle, Runtime};
use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Largest frame a test server accepts.
const MAX_FRAME: usize = 1 << 20;

/// Slack allowed past a timeout (see `check_timeout_bounds`).
const SLACK: Duration = Duration::from_millis(50);

/// Joins a coroutine, re-raising its panic with its own message.
fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn two_workers() -> Runtime {
    Runtime::builder().workers(2).build().expect("runtime")
}

/// A listener on 127.0.0.1 with a large backlog, for bursts of connections.
fn listener() -> (TcpListener, SocketAddr) {
    let l = stackweave::net::ListenOptions::new()
        .backlog(4096)
        .bind("127.0.0.1:0")
        .expect("bind");
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A connected pair: (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let (l, addr) = listener();
    let c = TcpStream::connect(addr).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

/// Serves framed echo until the peer closes; adds each payload's checksum to `sum`.
fn serve_frames(stream: TcpStream, sum: &AtomicU64) -> io::Result<u64> {
    let mut frames = 0;
    while let Some(payload) = read_frame(&mut &stream, MAX_FRAME)? {
        sum.fetch_add(fnv1a(&payload), Ordering::Relaxed);
        (&stream).write_all(&frame(&payload))?;
        frames += 1;
    }
    Ok(frames)
}

/// Serves raw byte echo until end of stream (Ok(bytes)) or an error.
fn serve_bytes(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A client of `serve_bytes`: `rounds` messages of `size` bytes, each checked.
fn echo_client(addr: SocketAddr, seed: u64, rounds: usize, size: usize) -> io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    let mut rng = Rng::new(seed);
    let mut back = vec![0; size];
    for _ in 0..rounds {
        let msg = rng.bytes(size);
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        if back != msg {
            return Err(io::Error::new(ErrorKind::InvalidData, "echo differs"));
        }
    }
    Ok(())
}

#[test]
fn a_thousand_concurrent_connections_echo_a_hundred_checksummed_messages_each() {
    let _serial = lock(&SERIAL);
    const WANTED: usize = 1000;
    const MSGS: usize = 100;
    // Both ends of every connection live in this process.
    let limit = raise_nofile_limit() as usize;
    let conns = WANTED.min(limit.saturating_sub(200) / 2);
    if conns < WANTED {
        println!("RLIMIT_NOFILE hard limit is {limit}: {conns} connections instead of {WANTED}");
    }
    let _watchdog = Watchdog::new("1000 echo connections", Duration::from_secs(120));
    let rt = two_workers();
    let (listener, addr) = listener();
    let server_sum = Arc::new(AtomicU64::new(0));
    let server = {
        let server_sum = server_sum.clone();
        rt.spawn(move || {
            let handlers: Vec<_> = (0..conns)
                .map(|_| {
                    let (stream, _) = listener.accept().expect("accept");
                    let sum = server_sum.clone();
                    stackweave::spawn(move || serve_frames(stream, &sum))
                })
                .collect();
            handlers.into_iter().map(join).collect::<Vec<_>>()
        })
    };
    // Every client waits until all have connected: the thousand connections are
    // open at the same time.
    let attempted = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let clients: Vec<_> = (0..conns as u64)
        .map(|i| {
            let attempted = attempted.clone();
            rt.spawn(move || -> io::Result<u64> {
                let connected = TcpStream::connect(addr);
                attempted.fetch_add(1, Ordering::SeqCst);
                let mut s = connected?;
                while attempted.load(Ordering::SeqCst) < conns {
                    sleep(Duration::from_millis(5));
                }
                let mut rng = Rng::new(i);
                let mut sum = 0u64;
                for m in 0..MSGS {
                    let len = rng.range(1, 1024) as usize;
                    let payload = rng.bytes(len);
                    s.write_all(&frame(&payload))?;
                    let echo = read_frame(&mut s, MAX_FRAME)?
                        .ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
                    assert!(echo == payload, "client {i}: echo {m} differs");
                    sum = sum.wrapping_add(fnv1a(&payload));
                }
                Ok(sum)
            })
        })
        .collect();
    let mut client_sum = 0u64;
    for (i, c) in clients.into_iter().enumerate() {
        let sum = join(c).unwrap_or_else(|e| panic!("client {i}: {e}"));
        client_sum = client_sum.wrapping_add(sum);
    }
    let frames: u64 = join(server)
        .into_iter()
        .map(|r| r.expect("server handler"))
        .sum();
    println!(
        "{conns} connections x {MSGS} messages echoed in {:?}",
        start.elapsed()
    );
    assert_eq!(frames, (conns * MSGS) as u64);
    assert_eq!(server_sum.load(Ordering::Relaxed), client_sum);
}

/// The client sends, shuts its write side down, and still reads the reply that the
/// server writes after seeing end-of-file.
fn half_close_round() {
    let (listener, addr) = listener();
    let server = stackweave::spawn(move || -> io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        // A second read after EOF is EOF again.
        assert_eq!(s.read(&mut [0; 16])?, 0);
        s.write_all(b"got ")?;
        s.write_all(&(got.len() as u64).to_le_bytes())?;
        Ok(got)
    });
    let sent = Rng::new(7).bytes(300_000);
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(&sent).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let err = c.write(b"late").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "write after shutdown");
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).unwrap();
    let mut want = b"got ".to_vec();
    want.extend_from_slice(&(sent.len() as u64).to_le_bytes());
    assert_eq!(reply, want);
    assert!(join(server).unwrap() == sent, "server read what was sent");
}

#[test]
fn half_close_lets_the_server_read_to_eof_and_still_reply() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("half close", Duration::from_secs(60));
    half_close_round(); // client on a plain thread
    stackweave::spawn(half_close_round).join().unwrap(); // client in a coroutine
}

/// Writes into `s` without reading until the connection is stuck in both
/// directions (or 64 MiB went out), then closes it with a RST.
fn reset_mid_transfer(s: TcpStream) {
    s.set_nonblocking(true).unwrap();
    let chunk = vec![0xAB; 64 * 1024];
    let mut total = 0usize;
    let mut stuck = 0;
    while stuck < 3 && total < 64 << 20 {
        match (&s).write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stuck += 1;
                sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write before the reset: {e}"),
        }
    }
    set_linger_zero(s.as_raw_fd());
    drop(s);
}

#[test]
fn a_client_resetting_mid_transfer_leaves_the_server_serving_others() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("resets", Duration::from_secs(90));
    const RESETS: usize = 20;
    let rt = two_workers();
    let (listener, addr) = listener();
    let (handles_tx, handles) = mpsc::channel();
    rt.spawn(move || loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let h = stackweave::spawn(move || serve_bytes(stream));
                if handles_tx.send(h).is_err() {
                    return;
                }
            }
            Err(e) => panic!("accept: {e}"),
        }
    });
    for round in 0..RESETS {
        echo_client(addr, round as u64, 5, 10_000).expect("echo before a reset");
        let resetter = TcpStream::connect(addr).unwrap();
        if round % 2 == 0 {
            reset_mid_transfer(resetter); // from this thread
        } else {
            join(rt.spawn(move || reset_mid_transfer(resetter))); // from a coroutine
        }
    }
    // Other clients, concurrently, after all the resets.
    let others: Vec<_> = (0..10)
        .map(|i| rt.spawn(move || echo_client(addr, 1000 + i, 20, 4096)))
        .collect();
    for o in others {
        join(o).expect("echo after the resets");
    }
    let mut resets_seen = 0;
    let mut eofs = 0;
    for i in 0..2 * RESETS + 10 {
        let h = handles
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("connection {i} was never accepted"));
        match h.join() {
            Ok(Ok(_)) => eofs += 1,
            Ok(Err(e)) => {
                assert!(
                    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                    "server side of a reset: unexpected error {e}"
                );
                resets_seen += 1;
            }
            Err(_) => panic!("a server handler panicked"),
        }
    }
    println!("server handlers: {eofs} ended with EOF, {resets_seen} with a reset error");
    assert!(eofs >= RESETS + 10, "the well-behaved clients end with EOF");
}

/// Read timeouts, from the current context (a coroutine or a thread).
fn read_timeout_round(what: &'static str) {
    let (c, mut s) = pair();
    let timeout = Duration::from_millis(100);
    assert_eq!(
        c.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    c.set_read_timeout(Some(timeout)).unwrap();
    assert_eq!(c.read_timeout().unwrap(), Some(timeout));
    check_timeout_bounds(what, timeout, SLACK, 3, || {
        let start = Instant::now();
        let r = (&c).read(&mut [0; 8]);
        (r, start.elapsed())
    });
    // The stream still works after a timeout.
    s.write_all(b"late").unwrap();
    let mut buf = [0; 4];
    (&c).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late");
    c.set_read_timeout(None).unwrap();
    assert_eq!(c.read_timeout().unwrap(), None);
}

#[test]
fn read_timeout_gives_timed_out_within_bounds_in_coroutines_and_threads() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("read timeouts", Duration::from_secs(60));
    read_timeout_round("read timeout on a thread");
    let rt = two_workers();
    rt.block_on(|| read_timeout_round("read timeout in a coroutine"));
}

/// A write timeout against a peer that never reads.
fn write_timeout_round(what: &'static str) {
    let (c, _s) = pair();
    let timeout = Duration::from_millis(200);
    c.set_write_timeout(Some(timeout)).unwrap();
    assert_eq!(c.write_timeout().unwrap(), Some(timeout));
    let chunk = vec![1u8; 64 * 1024];
    let start = Instant::now();
    let mut written = 0usize;
    let (err, last) = loop {
        let call = Instant::now();
        match (&c).write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break (e, call.elapsed()),
        }
        assert!(written < 1 << 30, "{what}: 1 GiB written and no timeout");
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{what}: {err}");
    assert!(
        last >= timeout,
        "{what}: the last write gave up after {last:?}"
    );
    assert!(start.elapsed() >= timeout);
    println!(
        "{what}: TimedOut after {written} bytes; the last write waited {last:?} (timeout {timeout:?})"
    );
}

#[test]
fn write_timeout_gives_timed_out_when_the_peer_never_reads() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("write timeouts", Duration::from_secs(60));
    write_timeout_round("write timeout on a thread");
    let rt = two_workers();
    rt.block_on(|| write_timeout_round("write timeout in a coroutine"));
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a
/// connect to it waits for the handshake until its timeout. The returned streams
/// keep the queue full.
fn full_backlog_listener() -> (TcpListener, SocketAddr, Vec<std::net::TcpStream>) {
    let l = ListenOptions::new().backlog(0).bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..64 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => return (l, addr, fillers),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled (64 connections accepted by a backlog of 0)");
}

fn connect_timeout_round(what: &'static str, addr: SocketAddr) {
    let timeout = Duration::from_millis(150);
    assert_eq!(
        TcpStream::connect_timeout(&addr, Duration::ZERO)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    check_timeout_bounds(what, timeout, SLACK, 3, || {
        let start = Instant::now();
        let r = TcpStream::connect_timeout(&addr, timeout);
        (r, start.elapsed())
    });

    // A non-routable address: TimedOut within bounds, or any other outcome the
    // network gives (unreachable; some sandboxes even accept the connection), but
    // never a hang.
    let nowhere: SocketAddr = "10.255.255.1:81".parse().unwrap();
    for attempt in 0..3 {
        let start = Instant::now();
        let r = TcpStream::connect_timeout(&nowhere, timeout);
        let elapsed = start.elapsed();
        match r {
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                assert!(elapsed >= timeout, "{what}: {nowhere} timed out early");
                if elapsed <= timeout + SLACK {
                    println!("{what}: {nowhere}: TimedOut after {elapsed:?}");
                    return;
                }
                assert!(attempt < 2, "{what}: {nowhere}: late every time");
            }
            other => {
                assert!(
                    elapsed <= timeout + Duration::from_secs(1),
                    "{what}: {nowhere}: {other:?} only after {elapsed:?}"
                );
                println!("{what}: {nowhere}: the network answered {other:?} after {elapsed:?}");
                return;
            }
        }
    }
}

#[test]
fn connect_timeout_gives_timed_out_within_bounds_in_coroutines_and_threads() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("connect timeouts", Duration::from_secs(60));
    let (_l, addr, _fillers) = full_backlog_listener();
    connect_timeout_round("connect timeout on a thread", addr);
    let rt = two_workers();
    rt.block_on(move || connect_timeout_round("connect timeout in a coroutine", addr));
}

#[test]
fn try_clone_lets_one_coroutine_read_while_another_writes_ten_thousand_messages_each_way() {
    let _serial = lock(&SERIAL);
    const MSGS: u64 = 10_000;
    let _watchdog = Watchdog::new("try_clone duplex", Duration::from_secs(60));
    let rt = two_workers();
    let (c, s) = rt.block_on(pair);
    // Each end: a writer on a clone, a reader on the original.
    let spawn_end = |stream: TcpStream, my_seed: u64, peer_seed: u64| {
        let mut writer = stream.try_clone().expect("try_clone");
        assert_ne!(writer.as_raw_fd(), stream.as_raw_fd());
        let w = rt.spawn(move || -> io::Result<()> {
            let mut rng = Rng::new(my_seed);
            for _ in 0..MSGS {
                let len = rng.range(1, 300) as usize;
                writer.write_all(&frame(&rng.bytes(len)))?;
            }
            Ok(())
        });
        let r = rt.spawn(move || -> io::Result<u64> {
            let mut reader = stream;
            let mut rng = Rng::new(peer_seed);
            for i in 0..MSGS {
                let len = rng.range(1, 300) as usize;
                let want = rng.bytes(len);
                let got = read_frame(&mut reader, MAX_FRAME)?
                    .ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
                assert!(got == want, "message {i} differs");
            }
            Ok(MSGS)
        });
        (w, r)
    };
    let (cw, cr) = spawn_end(c, 1, 2);
    let (sw, sr) = spawn_end(s, 2, 1);
    join(cw).unwrap();
    join(sw).unwrap();
    assert_eq!(join(cr).unwrap(), MSGS);
    assert_eq!(join(sr).unwrap(), MSGS);
}

#[test]
fn read_and_write_work_through_a_shared_reference_from_two_coroutines() {
    let _serial = lock(&SERIAL);
    const MSGS: u64 = 2_000;
    let _watchdog = Watchdog::new("&TcpStream", Duration::from_secs(60));
    let rt = two_workers();
    let (c, s) = rt.block_on(pair);
    let (c, s) = (Arc::new(c), Arc::new(s));
    let mut handles = Vec::new();
    for (me, seed) in [(&c, 10u64), (&s, 20u64)] {
        let writer = me.clone();
        handles.push(rt.spawn(move || {
            let mut rng = Rng::new(seed);
            for _ in 0..MSGS {
                let len = rng.range(1, 200) as usize;
                (&*writer).write_all(&frame(&rng.bytes(len))).unwrap();
            }
        }));
        let reader = me.clone();
        let peer_seed = 30 - seed;
        handles.push(rt.spawn(move || {
            let mut rng = Rng::new(peer_seed);
            let mut r: &TcpStream = &reader;
            for _ in 0..MSGS {
                let len = rng.range(1, 200) as usize;
                let want = rng.bytes(len);
                assert!(read_frame(&mut r, MAX_FRAME).unwrap() == Some(want));
            }
        }));
    }
    for h in handles {
        join(h);
    }
}

#[test]
fn ten_thousand_idle_connections_stay_cheap_while_a_hundred_others_echo() {
    let _serial = lock(&SERIAL);
    const WANTED_IDLE: usize = 10_000;
    const ACTIVE: usize = 100;
    let limit = raise_nofile_limit() as usize;
    // Two descriptors a connection (both ends live in this process), the active
    // connections, and room for the runtime and the test harness.
    let fit = limit.saturating_sub(2 * ACTIVE + 300) / 2;
    let idle = WANTED_IDLE.min(fit);
    if idle < WANTED_IDLE {
        println!(
            "RLIMIT_NOFILE hard limit is {limit}: holding {idle} idle connections instead of {WANTED_IDLE}"
        );
    }
    assert!(
        idle >= 200,
        "RLIMIT_NOFILE {limit} is too low for this test"
    );
    let _watchdog = Watchdog::new("idle connections", Duration::from_secs(120));
    let rt = two_workers();
    let (listener, addr) = listener();
    let waiting = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let echo_handlers = Arc::new(Mutex::new(Vec::new()));
    // The first `idle` connections get a reader that waits for data that never
    // comes; later ones get an echo server.
    {
        let (waiting, closed, echo_handlers) =
            (waiting.clone(), closed.clone(), echo_handlers.clone());
        rt.spawn(move || {
            for n in 0.. {
                let (stream, _) = listener.accept().expect("accept");
                if n < idle {
                    let (waiting, closed) = (waiting.clone(), closed.clone());
                    stackweave::spawn(move || {
                        let mut stream = stream;
                        waiting.fetch_add(1, Ordering::SeqCst);
                        let n = stream.read(&mut [0; 16]);
                        assert_eq!(n.unwrap(), 0, "an idle client sent data");
                        closed.fetch_add(1, Ordering::SeqCst);
                    });
                } else {
                    let h = stackweave::spawn(move || serve_bytes(stream));
                    lock(&echo_handlers).push(h);
                }
            }
        });
    }
    // Warm up (stacks, slots, the accept path) before the baseline.
    let warm: Vec<_> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
    while waiting.load(Ordering::SeqCst) < warm.len() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Pooled stacks of finished coroutines keep their memory for reuse: give it
    // back, so the connections below cannot look cheaper than they are.
    stackweave::stack::trim_pool();
    let rss_before = proc_status_kib("VmRSS");
    let start = Instant::now();
    let mut clients = warm;
    while clients.len() < idle {
        clients.push(TcpStream::connect(addr).expect("idle connect"));
    }
    while waiting.load(Ordering::SeqCst) < idle {
        std::thread::sleep(Duration::from_millis(5));
    }
    let rss_after = proc_status_kib("VmRSS");
    let measured = idle - 64;
    let per_conn = (rss_after.saturating_sub(rss_before) * 1024) as f64 / measured as f64;
    println!(
        "{idle} idle connections (a coroutine each, blocked in read) opened in {:?}; \
         RSS {rss_before} KiB -> {rss_after} KiB: {per_conn:.0} bytes per connection (both ends)",
        start.elapsed()
    );
    // Generous: one stack page, the control block and two sockets' bookkeeping are
    // a few KiB; a huge page per stack would be 2 MiB. (Too few connections and the
    // noise of the allocator would dominate.)
    if measured >= 2000 {
        assert!(
            per_conn < 64.0 * 1024.0,
            "{per_conn:.0} bytes of RSS per idle connection"
        );
    }

    let active: Vec<_> = (0..ACTIVE as u64)
        .map(|i| rt.spawn(move || echo_client(addr, i, 50, 512)))
        .collect();
    for a in active {
        join(a).expect("echo while idle connections are held");
    }
    assert_eq!(closed.load(Ordering::SeqCst), 0, "an idle reader woke up");
    for h in lock(&echo_handlers).drain(..) {
        assert_eq!(join(h).unwrap(), 50 * 512);
    }
    drop(clients);
    while closed.load(Ordering::SeqCst) < idle {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn read_and_write_are_implemented_for_shared_references() {
    let _serial = lock(&SERIAL);
    let (c, s) = pair();
    let (mut cr, mut sr) = (&c, &s);
    cr.write_all(b"ping").unwrap();
    cr.flush().unwrap();
    let mut buf = [0; 4];
    sr.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    sr.write_all(b"pong").unwrap();
    cr.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

#[test]
fn peek_waits_for_data_and_leaves_it_queued() {
    let _serial = lock(&SERIAL);
    let (c, mut s) = pair();
    let peeker = stackweave::spawn(move || {
        let mut buf = [0; 16];
        let n = c.peek(&mut buf).unwrap(); // waits: nothing has been sent yet
        assert!(n > 0);
        let mut all = [0; 5];
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (&c).read_exact(&mut all).unwrap();
        assert_eq!(&buf[..n], &all[..n]);
        all
    });
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(b"hello").unwrap();
    assert_eq!(&join(peeker), b"hello");

    // On a plain thread: peek twice, then read the same bytes.
    let (mut c, mut s) = pair();
    s.write_all(b"abc").unwrap();
    let mut buf = [0; 8];
    let mut n = 0;
    while n < 3 {
        n = c.peek(&mut buf).unwrap();
    }
    assert_eq!(c.peek(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
    assert_eq!(c.read(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
}

#[test]
fn vectored_writes_and_reads_move_every_slice_in_order() {
    let _serial = lock(&SERIAL);
    let check = || {
        let (mut c, mut s) = pair();
        let parts: [&[u8]; 3] = [b"abc", b"defg", b"hi"];
        let slices = parts.map(IoSlice::new);
        assert_eq!(c.write_vectored(&slices).unwrap(), 9);
        // Wait until all nine bytes are queued, then read them scattered.
        let mut n = 0;
        while n < 9 {
            n = s.peek(&mut [0; 16]).unwrap();
        }
        let (mut a, mut b) = ([0u8; 4], [0u8; 10]);
        let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
        assert_eq!(s.read_vectored(&mut bufs).unwrap(), 9);
        assert_eq!(&a, b"abcd");
        assert_eq!(&b[..5], b"efghi");
        // Through shared references too, and a vectored read that must wait.
        let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
        let reader = stackweave::spawn(move || {
            let (mut x, mut y) = ([0u8; 2], [0u8; 2]);
            let mut bufs = [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)];
            let mut r = &s2;
            let n = r.read_vectored(&mut bufs).unwrap();
            (n, x, y)
        });
        sleep(Duration::from_millis(10));
        assert_eq!(
            (&c2)
                .write_vectored(&[IoSlice::new(b"wx"), IoSlice::new(b"yz")])
                .unwrap(),
            4
        );
        let (n, x, y) = join(reader);
        assert!(n >= 1);
        let got: Vec<u8> = x.iter().chain(y.iter()).take(n).copied().collect();
        assert_eq!(&got[..], &b"wxyz"[..n]);
    };
    check();
    join(stackweave::spawn(check));
}

#[test]
fn nodelay_and_ttl_round_trip() {
    let _serial = lock(&SERIAL);
    let (c, _s) = pair();
    c.set_nodelay(true).unwrap();
    assert!(c.nodelay().unwrap());
    c.set_nodelay(false).unwrap();
    assert!(!c.nodelay().unwrap());
    c.set_ttl(42).unwrap();
    assert_eq!(c.ttl().unwrap(), 42);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_ttl(17).unwrap();
    assert_eq!(l.ttl().unwrap(), 17);
    assert!(c.take_error().unwrap().is_none());
    // set_nonblocking: WouldBlock instead of waiting, on a thread and in a coroutine.
    c.set_nonblocking(true).unwrap();
    assert_eq!(
        (&c).read(&mut [0; 8]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    l.set_nonblocking(true).unwrap();
    let (c, l) = join(stackweave::spawn(move || {
        assert_eq!(
            (&c).read(&mut [0; 8]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        (c, l)
    }));
    c.set_nonblocking(false).unwrap();
    drop(l);
}

fn is_nonblocking(fd: i32) -> bool {
    // SAFETY: fcntl F_GETFL on a descriptor the caller holds.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

#[test]
fn std_sockets_convert_and_do_not_block_the_worker() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("From<std>", Duration::from_secs(60));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    assert!(!is_nonblocking(std_listener.as_raw_fd()));
    let listener = TcpListener::from(std_listener);
    assert!(is_nonblocking(listener.as_raw_fd()));
    // One worker: if the converted listener still blocked in accept(2), the ticker
    // coroutine could not run until a connection came, and none comes until it
    // has ticked.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let acceptor = rt.spawn(move || listener.accept().map(|(s, _)| s));
    let ticker = {
        let ticks = ticks.clone();
        rt.spawn(move || {
            for _ in 0..5 {
                sleep(Duration::from_millis(2));
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while ticks.load(Ordering::SeqCst) < 5 {
        std::thread::sleep(Duration::from_millis(2));
    }
    join(ticker);
    let std_client = std::net::TcpStream::connect(addr).unwrap();
    let server_side = join(acceptor).unwrap();
    let mut client = TcpStream::from(std_client);
    assert!(is_nonblocking(client.as_raw_fd()));
    let echo = rt.spawn(move || serve_bytes(server_side));
    client.write_all(b"converted").unwrap();
    let mut buf = [0; 9];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"converted");
    drop(client);
    assert_eq!(join(echo).unwrap(), 9);
}

#[test]
fn raw_descriptors_round_trip_and_the_registration_is_released() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("raw fds", Duration::from_secs(60));
    let rt = two_workers();
    let (c, s) = pair();
    let fd = c.as_raw_fd();
    // Register the stream with a worker's reactor by waiting on it once.
    let c = join(rt.spawn(move || {
        c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        assert_eq!(
            (&c).read(&mut [0; 1]).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
        c
    }));
    let raw = c.into_raw_fd();
    assert_eq!(raw, fd);
    assert!(is_nonblocking(raw), "into_raw_fd keeps the fd non-blocking");
    // SAFETY: `raw` came from into_raw_fd: we own it.
    let mut std_stream = unsafe { std::net::TcpStream::from_raw_fd(raw) };
    std_stream.set_nonblocking(false).unwrap();
    (&s).write_all(b"std").unwrap();
    let mut buf = [0; 3];
    std_stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"std");
    // And back, waiting in a coroutine again (a stale registration would fail).
    let raw = std_stream.into_raw_fd();
    // SAFETY: as above.
    let c = unsafe { TcpStream::from_raw_fd(raw) };
    assert_eq!(c.as_raw_fd(), raw);
    let reader = rt.spawn(move || {
        let mut buf = [0; 4];
        (&c).read_exact(&mut buf).map(|()| buf)
    });
    std::thread::sleep(Duration::from_millis(10));
    (&s).write_all(b"back").unwrap();
    assert_eq!(&join(reader).unwrap(), b"back");

    // Listeners too, and OwnedFd.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let raw = l.into_raw_fd();
    // SAFETY: as above.
    let l = unsafe { TcpListener::from_raw_fd(raw) };
    let owned: std::os::fd::OwnedFd = l.into();
    let l = TcpListener::from(std::net::TcpListener::from(owned));
    let acceptor = rt.spawn(move || l.accept().map(|(_, peer)| peer));
    let client = TcpStream::connect(addr).unwrap();
    assert_eq!(join(acceptor).unwrap(), client.local_addr().unwrap());
}

#[test]
fn incoming_yields_each_connection() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("incoming", Duration::from_secs(60));
    let (listener, addr) = listener();
    let server = stackweave::spawn(move || {
        listener
            .incoming()
            .take(3)
            .map(|s| s.and_then(|s| s.peer_addr()))
            .collect::<io::Result<Vec<_>>>()
    });
    let clients: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut peers = join(server).unwrap();
    let mut want: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    peers.sort();
    want.sort();
    assert_eq!(peers, want);
}

#[test]
fn connecting_to_a_closed_port_is_connection_refused() {
    let _serial = lock(&SERIAL);
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "thread: {err}");
    let err = join(stackweave::spawn(move || TcpStream::connect(addr))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "coroutine: {err}");
    let err = join(stackweave::spawn(move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    }))
    .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "connect_timeout: {err}"
    );
}

#[test]
fn connecting_to_localhost_by_name_resolves() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("localhost", Duration::from_secs(60));
    let (listener, addr) = listener();
    let port = addr.port();
    let server = stackweave::spawn(move || {
        (0..4)
            .map(|_| listener.accept().map(|(s, _)| s))
            .collect::<io::Result<Vec<_>>>()
    });
    let name = format!("localhost:{port}");
    let a = TcpStream::connect(name.as_str()).expect("thread: localhost:PORT");
    let b = TcpStream::connect(("localhost", port)).expect("thread: (localhost, PORT)");
    let (c, d) = join(stackweave::spawn(move || {
        (
            TcpStream::connect(name).expect("coroutine: localhost:PORT"),
            TcpStream::connect(("localhost", port)).expect("coroutine: (localhost, PORT)"),
        )
    }));
    for s in [&a, &b, &c, &d] {
        assert_eq!(s.peer_addr().unwrap(), addr);
    }
    assert_eq!(join(server).unwrap().len(), 4);
}

#[test]
fn shutdown_wakes_a_reader_blocked_on_a_clone() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("shutdown wakes readers", Duration::from_secs(60));
    let rt = two_workers();
    for how in [Shutdown::Read, Shutdown::Both] {
        for reader_in_coroutine in [true, false] {
            let (_c, s) = pair();
            let clone = s.try_clone().unwrap();
            // Far away: the read must end because of the shutdown, not the timeout.
            clone
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let read = move || (&clone).read(&mut [0; 8]);
            let done: Box<dyn FnOnce() -> io::Result<usize>> = if reader_in_coroutine {
                let h = rt.spawn(read);
                Box::new(move || join(h))
            } else {
                let h = std::thread::spawn(read);
                Box::new(move || h.join().unwrap())
            };
            std::thread::sleep(Duration::from_millis(30));
            rt.block_on(move || s.shutdown(how).unwrap());
            let start = Instant::now();
            let r = done();
            assert!(
                matches!(r, Ok(0)),
                "{how:?} (reader in a coroutine: {reader_in_coroutine}): read gave {r:?}"
            );
            assert!(start.elapsed() < Duration::from_secs(10));
        }
    }
}

#[test]
fn several_coroutines_accept_on_one_listener_and_its_clones() {
    let _serial = lock(&SERIAL);
    const CONNS: usize = 400;
    const ACCEPTORS: usize = 4;
    let _watchdog = Watchdog::new("shared listener", Duration::from_secs(60));
    let rt = two_workers();
    let (listener, addr) = listener();
    let clone = listener.try_clone().unwrap();
    let shared = Arc::new(listener);
    // Three coroutines share the listener, a fourth waits on a clone; all of them
    // wait in accept at the same time, on both workers.
    let acceptors: Vec<_> = (0..ACCEPTORS)
        .map(|i| {
            let l = if i == ACCEPTORS - 1 {
                Arc::new(clone.try_clone().unwrap())
            } else {
                shared.clone()
            };
            rt.spawn(move || {
                let mut served = 0;
                loop {
                    let (mut s, _) = l.accept().expect("accept");
                    let mut b = [0; 1];
                    s.read_exact(&mut b).unwrap();
                    if b[0] == b'q' {
                        return served;
                    }
                    s.write_all(b"k").unwrap();
                    served += 1;
                }
            })
        })
        .collect();
    drop(clone);
    let clients: Vec<_> = (0..CONNS)
        .map(|_| {
            rt.spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"c").unwrap();
                let mut b = [0; 1];
                s.read_exact(&mut b).unwrap();
            })
        })
        .collect();
    for c in clients {
        join(c);
    }
    // One "quit" per acceptor: each stops at the first it gets.
    let quits: Vec<_> = (0..ACCEPTORS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"q").unwrap();
            s
        })
        .collect();
    let served: Vec<usize> = acceptors.into_iter().map(join).collect();
    drop(quits);
    println!("connections served per acceptor: {served:?}");
    assert_eq!(served.iter().sum::<usize>(), CONNS);
}

/// Byte `i` of the bulk transfer's stream: a hash of its position.
fn stream_byte(i: usize) -> u8 {
    ((i as u64 ^ 0x5555).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

#[test]
fn a_bulk_transfer_with_backpressure_arrives_intact() {
    let _serial = lock(&SERIAL);
    const BYTES: usize = 64 << 20;
    let _watchdog = Watchdog::new("bulk transfer", Duration::from_secs(60));
    let rt = two_workers();
    let (mut c, s) = rt.block_on(pair);
    let reader = rt.spawn(move || {
        let mut s = s;
        let mut buf = vec![0; 1500];
        let mut total = 0;
        let mut pauses = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return (total, pauses);
            }
            for (k, &b) in buf[..n].iter().enumerate() {
                assert!(b == stream_byte(total + k), "corrupt at {}", total + k);
            }
            total += n;
            // A slow reader now and then, so that the writer waits for space.
            if total / (8 << 20) > pauses {
                pauses += 1;
                sleep(Duration::from_millis(20));
            }
        }
    });
    // The writer, on this thread, in chunks the reader's reads do not line up with.
    let mut sent = 0;
    let mut chunk = vec![0; 100_000];
    while sent < BYTES {
        let n = (BYTES - sent).min(chunk.len());
        for (k, b) in chunk[..n].iter_mut().enumerate() {
            *b = stream_byte(sent + k);
        }
        c.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    drop(c);
    let (total, pauses) = join(reader);
    assert_eq!(total, BYTES);
    assert!(pauses >= 7);
}
