//! An HTTP/1.1 "Hello, World!" server written in blocking style on stackweave
//! coroutines: one coroutine per connection, a plain `read` / parse / `write_all`
//! loop, requests parsed with the `httparse` crate. No `async`.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example http_server -- [ADDR] [--workers N] [--for SECS]
//! ```
//!
//! * `ADDR` — where to listen, default `127.0.0.1:8080`.
//! * `--workers N` — worker threads (default: one per CPU).
//! * `--for SECS` — stop after `SECS` seconds (for scripts and tests) and print how
//!   many requests were served. Without it the server runs until SIGINT (Ctrl-C) or
//!   SIGTERM, then drains: the accept loop ends, idle keep-alive connections close
//!   at once (`runtime::until_drain` around the wait for the next request),
//!   requests in flight get 5 s to finish (`Runtime::shutdown_timeout`), and the
//!   same figures are printed.
//!
//! Try it:
//!
//! ```text
//! curl -v http://127.0.0.1:8080/
//! wrk -t2 -c100 -d10s http://127.0.0.1:8080/
//! ```
//!
//! What it shows besides the blocking style:
//!
//! * **Partial reads.** Bytes are accumulated in a per-connection buffer until
//!   `httparse` sees a complete request head; a head split across many reads is
//!   simply read again. A head longer than 8 KiB gets `400` and the connection closes.
//! * **Keep-alive.** HTTP/1.1 connections stay open unless the request says
//!   `Connection: close`; HTTP/1.0 ones close unless it says `Connection:
//!   keep-alive`.
//! * **Pipelining.** Every complete request in one read is answered, in order, and
//!   the responses go out in a single `write_all` per read.
//! * **Request bodies** with a `Content-Length` are read and discarded (across as
//!   many reads as they take) before the response. `Transfer-Encoding` (chunked
//!   bodies) is not supported: `501` and close.
//! * **Errors.** A request `httparse` rejects gets `400 Bad Request` and the
//!   connection closes — gracefully: the server shuts its side down and reads what
//!   the client still sends for a moment, so the client sees the response rather
//!   than a reset.
//!
//! * **A listen backlog of 1024.** `bind` (like std's) asks for 128; when hundreds
//!   of clients connect at once (`wrk -c500`) the kernel's accept queue overflows,
//!   it drops SYNs, and each of those clients waits a full second to retry.
//!
//! Every response is `200 OK` with `Content-Type: text/plain`, `Content-Length` and
//! no `Date` header, to keep it cheap.

use stackweave::net::{ListenOptions, Shutdown, TcpListener, TcpStream};
use stackweave::runtime::until_drain;
use stackweave::signal::{self, SIGINT, SIGTERM};
use stackweave::Runtime;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The body of every successful response.
pub const BODY: &[u8] = b"Hello, World!";

/// The most headers a request may have.
const MAX_HEADERS: usize = 32;
/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Per-connection input buffer; twice [`MAX_HEAD`] so a partial head always fits.
const BUF_SIZE: usize = 2 * MAX_HEAD;
/// How long a closing connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_millis(500);
/// The listen backlog: room for this many connections not yet accepted.
const BACKLOG: u32 = 1024;
/// How long the accept loop backs off when the process is out of descriptors.
const FD_BACKOFF: Duration = Duration::from_millis(50);
/// How long the connections in flight get to finish after SIGINT or SIGTERM; idle
/// ones that stay open are closed at the deadline.
const DRAIN: Duration = Duration::from_secs(5);

/// What the server counts, shared by every coroutine.
#[derive(Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests answered with `200 OK`.
    pub requests: AtomicU64,
    /// Requests answered with `400` or `501`.
    pub bad_requests: AtomicU64,
    /// Connections that ended with an unexpected I/O error.
    pub failed: AtomicU64,
}

/// Binds a listener on `addr` with a backlog of [`BACKLOG`] (the kernel caps it at
/// `net.core.somaxconn`).
pub fn bind(addr: &str) -> io::Result<TcpListener> {
    ListenOptions::new().backlog(BACKLOG).bind(addr)
}

/// The accept loop: one coroutine per connection, forever.
pub fn serve(listener: TcpListener, stats: Arc<Stats>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let stats = stats.clone();
                stackweave::spawn(move || {
                    if let Err(e) = handle_connection(&stream, &stats) {
                        if !is_peer_gone(&e) {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("connection {:?}: {e}", stream.peer_addr().ok());
                        }
                    }
                });
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Out of descriptors: the connection waits in the backlog; only this
                // coroutine sleeps while open connections are served and close.
                eprintln!("warning: accept: {e}; backing off (raise `ulimit -n`?)");
                stackweave::time::sleep(FD_BACKOFF);
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// Where the connection is between requests.
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Discarding `left` more body bytes; then answer the request.
    Body { left: u64, reply: Reply },
}

/// How to answer a request once its body (if any) is consumed.
#[derive(Clone, Copy)]
struct Reply {
    /// `HEAD` request: no body in the response.
    head_only: bool,
    /// The connection closes after this response.
    close: bool,
    /// HTTP/1.0 keep-alive: the response must say `Connection: keep-alive`.
    keep_alive_10: bool,
}

/// What a complete request head asks for.
enum Parsed {
    /// A request to answer, after `body` bytes of body.
    Request { reply: Reply, body: u64 },
    /// A request we refuse: this response, then close.
    Refuse(&'static [u8]),
}

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
    Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
const NOT_IMPLEMENTED: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n\
    Content-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n";

/// Serves one connection until the client closes it, asks to close it, or sends
/// something unparseable. Blocking style: each `read` and `write_all` suspends only
/// this coroutine.
pub fn handle_connection(mut stream: &TcpStream, stats: &Stats) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; BUF_SIZE];
    // Unconsumed input is `buf[start..end]`.
    let (mut start, mut end) = (0, 0);
    let mut out = Vec::with_capacity(4096);
    let mut state = State::Head;
    loop {
        // Make room: move unconsumed input to the front, then read more.
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        // Between requests the connection is idle: a drain (SIGINT/SIGTERM) closes
        // it instead of waiting out the deadline. Mid-request it is work in flight.
        let idle = matches!(state, State::Head) && start == end;
        let read = if idle {
            match until_drain(|| stream.read(&mut buf[end..])) {
                Ok(read) => read,
                Err(_draining) => return Ok(()),
            }
        } else {
            stream.read(&mut buf[end..])
        };
        let n = match read {
            Ok(0) => return Ok(()), // the client closed (between or mid-request)
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        end += n;

        // Answer every complete request in the buffer, in order.
        let mut close = false;
        loop {
            match state {
                State::Body { left, reply } => {
                    let take = left.min((end - start) as u64);
                    start += take as usize;
                    if take < left {
                        state = State::Body {
                            left: left - take,
                            reply,
                        };
                        break; // need more of the body
                    }
                    push_response(&mut out, reply);
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    state = State::Head;
                    if reply.close {
                        close = true;
                        break;
                    }
                }
                State::Head => {
                    if start == end {
                        break;
                    }
                    match parse_head(&buf[start..end]) {
                        Ok(Some((len, Parsed::Request { reply, body }))) => {
                            start += len;
                            state = State::Body { left: body, reply };
                        }
                        Ok(Some((_, Parsed::Refuse(response)))) | Err(response) => {
                            out.extend_from_slice(response);
                            stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                            close = true;
                            break;
                        }
                        Ok(None) if end - start > MAX_HEAD => {
                            out.extend_from_slice(BAD_REQUEST);
                            stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                            close = true;
                            break;
                        }
                        Ok(None) => break, // partial head: read more
                    }
                }
            }
        }

        // One write for everything this read completed.
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        if close {
            return close_gracefully(stream);
        }
    }
}

/// Parses one request head at the start of `input`: `Ok(None)` if it is incomplete,
/// else its length and what it asks for; `Err(response)` if it is malformed.
fn parse_head(input: &[u8]) -> Result<Option<(usize, Parsed)>, &'static [u8]> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BAD_REQUEST),
    };
    let http10 = req.version == Some(0);
    let (mut close, mut keep_alive) = (false, false);
    let mut body: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| BAD_REQUEST)?;
            let v = v.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BAD_REQUEST);
            }
            let v: u64 = v.parse().map_err(|_| BAD_REQUEST)?;
            if body.is_some_and(|b| b != v) {
                return Err(BAD_REQUEST); // conflicting lengths
            }
            body = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Ok(Some((len, Parsed::Refuse(NOT_IMPLEMENTED))));
        }
    }
    let close = if http10 { !keep_alive || close } else { close };
    let reply = Reply {
        head_only: req.method == Some("HEAD"),
        close,
        keep_alive_10: http10 && !close,
    };
    Ok(Some((
        len,
        Parsed::Request {
            reply,
            body: body.unwrap_or(0),
        },
    )))
}

/// Appends a `200 OK` response to `out`.
fn push_response(out: &mut Vec<u8>, reply: Reply) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n");
    if reply.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if reply.keep_alive_10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !reply.head_only {
        out.extend_from_slice(BODY);
    }
}

/// Closes after a final response without losing it: shut down our side (the client
/// sees end-of-file after the response), then read and drop whatever the client
/// still sends, for up to [`LINGER`]. Closing with unread input would make the
/// kernel send a reset, which can destroy the response before the client reads it.
fn close_gracefully(mut stream: &TcpStream) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(LINGER))?;
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break, // timed out or reset: either way, done
        }
    }
    Ok(())
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
        addr: "127.0.0.1:8080".to_string(),
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
                return Err("usage: http_server [ADDR] [--workers N] [--for SECS]".into())
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
    let listener = bind(&args.addr)?;
    println!(
        "http server listening on http://{}/{}",
        listener.local_addr()?,
        match args.run_for {
            Some(d) => format!(" for {d:?}"),
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
            // Until SIGINT (Ctrl-C) or SIGTERM; then the requests in flight get
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
        "served {} requests on {} connections ({} bad requests, {} failed connections)",
        s(&stats.requests),
        s(&stats.connections),
        s(&stats.bad_requests),
        s(&stats.failed),
    );
    Ok(())
}
