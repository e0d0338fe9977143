//! The benchmark servers: an echo server and an HTTP/1.1 "Hello, World!" server for
//! each rival, each run in a child process of the bench binary. (Included with
//! `#[path]` by the benches that use it; not a bench target.)
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
//! A server child is this same binary started with `--serve PROTOCOL RIVAL`: it
//! prints `PORT n` and serves until its stdin closes. A bench calls
//! [`serve_if_asked`] first thing in `main`.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Http => "http",
        }
    }

    fn from_name(name: &str) -> Option<Protocol> {
        [Protocol::Echo, Protocol::Http]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// If this process was started as a server (`--serve PROTOCOL RIVAL`), serves and
/// never returns; otherwise returns at once.
pub fn serve_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--serve") else {
        return;
    };
    let get = |k: usize| args.get(i + k).map(String::as_str).unwrap_or("");
    match (Protocol::from_name(get(1)), Rival::from_name(get(2))) {
        (Some(protocol), Some(rival)) => run_server(protocol, rival),
        _ => {
            eprintln!("usage: --serve echo|http stackweave|tokio|may|threads");
            std::process::exit(2);
        }
    }
}

/// The child side: serves until stdin closes, then exits.
fn run_server(protocol: Protocol, rival: Rival) -> ! {
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
        Rival::Stackweave => stackweave_server(protocol),
        Rival::Tokio => tokio_server(protocol),
        Rival::May => may_server(protocol),
        Rival::Threads => threads_server(protocol),
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
fn serve_blocking(protocol: Protocol, s: impl Read + Write) {
    let result = match protocol {
        Protocol::Echo => echo_blocking(s),
        Protocol::Http => http_blocking(s),
    };
    if let Err(e) = result {
        report_server_error(&e);
    }
}

fn echo_blocking(mut s: impl Read + Write) -> io::Result<()> {
    let mut buf = [0u8; SERVER_BUF];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => s.write_all(&buf[..n])?,
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

fn stackweave_server(protocol: Protocol) -> io::Result<()> {
    let rt = stackweave::Runtime::builder().workers(2).build()?;
    let listener = stackweave::net::TcpListener::bind("127.0.0.1:0")?;
    announce(listener.as_raw_fd(), listener.local_addr())?;
    rt.block_on(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    stackweave::spawn(move || {
                        record_home();
                        serve_blocking(protocol, s)
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

fn tokio_server(protocol: Protocol) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
                    let result = match protocol {
                        Protocol::Echo => tokio_echo(s).await,
                        Protocol::Http => tokio_http(s).await,
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

async fn tokio_echo(mut s: tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; SERVER_BUF];
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(()),
            n => s.write_all(&buf[..n]).await?,
        }
    }
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

fn may_server(protocol: Protocol) -> io::Result<()> {
    may::config().set_workers(2).set_worker_pin(false);
    let accept = may::go!(move || -> io::Result<()> {
        let listener = may::net::TcpListener::bind("127.0.0.1:0")?;
        announce(listener.as_raw_fd(), listener.local_addr())?;
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    may::go!(move || serve_blocking(protocol, s));
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

fn threads_server(protocol: Protocol) -> io::Result<()> {
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
                    .spawn(move || serve_blocking(protocol, s));
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

/// The parent's handle on a server child.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The lines the child prints on stdout.
    lines: mpsc::Receiver<String>,
    pub addr: SocketAddr,
}

impl ServerProcess {
    pub fn start(protocol: Protocol, rival: Rival) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--serve", protocol.name(), rival.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        // Read its output on a helper thread, so a child that hangs cannot hang us.
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = server
            .lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the server did not print its port within 10 s".to_string())?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("the server printed {line:?} instead of its port"))?;
        server.addr.set_port(port);
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin and waits for it to exit; an error if it had to be
    /// killed or had already died. Returns what else it printed on stdout.
    pub fn stop(mut self) -> Result<Vec<String>, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!("the server process died during the run: {status}"));
        }
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Its stdout is closed: the reader thread ends the channel.
                let mut rest = Vec::new();
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    rest.push(line);
                }
                return Ok(rest);
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err("the server did not exit within 5 s of its stdin closing; killed".into())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
