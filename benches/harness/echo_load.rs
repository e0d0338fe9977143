//! The echo load generator: ONE thread, a `mio` event loop (edge-triggered epoll)
//! driving `CONNECTIONS` non-blocking connections, each a 64-byte request/response
//! ping-pong, plus the CPU accounting of a run. (Included with `#[path]` by the
//! benches that use it; not a bench target.)
//!
//! Per request one `write` and one `read` (the read is only tried once epoll reports
//! the echo); every echo is checked against its request. The generator runs
//! `warmup` unmeasured, then `measure` during which every completed request's
//! latency (from the write to the last echoed byte read) goes into an
//! `hdrhistogram`. It stops with an error if no request completes for 2 s (a stall)
//! and, at the end, reports connections whose request has been outstanding for more
//! than 1 s.
//!
//! With [`Hogs`] ([`load_with_hogs`], for a `hog` server) it marks some requests as
//! hogs in their first byte and keeps their latency out of the histogram: it then
//! measures what the hogs do to everybody else's requests.

use hdrhistogram::Histogram;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connections the load generator opens.
pub const CONNECTIONS: usize = 100;
/// Bytes per message.
pub const MSG: usize = 64;
/// No request completing for this long is a stall.
const STALL: Duration = Duration::from_secs(2);
/// A request outstanding this long when a run ends is reported as stuck.
pub const STUCK: Duration = Duration::from_secs(1);

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
pub struct CpuUsage {
    pub client: f64,
    pub server: Option<f64>,
    /// The server's busiest threads first.
    pub server_threads: Vec<f64>,
    /// Everything else on the machine (other processes, interrupts not charged to
    /// the two processes).
    pub others: Option<f64>,
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
    pub fn threads_summary(&self) -> String {
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
    /// Whether the request in flight is a hog.
    hog: bool,
}

/// Which requests are hogs: request `seq` (counting from 1) of connection `id` is
/// one when `(seq + id) % every == 0`. Every connection sends one in `every`,
/// connection `id`'s first at request `every - id`, so the hogs are spread evenly
/// over the connections and over time. A hog's first byte is `mark`, every other
/// request's first byte is `!mark`.
#[derive(Clone, Copy, Debug)]
pub struct Hogs {
    pub every: u64,
    pub mark: u8,
}

impl Conn {
    /// Fills `out` with message `seq` of connection `id`: both numbers up front, then
    /// a pattern that depends on them, so a stale or misplaced echo does not match.
    /// With `hogs` the first byte says whether it is a hog instead.
    fn next_message(&mut self, id: u64, now: Instant, hogs: Option<Hogs>) {
        self.seq += 1;
        let head = (u128::from(id) | u128::from(self.seq) << 64).to_le_bytes();
        self.out[..16].copy_from_slice(&head);
        let salt = (id ^ self.seq) as u8;
        for (i, b) in self.out[16..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(salt);
        }
        if let Some(h) = hogs {
            self.hog = (self.seq + id) % h.every == 0;
            self.out[0] = if self.hog { h.mark } else { !h.mark };
        }
        self.written = 0;
        self.read = 0;
        self.awaiting_echo = false;
        self.sent_at = now;
    }
}

/// What one run of the load generator measured.
pub struct RunResult {
    /// Requests completed in the measured window (hogs not counted).
    pub requests: u64,
    /// Hogs completed in the measured window.
    #[allow(dead_code)] // benches/echo.rs sends no hogs
    pub hogs: u64,
    pub elapsed: Duration,
    /// Of the requests (hogs left out), in ns.
    pub latency: Histogram<u64>,
    pub cpu: CpuUsage,
    /// Connections with a request outstanding for more than [`STUCK`] at the end.
    pub stuck: usize,
    /// stackweave: how many connections each worker served ("83/17").
    pub homes: Option<String>,
}

impl RunResult {
    pub fn req_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Completions seen by the event loop, and where the measured window is.
struct Recorder {
    measure_from: Instant,
    measure_until: Instant,
    requests: u64,
    hogs_done: u64,
    latency: Histogram<u64>,
    last_completion: Instant,
    hogs: Option<Hogs>,
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
                            if c.hog {
                                rec.hogs_done += 1;
                            } else {
                                rec.requests += 1;
                                let ns = now.duration_since(c.sent_at).as_nanos() as u64;
                                rec.latency.record(ns).expect("auto-resizing histogram");
                            }
                        }
                        c.next_message(id, now, rec.hogs);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection {id}: read: {e}")),
            }
        }
    }
}

/// Connects to the server at `addr` (process `pid`, for its CPU time) and runs the
/// ping-pong for `warmup`, then for the measured window `measure`.
pub fn load(
    addr: SocketAddr,
    pid: u32,
    warmup: Duration,
    measure: Duration,
) -> Result<RunResult, String> {
    load_with_hogs(addr, pid, warmup, measure, None)
}

/// [`load`], with some requests marked as hogs when `hogs` says so.
pub fn load_with_hogs(
    addr: SocketAddr,
    pid: u32,
    warmup: Duration,
    measure: Duration,
    hogs: Option<Hogs>,
) -> Result<RunResult, String> {
    let mut poll = mio::Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut conns = Vec::with_capacity(CONNECTIONS);
    let now = Instant::now();
    for id in 0..CONNECTIONS {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
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
            hog: false,
        };
        c.next_message(id as u64, now, hogs);
        conns.push(c);
    }

    let start = Instant::now();
    let mut rec = Recorder {
        measure_from: start + warmup,
        measure_until: start + warmup + measure,
        requests: 0,
        hogs_done: 0,
        latency: Histogram::new(3).expect("histogram"),
        last_completion: start,
        hogs,
    };
    for (id, c) in conns.iter_mut().enumerate() {
        c.sent_at = Instant::now();
        drive(c, id as u64, &mut rec)?;
    }
    let mut events = mio::Events::with_capacity(CONNECTIONS * 2);
    let mut cpu_from = None;
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
            rec.measure_until = rec.measure_from + measure;
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
        hogs: rec.hogs_done,
        elapsed: measure,
        latency: rec.latency,
        cpu: CpuUsage::between(&cpu_from, &cpu_to),
        stuck,
        homes: None,
    })
}
