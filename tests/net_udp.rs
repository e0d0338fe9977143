//! UDP with real sockets on 127.0.0.1: `stackweave::net::UdpSocket` behaves like
//! `std::net::UdpSocket`, in coroutines and on plain threads.
//!
//! Every test takes `SERIAL` so that the timeout bounds are not measured while the
//! many-sockets test loads the two CPUs of the CI machine.

mod common;

use common::{check_timeout_bounds, fnv1a, lock, Rng, Watchdog};
use stackweave::net::UdpSocket;
use stackweave::{JoinHandle, Runtime};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

const SLACK: Duration = Duration::from_millis(50);

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn bind() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let a = s.local_addr().unwrap();
    (s, a)
}

/// send_to/recv_from and connect/send/recv between two sockets, from the current
/// context.
fn round_trips() {
    let (a, a_addr) = bind();
    let (b, b_addr) = bind();
    let mut buf = [0; 64];
    for i in 0..100u32 {
        let msg = i.to_le_bytes();
        assert_eq!(a.send_to(&msg, b_addr).unwrap(), 4);
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&msg[..], a_addr));
        assert_eq!(b.send_to(&buf[..n], from).unwrap(), 4);
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&msg[..], b_addr));
    }
    a.connect(b_addr).unwrap();
    b.connect(a_addr).unwrap();
    assert_eq!(a.peer_addr().unwrap(), b_addr);
    for i in 0..100u32 {
        let msg = i.to_be_bytes();
        a.send(&msg).unwrap();
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &msg);
        b.send(&buf[..n]).unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], &msg);
    }
    // send_to with a name resolves it (off the worker in a coroutine).
    let (c, c_addr) = bind();
    let to = format!("localhost:{}", c_addr.port());
    let d = UdpSocket::bind("127.0.0.1:0").unwrap();
    d.send_to(b"by name", to.as_str()).unwrap();
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"by name"[..], d.local_addr().unwrap())
    );
    // A datagram longer than the buffer is truncated.
    d.send_to(&[7; 100], c_addr).unwrap();
    let (n, _) = c.recv_from(&mut buf[..10]).unwrap();
    assert_eq!(n, 10);
}

#[test]
fn datagrams_round_trip_with_send_to_and_with_connect() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("udp round trips", Duration::from_secs(60));
    round_trips();
    join(stackweave::spawn(round_trips));
}

fn recv_timeout_round(what: &'static str) {
    let (s, _) = bind();
    let timeout = Duration::from_millis(100);
    assert_eq!(
        s.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    s.set_read_timeout(Some(timeout)).unwrap();
    assert_eq!(s.read_timeout().unwrap(), Some(timeout));
    check_timeout_bounds(what, timeout, SLACK, 3, || {
        let start = Instant::now();
        let r = s.recv_from(&mut [0; 8]);
        (r, start.elapsed())
    });
    // recv on a connected socket times out the same way.
    let (_other, other_addr) = bind();
    s.connect(other_addr).unwrap();
    check_timeout_bounds(what, timeout, SLACK, 3, || {
        let start = Instant::now();
        let r = s.recv(&mut [0; 8]);
        (r, start.elapsed())
    });
    s.set_write_timeout(Some(timeout)).unwrap();
    assert_eq!(s.write_timeout().unwrap(), Some(timeout));
}

#[test]
fn recv_timeout_gives_timed_out_within_bounds_in_coroutines_and_threads() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("udp timeouts", Duration::from_secs(60));
    recv_timeout_round("udp recv timeout on a thread");
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(|| recv_timeout_round("udp recv timeout in a coroutine"));
}

#[test]
fn peek_from_waits_and_leaves_the_datagram_queued() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("udp peek", Duration::from_secs(60));
    let (r, r_addr) = bind();
    let (w, w_addr) = bind();
    let peeker = stackweave::spawn(move || {
        let mut buf = [0; 16];
        let (n, from) = r.peek_from(&mut buf).unwrap(); // waits for the datagram
        let (n2, from2) = r.peek_from(&mut buf).unwrap();
        assert_eq!((n, from), (n2, from2));
        let mut got = [0; 16];
        let (m, from3) = r.recv_from(&mut got).unwrap();
        assert_eq!((m, from3), (n, from));
        assert_eq!(&got[..m], &buf[..n]);
        r.connect(from).unwrap();
        let mut p = [0; 16];
        let k = r.peek(&mut p).unwrap(); // waits for the second one
        assert_eq!(r.recv(&mut got).unwrap(), k);
        (buf[..n].to_vec(), from, p[..k].to_vec())
    });
    std::thread::sleep(Duration::from_millis(20));
    w.send_to(b"peekaboo", r_addr).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    w.send_to(b"again", r_addr).unwrap();
    let (first, from, second) = join(peeker);
    assert_eq!(first, b"peekaboo");
    assert_eq!(from, w_addr);
    assert_eq!(second, b"again");
}

#[test]
fn two_hundred_coroutines_each_with_its_own_socket_exchange_fifty_datagrams() {
    let _serial = lock(&SERIAL);
    const PAIRS: u64 = 100;
    const DATAGRAMS: u64 = 50;
    let _watchdog = Watchdog::new("many udp sockets", Duration::from_secs(60));
    let rt = Runtime::builder().workers(2).build().unwrap();
    // A hundred pairs of coroutines, a socket each. In a pair, one sends and waits
    // for the echo before sending again, so a socket never has more than one
    // datagram queued: the kernel has no reason to drop any (one shared echo server
    // would overflow its receive buffer and lose datagrams for real).
    let mut handles = Vec::new();
    for pair in 0..PAIRS {
        let (a, a_addr) = bind();
        let (b, b_addr) = bind();
        a.connect(b_addr).unwrap();
        b.connect(a_addr).unwrap();
        handles.push(rt.spawn(move || {
            b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = [0; 2048];
            for _ in 0..DATAGRAMS {
                let n = b.recv(&mut buf).expect("datagram (lost?)");
                buf[..n].reverse();
                assert_eq!(b.send(&buf[..n]).unwrap(), n);
            }
            0
        }));
        handles.push(rt.spawn(move || {
            a.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut rng = Rng::new(pair);
            let mut buf = [0; 2048];
            let mut sum = 0u64;
            for _ in 0..DATAGRAMS {
                let len = rng.range(1, 1400) as usize;
                let mut msg = rng.bytes(len);
                assert_eq!(a.send(&msg).unwrap(), len);
                let n = a.recv(&mut buf).expect("echo (lost?)");
                msg.reverse();
                assert!(buf[..n] == msg[..], "pair {pair}: echo differs");
                sum = sum.wrapping_add(fnv1a(&msg));
            }
            sum
        }));
    }
    for h in handles {
        join(h);
    }
}

#[test]
fn a_plain_thread_and_a_coroutine_talk_over_udp() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new("thread <-> coroutine udp", Duration::from_secs(60));
    let (co_sock, co_addr) = bind();
    let co = stackweave::spawn(move || {
        let mut buf = [0; 64];
        let mut replies = 0;
        loop {
            let (n, from) = co_sock.recv_from(&mut buf).unwrap();
            if &buf[..n] == b"bye" {
                return replies;
            }
            buf[..n].reverse();
            co_sock.send_to(&buf[..n], from).unwrap();
            replies += 1;
        }
    });
    let (t_sock, _) = bind();
    t_sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0; 64];
    for i in 0..200u32 {
        let msg = format!("message {i}");
        t_sock.send_to(msg.as_bytes(), co_addr).unwrap();
        let (n, from) = t_sock.recv_from(&mut buf).unwrap();
        assert_eq!(from, co_addr);
        let want: Vec<u8> = msg.bytes().rev().collect();
        assert_eq!(&buf[..n], &want[..]);
    }
    t_sock.send_to(b"bye", co_addr).unwrap();
    assert_eq!(join(co), 200);
}

#[test]
fn socket_options_round_trip_and_clones_share_the_socket() {
    let _serial = lock(&SERIAL);
    let (s, addr) = bind();
    s.set_broadcast(true).unwrap();
    assert!(s.broadcast().unwrap());
    s.set_ttl(33).unwrap();
    assert_eq!(s.ttl().unwrap(), 33);
    assert!(s.take_error().unwrap().is_none());
    let clone = s.try_clone().unwrap();
    assert_eq!(clone.local_addr().unwrap(), addr);
    let (w, _) = bind();
    w.send_to(b"to both", addr).unwrap();
    let got = join(stackweave::spawn(move || {
        let mut buf = [0; 16];
        let (n, _) = clone.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    }));
    assert_eq!(got, b"to both");
    s.set_nonblocking(true).unwrap();
    assert_eq!(
        s.recv_from(&mut [0; 8]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}
