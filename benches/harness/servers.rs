//! The benchmark servers: an echo server and an HTTP/1.1 "Hello, World!" server for
//! each rival, each run in a child process of the bench binary. (Included with
//! `#[path]` by the benches that use it; not a bench target.) Three variants of the
//! echo server serve the rows of `benches/compare` that judge how a runtime uses
//! its cores: `placement` (each connection first tells the client which OS thread
//! its handler started on), `hog` (a request marked as a hog spins for 50 ms
//! without yielding) and `cpu` (every request costs a fixed hash loop); see
//! [`Protocol`] and `work.rs`.
//!
//! One connection = one task everywhere, blocking style where the runtime allows it:
//!
//! * **stackweave**: `Runtime::builder().workers(2)`, an accept loop coroutine, one
//!   coroutine per connection.
//! * **tokio**: multi-thread runtime with `worker_threads(2)`, the accept loop a
//!   spawned task, one `tokio::spawn`ed task per connection.
//! * **may**: `may::config().set_workers(2).set_worker_pin(false)` (may pins its
//!   workers to cores by default; pinning off measured faster on this machine and
//!   no rival is pinned), the accept loop a may coroutine, one per connection.
//! * **threads**: `std::net`, one OS thread per connection, the accept loop on the
//!   main thread.
//!
//! Every server sets `TCP_NODELAY`, reads through a 4 KiB buffer held by the task
//! (on the coroutine's stack, in the future's state, or on the thread's stack) and
//! raises its listen backlog to 1024 (std-style `bind` asks for 128, which overflows
//! when a load generator opens 1,000 connections at once and costs 1 s SYN retries).
//! The HTTP handler is the same function for all four: `httparse` on the buffered
//! bytes, every complete request answered in order (pipelining), keep-alive.
//!
//! A server child is this same binary started with `--serve PROTOCOL RIVAL
//! [--workers N] [--iters N]` (workers: 2 unless told; iters: the `cpu` protocol's
//! hash iterations per request): it prints `PORT n` and serves until its stdin
//! closes. A bench calls [`serve_if_asked`] first thing in `main`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use work::{Frames, Work};

#[path = "server_process.rs"]
mod process;
#[path = "work.rs"]
pub mod work;

pub use process::ServerProcess;

/// The servers' read buffer.
pub const SERVER_BUF: usize = 4096;
/// The listen backlog every server asks for.
const BACKLOG: libc::c_int = 1024;

/// The four contenders.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rival {
    Stackweave,
    Tokio,
    May,
    Threads,
}

impl Rival {
    pub const ALL: [Rival; 4] = [Rival::Stackweave, Rival::Tokio, Rival::May, Rival::Threads];

    pub fn name(self) -> &'static str {
        match self {
            Rival::Stackweave => "stackweave",
            Rival::Tokio => "tokio",
            Rival::May => "may",
            Rival::Threads => "threads",
        }
    }

    /// How its servers run, in a few words.
    pub fn describe_server(self) -> &'static str {
        match self {
            Rival::Stackweave => "stackweave, 2 workers, coroutine/conn",
            Rival::Tokio => "tokio, 2 workers, task/conn",
            Rival::May => "may, 2 workers, coroutine/conn",
            Rival::Threads => "std::thread, thread/conn",
        }
    }

    pub fn from_name(name: &str) -> Option<Rival> {
        Rival::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What a server speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    /// Writes back whatever it reads.
    Echo,
    /// HTTP/1.1, `200 OK` with "Hello, World!" to every request.
    Http,
    /// First writes the id of the OS thread the connection's handler started on (the
    /// kernel's thread id, 8 bytes little-endian), then echoes.
    Placement,
    /// Echo, but a 64-byte request whose first byte is [`work::HOG_MARK`] first
    /// spins for [`work::HOG_TIME`] without yielding.
    Hog,
    /// Echo, every 64-byte request first running [`work::hash`] for the server's
    /// `--iters` iterations.
    Cpu,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Http => "http",
            Protocol::Placement => "placement",
            Protocol::Hog => "hog",
            Protocol::Cpu => "cpu",
        }
    }

    fn from_name(name: &str) -> Option<Protocol> {
        [
            Protocol::Echo,
            Protocol::Http,
            Protocol::Placement,
            Protocol::Hog,
            Protocol::Cpu,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// What a server child runs: its protocol, how many workers its runtime has (a
/// thread per connection has none to set) and the `cpu` protocol's iterations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ServerSpec {
    pub protocol: Protocol,
    pub workers: usize,
    pub iters: u64,
}

impl ServerSpec {
    /// `protocol` on 2 workers (what every server runs unless a row says otherwise).
    pub fn new(protocol: Protocol) -> ServerSpec {
        ServerSpec {
            protocol,
            workers: 2,
            iters: 0,
        }
    }

    /// The per-request work of the `hog` and `cpu` protocols.
    fn frames(self) -> Frames {
        Frames::new(match self.protocol {
            Protocol::Hog => Work::Hog,
            _ => Work::Hash { iters: self.iters },
        })
    }
}

/// The kernel's id of the calling thread (what [`Protocol::Placement`] reports: the
/// worker a handler runs on, for every rival alike).
fn os_thread_id() -> u64 {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    tid as u64
}

/// If this process was started as a server (`--serve PROTOCOL RIVAL`), serves and
/// never returns; otherwise returns at once.
pub fn serve_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--serve") else {
        return;
    };
    let get = |k: usize| args.get(i + k).map(String::as_str).unwrap_or("");
    if (get(1), get(2)) == ("echo", STD_COROUTINES) {
        run_std_coroutines_server();
    }
    let option = |name: &str, default: u64| -> Option<u64> {
        match args.iter().position(|a| a == name) {
            Some(k) => args.get(k + 1)?.parse().ok(),
            None => Some(default),
        }
    };
    match (
        Protocol::from_name(get(1)),
        Rival::from_name(get(2)),
        option("--workers", 2).filter(|&w| w > 0),
        option("--iters", 0),
    ) {
        (Some(protocol), Some(rival), Some(workers), Some(iters)) => run_server(
            ServerSpec {
                protocol,
                workers: workers as usize,
                iters,
            },
            rival,
        ),
        _ => {
            eprintln!(
                "usage: --serve echo|http|placement|hog|cpu stackweave|tokio|may|threads \
                 [--workers N] [--iters N]"
            );
            std::process::exit(2);
        }
    }
}

/// The server name of [`run_std_coroutines_server`] (`--serve echo std-coroutines`).
pub const STD_COROUTINES: &str = "std-coroutines";

/// The `std::net` echo server with a coroutine per connection on 2 stackweave
/// workers: the `hooks` row of `benches/compare` runs it from a build with the
/// `hooks` feature, where its blocking calls suspend only their coroutine (without
/// the feature each connection would hold a worker). Serves until stdin closes.
fn run_std_coroutines_server() -> ! {
    thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    let spec = ServerSpec::new(Protocol::Echo);
    let result = (|| -> io::Result<()> {
        let rt = stackweave::Runtime::builder()
            .workers(spec.workers)
            .build()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        announce(listener.as_raw_fd(), listener.local_addr())?;
        rt.block_on(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        s.set_nodelay(true).expect("TCP_NODELAY");
                        stackweave::spawn(move || serve_blocking(spec, s));
                    }
                    Err(e) => {
                        accept_error(&e);
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        Ok(())
    })();
    eprintln!("echo server {STD_COROUTINES}: {result:?}");
    std::process::exit(1);
}

/// The child side: serves until stdin closes, then exits.
fn run_server(spec: ServerSpec, rival: Rival) -> ! {
    let protocol = spec.protocol;
    // The parent closes our stdin to stop us.
    thread::spawn(move || {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        if rival == Rival::Stackweave {
            let mut homes: Vec<u32> = HOMES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|h| h.1)
                .collect();
            homes.sort_unstable_by(|a, b| b.cmp(a));
            let homes: Vec<String> = homes.iter().map(u32::to_string).collect();
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "HOMES {}", homes.join(" "));
            let _ = out.flush();
        }
        std::process::exit(0);
    });
    let result = match rival {
        Rival::Stackweave => stackweave_server(spec),
        Rival::Tokio => tokio_server(spec),
        Rival::May => may_server(spec),
        Rival::Threads => threads_server(spec),
    };
    eprintln!("{} server {}: {result:?}", protocol.name(), rival.name());
    std::process::exit(1);
}

/// Raises the backlog of a listening socket (listen(2) again only changes it), and
/// tells the parent where we listen.
fn announce(fd: RawFd, addr: io::Result<SocketAddr>) -> io::Result<()> {
    // SAFETY: `fd` is the caller's open listening socket; listen has no other
    // preconditions.
    if unsafe { libc::listen(fd, BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = io::stdout().lock();
    writeln!(out, "PORT {}", addr?.port())?;
    out.flush()
}

/// The blocking handler shared by stackweave, may and threads.
fn serve_blocking(spec: ServerSpec, mut s: impl Read + Write) {
    let result = match spec.protocol {
        Protocol::Echo => echo_blocking(s, |_| {}),
        Protocol::Http => http_blocking(s),
        Protocol::Placement => {
            let started_on = os_thread_id();
            s.write_all(&started_on.to_le_bytes())
                .and_then(|()| echo_blocking(s, |_| {}))
        }
        Protocol::Hog | Protocol::Cpu => {
            let mut frames = spec.frames();
            echo_blocking(s, |chunk| frames.on_read(chunk))
        }
    };
    if let Err(e) = result {
        report_server_error(&e);
    }
}

/// Echoes everything it reads; `on_read` sees each chunk first (the work of the
/// `hog` and `cpu` protocols; nothing for plain echo).
fn echo_blocking(mut s: impl Read + Write, mut on_read: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = [0u8; SERVER_BUF];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                on_read(&buf[..n]);
                s.write_all(&buf[..n])?
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn http_blocking(mut s: impl Read + Write) -> io::Result<()> {
    let mut buf = [0u8; SERVER_BUF];
    let mut filled = 0;
    let mut out = Vec::new();
    loop {
        let used = answer_requests(&buf[..filled], &mut out)?;
        if !out.is_empty() {
            s.write_all(&out)?;
            out.clear();
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        if filled == buf.len() {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "request head too big",
            ));
        }
        match s.read(&mut buf[filled..]) {
            Ok(0) => return Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The response to every request.
const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\n\r\nHello, World!";

/// Appends a response to `out` for every complete request at the start of `buf`
/// (requests without a body, as load generators send them); returns how many bytes
/// they took. A malformed request is an error: the connection is closed.
fn answer_requests(buf: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
    let mut used = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[used..]) {
            Ok(httparse::Status::Complete(len)) => {
                out.extend_from_slice(HELLO);
                used += len;
            }
            Ok(httparse::Status::Partial) => return Ok(used),
            Err(e) => return Err(io::Error::new(ErrorKind::InvalidData, e)),
        }
    }
}

/// Unexpected server-side errors go to stderr (the client closing first is normal).
fn report_server_error(e: &io::Error) {
    if !matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    ) {
        eprintln!("server: {e}");
    }
}

fn accept_error(e: &io::Error) {
    eprintln!("server: accept: {e}");
}

/// How many connections each stackweave worker serves: a coroutine stays on the
/// worker that first ran it, so this is where the connections ended up.
static HOMES: Mutex<Vec<(thread::ThreadId, u32)>> = Mutex::new(Vec::new());

fn record_home() {
    let me = thread::current().id();
    let mut homes = HOMES.lock().unwrap_or_else(|e| e.into_inner());
    match homes.iter_mut().find(|h| h.0 == me) {
        Some(h) => h.1 += 1,
        None => homes.push((me, 1)),
    }
}

fn stackweave_server(spec: ServerSpec) -> io::Result<()> {
    let rt = stackweave::Runtime::builder()
        .workers(spec.workers)
        .build()?;
    let listener = stackweave::net::TcpListener::bind("127.0.0.1:0")?;
    announce(listener.as_raw_fd(), listener.local_addr())?;
    rt.block_on(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    stackweave::spawn(move || {
                        record_home();
                        serve_blocking(spec, s)
                    });
                }
                Err(e) => {
                    accept_error(&e);
                    stackweave::time::sleep(Duration::from_millis(10));
                }
            }
        }
    });
    Ok(())
}

fn tokio_server(spec: ServerSpec) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.workers)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.as_raw_fd(), listener.local_addr())?;
        // The accept loop is a task on the workers, like the other servers'.
        let accept = tokio::spawn(async move {
            loop {
                let s = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        accept_error(&e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                s.set_nodelay(true).expect("TCP_NODELAY");
                tokio::spawn(async move {
                    let result = match spec.protocol {
                        Protocol::Echo => tokio_echo(s, |_| {}).await,
                        Protocol::Http => tokio_http(s).await,
                        Protocol::Placement => {
                            // The first poll: where the task started.
                            let started_on = os_thread_id();
                            tokio_placement(s, started_on).await
                        }
                        Protocol::Hog | Protocol::Cpu => {
                            let mut frames = spec.frames();
                            tokio_echo(s, |chunk| frames.on_read(chunk)).await
                        }
                    };
                    if let Err(e) = result {
                        report_server_error(&e);
                    }
                });
            }
        });
        accept.await.map_err(io::Error::other)
    })
}

/// [`echo_blocking`] for tokio.
async fn tokio_echo(
    mut s: tokio::net::TcpStream,
    mut on_read: impl FnMut(&[u8]),
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; SERVER_BUF];
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(()),
            n => {
                on_read(&buf[..n]);
                s.write_all(&buf[..n]).await?
            }
        }
    }
}

async fn tokio_placement(mut s: tokio::net::TcpStream, started_on: u64) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    s.write_all(&started_on.to_le_bytes()).await?;
    tokio_echo(s, |_| {}).await
}

async fn tokio_http(mut s: tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; SERVER_BUF];
    let mut filled = 0;
    let mut out = Vec::new();
    loop {
        let used = answer_requests(&buf[..filled], &mut out)?;
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        if filled == buf.len() {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "request head too big",
            ));
        }
        match s.read(&mut buf[filled..]).await? {
            0 => return Ok(()),
            n => filled += n,
        }
    }
}

fn may_server(spec: ServerSpec) -> io::Result<()> {
    may::config()
        .set_workers(spec.workers)
        .set_worker_pin(false);
    let accept = may::go!(move || -> io::Result<()> {
        let listener = may::net::TcpListener::bind("127.0.0.1:0")?;
        announce(listener.as_raw_fd(), listener.local_addr())?;
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    may::go!(move || serve_blocking(spec, s));
                }
                Err(e) => {
                    accept_error(&e);
                    may::coroutine::sleep(Duration::from_millis(10));
                }
            }
        }
        Ok(())
    });
    accept
        .join()
        .map_err(|_| io::Error::other("the may accept loop panicked"))?
}

fn threads_server(spec: ServerSpec) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.as_raw_fd(), listener.local_addr())?;
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                s.set_nodelay(true)?;
                // 64 KiB stacks: the handler needs little, and 10,000 idle threads
                // should not be charged for the 2 MiB default they never touch.
                let spawned = thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || serve_blocking(spec, s));
                if let Err(e) = spawned {
                    eprintln!("server: thread spawn: {e}");
                }
            }
            Err(e) => {
                accept_error(&e);
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}
