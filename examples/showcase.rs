//! A blocking-style echo server under real load, then the runtime's basics at scale.
//!
//! Run: `cargo run --release --example showcase`
//!
//! Phases, each printing what it measured:
//!
//! 1. **echo under load** — an echo server written like a thread-per-connection std
//!    program (`for stream in listener.incoming() { spawn(|| read/write loop) }`)
//!    serves 1,000 client connections, each a coroutine sending 64-byte messages
//!    and waiting for each echo, for 3 seconds: requests per second and latency
//!    percentiles (clients and server share this machine's CPUs).
//! 2. **idle connections** — 10,000 more connections (scaled to the descriptor
//!    limit) held open, each with a server coroutine blocked in `read`, while 100
//!    others keep echoing: coroutines alive and resident memory per connection.
//! 3. **spawn + join** — 100,000 coroutines, each a plain function that calls
//!    helpers and yields from inside them.
//! 4. **100,000 parked at once** — memory per parked coroutine, then all woken.
//! 5. **ping-pong** — two coroutines hand a token back and forth with
//!    `park`/`unpark`.
//!
//! It ends with the runtime's metrics.

use hdrhistogram::Histogram;
use stackweave::net::{TcpListener, TcpStream};
use stackweave::{Coroutine, Runtime};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 1_000;
const MESSAGE: usize = 64;
const LOAD_TIME: Duration = Duration::from_secs(3);
const IDLE_CONNECTIONS: usize = 10_000;

const COROUTINES: u64 = 100_000;
const PING_PONGS: u64 = 200_000;

/// A "request handler": ordinary nested calls that yield from the inside.
fn handle(request: u64) -> u64 {
    let parsed = parse(request);
    stackweave::yield_now(); // e.g. waiting for a backend
    respond(parsed)
}

fn parse(request: u64) -> u64 {
    request.wrapping_mul(2654435761) % 1000
}

fn respond(parsed: u64) -> u64 {
    stackweave::yield_now();
    parsed + 1
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The server: a plain blocking-style echo loop per connection.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn start_server() -> io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    stackweave::spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    stackweave::spawn(move || serve(stream));
                }
                Err(e) => {
                    // Out of descriptors, for instance: back off, keep serving.
                    eprintln!("accept: {e}");
                    stackweave::time::sleep(Duration::from_millis(50));
                }
            }
        }
    });
    Ok(addr)
}

/// One client connection: send, wait for the echo, record the round trip, repeat
/// until `stop`.
fn client(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> io::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let msg = [7u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        stream.write_all(&msg)?;
        stream.read_exact(&mut reply)?;
        hist.record(t.elapsed().as_nanos() as u64)
            .expect("an auto-resizing histogram records any value");
        if reply != msg {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad echo"));
        }
    }
    Ok(hist)
}

fn echo_under_load(addr: std::net::SocketAddr) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let stop = stop.clone();
            stackweave::spawn(move || client(addr, stop))
        })
        .collect();
    let alive = stackweave::runtime::Handle::current()
        .metrics()
        .live_coroutines;
    stackweave::time::sleep(LOAD_TIME);
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    for c in clients {
        match c.join().unwrap() {
            Ok(h) => total.add(&h).expect("same precision"),
            Err(_) => errors += 1,
        }
    }
    let us = |q: f64| total.value_at_quantile(q) as f64 / 1e3;
    println!(
        "echo           {CONNECTIONS} connections x {MESSAGE} B for {} s: {:.0} requests/s, \
         latency p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; {} coroutines alive, {errors} errors",
        LOAD_TIME.as_secs(),
        total.len() as f64 / LOAD_TIME.as_secs_f64(),
        us(0.5),
        us(0.99),
        total.max() as f64 / 1e3,
        alive,
    );
}

/// Raises the soft descriptor limit to the hard one; returns it.
fn raise_fd_limit() -> usize {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur as usize
    }
}

fn idle_connections(addr: std::net::SocketAddr) {
    // Both ends live in this process: two descriptors per connection.
    let n = IDLE_CONNECTIONS.min(raise_fd_limit().saturating_sub(3_000) / 2);
    stackweave::stack::trim_pool();
    let before = rss_kib();
    let live_before = stackweave::runtime::Handle::current()
        .metrics()
        .live_coroutines;
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(addr) {
            Ok(s) => idle.push(s),
            Err(e) => {
                println!("idle           stopped at {} connections: {e}", idle.len());
                break;
            }
        }
    }
    // Let the server's coroutines start and block in `read`.
    stackweave::time::sleep(Duration::from_millis(300));
    let stop = Arc::new(AtomicBool::new(false));
    let active: Vec<_> = (0..100)
        .map(|_| {
            let stop = stop.clone();
            stackweave::spawn(move || client(addr, stop))
        })
        .collect();
    stackweave::time::sleep(Duration::from_secs(1));
    let after = rss_kib();
    let live = stackweave::runtime::Handle::current()
        .metrics()
        .live_coroutines;
    stop.store(true, Ordering::Relaxed);
    let echoed: u64 = active
        .into_iter()
        .map(|c| c.join().unwrap().map_or(0, |h| h.len()))
        .sum();
    println!(
        "idle           {} idle connections held while 100 others echoed {echoed} messages in 1 s: \
         {} coroutines alive, {:.1} KiB RSS per idle connection (both ends, server coroutine included)",
        idle.len(),
        live.saturating_sub(live_before) + live_before,
        after.saturating_sub(before) as f64 / idle.len().max(1) as f64,
    );
    drop(idle);
}

fn spawn_and_join() {
    let start = Instant::now();
    let handles: Vec<_> = (0..COROUTINES)
        .map(|i| stackweave::spawn(move || handle(i)))
        .collect();
    let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let expected: u64 = (0..COROUTINES).map(|i| parse(i) + 1).sum();
    let elapsed = start.elapsed();
    println!(
        "spawn + join   {COROUTINES} coroutines in {} ms ({:.1} µs each), checksum {}",
        elapsed.as_millis(),
        elapsed.as_secs_f64() * 1e6 / COROUTINES as f64,
        if sum == expected { "ok" } else { "WRONG" }
    );
}

fn park_many() {
    let parked = Arc::new(AtomicUsize::new(0));
    // The previous phase's finished coroutines left their stacks, memory included,
    // in the pool for reuse: give that memory back first, or the parked coroutines
    // would reuse it and look cheaper than they are.
    stackweave::stack::trim_pool();
    let before = rss_kib();
    let handles: Vec<_> = (0..COROUTINES)
        .map(|_| {
            let parked = parked.clone();
            stackweave::spawn(move || {
                parked.fetch_add(1, Ordering::AcqRel);
                stackweave::park();
            })
        })
        .collect();
    while parked.load(Ordering::Acquire) < COROUTINES as usize {
        stackweave::yield_now();
    }
    let after = rss_kib();
    let start = Instant::now();
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "parked         {COROUTINES} coroutines at once: {:.1} KiB RSS each; all woken in {} ms",
        after.saturating_sub(before) as f64 / COROUTINES as f64,
        start.elapsed().as_millis()
    );
}

fn ping_pong() {
    let turn = Arc::new(AtomicU64::new(0));
    let ping_handle: Arc<OnceLock<Coroutine>> = Arc::new(OnceLock::new());
    let start = Instant::now();
    let pong = {
        let (turn, ping_handle) = (turn.clone(), ping_handle.clone());
        stackweave::spawn(move || {
            for i in 0..PING_PONGS {
                while turn.load(Ordering::Acquire) != 2 * i + 1 {
                    stackweave::park();
                }
                turn.store(2 * i + 2, Ordering::Release);
                // Set before ping's first move, so it is there by now.
                ping_handle.get().expect("ping registered").unpark();
            }
        })
    };
    let pong_coroutine = pong.coroutine().clone();
    let ping = stackweave::spawn(move || {
        let _ = ping_handle.set(stackweave::current());
        for i in 0..PING_PONGS {
            turn.store(2 * i + 1, Ordering::Release);
            pong_coroutine.unpark();
            while turn.load(Ordering::Acquire) != 2 * i + 2 {
                stackweave::park();
            }
        }
    });
    ping.join().unwrap();
    pong.join().unwrap();
    let elapsed = start.elapsed();
    println!(
        "ping-pong      {PING_PONGS} park/unpark round trips in {} ms ({:.1} µs each)",
        elapsed.as_millis(),
        elapsed.as_secs_f64() * 1e6 / PING_PONGS as f64
    );
}

fn main() {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime");
    println!(
        "stackweave showcase: {workers} workers, {} switch, {} KiB stacks",
        stackweave::SWITCH_BACKEND,
        stackweave::stack::DEFAULT_STACK_SIZE / 1024
    );
    let addr = rt.block_on(start_server).expect("echo server");
    rt.block_on(move || echo_under_load(addr));
    rt.block_on(move || idle_connections(addr));
    rt.block_on(spawn_and_join);
    rt.block_on(park_many);
    rt.block_on(ping_pong);
    let m = rt.metrics();
    println!(
        "metrics        spawned {}, completed {}, steals {}, parks {}",
        m.spawned, m.completed, m.steals, m.parks
    );
}
