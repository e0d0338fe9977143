//! `ListenOptions`: the backlog is the one asked for, `SO_REUSEPORT` lets listeners
//! share an address (and the kernel spreads connections over them), bind errors keep
//! std's kinds, the listeners serve coroutines like `TcpListener::bind`'s, and
//! `serve_per_worker` starts each connection on the worker that accepted it.

mod common;

use common::Watchdog;
use stackweave::net::{serve_per_worker, ListenOptions, TcpListener, DEFAULT_BACKLOG};
use stackweave::Runtime;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream as StdStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Echoes one byte per connection, tagged with `tag`, for `n` connections.
fn serve_tagged(listener: TcpListener, tag: u8, served: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let served = served.clone();
        stackweave::spawn(move || {
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).is_ok() && stream.write_all(&[tag]).is_ok() {
                served.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
}

#[test]
fn a_large_backlog_queues_connections_nobody_has_accepted_yet() {
    let _watchdog = Watchdog::new("backlog", Duration::from_secs(120));
    common::raise_nofile_limit();
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(128);
    // Well above std's 128 (where connects past the queue stall on SYN retries),
    // below what the kernel allows.
    let n = 800
        .min(somaxconn.saturating_sub(16))
        .min(DEFAULT_BACKLOG as usize - 16);
    let listener = ListenOptions::new().bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Every connect completes while nothing accepts: the kernel queue holds them.
    let clients: Vec<StdStream> = (0..n)
        .map(|i| {
            StdStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("connect {i} of {n} with nothing accepting: {e}"))
        })
        .collect();
    for (i, mut c) in clients.iter().enumerate() {
        c.write_all(&[(i % 251) as u8]).unwrap();
    }
    // Then each queued connection is accepted, alive, and carries its byte.
    let mut seen = vec![false; 251];
    let mut accepted = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        seen[b[0] as usize] = true;
        accepted.push(s);
    }
    assert_eq!(accepted.len(), n);
    assert!(seen[..n.min(251)].iter().all(|&s| s));
}

#[test]
fn reuse_port_listeners_share_an_address_and_the_kernel_feeds_both() {
    const CONNECTIONS: usize = 200;
    let _watchdog = Watchdog::new("reuse_port", Duration::from_secs(120));
    let options = ListenOptions::new().reuse_port(true);
    let first = options.bind("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap();
    let second = options.bind(addr).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);

    let rt = Runtime::builder().workers(2).build().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    for (tag, listener) in [(1u8, first), (2u8, second)] {
        let served = served.clone();
        rt.spawn(move || serve_tagged(listener, tag, served));
    }
    let mut by_tag = [0usize; 3];
    for _ in 0..CONNECTIONS {
        let mut c = StdStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        let mut tag = [0u8; 1];
        c.read_exact(&mut tag).unwrap();
        by_tag[tag[0] as usize] += 1;
    }
    assert_eq!(by_tag[1] + by_tag[2], CONNECTIONS, "{by_tag:?}");
    // The kernel hashes each new connection's addresses to one of the listeners:
    // all 200 on one of two would be a 2^-199 chance.
    assert!(by_tag[1] > 0 && by_tag[2] > 0, "{by_tag:?}");
    while served.load(Ordering::SeqCst) < CONNECTIONS {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sharing_an_address_needs_reuse_port_on_both_listeners() {
    let plain = ListenOptions::new().bind("127.0.0.1:0").unwrap();
    let err = ListenOptions::new()
        .reuse_port(true)
        .bind(plain.local_addr().unwrap())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

    let shared = ListenOptions::new()
        .reuse_port(true)
        .bind("127.0.0.1:0")
        .unwrap();
    let err = ListenOptions::new()
        .bind(shared.local_addr().unwrap())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    // std's bind sees the taken address the same way.
    let err = TcpListener::bind(shared.local_addr().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
}

#[test]
fn a_non_local_address_is_addr_not_available_and_a_bad_one_invalid_input() {
    // 192.0.2.0/24 is TEST-NET-1: never assigned to a local interface.
    let err = ListenOptions::new().bind("192.0.2.1:0").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrNotAvailable, "{err}");
    let err = ListenOptions::new().bind("not an address").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn a_host_name_resolves_and_binds_a_loopback_address() {
    let listener = ListenOptions::new()
        .backlog(16)
        .bind("localhost:0")
        .unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let _client = StdStream::connect(addr).unwrap();
    listener.accept().unwrap();
}

#[test]
fn an_ipv6_listener_binds_and_accepts_where_the_host_has_ipv6() {
    let any_port = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
    let listener = match ListenOptions::new().reuse_port(true).bind(any_port) {
        Ok(l) => l,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::AddrNotAvailable | ErrorKind::Unsupported
            ) =>
        {
            eprintln!("skipped: no IPv6 loopback here ({e})");
            return;
        }
        Err(e) => panic!("binding [::1]:0: {e}"),
    };
    let addr = listener.local_addr().unwrap();
    assert_eq!(addr.ip(), Ipv6Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);
    let mut client = StdStream::connect(addr).unwrap();
    let (mut server, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    client.write_all(b"v6").unwrap();
    let mut buf = [0u8; 2];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"v6");
}

#[test]
fn listeners_are_close_on_exec_and_serve_thousands_of_coroutine_connections() {
    const CONNECTIONS: usize = 2_000;
    let _watchdog = Watchdog::new("listen options serving", Duration::from_secs(120));
    common::raise_nofile_limit();
    let listener = ListenOptions::new()
        .backlog(4096)
        .reuse_address(false)
        .bind("127.0.0.1:0")
        .unwrap();
    // SAFETY: F_GETFD on a descriptor we hold open.
    let flags = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0, "flags {flags}");
    let addr = listener.local_addr().unwrap();

    let rt = Runtime::builder().workers(2).build().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    rt.spawn(move || serve_tagged(listener, 7, counter));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            rt.spawn(move || -> std::io::Result<u8> {
                let mut c = stackweave::net::TcpStream::connect(addr)?;
                c.write_all(b"?")?;
                let mut tag = [0u8; 1];
                c.read_exact(&mut tag)?;
                Ok(tag[0])
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap(), 7);
    }
    while served.load(Ordering::SeqCst) < CONNECTIONS {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The name of the worker thread the caller runs on.
fn worker_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned()
}

#[test]
fn serve_per_worker_starts_connections_on_every_worker_and_never_moves_them() {
    const CONNECTIONS: usize = 400;
    let _watchdog = Watchdog::new("serve_per_worker", Duration::from_secs(120));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let server = serve_per_worker(
        &rt.handle(),
        "127.0.0.1:0",
        ListenOptions::new(),
        |mut stream, _peer| {
            let start = worker_name();
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).is_err() {
                return;
            }
            stackweave::yield_now();
            stackweave::time::sleep(Duration::from_millis(1));
            let end = worker_name();
            let reply = format!("{start} {end}\n");
            let _ = stream.write_all(reply.as_bytes());
        },
    )
    .unwrap();
    assert_eq!(server.listeners(), 2);
    let addr = server.local_addr();
    let mut starts: HashMap<String, usize> = HashMap::new();
    for _ in 0..CONNECTIONS {
        let mut c = StdStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        let (start, end) = reply.trim().split_once(' ').expect("reply");
        assert_eq!(start, end, "a connection's coroutine changed threads");
        *starts.entry(start.to_owned()).or_default() += 1;
    }
    // The kernel hashes each connection to one listener; each listener's loop and
    // its connections live on their own worker.
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts.values().sum::<usize>(), CONNECTIONS);
    server.stop();
    let err = StdStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn serve_per_worker_reports_a_taken_address_and_stop_leaves_started_connections_running() {
    let _watchdog = Watchdog::new("serve_per_worker stop", Duration::from_secs(120));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = serve_per_worker(
        &rt.handle(),
        taken.local_addr().unwrap(),
        ListenOptions::new(),
        |_, _| {},
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

    let server = serve_per_worker(
        &rt.handle(),
        "127.0.0.1:0",
        ListenOptions::new(),
        |mut stream, _| {
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        },
    )
    .unwrap();
    let mut live = StdStream::connect(server.local_addr()).unwrap();
    live.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    live.read_exact(&mut buf).unwrap();
    server.stop();
    // The connection started before stop still echoes.
    live.write_all(b"after!").unwrap();
    live.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!");
}
