//! What a server does with each request besides echoing it, for the rows that
//! judge how a runtime uses its cores (`benches/compare`: hog, scaling). The same
//! code runs in every rival's handler. (A module of `servers.rs`; not a bench
//! target.)
//!
//! The requests are the echo load generator's 64-byte messages: [`Frames`] cuts a
//! connection's byte stream into them and runs the [`Work`] of each message as its
//! first byte arrives, before the bytes are echoed.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Bytes per request (the load generator's message size).
pub const FRAME: usize = 64;
/// A request whose first byte is this makes a hog server spin for [`HOG_TIME`].
pub const HOG_MARK: u8 = b'H';
/// How long a hog request keeps its worker busy: a spin loop reading the clock,
/// which never yields (the worker can run nothing else meanwhile).
pub const HOG_TIME: Duration = Duration::from_millis(50);

/// The work done per request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Work {
    /// [`HOG_TIME`] of spinning for a request marked [`HOG_MARK`], nothing otherwise.
    Hog,
    /// [`hash`] with this many iterations for every request (CPU-bound).
    Hash { iters: u64 },
}

impl Work {
    /// The work of one request, given its first byte.
    fn run(self, first: u8) {
        match self {
            Work::Hog if first == HOG_MARK => spin(HOG_TIME),
            Work::Hog => {}
            Work::Hash { iters } => {
                black_box(hash(iters, first));
            }
        }
    }
}

/// Busy-waits for `d` without yielding.
fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// `iters` rounds of an FNV-style multiply-xor, each depending on the last (the
/// compiler cannot shorten it, the CPU cannot overlap it): a fixed amount of
/// integer work.
pub fn hash(iters: u64, seed: u8) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ u64::from(seed);
    for i in 0..black_box(iters) {
        h = (h ^ i).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How many [`hash`] iterations take `target` on this machine: the fastest of
/// several timed runs, so noise makes the work longer, never shorter.
#[allow(dead_code)] // only benches/compare calibrates
pub fn calibrate(target: Duration) -> u64 {
    const PROBE: u64 = 200_000;
    let best = (0..9)
        .map(|_| {
            let start = Instant::now();
            black_box(hash(PROBE, 0));
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_micros(1))
        .max(Duration::from_nanos(1));
    (target.as_nanos() * u128::from(PROBE) / best.as_nanos()).max(1) as u64
}

/// A connection's position in its stream of [`FRAME`]-byte requests.
pub struct Frames {
    work: Work,
    /// Bytes of the current request received so far.
    pos: usize,
}

impl Frames {
    pub fn new(work: Work) -> Frames {
        Frames { work, pos: 0 }
    }

    /// Runs the work of every request that starts in `chunk` (the bytes just read).
    pub fn on_read(&mut self, chunk: &[u8]) {
        let mut start = (FRAME - self.pos) % FRAME;
        while start < chunk.len() {
            self.work.run(chunk[start]);
            start += FRAME;
        }
        self.pos = (self.pos + chunk.len()) % FRAME;
    }
}
