//! The runtime's per-worker metrics, printed every second while a small load runs:
//! a TCP echo server with 64 client connections, 200 coroutines that sleep and wake,
//! a computation that yields now and then, a `spawn_blocking` job every second, and
//! one coroutine that stalls its worker (a 300 ms `std::thread::sleep`) in the
//! second second, which the stall watchdog reports on stderr.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example metrics -- [--seconds N]
//! ```
//!
//! Each line is one worker over the last second: busy time (not parked in its
//! reactor), runs (coroutine resumes), reactor polls, steals and parks in that
//! second; then the stalls so far and the coroutines homed there (live), ready to
//! run, the descriptors registered with its reactor and its armed timers, as read.

use stackweave::net::{TcpListener, TcpStream};
use stackweave::runtime::{Metrics, WorkerMetrics};
use stackweave::Runtime;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let seconds = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(5);
    run(seconds).map(drop)
}

/// Runs the load for `seconds`, printing the metrics every second; returns the last
/// snapshot.
pub fn run(seconds: u64) -> std::io::Result<Metrics> {
    let rt = Runtime::builder().workers(2).build()?;
    let stop = Arc::new(AtomicBool::new(false));

    // An echo server, and clients that send 64 bytes and read them back in a loop.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    rt.spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            stackweave::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    for _ in 0..64 {
        let stop = stop.clone();
        rt.spawn(move || {
            let mut stream = TcpStream::connect(addr).expect("connect to the echo server");
            let mut buf = [7u8; 64];
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(&buf).expect("write");
                stream.read_exact(&mut buf).expect("read");
            }
        });
    }
    // Sleepers: timers.
    for i in 0..200u64 {
        let stop = stop.clone();
        rt.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                stackweave::time::sleep(Duration::from_millis(1 + i % 50));
            }
        });
    }
    // A computation that yields every 100 µs or so.
    let compute_stop = stop.clone();
    rt.spawn(move || {
        let mut x = 1u64;
        while !compute_stop.load(Ordering::Relaxed) {
            let slice = Instant::now();
            while slice.elapsed() < Duration::from_micros(100) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            stackweave::yield_now();
        }
        x
    });

    let start = Instant::now();
    let mut latest = rt.metrics();
    let mut last = latest.per_worker.clone();
    for second in 1..=seconds {
        let blocking = rt.spawn(|| {
            stackweave::spawn_blocking(|| std::thread::sleep(Duration::from_millis(300)))
        });
        if second == 2 {
            let builder = stackweave::Builder::new().name("stalls-on-purpose".into());
            rt.handle()
                .try_spawn(builder, || std::thread::sleep(Duration::from_millis(300)))?;
        }
        std::thread::sleep(Duration::from_millis(100));
        let during = rt.metrics();
        std::thread::sleep(
            (start + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        let now = rt.metrics();
        println!(
            "t={second}s  live {}  blocking pool {} thread(s), {} busy (at t={}.1s)",
            now.live_coroutines,
            during.blocking_threads,
            during.blocking_busy,
            second - 1
        );
        for (i, (w, before)) in now.per_worker.iter().zip(&last).enumerate() {
            print_worker(i, w, before);
        }
        last = now.per_worker.clone();
        latest = now;
        let _ = blocking.join();
    }
    stop.store(true, Ordering::Relaxed);
    Ok(latest)
}

/// One worker's line: the last second's rates, then its current figures.
fn print_worker(index: usize, w: &WorkerMetrics, before: &WorkerMetrics) {
    let busy = w.busy.saturating_sub(before.busy);
    println!(
        "  worker {index}: busy {:>3} ms  runs {:>7}  polls {:>6}  steals {:>3}  parks {:>5}  \
         stalls {}  live {:>3}  ready {:>3}  fds {:>3}  timers {:>3}",
        busy.as_millis(),
        w.runs - before.runs,
        w.polls - before.polls,
        w.steals - before.steals,
        w.parks - before.parks,
        w.stalls,
        w.live_coroutines,
        w.ready_coroutines,
        w.registrations,
        w.timers,
    );
}
