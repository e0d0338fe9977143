//! A TCP forwarder (a "port forward" proxy) on stackweave coroutines: every
//! connection accepted on `LISTEN_ADDR` is connected to `UPSTREAM_ADDR`, and bytes are
//! copied both ways with plain blocking loops.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example proxy -- LISTEN_ADDR UPSTREAM_ADDR [--workers N] [--for SECS]
//! ```
//!
//! * `LISTEN_ADDR` — where to accept clients, e.g. `127.0.0.1:7879`.
//! * `UPSTREAM_ADDR` — where to forward them, e.g. the echo server example's
//!   `127.0.0.1:7878`.
//! * `--workers N` — worker threads (default: one per CPU).
//! * `--for SECS` — stop after `SECS` seconds (for scripts and tests); the runtime is
//!   shut down, which unwinds every coroutine still blocked in `accept` or `read`.
//!   Without it the proxy runs until SIGINT (Ctrl-C) or SIGTERM, then drains
//!   (`Runtime::shutdown_timeout`, 5 s).
//!
//! Try it in front of the echo server:
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1:7878 &
//! cargo run --release --example proxy -- 127.0.0.1:7879 127.0.0.1:7878 &
//! cargo run --release --example echo_client -- 127.0.0.1:7879
//! ```
//!
//! What it shows:
//!
//! * **Three coroutines per connection, no state machine.** One coroutine accepts;
//!   each connection gets one that copies client → upstream and one that copies
//!   upstream → client. `try_clone` gives each direction its own handle, so the two
//!   loops block independently, possibly on different workers.
//! * **Half-close propagates.** When one direction reads end-of-file, it calls
//!   `shutdown(Shutdown::Write)` on the socket it writes to, so the far side sees
//!   end-of-file too, while the other direction keeps flowing: a client that sends a
//!   request, half-closes, and then reads the whole reply works through the proxy.
//! * **Errors end the connection quietly.** A reset, a refused upstream connection or
//!   any other error shuts both sockets down completely, which wakes the other
//!   direction's blocked `read` with end-of-file, and the connection is gone. (The
//!   upstream connection is made from the connection's coroutine, so a slow or
//!   unreachable upstream delays only that client.)
//!
//! The functions [`serve`] and [`proxy_connection`] are public so that
//! `tests/example_proxy.rs` can include this file and run them.

use stackweave::net::{Shutdown, TcpListener, TcpStream};
use stackweave::signal::{self, SIGINT, SIGTERM};
use stackweave::Runtime;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Size of each direction's copy buffer (on the heap, not the coroutine's stack).
const BUF_SIZE: usize = 64 * 1024;
/// How long the connections still open get to finish after SIGINT or SIGTERM.
const DRAIN: Duration = Duration::from_secs(5);

/// The accept loop: forwards every client on `listener` to `upstream`, forever.
///
/// Each connection runs in its own coroutine (see [`proxy_connection`]). Accept errors
/// are printed and the loop goes on; when the process is out of descriptors it backs
/// off briefly so that connections already open can finish.
pub fn serve(listener: TcpListener, upstream: SocketAddr) {
    for stream in listener.incoming() {
        match stream {
            Ok(client) => {
                stackweave::spawn(move || {
                    // Errors only end this connection; they are not worth a line each.
                    let _ = proxy_connection(client, upstream);
                });
            }
            Err(e) => {
                eprintln!("accept: {e}");
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    stackweave::time::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Forwards one client connection to `upstream` until both directions are done.
///
/// Connects to `upstream`, then copies client → upstream in a new coroutine and
/// upstream → client in the calling one. Returns when both directions have ended:
/// `Ok` if both reached end-of-file, otherwise the first error (after which both
/// sockets have been shut down).
pub fn proxy_connection(client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let upstream = match TcpStream::connect(upstream) {
        Ok(s) => s,
        Err(e) => {
            let _ = client.shutdown(Shutdown::Both);
            return Err(e);
        }
    };
    // Forward small writes at once, as the endpoints would have sent them directly.
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;

    let client_reader = client.try_clone()?;
    let upstream_writer = upstream.try_clone()?;
    let forward = stackweave::spawn(move || pipe(client_reader, upstream_writer));
    let backward = pipe(upstream, client);
    let forward = forward
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    forward.and(backward).map(|_| ())
}

/// Copies `from` into `to` until end-of-file, then half-closes `to` (so its peer sees
/// end-of-file). On an error, shuts both sockets down in both directions, which ends
/// the opposite copy loop too. Returns the number of bytes copied.
fn pipe(mut from: TcpStream, mut to: TcpStream) -> io::Result<u64> {
    match copy(&mut from, &mut to) {
        Ok(n) => {
            // The peer of `to` may already be gone; then there is nothing to tell it.
            let _ = to.shutdown(Shutdown::Write);
            Ok(n)
        }
        Err(e) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            Err(e)
        }
    }
}

/// `std::io::copy` with a larger buffer: read, write it all, repeat until end-of-file.
fn copy(from: &mut TcpStream, to: &mut TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

struct Args {
    listen: String,
    upstream: String,
    workers: Option<usize>,
    run_for: Option<Duration>,
}

const USAGE: &str = "usage: proxy LISTEN_ADDR UPSTREAM_ADDR [--workers N] [--for SECS]";

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut workers = None;
    let mut run_for = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--for" => {
                let v = value("--for")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --for {v:?}"))?;
                run_for =
                    Some(Duration::try_from_secs_f64(secs).map_err(|e| format!("--for: {e}"))?);
            }
            "--workers" | "-w" => {
                let v = value("--workers")?;
                workers = Some(v.parse().map_err(|_| format!("bad --workers {v:?}"))?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a:?} (try --help)")),
            _ => positional.push(a),
        }
    }
    let [listen, upstream]: [String; 2] = positional.try_into().map_err(|_| USAGE.to_string())?;
    Ok(Args {
        listen,
        upstream,
        workers,
        run_for,
    })
}

fn main() -> io::Result<()> {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    // Resolve the upstream once, here on the main thread, not per connection.
    let upstream = args.upstream.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            ErrorKind::NotFound,
            format!("{}: no address", args.upstream),
        )
    })?;
    let mut builder = Runtime::builder();
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let rt = builder.build()?;
    let listener = TcpListener::bind(&args.listen)?;
    println!(
        "proxy listening on {}, forwarding to {upstream}{}",
        listener.local_addr()?,
        match args.run_for {
            Some(d) => format!(", for {d:?}"),
            None => String::new(),
        }
    );
    let _server = rt.spawn(move || serve(listener, upstream));
    match args.run_for {
        None => {
            // Until SIGINT (Ctrl-C) or SIGTERM; then the accept loop ends and the
            // connections still open get DRAIN to finish (see "Stopping a server" in
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
    Ok(())
}
