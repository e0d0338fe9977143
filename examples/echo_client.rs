//! A load generator for an echo server, written in blocking style: one stackweave
//! coroutine per connection, each sending a message, waiting for its echo with
//! `read_exact`, checking it, and sending the next.
//!
//! Run (against `cargo run --release --example echo_server`, or standalone):
//!
//! ```text
//! cargo run --release --example echo_client -- [--addr ADDR] [-c N] [-m M] [-s S]
//!                                              [--workers W] [--spawn-server]
//! ```
//!
//! * `--addr ADDR` — the server, default `127.0.0.1:7878`.
//! * `-c`/`--connections N` — connections, each its own coroutine (default 100).
//! * `-m`/`--messages M` — messages per connection (default 10,000).
//! * `-s`/`--size S` — bytes per message (default 64).
//! * `--workers W` — worker threads (default: one per CPU).
//! * `--spawn-server` — first start an echo server in this process, on a free port of
//!   127.0.0.1 (coroutines on the same runtime), and use it instead of `--addr`.
//!
//! Every message's round trip (write to echo fully read) is recorded in a per-
//! connection `hdrhistogram`; the histograms are merged at the end. It prints the
//! throughput (messages/s, and payload MiB/s in each direction), latency p50/p99/max
//! in µs, and the errors, if any: a failed connect, a mismatched echo, or a read
//! that waited longer than the 10 s read timeout (a stall). Exits with status 1 when
//! there were errors.

use hdrhistogram::Histogram;
use stackweave::net::{TcpListener, TcpStream};
use stackweave::Runtime;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A read that waits longer than this fails with `TimedOut` (and is reported).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    addr: String,
    connections: usize,
    messages: u64,
    size: usize,
    workers: Option<usize>,
    spawn_server: bool,
}

const USAGE: &str = "usage: echo_client [--addr ADDR] [-c N] [-m M] [-s S] [--workers W] \
                     [--spawn-server]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7878".to_string(),
        connections: 100,
        messages: 10_000,
        size: 64,
        workers: None,
        spawn_server: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("bad {name} {v:?}"))
        }
        match a.as_str() {
            "--addr" | "-a" => args.addr = value("--addr")?,
            "--connections" | "-c" => args.connections = num("-c", value("-c")?)?,
            "--messages" | "-m" => args.messages = num("-m", value("-m")?)?,
            "--size" | "-s" => args.size = num("-s", value("-s")?)?,
            "--workers" | "-w" => args.workers = Some(num("--workers", value("--workers")?)?),
            "--spawn-server" => args.spawn_server = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    if args.connections == 0 || args.size == 0 {
        return Err("-c and -s must be at least 1".into());
    }
    Ok(args)
}

/// What one connection's coroutine brings back.
struct Outcome {
    /// Round-trip times in nanoseconds.
    latency: Histogram<u64>,
    /// Why it stopped early, if it did.
    error: Option<String>,
}

/// The message number `seq` of connection `conn`: its numbers up front, then a
/// pattern that depends on both, so a misplaced or stale echo does not match.
fn fill(buf: &mut [u8], conn: u64, seq: u64) {
    let head = (u128::from(conn) | u128::from(seq) << 64).to_le_bytes();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = match head.get(i) {
            Some(&h) => h,
            None => (i as u64).wrapping_mul(31).wrapping_add(conn ^ seq) as u8,
        };
    }
}

/// One connection: `messages` request/response round trips.
fn client(addr: SocketAddr, conn: u64, messages: u64, size: usize) -> Outcome {
    // 2 significant digits (<1% error), resized as needed: a few KiB per connection.
    let mut latency = Histogram::<u64>::new(2).expect("histogram");
    let mut run = || -> Result<(), String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut out = vec![0u8; size];
        let mut back = vec![0u8; size];
        for seq in 0..messages {
            fill(&mut out, conn, seq);
            let start = Instant::now();
            stream
                .write_all(&out)
                .map_err(|e| format!("message {seq}: write: {e}"))?;
            stream.read_exact(&mut back).map_err(|e| match e.kind() {
                ErrorKind::TimedOut => {
                    format!("message {seq}: no complete echo within {READ_TIMEOUT:?} (stalled)")
                }
                _ => format!("message {seq}: read: {e}"),
            })?;
            latency
                .record(start.elapsed().as_nanos() as u64)
                .expect("an auto-resizing histogram records any value");
            if back != out {
                let at = back.iter().zip(&out).position(|(a, b)| a != b).unwrap_or(0);
                return Err(format!("message {seq}: the echo differs at byte {at}"));
            }
        }
        Ok(())
    };
    let error = run().err();
    Outcome { latency, error }
}

/// The in-process server of `--spawn-server`: a coroutine per connection.
fn spawn_server(rt: &Runtime) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    rt.spawn(move || {
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("server: accept: {e}");
                    stackweave::time::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            stackweave::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn main() -> io::Result<()> {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let mut builder = Runtime::builder();
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let rt = builder.build()?;
    let addr: SocketAddr = if args.spawn_server {
        spawn_server(&rt)?
    } else {
        use std::net::ToSocketAddrs;
        args.addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(ErrorKind::InvalidInput, "the address resolves to nothing")
        })?
    };
    println!(
        "echo client: {} connections x {} messages of {} bytes to {addr}{}",
        args.connections,
        args.messages,
        args.size,
        if args.spawn_server {
            " (in-process server)"
        } else {
            ""
        }
    );

    let (connections, messages, size) = (args.connections, args.messages, args.size);
    let start = Instant::now();
    let outcomes = rt.block_on(move || {
        let handles: Vec<_> = (0..connections as u64)
            .map(|conn| stackweave::spawn(move || client(addr, conn, messages, size)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client coroutine panicked"))
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();

    let mut latency = Histogram::<u64>::new(2).expect("histogram");
    let mut errors = Vec::new();
    for (conn, o) in outcomes.into_iter().enumerate() {
        latency.add(&o.latency).expect("merge histograms");
        if let Some(e) = o.error {
            errors.push(format!("connection {conn}: {e}"));
        }
    }
    let done = latency.len();
    let secs = elapsed.as_secs_f64();
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "{done} round trips in {secs:.2} s: {:.0} msgs/s, {:.2} MiB/s each way",
        done as f64 / secs,
        (done * size as u64) as f64 / secs / (1024.0 * 1024.0),
    );
    if done > 0 {
        println!(
            "latency: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            us(latency.value_at_quantile(0.50)),
            us(latency.value_at_quantile(0.99)),
            us(latency.value_at_quantile(0.999)),
            us(latency.max()),
        );
    }
    if errors.is_empty() {
        println!("errors: none");
        Ok(())
    } else {
        println!(
            "errors: {} of {} connections failed",
            errors.len(),
            connections
        );
        for e in errors.iter().take(10) {
            println!("  {e}");
        }
        if errors.len() > 10 {
            println!("  ... and {} more", errors.len() - 10);
        }
        std::process::exit(1);
    }
}
