//! Unmodified blocking crates in coroutines: `ureq` (HTTP over `std::net`) against
//! a local server, and the sync `redis` client against a `redis-server` the test
//! starts (skipped, with a message, where none is installed). Each runs 1,000 calls
//! that the server answers after 100 ms on 2 workers, while a group of heartbeat
//! coroutines measures its own latency. Serially that is 100 s (50 s with each
//! worker blocked in turn); the bounds are loose enough for a loaded 2-core machine
//! and far below that.

use crate::common::raise_nofile_limit;
use crate::support::{serial, two_workers, Heartbeat};
use stackweave::Runtime;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How many calls: 1,000 where the descriptor limit allows (a client and a server
/// socket each, plus a margin).
fn calls() -> usize {
    let limit = raise_nofile_limit();
    let n = if limit >= 2300 {
        1000
    } else {
        (limit as usize).saturating_sub(300) / 2
    };
    if n < 1000 {
        println!("RLIMIT_NOFILE is {limit}: {n} calls instead of 1000");
    }
    n
}

/// Four heartbeats: the group whose latency the calls must not hold up.
fn heartbeats(rt: &Runtime) -> Vec<Heartbeat> {
    (0..4).map(|_| Heartbeat::start(rt)).collect()
}

fn longest_gap(beats: Vec<Heartbeat>) -> Duration {
    beats.into_iter().map(Heartbeat::longest_gap).max().unwrap()
}

/// An HTTP server on its own 2-worker runtime (`stackweave::net`, so it does not
/// depend on the hooks) that answers every request after 100 ms.
fn slow_http_server() -> (Runtime, SocketAddr) {
    let rt = two_workers();
    let listener = stackweave::net::ListenOptions::new()
        .backlog(4096)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            stackweave::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                stackweave::time::sleep(Duration::from_millis(100));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                );
            });
        }
    });
    (rt, addr)
}

#[test]
fn ureq_gets_from_1000_coroutines_overlap() {
    let _g = serial();
    let n = calls();
    let (_server, addr) = slow_http_server();
    let rt = two_workers();
    let beats = heartbeats(&rt);
    let url = format!("http://{addr}/hello");
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            rt.spawn(move || {
                // An agent of its own, as `ureq::get` makes, with no proxy from the
                // environment: the server is local.
                let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
                let mut response = agent.get(&url).call().expect("ureq GET");
                assert_eq!(response.status(), 200);
                response.body_mut().read_to_string().expect("body")
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "hello");
    }
    let total = start.elapsed();
    let gap = longest_gap(beats);
    println!("{n} ureq GETs answered after 100 ms: {total:?}, heartbeats' longest gap {gap:?}");
    assert!(total < Duration::from_secs(20), "took {total:?}");
    assert!(gap < Duration::from_secs(2), "heartbeat gap {gap:?}");
}

/// A `redis-server` on a free port, without persistence; `None` if there is none.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--maxclients", "4000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(mut s) = TcpStream::connect(server.addr) {
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return Some(server);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on {} within 20 s", server.addr);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sync_redis_blpops_from_1000_coroutines_overlap() {
    let _g = serial();
    let n = calls();
    let Some(server) = RedisServer::start() else {
        println!("skipped: no redis-server on PATH (apt-get install redis-server)");
        return;
    };
    let rt = two_workers();
    let beats = heartbeats(&rt);
    let url = format!("redis://{}/", server.addr);
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let url = url.clone();
            rt.spawn(move || {
                let client = redis::Client::open(url.as_str()).expect("redis URL");
                let mut con = client.get_connection().expect("redis connection");
                // Nothing is ever pushed: the server answers nil after 0.1 s.
                let got: Option<(String, String)> = redis::cmd("BLPOP")
                    .arg(format!("stackweave-test-{i}"))
                    .arg(0.1)
                    .query(&mut con)
                    .expect("BLPOP");
                assert_eq!(got, None);
                // And an ordinary command on the same connection.
                let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
                assert_eq!(pong, "PONG");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = start.elapsed();
    let gap = longest_gap(beats);
    println!("{n} redis BLPOPs of 0.1 s: {total:?}, heartbeats' longest gap {gap:?}");
    drop(server);
    assert!(total < Duration::from_secs(20), "took {total:?}");
    assert!(gap < Duration::from_secs(2), "heartbeat gap {gap:?}");
}
