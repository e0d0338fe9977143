//! TCP echo benchmark: the same load generator against four echo servers.
//!
//! # What is measured
//!
//! 100 connections to 127.0.0.1, each a request/response ping-pong: the client
//! sends a 64-byte message, waits until its 64-byte echo is back in full, checks
//! it, and sends the next. The servers, each one connection = one task, blocking
//! style where the runtime allows it:
//!
//! * **stackweave**: `Runtime::builder().workers(2)`, an accept loop coroutine
//!   (`TcpListener::incoming`), one coroutine per connection doing `read` +
//!   `write_all`.
//! * **tokio**: multi-thread runtime with `worker_threads(2)`, the accept loop a
//!   spawned task, one `tokio::spawn`ed task per connection with
//!   `AsyncReadExt::read` + `AsyncWriteExt::write_all`.
//! * **may**: `may::config().set_workers(2).set_worker_pin(false)` (as in the
//!   `runtime` bench: may pins its workers to cores by default, and no contender is
//!   pinned), the accept loop a may coroutine, one may coroutine per connection with
//!   `may::net`.
//! * **threads**: `std::net`, one OS thread per connection, the accept loop on the
//!   main thread.
//!
//! Every server sets `TCP_NODELAY` on its connections and echoes through a 4 KiB
//! buffer. Each runs in its own child process (this binary, started again with
//! `--echo-server NAME`; it prints its port and exits when its stdin closes), so only
//! one server is alive at a time and no runtime's threads compete with another's.
//!
//! **The load generator** is the same for every server and cheap: ONE thread, a
//! `mio` event loop (edge-triggered epoll) driving all 100 non-blocking connections
//! (`TCP_NODELAY`); per request one `write` and one `read` (the read is only tried
//! once epoll reports the echo). It runs `warm-up` seconds unmeasured, then
//! `measure` seconds during which every completed request's latency (from the
//! write to the last echoed byte read) goes into an `hdrhistogram`. It stops with an
//! error if no request completes for 2 s (a stall) and, at the end, reports
//! connections whose request has been outstanding for more than 1 s.
//!
//! Beside req/s and latency each run reports CPU during the measured window, in
//! cores (1.00 = one CPU busy all the time): the server process's user+system time
//! (`/proc/PID/stat`) split over its busiest threads (`/proc/PID/task/*/schedstat`),
//! the client thread's (`getrusage(RUSAGE_THREAD)`), and "others": the rest of the
//! machine's busy time (`/proc/stat`), i.e. other processes. On a 2-CPU machine the
//! client and the server's 2 workers share 2 CPUs: the numbers then say which server
//! does its work with the least CPU (the `µs/req` column), not how fast each could
//! go alone; and a high "others" says the run competed with something else.
//!
//! For stackweave it also prints how many connections each worker serves: a started
//! coroutine never changes worker, so this is where the load sits for good.
//!
//! The servers alternate round-robin: every round runs each once (the starting
//! server rotates from round to round), so drift in clock speed or background load
//! hits them all alike. The table shows median, minimum and maximum over the rounds.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench echo             # full: 5 rounds of 0.5 s warm-up + 3 s, ~75 s
//! cargo bench --bench echo -- --quick  # smoke run: 1 round of 0.2 s + 0.5 s
//! ```
//!
//! Run without `--bench` on the command line (as `cargo test --benches` does) the
//! binary also runs quick.
//!
//! # Reading the ratios
//!
//! `stackweave/tokio = 1.10x` under req/s means stackweave served 1.1 times as many
//! requests per second as tokio (above 1: stackweave is better). For p99 latency and
//! CPU per request the ratio is the other way round, rival/stackweave, so that above
//! 1 is again better for stackweave.

mod harness;

use harness::summary;
use hdrhistogram::Histogram;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Connections the load generator opens.
const CONNECTIONS: usize = 100;
/// Bytes per message.
const MSG: usize = 64;
/// The echo servers' buffer.
const SERVER_BUF: usize = 4096;
/// No request completing for this long is a stall.
const STALL: Duration = Duration::from_secs(2);
/// A request outstanding this long when a run ends is reported as stuck.
const STUCK: Duration = Duration::from_secs(1);

/// Sizes of one run.
struct Config {
    rounds: usize,
    warmup: Duration,
    measure: Duration,
}

impl Config {
    const FULL: Config = Config {
        rounds: 5,
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(3),
    };
    const QUICK: Config = Config {
        rounds: 1,
        warmup: Duration::from_millis(200),
        measure: Duration::from_millis(500),
    };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Stackweave,
    Tokio,
    May,
    Threads,
}

impl Server {
    const ALL: [Server; 4] = [
        Server::Stackweave,
        Server::Tokio,
        Server::May,
        Server::Threads,
    ];

    fn name(self) -> &'static str {
        match self {
            Server::Stackweave => "stackweave",
            Server::Tokio => "tokio",
            Server::May => "may",
            Server::Threads => "threads",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Server::Stackweave => "stackweave, 2 workers, coroutine/conn",
            Server::Tokio => "tokio, 2 workers, task/conn",
            Server::May => "may, 2 workers, coroutine/conn",
            Server::Threads => "std::thread, thread/conn",
        }
    }

    fn from_name(name: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|s| s.name() == name)
    }
}

// ---------------------------------------------------------------------------------
// The servers (child processes)

/// The child side: serves until stdin closes, then exits.
fn run_server(kind: Server) -> ! {
    // The parent closes our stdin to stop us.
    thread::spawn(move || {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        if kind == Server::Stackweave {
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
    let result = match kind {
        Server::Stackweave => stackweave_server(),
        Server::Tokio => tokio_server(),
        Server::May => may_server(),
        Server::Threads => threads_server(),
    };
    eprintln!("echo server {}: {result:?}", kind.name());
    std::process::exit(1);
}

/// Tells the parent where we listen.
fn announce(addr: io::Result<SocketAddr>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "PORT {}", addr?.port())?;
    out.flush()
}

/// The blocking echo loop shared by stackweave, may and threads.
fn echo_blocking(mut s: impl Read + Write) {
    let mut buf = [0u8; SERVER_BUF];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Err(e) = s.write_all(&buf[..n]) {
                    report_server_error("write", &e);
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                report_server_error("read", &e);
                return;
            }
        }
    }
}

/// Unexpected server-side errors go to stderr (the client closing first is normal).
fn report_server_error(what: &str, e: &io::Error) {
    if !matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    ) {
        eprintln!("echo server: {what}: {e}");
    }
}

fn accept_error(e: &io::Error) {
    eprintln!("echo server: accept: {e}");
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

fn stackweave_server() -> io::Result<()> {
    let rt = stackweave::Runtime::builder().workers(2).build()?;
    let listener = stackweave::net::TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr())?;
    rt.block_on(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    stackweave::spawn(move || {
                        record_home();
                        echo_blocking(s)
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

fn tokio_server() -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.local_addr())?;
        // The accept loop is a task on the workers, like the other servers'.
        let accept = tokio::spawn(async move {
            loop {
                let mut s = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        accept_error(&e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                s.set_nodelay(true).expect("TCP_NODELAY");
                tokio::spawn(async move {
                    let mut buf = [0u8; SERVER_BUF];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) => return,
                            Ok(n) => {
                                if let Err(e) = s.write_all(&buf[..n]).await {
                                    report_server_error("write", &e);
                                    return;
                                }
                            }
                            Err(e) => {
                                report_server_error("read", &e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        accept.await.map_err(io::Error::other)
    })
}

fn may_server() -> io::Result<()> {
    may::config().set_workers(2).set_worker_pin(false);
    let accept = may::go!(|| -> io::Result<()> {
        let listener = may::net::TcpListener::bind("127.0.0.1:0")?;
        announce(listener.local_addr())?;
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    may::go!(move || echo_blocking(s));
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

fn threads_server() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr())?;
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                s.set_nodelay(true)?;
                thread::spawn(move || echo_blocking(s));
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
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The lines the child prints on stdout.
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(kind: Server) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--echo-server", kind.name()])
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

    /// Closes the child's stdin and waits for it to exit; an error if it had to be
    /// killed or had already died. Returns what else it printed on stdout.
    fn stop(mut self) -> Result<Vec<String>, String> {
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

/// User + system ticks of a `/proc/.../stat` line, in seconds.
fn stat_cpu_secs(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // After the command name (in parentheses, may hold spaces) come the fields from
    // 3 (state) on; utime is field 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The calling thread's user + system CPU time, in seconds.
fn thread_cpu_secs() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Non-idle time of all CPUs together (`/proc/stat`), in seconds.
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4).unwrap_or(&0);
    Some(busy as f64 / clock_ticks_per_second())
}

/// CPU times at one moment, in seconds.
struct CpuSnapshot {
    at: Instant,
    client: f64,
    server: Option<f64>,
    /// Per thread of the server process (thread id, seconds).
    server_threads: Vec<(String, f64)>,
    machine: Option<f64>,
}

impl CpuSnapshot {
    fn take(server_pid: u32) -> CpuSnapshot {
        let mut server_threads = Vec::new();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{server_pid}/task")) {
            for entry in dir.flatten() {
                let tid = entry.file_name().to_string_lossy().into_owned();
                let task = format!("/proc/{server_pid}/task/{tid}");
                // schedstat's first field is the run time in ns: precise, where
                // stat counts 10 ms ticks (too coarse for a thread per connection).
                let secs = std::fs::read_to_string(format!("{task}/schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .map(|ns| ns as f64 * 1e-9)
                    .or_else(|| stat_cpu_secs(&format!("{task}/stat")));
                if let Some(secs) = secs {
                    server_threads.push((tid, secs));
                }
            }
        }
        CpuSnapshot {
            at: Instant::now(),
            client: thread_cpu_secs(),
            server: stat_cpu_secs(&format!("/proc/{server_pid}/stat")),
            server_threads,
            machine: machine_busy_secs(),
        }
    }
}

/// CPU used between two snapshots, in cores (1.0 = one CPU busy all the time).
struct CpuUsage {
    client: f64,
    server: Option<f64>,
    /// The server's busiest threads first.
    server_threads: Vec<f64>,
    /// Everything else on the machine (other processes, interrupts not charged to
    /// the two processes).
    others: Option<f64>,
}

impl CpuUsage {
    fn between(a: &CpuSnapshot, b: &CpuSnapshot) -> CpuUsage {
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let client = (b.client - a.client) / secs;
        let server = b.server.zip(a.server).map(|(y, x)| (y - x) / secs);
        let mut server_threads: Vec<f64> = b
            .server_threads
            .iter()
            .filter_map(|(tid, y)| {
                let x = a
                    .server_threads
                    .iter()
                    .find(|(t, _)| t == tid)
                    .map_or(0.0, |p| p.1);
                Some((y - x) / secs).filter(|c| *c > 0.0)
            })
            .collect();
        server_threads.sort_by(|x, y| y.total_cmp(x));
        let others = b
            .machine
            .zip(a.machine)
            .zip(server)
            .map(|((y, x), server)| ((y - x) / secs - server - client).max(0.0));
        CpuUsage {
            client,
            server,
            server_threads,
            others,
        }
    }

    /// "0.61+0.58 (2 threads)": the busiest server threads.
    fn threads_summary(&self) -> String {
        let top: Vec<String> = self
            .server_threads
            .iter()
            .take(3)
            .map(|c| format!("{c:.2}"))
            .collect();
        let more = if self.server_threads.len() > 3 {
            "+..."
        } else {
            ""
        };
        format!(
            "{}{more} ({} busy threads)",
            top.join("+"),
            self.server_threads.len()
        )
    }
}

// ---------------------------------------------------------------------------------
// The load generator: one thread, one mio event loop, all connections.

/// One client connection's state.
struct Conn {
    stream: mio::net::TcpStream,
    out: [u8; MSG],
    back: [u8; MSG],
    /// Bytes of `out` written / of `back` read so far.
    written: usize,
    read: usize,
    /// Whether the whole request is written and we wait for the echo.
    awaiting_echo: bool,
    sent_at: Instant,
    seq: u64,
}

impl Conn {
    /// Fills `out` with message `seq` of connection `id`: both numbers up front, then
    /// a pattern that depends on them, so a stale or misplaced echo does not match.
    fn next_message(&mut self, id: u64, now: Instant) {
        self.seq += 1;
        let head = (u128::from(id) | u128::from(self.seq) << 64).to_le_bytes();
        self.out[..16].copy_from_slice(&head);
        let salt = (id ^ self.seq) as u8;
        for (i, b) in self.out[16..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(salt);
        }
        self.written = 0;
        self.read = 0;
        self.awaiting_echo = false;
        self.sent_at = now;
    }
}

/// What one run of the load generator measured.
struct RunResult {
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    cpu: CpuUsage,
    /// Connections with a request outstanding for more than [`STUCK`] at the end.
    stuck: usize,
    /// stackweave: how many connections each worker served ("83/17").
    homes: Option<String>,
}

impl RunResult {
    fn req_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Completions seen by the event loop, and where the measured window is.
struct Recorder {
    measure_from: Instant,
    measure_until: Instant,
    requests: u64,
    latency: Histogram<u64>,
    last_completion: Instant,
}

/// Writes and reads on `c` until the socket would block; each complete echo is
/// checked, recorded, and followed by the next request.
fn drive(c: &mut Conn, id: u64, rec: &mut Recorder) -> Result<(), String> {
    loop {
        if !c.awaiting_echo {
            match c.stream.write(&c.out[c.written..]) {
                Ok(0) => return Err(format!("connection {id}: write returned 0")),
                Ok(n) => {
                    c.written += n;
                    if c.written == MSG {
                        c.awaiting_echo = true;
                        // The echo cannot be here yet: wait for epoll's edge (it comes
                        // with every arrival of data) instead of a read bound to fail.
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection {id}: write: {e}")),
            }
        } else {
            match c.stream.read(&mut c.back[c.read..]) {
                Ok(0) => return Err(format!("connection {id}: the server closed it")),
                Ok(n) => {
                    c.read += n;
                    if c.read == MSG {
                        if c.back != c.out {
                            return Err(format!(
                                "connection {id}: echo of message {} differs from it",
                                c.seq
                            ));
                        }
                        let now = Instant::now();
                        rec.last_completion = now;
                        if now >= rec.measure_from && now < rec.measure_until {
                            rec.requests += 1;
                            let ns = now.duration_since(c.sent_at).as_nanos() as u64;
                            rec.latency.record(ns).expect("auto-resizing histogram");
                        }
                        c.next_message(id, now);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection {id}: read: {e}")),
            }
        }
    }
}

/// Connects to `server`, runs the ping-pong for the warm-up and the measured window.
fn load(server: &ServerProcess, cfg: &Config) -> Result<RunResult, String> {
    let mut poll = mio::Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut conns = Vec::with_capacity(CONNECTIONS);
    let now = Instant::now();
    for id in 0..CONNECTIONS {
        let s = TcpStream::connect_timeout(&server.addr, Duration::from_secs(5))
            .map_err(|e| format!("connection {id}: connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(
                &mut stream,
                mio::Token(id),
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        let mut c = Conn {
            stream,
            out: [0; MSG],
            back: [0; MSG],
            written: 0,
            read: 0,
            awaiting_echo: false,
            sent_at: now,
            seq: 0,
        };
        c.next_message(id as u64, now);
        conns.push(c);
    }

    let start = Instant::now();
    let mut rec = Recorder {
        measure_from: start + cfg.warmup,
        measure_until: start + cfg.warmup + cfg.measure,
        requests: 0,
        latency: Histogram::new(3).expect("histogram"),
        last_completion: start,
    };
    for (id, c) in conns.iter_mut().enumerate() {
        c.sent_at = Instant::now();
        drive(c, id as u64, &mut rec)?;
    }
    let mut events = mio::Events::with_capacity(CONNECTIONS * 2);
    let mut cpu_from = None;
    let pid = server.child.id();
    loop {
        let now = Instant::now();
        if now >= rec.measure_until {
            break;
        }
        if now.duration_since(rec.last_completion) > STALL {
            let waiting = conns.iter().filter(|c| c.awaiting_echo).count();
            return Err(format!(
                "STALL: no echo completed for {STALL:?}; {waiting} of {CONNECTIONS} \
                 connections are waiting for theirs"
            ));
        }
        if cpu_from.is_none() && now >= rec.measure_from {
            // Reading /proc takes a while (a file per server thread): the measured
            // window starts once the snapshot is taken.
            cpu_from = Some(CpuSnapshot::take(pid));
            rec.measure_from = Instant::now();
            rec.measure_until = rec.measure_from + cfg.measure;
            continue;
        }
        let next = if now < rec.measure_from {
            rec.measure_from
        } else {
            rec.measure_until
        };
        let timeout = (next - now).min(Duration::from_millis(100));
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(format!("epoll_wait: {e}"));
            }
        }
        for ev in events.iter() {
            let id = ev.token().0;
            drive(&mut conns[id], id as u64, &mut rec)?;
        }
    }
    let cpu_to = CpuSnapshot::take(pid);
    let cpu_from = cpu_from.ok_or("the measured window never started")?;
    let end = Instant::now();
    let stuck = conns
        .iter()
        .filter(|c| end.duration_since(c.sent_at) > STUCK)
        .count();
    Ok(RunResult {
        requests: rec.requests,
        elapsed: cfg.measure,
        latency: rec.latency,
        cpu: CpuUsage::between(&cpu_from, &cpu_to),
        stuck,
        homes: None,
    })
}

// ---------------------------------------------------------------------------------
// The parent: rounds, table, ratios.

#[derive(Default)]
struct Samples {
    req_per_s: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    max_us: Vec<f64>,
    /// Server CPU in cores during the window, and CPU µs per request.
    server_cores: Vec<f64>,
    server_us_per_req: Vec<f64>,
    client_cores: Vec<f64>,
    /// CPU used by everything else on the machine during the window, in cores.
    others_cores: Vec<f64>,
    errors: Vec<String>,
}

fn one_run(kind: Server, cfg: &Config) -> Result<RunResult, String> {
    let server = ServerProcess::start(kind)?;
    let result = load(&server, cfg);
    // The connections are closed by now (`load` returned): stop the server.
    let stopped = server.stop();
    let mut result = result?;
    for line in stopped? {
        if let Some(homes) = line.strip_prefix("HOMES ") {
            result.homes = Some(homes.split(' ').collect::<Vec<_>>().join("/"));
        }
    }
    Ok(result)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--echo-server") {
        let name = args.get(i + 1).map(String::as_str).unwrap_or("");
        match Server::from_name(name) {
            Some(kind) => run_server(kind),
            None => {
                eprintln!("unknown server {name:?}");
                std::process::exit(2);
            }
        }
    }
    let (cfg, mode) = match harness::quick_mode() {
        Some(why) => (Config::QUICK, why),
        None => (Config::FULL, "full"),
    };

    println!(
        "machine: {} CPUs ({}), Linux {}, load average {} before the run",
        thread::available_parallelism().map_or(0, |n| n.get()),
        harness::cpu_model(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
        harness::load_average()
    );
    println!(
        "echo: {CONNECTIONS} connections x {MSG}-byte request/response ping-pong over \
         127.0.0.1; one single-threaded mio client for every server; each server a \
         child process"
    );
    println!(
        "mode: {mode}; {} rounds; per run {:.1} s warm-up + {:.1} s measured; stackweave \
         switch backend {}",
        cfg.rounds,
        cfg.warmup.as_secs_f64(),
        cfg.measure.as_secs_f64(),
        stackweave::SWITCH_BACKEND
    );
    if cfg!(debug_assertions) {
        println!("warning: built without optimizations; the numbers mean little");
    }
    println!();

    let total = Instant::now();
    let mut samples: Vec<Samples> = Server::ALL.iter().map(|_| Samples::default()).collect();
    let n = Server::ALL.len();
    for round in 0..cfg.rounds {
        for k in 0..n {
            let idx = (round + k) % n;
            let kind = Server::ALL[idx];
            let s = &mut samples[idx];
            match one_run(kind, &cfg) {
                Ok(r) => {
                    let us = |ns: u64| ns as f64 / 1000.0;
                    let (p50, p99, max) = (
                        us(r.latency.value_at_quantile(0.5)),
                        us(r.latency.value_at_quantile(0.99)),
                        us(r.latency.max()),
                    );
                    let cpu = &r.cpu;
                    println!(
                        "round {} {:<10} {:>7.0} req/s  p50 {:>6.1} µs  p99 {:>7.1} µs  \
                         max {:>8.1} µs  CPU: server {} = {}, client {:.2}, others {}{}{}",
                        round + 1,
                        kind.name(),
                        r.req_per_s(),
                        p50,
                        p99,
                        max,
                        cpu.server.map_or("?".into(), |c| format!("{c:.2}")),
                        cpu.threads_summary(),
                        cpu.client,
                        cpu.others.map_or("?".into(), |c| format!("{c:.2}")),
                        r.homes
                            .as_ref()
                            .map_or(String::new(), |h| format!("; connections per worker {h}")),
                        if r.stuck > 0 {
                            format!("  STUCK: {} connections waited > {STUCK:?}", r.stuck)
                        } else {
                            String::new()
                        }
                    );
                    if r.stuck > 0 {
                        s.errors.push(format!(
                            "round {}: {} connections had a request outstanding > {STUCK:?}",
                            round + 1,
                            r.stuck
                        ));
                    }
                    s.req_per_s.push(r.req_per_s());
                    s.p50_us.push(p50);
                    s.p99_us.push(p99);
                    s.max_us.push(max);
                    s.client_cores.push(cpu.client);
                    s.others_cores.extend(cpu.others);
                    if let Some(c) = cpu.server {
                        s.server_cores.push(c);
                        s.server_us_per_req.push(c * 1e6 / r.req_per_s());
                    }
                }
                Err(e) => {
                    println!("round {} {:<10} FAILED: {e}", round + 1, kind.name());
                    s.errors.push(format!("round {}: {e}", round + 1));
                }
            }
        }
    }

    print_table(&samples);
    println!(
        "\ntotal time {:.1} s; load average {} after the run",
        total.elapsed().as_secs_f64(),
        harness::load_average()
    );
}

fn print_table(samples: &[Samples]) {
    let w = Server::ALL
        .iter()
        .map(|s| s.describe().len())
        .max()
        .unwrap_or(0);
    println!();
    println!(
        "{:<w$}  {:>26}  {:>24}  {:>7}  {:>8}  {:>6}  {:>7}  {:>6}  {:>6}",
        "server",
        "req/s median (min-max)",
        "p99 µs median (min-max)",
        "p50 µs",
        "max µs",
        "server",
        "µs/req",
        "client",
        "others"
    );
    for (kind, s) in Server::ALL.iter().zip(samples) {
        if s.req_per_s.is_empty() {
            println!("{:<w$}  no successful run", kind.describe());
            continue;
        }
        let (rps, rps_min, rps_max) = summary(&s.req_per_s);
        let (p99, p99_min, p99_max) = summary(&s.p99_us);
        println!(
            "{:<w$}  {:>26}  {:>24}  {:>7.1}  {:>8.0}  {:>6.2}  {:>7.2}  {:>6.2}  {:>6.2}",
            kind.describe(),
            format!("{rps:.0} ({rps_min:.0}-{rps_max:.0})"),
            format!("{p99:.1} ({p99_min:.1}-{p99_max:.1})"),
            median_or_nan(&s.p50_us),
            median_or_nan(&s.max_us),
            median_or_nan(&s.server_cores),
            median_or_nan(&s.server_us_per_req),
            median_or_nan(&s.client_cores),
            median_or_nan(&s.others_cores),
        );
    }
    println!(
        "CPU columns, medians in cores (1.00 = one CPU all the time): server = the server \
         process; µs/req = server CPU time per request; client = the load generator's \
         thread; others = the rest of the machine (other processes, unattributed \
         interrupts)"
    );

    let base = &samples[0];
    if !base.req_per_s.is_empty() {
        let (rps, p99, cpu) = (
            summary(&base.req_per_s).0,
            summary(&base.p99_us).0,
            median_or_nan(&base.server_us_per_req),
        );
        println!("\nratios of medians (above 1.00x: stackweave is better)");
        for (kind, s) in Server::ALL.iter().zip(samples).skip(1) {
            if s.req_per_s.is_empty() {
                println!("  vs {:<8} (no successful run)", kind.name());
                continue;
            }
            println!(
                "  req/s stackweave/{0} = {1:.2}x   p99 {0}/stackweave = {2:.2}x   \
                 CPU per request {0}/stackweave = {3:.2}x",
                kind.name(),
                rps / summary(&s.req_per_s).0,
                summary(&s.p99_us).0 / p99,
                median_or_nan(&s.server_us_per_req) / cpu,
            );
        }
    }

    let failed: Vec<_> = Server::ALL
        .iter()
        .zip(samples)
        .filter(|(_, s)| !s.errors.is_empty())
        .collect();
    if !failed.is_empty() {
        println!("\nERRORS:");
        for (kind, s) in failed {
            for e in &s.errors {
                println!("  {}: {e}", kind.name());
            }
        }
    }
}

fn median_or_nan(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        summary(v).0
    }
}
