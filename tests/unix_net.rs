//! Unix domain sockets (`stackweave::os::unix::net`) on real sockets: echo round
//! trips between coroutines and from plain threads, half-close, timeouts, clones
//! used by two coroutines at once, datagrams, connects that find the backlog full,
//! and writes to a vanished peer that must fail without `SIGPIPE`.

mod common;

use common::{check_timeout_bounds, Watchdog};
use stackweave::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Connections in the echo tests.
const CONNECTIONS: usize = 200;
/// Messages per connection in the echo tests.
const MESSAGES: usize = 50;
/// Every test gives up (aborting, with its name) after this long.
const LIMIT: Duration = Duration::from_secs(60);

/// A socket path unique to this process and `test`, removed when dropped (and
/// before use, in case a crashed earlier run left it behind).
struct SockPath(PathBuf);

impl SockPath {
    fn new(test: &str) -> SockPath {
        let path =
            std::env::temp_dir().join(format!("stackweave-{}-{test}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SockPath(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `j`th message of connection `conn`: 1 to 3000 bytes of a pattern that
/// depends on both.
fn message(conn: usize, j: usize) -> Vec<u8> {
    let len = 1 + (conn * 7919 + j * 104_729) % 3000;
    (0..len)
        .map(|k| (conn.wrapping_mul(31) ^ j.wrapping_mul(131) ^ k.wrapping_mul(7)) as u8)
        .collect()
}

/// A simple order-sensitive checksum.
fn checksum(sum: u64, data: &[u8]) -> u64 {
    data.iter().fold(sum, |s, &b| {
        s.wrapping_mul(1_000_003).wrapping_add(u64::from(b))
    })
}

/// Echoes everything it reads until end-of-file; returns the number of bytes.
fn echo(mut stream: UnixStream) -> io::Result<usize> {
    let mut buf = [0; 4096];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n;
    }
}

/// Accepts `n` connections on `listener`, echoing each in its own coroutine; returns
/// the total number of bytes echoed once all of them reached end-of-file.
fn echo_server(listener: UnixListener, n: usize) -> stackweave::JoinHandle<io::Result<usize>> {
    stackweave::spawn(move || {
        let handlers: Vec<_> = listener
            .incoming()
            .take(n)
            .map(|stream| stream.map(|s| stackweave::spawn(move || echo(s))))
            .collect::<io::Result<_>>()?;
        let mut total = 0;
        for h in handlers {
            total += h.join().expect("echo coroutine panicked")?;
        }
        Ok(total)
    })
}

/// Connects to `path`, sends connection `conn`'s messages one by one, checks each
/// echo and returns (bytes sent, checksum of what came back).
fn echo_client(path: &Path, conn: usize) -> io::Result<(usize, u64)> {
    let mut stream = UnixStream::connect(path)?;
    let (mut sent, mut sum) = (0, 0);
    let mut reply = Vec::new();
    for j in 0..MESSAGES {
        let msg = message(conn, j);
        stream.write_all(&msg)?;
        reply.resize(msg.len(), 0);
        stream.read_exact(&mut reply)?;
        assert!(
            reply == msg,
            "connection {conn}: echo of message {j} differs"
        );
        sent += msg.len();
        sum = checksum(sum, &reply);
    }
    Ok((sent, sum))
}

/// The bytes and checksum [`echo_client`] should report for `conn`.
fn expected(conn: usize) -> (usize, u64) {
    (0..MESSAGES).fold((0, 0), |(n, sum), j| {
        let msg = message(conn, j);
        (n + msg.len(), checksum(sum, &msg))
    })
}

#[test]
fn stream_echo_between_coroutines() {
    let _watchdog = Watchdog::new("stream_echo_between_coroutines", LIMIT);
    let sock = SockPath::new("echo-coroutines");
    let server = echo_server(UnixListener::bind(sock.path()).unwrap(), CONNECTIONS);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|conn| {
            let path = sock.path().to_owned();
            stackweave::spawn(move || echo_client(&path, conn))
        })
        .collect();
    let mut total = 0;
    for (conn, h) in clients.into_iter().enumerate() {
        let got = h.join().expect("client panicked").unwrap();
        assert_eq!(got, expected(conn), "connection {conn}");
        total += got.0;
    }
    assert_eq!(server.join().unwrap().unwrap(), total);
}

#[test]
fn stream_echo_from_plain_threads() {
    const THREADS: usize = 4;
    let _watchdog = Watchdog::new("stream_echo_from_plain_threads", LIMIT);
    let sock = SockPath::new("echo-threads");
    let server = echo_server(UnixListener::bind(sock.path()).unwrap(), CONNECTIONS);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = sock.path().to_owned();
            std::thread::spawn(move || {
                let mut total = 0;
                for conn in (t..CONNECTIONS).step_by(THREADS) {
                    let got = echo_client(&path, conn).unwrap();
                    assert_eq!(got, expected(conn), "connection {conn}");
                    total += got.0;
                }
                total
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(server.join().unwrap().unwrap(), total);
}

#[test]
fn half_close_peer_reads_the_rest_then_eof() {
    let _watchdog = Watchdog::new("half_close_peer_reads_the_rest_then_eof", LIMIT);
    let sock = SockPath::new("half-close");
    let listener = UnixListener::bind(sock.path()).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // The server reads to end-of-file, then answers on the still-open other half.
    let server = stackweave::spawn(move || -> io::Result<Vec<u8>> {
        let (mut stream, _) = listener.accept()?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got)?;
        assert_eq!(stream.read(&mut [0; 16])?, 0, "end-of-file is sticky");
        stream.write_all(format!("got {}", got.len()).as_bytes())?;
        Ok(got)
    });
    let path = sock.path().to_owned();
    let sent = data.clone();
    let client = stackweave::spawn(move || -> io::Result<String> {
        let mut stream = UnixStream::connect(&path)?;
        stream.write_all(&sent)?;
        stream.shutdown(Shutdown::Write)?;
        let err = stream.write(b"more").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "write after shutdown");
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    });
    assert_eq!(
        client.join().unwrap().unwrap(),
        format!("got {}", data.len())
    );
    assert!(server.join().unwrap().unwrap() == data);
}

/// Reads from a stream whose peer never writes, with a 100 ms read timeout, and
/// checks the error and how long it took: never early, and within 50 ms of the
/// timeout in at least one of three tries (a loaded machine may deschedule one).
fn read_times_out() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let (mut a, _b) = UnixStream::pair().unwrap();
    assert_eq!(a.read_timeout().unwrap(), None);
    a.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(a.read_timeout().unwrap(), Some(TIMEOUT));
    check_timeout_bounds(
        "unix stream read timeout",
        TIMEOUT,
        Duration::from_millis(50),
        3,
        || {
            let start = Instant::now();
            let r = a.read(&mut [0; 8]);
            (r, start.elapsed())
        },
    );
}

#[test]
fn read_timeout_in_a_coroutine() {
    let _watchdog = Watchdog::new("read_timeout_in_a_coroutine", LIMIT);
    stackweave::spawn(read_times_out).join().unwrap();
}

#[test]
fn read_timeout_on_a_thread() {
    let _watchdog = Watchdog::new("read_timeout_on_a_thread", LIMIT);
    read_times_out();
}

#[test]
fn timeouts_and_nonblocking_mode() {
    let _watchdog = Watchdog::new("timeouts_and_nonblocking_mode", LIMIT);
    let (a, _b) = UnixStream::pair().unwrap();
    for result in [
        a.set_read_timeout(Some(Duration::ZERO)),
        a.set_write_timeout(Some(Duration::ZERO)),
    ] {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    // Fill the socket buffer without waiting, then a write times out.
    a.set_nonblocking(true).unwrap();
    assert_eq!(
        (&a).read(&mut [0; 8]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    let chunk = vec![7u8; 65536]; // on the heap: coroutine stacks are small
    loop {
        match (&a).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the buffer: {e}"),
        }
    }
    a.set_nonblocking(false).unwrap();
    a.set_write_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let h = stackweave::spawn(move || (&a).write(&chunk).map_err(|e| e.kind()));
    assert_eq!(h.join().unwrap(), Err(ErrorKind::TimedOut));

    let listener_path = SockPath::new("nonblocking-accept");
    let listener = UnixListener::bind(listener_path.path()).unwrap();
    listener.set_nonblocking(true).unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    let dgram = UnixDatagram::unbound().unwrap();
    dgram.set_nonblocking(true).unwrap();
    assert_eq!(
        dgram.recv(&mut [0; 8]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(
        dgram
            .set_read_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn try_clone_one_coroutine_reads_while_another_writes() {
    const TOTAL: usize = 4 << 20; // far more than the socket buffers hold
    let _watchdog = Watchdog::new("try_clone_one_coroutine_reads_while_another_writes", LIMIT);
    let (a, b) = UnixStream::pair().unwrap();
    let echo = stackweave::spawn(move || echo(b));
    let reader = a.try_clone().unwrap();
    let mut writer = a;
    let w = stackweave::spawn(move || -> io::Result<()> {
        let mut sent = 0;
        while sent < TOTAL {
            let chunk: Vec<u8> = (sent..(sent + 8192).min(TOTAL))
                .map(|i| (i % 253) as u8)
                .collect();
            // Vectored, in two halves, to exercise `sendmsg` too.
            let (x, y) = chunk.split_at(chunk.len() / 2);
            let mut bufs = [IoSlice::new(x), IoSlice::new(y)];
            writer.write_all_vectored_compat(&mut bufs)?;
            sent += chunk.len();
        }
        writer.shutdown(Shutdown::Write)
    });
    let r = stackweave::spawn(move || -> io::Result<usize> {
        let mut reader = reader;
        let mut buf = vec![0; 10_000];
        let mut got = 0;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            for (k, &byte) in buf[..n].iter().enumerate() {
                assert_eq!(byte, ((got + k) % 253) as u8, "byte {}", got + k);
            }
            got += n;
        }
    });
    w.join().unwrap().unwrap();
    assert_eq!(r.join().unwrap().unwrap(), TOTAL);
    assert_eq!(echo.join().unwrap().unwrap(), TOTAL);
}

/// `write_all_vectored` is unstable: the same, by hand.
trait WriteAllVectored {
    fn write_all_vectored_compat(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()>;
}

impl<W: Write> WriteAllVectored for W {
    fn write_all_vectored_compat(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        while !bufs.is_empty() {
            match self.write_vectored(bufs)? {
                0 => return Err(ErrorKind::WriteZero.into()),
                n => IoSlice::advance_slices(&mut bufs, n),
            }
        }
        Ok(())
    }
}

#[test]
fn connect_waits_while_the_backlog_is_full() {
    const CLIENTS: usize = 16;
    let _watchdog = Watchdog::new("connect_waits_while_the_backlog_is_full", LIMIT);
    let sock = SockPath::new("backlog");
    let listener = std::os::unix::net::UnixListener::bind(sock.path()).unwrap();
    // A backlog of 1 (listen again on a listening socket sets it), handed to us
    // through `From<OwnedFd>`.
    // SAFETY: listen on a socket we own.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
    let listener = UnixListener::from(OwnedFd::from(listener));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let path = sock.path().to_owned();
            stackweave::spawn(move || -> io::Result<()> {
                let mut stream = UnixStream::connect(&path)?;
                stream.write_all(&[i as u8])
            })
        })
        .collect();
    // Let the clients fill the backlog before accepting anything.
    stackweave::spawn(|| stackweave::time::sleep(Duration::from_millis(20)))
        .join()
        .unwrap();
    let mut seen = [false; CLIENTS];
    for stream in listener.incoming().take(CLIENTS) {
        let mut byte = [0];
        stream.unwrap().read_exact(&mut byte).unwrap();
        assert!(!std::mem::replace(&mut seen[byte[0] as usize], true));
    }
    for h in clients {
        h.join().unwrap().unwrap();
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn connect_errors_are_std_errors() {
    let _watchdog = Watchdog::new("connect_errors_are_std_errors", LIMIT);
    let sock = SockPath::new("errors");
    let h = {
        let path = sock.path().to_owned();
        stackweave::spawn(move || UnixStream::connect(&path).map(drop).map_err(|e| e.kind()))
    };
    assert_eq!(h.join().unwrap(), Err(ErrorKind::NotFound));
    // A socket file that nobody listens on any more.
    drop(UnixListener::bind(sock.path()).unwrap());
    assert_eq!(
        UnixStream::connect(sock.path()).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    assert_eq!(
        UnixListener::bind(sock.path()).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    let long = std::env::temp_dir().join("x".repeat(200));
    assert_eq!(
        UnixStream::connect(&long).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn addresses() {
    let _watchdog = Watchdog::new("addresses", LIMIT);
    let sock = SockPath::new("addresses");
    let listener = UnixListener::bind(sock.path()).unwrap();
    assert_eq!(
        listener.local_addr().unwrap().as_pathname(),
        Some(sock.path())
    );
    let addr = SocketAddr::from_pathname(sock.path()).unwrap();
    let client = UnixStream::connect_addr(&addr).unwrap();
    let (server, peer) = listener.try_clone().unwrap().accept().unwrap();
    assert!(peer.is_unnamed());
    assert_eq!(client.peer_addr().unwrap().as_pathname(), Some(sock.path()));
    assert_eq!(
        server.local_addr().unwrap().as_pathname(),
        Some(sock.path())
    );
    assert!(client.take_error().unwrap().is_none());
    assert!(listener.take_error().unwrap().is_none());
    assert!(format!("{client:?}").contains("UnixStream"));
}

#[test]
fn datagram_round_trip_between_bound_paths() {
    const DATAGRAMS: usize = 500;
    let _watchdog = Watchdog::new("datagram_round_trip_between_bound_paths", LIMIT);
    let server_sock = SockPath::new("dgram-server");
    let client_sock = SockPath::new("dgram-client");
    let server = UnixDatagram::bind(server_sock.path()).unwrap();
    let echo = stackweave::spawn(move || -> io::Result<UnixDatagram> {
        let mut buf = [0; 2048];
        for _ in 0..DATAGRAMS {
            let (n, from) = server.recv_from(&mut buf)?;
            server.send_to_addr(&buf[..n], &from)?;
        }
        Ok(server)
    });
    let client = UnixDatagram::bind(client_sock.path()).unwrap();
    let server_path = server_sock.path().to_owned();
    let client = stackweave::spawn(move || -> io::Result<UnixDatagram> {
        let mut buf = [0; 2048];
        for i in 0..DATAGRAMS {
            let msg = message(i, 1);
            let msg = &msg[..msg.len().min(2048)];
            if i % 2 == 0 {
                assert_eq!(client.send_to(msg, &server_path)?, msg.len());
            } else {
                let addr = SocketAddr::from_pathname(&server_path)?;
                assert_eq!(client.send_to_addr(msg, &addr)?, msg.len());
            }
            let (n, from) = client.recv_from(&mut buf)?;
            assert_eq!(from.as_pathname(), Some(server_path.as_path()));
            assert!(&buf[..n] == msg, "datagram {i}");
        }
        Ok(client)
    })
    .join()
    .unwrap()
    .unwrap();
    let server = echo.join().unwrap().unwrap();
    assert_eq!(
        client.local_addr().unwrap().as_pathname(),
        Some(client_sock.path())
    );
    // Connected: send and recv, from a plain thread.
    assert_eq!(
        client.peer_addr().unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    client.connect(server_sock.path()).unwrap();
    assert_eq!(
        client.peer_addr().unwrap().as_pathname(),
        Some(server_sock.path())
    );
    client.send(b"connected").unwrap();
    let mut buf = [0; 16];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from.as_pathname()),
        (&b"connected"[..], Some(client_sock.path()))
    );
    server.send_to(b"reply", client_sock.path()).unwrap();
    assert_eq!(client.recv(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"reply");
}

#[test]
fn datagram_pair_and_clones() {
    const DATAGRAMS: usize = 2_000;
    let _watchdog = Watchdog::new("datagram_pair_and_clones", LIMIT);
    let (a, b) = UnixDatagram::pair().unwrap();
    let b2 = b.try_clone().unwrap();
    // One coroutine receives on `b` while another sends on its clone `b2`; `a`
    // echoes from a plain thread.
    let echo = std::thread::spawn(move || -> io::Result<()> {
        let mut buf = [0; 64];
        for _ in 0..DATAGRAMS {
            let n = a.recv(&mut buf)?;
            a.send(&buf[..n])?;
        }
        Ok(())
    });
    let sender = stackweave::spawn(move || -> io::Result<()> {
        for i in 0..DATAGRAMS {
            b2.send(&(i as u32).to_le_bytes())?;
        }
        Ok(())
    });
    let receiver = stackweave::spawn(move || -> io::Result<()> {
        let mut buf = [0; 64];
        for i in 0..DATAGRAMS {
            let n = b.recv(&mut buf)?;
            assert_eq!(&buf[..n], &(i as u32).to_le_bytes(), "datagram {i}");
        }
        Ok(())
    });
    sender.join().unwrap().unwrap();
    receiver.join().unwrap().unwrap();
    echo.join().unwrap().unwrap();
}

#[test]
fn datagram_send_to_a_full_receiver_waits_for_room() {
    let _watchdog = Watchdog::new("datagram_send_to_a_full_receiver_waits_for_room", LIMIT);
    let sock = SockPath::new("dgram-full");
    let receiver = UnixDatagram::bind(sock.path()).unwrap();
    // `filler` fills the receiver's queue; the other sender has nothing in it, so
    // the kernel never tells it when room appears.
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut queued = 0;
    loop {
        match filler.send_to(b"fill", sock.path()) {
            Ok(_) => queued += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the queue: {e}"),
        }
    }
    let sender = UnixDatagram::unbound().unwrap();
    sender.set_nonblocking(true).unwrap();
    assert_eq!(
        sender.send_to(b"last", sock.path()).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    sender.set_nonblocking(false).unwrap();
    let path = sock.path().to_owned();
    let h = stackweave::spawn(move || sender.send_to(b"last", &path));
    let mut buf = [0; 8];
    for _ in 0..queued {
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"fill");
    }
    assert_eq!(h.join().unwrap().unwrap(), 4);
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"last");
}

#[test]
fn datagram_read_timeout_and_shutdown() {
    let _watchdog = Watchdog::new("datagram_read_timeout_and_shutdown", LIMIT);
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let a = stackweave::spawn(move || {
        assert_eq!(a.recv(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
        a
    })
    .join()
    .unwrap();
    b.shutdown(Shutdown::Write).unwrap();
    assert_eq!(b.send(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
    a.shutdown(Shutdown::Read).unwrap();
    assert_eq!(a.recv(&mut [0; 8]).unwrap(), 0);
}

#[test]
fn datagram_shutdown_read_ends_a_waiting_receive() {
    let _watchdog = Watchdog::new("datagram_shutdown_read_ends_a_waiting_receive", LIMIT);
    // A coroutine and a plain thread each wait in a receive on one handle; a
    // shutdown of the read side through another handle ends both with `Ok(0)`, as
    // std's blocking receive returns.
    let (a, _b) = UnixDatagram::pair().unwrap();
    let (a1, a2) = (a.try_clone().unwrap(), a.try_clone().unwrap());
    let in_coroutine = stackweave::spawn(move || a1.recv(&mut [0; 8]).unwrap());
    let on_thread = std::thread::spawn(move || {
        let (n, from) = a2.recv_from(&mut [0; 8]).unwrap();
        assert!(from.is_unnamed());
        n
    });
    stackweave::spawn(|| stackweave::time::sleep(Duration::from_millis(20)))
        .join()
        .unwrap();
    a.shutdown(Shutdown::Read).unwrap();
    assert_eq!(in_coroutine.join().unwrap(), 0);
    assert_eq!(on_thread.join().unwrap(), 0);
    assert_eq!(a.recv(&mut [0; 8]).unwrap(), 0);
}

/// Writes to `stream` (whose peer is gone) until it fails, and checks the error.
fn write_fails(mut stream: &UnixStream) {
    let chunk = vec![1u8; 65536];
    let err = (0..1000)
        .find_map(|_| stream.write(&chunk).err())
        .expect("writes to a closed peer kept succeeding");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "unexpected error {err:?}"
    );
    let err = stream
        .write_vectored(&[IoSlice::new(b"a"), IoSlice::new(b"b")])
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
    ));
}

#[test]
fn write_to_a_dropped_peer_is_an_error_not_sigpipe() {
    const NAME: &str = "write_to_a_dropped_peer_is_an_error_not_sigpipe";
    if common::is_child(NAME) {
        // SAFETY: restores the default action (terminate) for SIGPIPE, in this
        // child process only; no handler is involved.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let _watchdog = Watchdog::new(NAME, LIMIT);
        // From a plain thread, on a pair.
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        write_fails(&a);
        // From a coroutine, on a connection through a listener, the peer dropped
        // while the writer is waiting for buffer space.
        let sock = SockPath::new(NAME);
        let listener = UnixListener::bind(sock.path()).unwrap();
        let path = sock.path().to_owned();
        let writer = stackweave::spawn(move || {
            let stream = UnixStream::connect(&path).unwrap();
            write_fails(&stream);
        });
        let (server_side, _) = listener.accept().unwrap();
        stackweave::spawn(|| stackweave::time::sleep(Duration::from_millis(20)))
            .join()
            .unwrap();
        drop(server_side);
        writer.join().unwrap();
        // A datagram socket after shutdown(Write).
        let (d, _e) = UnixDatagram::pair().unwrap();
        d.shutdown(Shutdown::Write).unwrap();
        assert_eq!(d.send(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
        let target = SockPath::new("sigpipe-dgram");
        let _receiver = UnixDatagram::bind(target.path()).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        sender.shutdown(Shutdown::Write).unwrap();
        let err = sender.send_to(b"x", target.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        let addr = SocketAddr::from_pathname(target.path()).unwrap();
        let err = sender.send_to_addr(b"x", &addr).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        println!("child: no SIGPIPE");
        return;
    }
    let child = common::run_child(NAME);
    assert!(child.status.success(), "{child}");
    assert!(child.stdout.contains("child: no SIGPIPE"), "{child}");
}
