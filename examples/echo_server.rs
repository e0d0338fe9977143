//! A TCP echo server written like a thread-per-connection `std::net` program, run on
//! stackweave coroutines: one coroutine per connection, plain blocking `read` and
//! `write_all` calls, no `async`.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example echo_server -- [ADDR] [--workers N] [--for SECS]
//! ```
//!
//! * `ADDR` — where to listen, default `127.0.0.1:7878`.
//! * `--workers N` — worker threads (default: one per CPU).
//! * `--for SECS` — stop after `SECS` seconds (for scripts and tests); the runtime is
//!   shut down, which unwinds every coroutine still blocked in `accept` or `read`.
//!   Without it the server runs until SIGINT (Ctrl-C) or SIGTERM, then drains: the
//!   accept loop ends, open connections get 5 s to finish (`Runtime::shutdown_timeout`).
//!
//! Try it with the client example: `cargo run --release --example echo_client`.
//!
//! What it shows besides the blocking style:
//!
//! * **Running out of file descriptors** is an ordinary error, not the end of the
//!   server. When `accept` fails with `EMFILE` (this process is at its descriptor
//!   limit, `ulimit -n`) or `ENFILE` (the whole system is), the pending connection
//!   stays in the kernel's backlog; the accept loop prints a warning (at most one a
//!   second), sleeps 50 ms with `stackweave::time::sleep` — only this coroutine
//!   waits, the connections already open keep being served and can close, giving
//!   descriptors back — and tries again. Any other accept error (say
//!   `ECONNABORTED`, a client that gave up while queued) is printed and the loop
//!   goes on. Try `ulimit -n 64` before starting the server and a client with
//!   `-c 200`.
//! * A connection's coroutine ends on end-of-file or on an error; errors a peer
//!   causes (reset, broken pipe) are normal and not printed.

use stackweave::net::{TcpListener, TcpStream};
use stackweave::signal::{self, SIGINT, SIGTERM};
use stackweave::Runtime;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the server counts, shared by every coroutine.
#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    closed: AtomicU64,
    bytes: AtomicU64,
    /// Connections that ended with an unexpected error.
    failed: AtomicU64,
    /// `accept` calls that failed with EMFILE/ENFILE.
    out_of_fds: AtomicU64,
    /// Other failed `accept` calls.
    accept_errors: AtomicU64,
}

/// How long the accept loop backs off when the process is out of descriptors.
const FD_BACKOFF: Duration = Duration::from_millis(50);
/// How long the connections in flight get to finish after SIGINT or SIGTERM; idle
/// ones that stay open are closed at the deadline.
const DRAIN: Duration = Duration::from_secs(5);

/// The accept loop: one coroutine per connection, forever.
fn serve(listener: TcpListener, stats: Arc<Stats>) {
    let mut last_warning: Option<Instant> = None;
    let mut suppressed = 0u64;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let stats = stats.clone();
                stackweave::spawn(move || {
                    if let Err(e) = echo(&stream, &stats) {
                        if !is_peer_gone(&e) {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("connection {:?}: {e}", stream.peer_addr().ok());
                        }
                    }
                    stats.closed.fetch_add(1, Ordering::Relaxed);
                });
            }
            Err(e) if is_out_of_fds(&e) => {
                stats.out_of_fds.fetch_add(1, Ordering::Relaxed);
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    let also = if suppressed > 0 {
                        format!(" ({suppressed} more since the last warning)")
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "warning: accept: {e}{also}; backing off {} ms \
                         (raise `ulimit -n`?)",
                        FD_BACKOFF.as_millis()
                    );
                    last_warning = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                // Only this coroutine sleeps; open connections keep being served.
                stackweave::time::sleep(FD_BACKOFF);
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("accept: {e}");
            }
        }
    }
}

/// Echoes everything back until the peer closes its side.
fn echo(mut stream: &TcpStream, stats: &Stats) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// `EMFILE` (this process) or `ENFILE` (the system) is out of file descriptors.
fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Errors that only mean the client went away.
fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

struct Args {
    addr: String,
    workers: Option<usize>,
    run_for: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7878".to_string(),
        workers: None,
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--for" => {
                let v = value("--for")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --for {v:?}"))?;
                args.run_for =
                    Some(Duration::try_from_secs_f64(secs).map_err(|e| format!("--for: {e}"))?);
            }
            "--workers" | "-w" => {
                let v = value("--workers")?;
                args.workers = Some(v.parse().map_err(|_| format!("bad --workers {v:?}"))?);
            }
            "-h" | "--help" => {
                return Err("usage: echo_server [ADDR] [--workers N] [--for SECS]".into())
            }
            _ if a.starts_with('-') => return Err(format!("unknown option {a:?} (try --help)")),
            _ => args.addr = a,
        }
    }
    Ok(args)
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
    // Outside a coroutine, bind works like std's.
    let listener = TcpListener::bind(&args.addr)?;
    println!(
        "echo server listening on {} ({} switch backend{})",
        listener.local_addr()?,
        stackweave::SWITCH_BACKEND,
        match args.run_for {
            Some(d) => format!(", for {d:?}"),
            None => String::new(),
        }
    );

    let stats = Arc::new(Stats::default());
    let _server = {
        let stats = stats.clone();
        rt.spawn(move || serve(listener, stats))
    };
    match args.run_for {
        None => {
            // Until SIGINT (Ctrl-C) or SIGTERM; then the connections in flight get
            // DRAIN to finish while the accept loop ends (see "Stopping a server" in
            // docs/ARCHITECTURE.md).
            let signal = rt.block_on(|| signal::wait(&[SIGINT, SIGTERM]))?;
            let drained = rt.shutdown_timeout(DRAIN)?;
            println!("signal {signal}: {drained} ({DRAIN:?} deadline)");
        }
        Some(d) => {
            std::thread::sleep(d);
            // Unwinds the accept loop and every connection still open.
            rt.shutdown();
        }
    }
    let s = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "served {} connections ({} closed, {} failed), echoed {} bytes; \
         accept: {} out-of-descriptor errors, {} other errors",
        s(&stats.accepted),
        s(&stats.closed),
        s(&stats.failed),
        s(&stats.bytes),
        s(&stats.out_of_fds),
        s(&stats.accept_errors),
    );
    Ok(())
}
