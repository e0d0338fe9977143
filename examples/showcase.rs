//! The runtime under load: a hundred thousand blocking-style coroutines.
//!
//! Run: `cargo run --release --example showcase`
//!
//! Three phases, each printing what it measured:
//!
//! 1. **spawn + join** — 100,000 coroutines, each a plain function that calls
//!    helpers and yields from inside them, spawned from one coroutine and joined.
//! 2. **100,000 parked at once** — every coroutine blocks in `park()` (think: a
//!    connection waiting for its next request); the resident memory they cost is
//!    printed per coroutine, then one coordinator unparks them all.
//! 3. **ping-pong** — two coroutines hand a token back and forth with
//!    `park`/`unpark`, the way a request and its reply would.
//!
//! It ends with the runtime's metrics. Example output on the 2-core development VM:
//!
//! ```text
//! stackweave showcase: 2 workers, hand-written x86_64 switch, 256 KiB stacks
//! spawn + join   100000 coroutines in 175 ms (1.8 µs each), checksum ok
//! parked         100000 coroutines at once: 4.1 KiB RSS each; all woken in 3576 ms
//! ping-pong      200000 park/unpark round trips in 420 ms (2.1 µs each)
//! metrics        spawned 200005, completed 200005, steals 45111, parks 65528
//! ```
//!
//! (Waking and finishing 100,000 parked coroutines is dominated by giving 100,000
//! stacks back: past the pools' caps each costs an `madvise` or `munmap` and a TLB
//! shootdown on the other worker.)

use stackweave::{Coroutine, Runtime};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

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
    rt.block_on(spawn_and_join);
    rt.block_on(park_many);
    rt.block_on(ping_pong);
    let m = rt.metrics();
    println!(
        "metrics        spawned {}, completed {}, steals {}, parks {}",
        m.spawned, m.completed, m.steals, m.parks
    );
}
