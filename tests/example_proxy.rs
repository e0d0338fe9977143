//! The proxy example (`examples/proxy.rs`), run in-process: an echo upstream that
//! checksums what it receives, the proxy in front of it, and clients that push data
//! through both and check every byte that comes back.
//!
//! Every test takes `SERIAL`: the bulk test and the many-connections test would
//! otherwise share the machine's two CPUs.

mod common;

#[path = "../examples/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use common::{fnv1a, lock, Watchdog};
use stackweave::net::{Shutdown, TcpListener, TcpStream};
use stackweave::sync::mpsc;
use stackweave::{JoinHandle, Runtime};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

/// Liveness guard on every client read: a lost byte or a missing end-of-file fails
/// the test after this long instead of hanging it.
const READ_GUARD: Duration = Duration::from_secs(20);

/// Joins a coroutine, re-raising its panic with its own message.
fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// What the upstream saw on one connection: bytes received and their FNV-1a.
type Received = (u64, u64);

/// FNV-1a, fed piece by piece (`common::fnv1a` hashes one slice).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        // FNV-1a of nothing is its offset basis.
        Fnv(fnv1a(&[]))
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// The deterministic test stream of connection `seed`: its byte at `offset`.
/// Position-based, so a reader can check any chunk it happens to receive.
fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let pos = offset + i as u64;
        let mut z = (seed << 40) ^ (pos / 8);
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        *b = (z >> (8 * (pos % 8))) as u8;
    }
}

/// An echo server that, at each connection's end-of-file, reports what it received
/// on `report`, then closes its side (after echoing everything).
fn checksumming_echo(listener: TcpListener, report: mpsc::Sender<Received>) {
    for stream in listener.incoming() {
        let mut stream = stream.expect("upstream accept");
        let report = report.clone();
        stackweave::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut fnv = Fnv::new();
            let mut total = 0u64;
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => panic!("upstream read: {e}"),
                };
                fnv.update(&buf[..n]);
                total += n as u64;
                stream.write_all(&buf[..n]).expect("upstream write");
            }
            let _ = report.send((total, fnv.0));
        });
    }
}

/// A runtime with the checksumming echo upstream and the proxy in front of it.
struct Setup {
    rt: Runtime,
    proxy: SocketAddr,
    reports: mpsc::Receiver<Received>,
}

fn setup() -> Setup {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let upstream_addr = upstream.local_addr().unwrap();
    let front = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let proxy = front.local_addr().unwrap();
    let (tx, reports) = mpsc::channel();
    rt.spawn(move || checksumming_echo(upstream, tx));
    rt.spawn(move || proxy::serve(front, upstream_addr));
    Setup { rt, proxy, reports }
}

/// Sends `len` bytes of stream `seed` through the proxy while reading the echo back
/// concurrently; half-closes after the last byte and expects end-of-file right after
/// the last echoed byte. Returns what was sent: (length, FNV-1a).
fn round_trip(proxy: SocketAddr, seed: u64, len: u64) -> Received {
    let stream = TcpStream::connect(proxy).expect("connect proxy");
    stream.set_read_timeout(Some(READ_GUARD)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = stackweave::spawn(move || -> io::Result<Received> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut fnv = Fnv::new();
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            pattern(seed, off, &mut buf[..n]);
            fnv.update(&buf[..n]);
            writer.write_all(&buf[..n])?;
            off += n as u64;
        }
        // Half-close: the proxy must pass this end-of-file on to the upstream.
        writer.shutdown(Shutdown::Write)?;
        Ok((len, fnv.0))
    });

    let mut reader = stream;
    let mut buf = vec![0u8; 256 * 1024];
    let mut expected = vec![0u8; 256 * 1024];
    let mut fnv = Fnv::new();
    let mut off = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("stream {seed}: read after {off} of {len} bytes: {e}"),
        };
        assert!(
            off + n as u64 <= len,
            "stream {seed}: more bytes back than sent"
        );
        pattern(seed, off, &mut expected[..n]);
        if buf[..n] != expected[..n] {
            let i = buf[..n].iter().zip(&expected).position(|(a, b)| a != b);
            panic!(
                "stream {seed}: echoed byte {} differs",
                off + i.unwrap() as u64
            );
        }
        fnv.update(&buf[..n]);
        off += n as u64;
    }
    assert_eq!(
        off, len,
        "stream {seed}: end-of-file before all bytes came back"
    );
    let sent = join(sender).expect("writer");
    assert_eq!((off, fnv.0), sent, "stream {seed}: echo checksum");
    sent
}

#[test]
fn hundred_mib_through_proxy_and_back() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(
        "hundred_mib_through_proxy_and_back",
        Duration::from_secs(120),
    );
    let s = setup();
    let proxy = s.proxy;
    let sent = join(s.rt.spawn(move || round_trip(proxy, 1, 100 << 20)));
    // What reached the upstream is exactly what the client sent.
    let got = s.reports.recv_timeout(READ_GUARD).expect("upstream report");
    assert_eq!(got, sent, "bytes that reached the upstream");
    s.rt.shutdown();
}

#[test]
fn half_close_keeps_the_other_direction_open() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(
        "half_close_keeps_the_other_direction_open",
        Duration::from_secs(60),
    );
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    // An upstream that answers only after the request's end-of-file: it needs the
    // proxy to pass the half-close on and to keep the reply direction open.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = front.local_addr().unwrap();
    rt.spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut request = Vec::new();
        s.read_to_end(&mut request).unwrap();
        let reply = format!(
            "got {} bytes: {}",
            request.len(),
            String::from_utf8_lossy(&request)
        );
        s.write_all(reply.as_bytes()).unwrap();
        // Dropping `s` closes the upstream side; the client must see end-of-file.
    });
    rt.spawn(move || proxy::serve(front, upstream_addr));

    let reply = join(rt.spawn(move || {
        let mut c = TcpStream::connect(proxy_addr).unwrap();
        c.set_read_timeout(Some(READ_GUARD)).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply)
            .expect("reply, then end-of-file");
        reply
    }));
    assert_eq!(reply, "got 5 bytes: hello");
    rt.shutdown();
}

#[test]
fn hundred_concurrent_connections() {
    const CONNS: u64 = 100;
    const LEN: u64 = 1 << 20;
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("hundred_concurrent_connections", Duration::from_secs(120));
    let s = setup();
    let proxy = s.proxy;
    let clients: Vec<_> = (0..CONNS)
        .map(|seed| s.rt.spawn(move || round_trip(proxy, 100 + seed, LEN)))
        .collect();
    let mut sent: Vec<Received> = clients.into_iter().map(join).collect();
    // The upstream cannot tell the connections apart; compare as sorted lists.
    let mut got: Vec<Received> = (0..CONNS)
        .map(|_| s.reports.recv_timeout(READ_GUARD).expect("upstream report"))
        .collect();
    sent.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, sent, "what reached the upstream");
    s.rt.shutdown();
}

#[test]
fn unreachable_upstream_closes_the_client() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(
        "unreachable_upstream_closes_the_client",
        Duration::from_secs(60),
    );
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    // A port with nothing listening: bind, note the address, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = front.local_addr().unwrap();
    rt.spawn(move || proxy::serve(front, dead_addr));
    let res = join(rt.spawn(move || {
        let mut c = TcpStream::connect(proxy_addr).unwrap();
        c.set_read_timeout(Some(READ_GUARD)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).map(|_| rest)
    }));
    // End-of-file (or a reset), never a hang.
    match res {
        Ok(rest) => assert!(rest.is_empty()),
        Err(e) => assert_ne!(e.kind(), ErrorKind::TimedOut, "{e}"),
    }
    rt.shutdown();
}
