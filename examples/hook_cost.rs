//! What the `hooks` feature costs a libc call: a tight loop of `write` + `read`
//! on an eventfd (which never blocks here), from the main thread and inside a
//! coroutine, and a one-byte round trip on a Unix socket pair inside a coroutine.
//! Run it with the feature off and on and compare (docs/DECISIONS.md, "Hooks"):
//!
//! ```text
//! cargo run --release --example hook_cost
//! cargo run --release --example hook_cost --features hooks
//! ```

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

const N: u32 = 2_000_000;

/// Nanoseconds per `write` + `read` pair on a fresh eventfd, best of 5 runs.
fn eventfd_pair_ns() -> f64 {
    // SAFETY: eventfd with no pointers; the descriptor is closed below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    let one: u64 = 1;
    let mut got: u64 = 0;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..N {
            // SAFETY: 8-byte buffers that live across the calls.
            unsafe {
                libc::write(fd, (&one as *const u64).cast(), 8);
                libc::read(fd, (&mut got as *mut u64).cast(), 8);
            }
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(N));
    }
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    best
}

/// Nanoseconds per one-byte write + read on a Unix socket pair (blocking to the
/// program), best of 5 runs.
fn socket_pair_ns() -> f64 {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let mut byte = [0u8; 1];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..N / 4 {
            a.write_all(b"x").unwrap();
            b.read_exact(&mut byte).unwrap();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(N / 4));
    }
    best
}

fn main() {
    let hooks = if cfg!(feature = "hooks") { "on" } else { "off" };
    let rt = stackweave::Runtime::builder().workers(1).build().unwrap();
    let main_thread = eventfd_pair_ns();
    let (in_coroutine, socket) = rt.block_on(|| (eventfd_pair_ns(), socket_pair_ns()));
    let socket_main = socket_pair_ns();
    println!("hooks {hooks}: eventfd write+read, main thread: {main_thread:.1} ns");
    println!("hooks {hooks}: eventfd write+read, in a coroutine: {in_coroutine:.1} ns");
    println!("hooks {hooks}: socketpair 1-byte write+read, main thread: {socket_main:.1} ns");
    println!("hooks {hooks}: socketpair 1-byte write+read, in a coroutine: {socket:.1} ns");
}
