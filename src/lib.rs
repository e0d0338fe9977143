//! stackweave: a stackful coroutine runtime.
//!
//! Write plain, blocking-style code — one coroutine per task, ordinary loops and
//! function calls — and run it with the efficiency of an event loop. Each coroutine
//! has its own stack and is switched by hand-written assembly (`arch/`).
//!
//! The API mirrors `std::thread` and `std::net`: a thread-per-connection program
//! ports by changing its `use` lines. A complete echo server, one coroutine per
//! connection:
//!
//! ```
//! use std::io::{Read, Write};
//! use stackweave::net::{TcpListener, TcpStream};
//!
//! fn serve(mut stream: TcpStream) -> std::io::Result<()> {
//!     let mut buf = [0; 4096];
//!     loop {
//!         let n = stream.read(&mut buf)?; // suspends this coroutine only
//!         if n == 0 {
//!             return Ok(()); // the client closed the connection
//!         }
//!         stream.write_all(&buf[..n])?;
//!     }
//! }
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! stackweave::spawn(move || {
//!     for stream in listener.incoming() {
//!         match stream {
//!             Ok(stream) => {
//!                 stackweave::spawn(move || serve(stream));
//!             }
//!             Err(e) => eprintln!("accept failed: {e}"),
//!         }
//!     }
//! });
//!
//! // A client, from a plain thread or from another coroutine alike:
//! let mut client = TcpStream::connect(addr)?;
//! client.write_all(b"hello")?;
//! let mut reply = [0; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Coroutines are cheap enough to have a hundred thousand of them:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! // A hundred thousand coroutines; each is a plain blocking-style function.
//! let results = Arc::new(Mutex::new(Vec::new()));
//! let handles: Vec<_> = (0..100_000u64)
//!     .map(|i| {
//!         let results = results.clone();
//!         stackweave::spawn(move || {
//!             stackweave::yield_now(); // suspends only this coroutine
//!             if i % 25_000 == 0 {
//!                 results.lock().unwrap().push(i);
//!             }
//!             i * 2
//!         })
//!     })
//!     .collect();
//! let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
//! assert_eq!(total, 100_000 * 99_999);
//! assert_eq!(results.lock().unwrap().len(), 4);
//! ```
//!
//! What is here:
//!
//! * [`spawn`], [`Builder`], [`JoinHandle`], [`current`], [`park`], [`park_timeout`],
//!   [`yield_now`], [`coroutine_local!`] — coroutines with the API of `std::thread`,
//!   on a work-stealing [`Runtime`] (or the default one, started on first use);
//! * [`net`] (TCP, UDP, [`ToSocketAddrs`](net::ToSocketAddrs) with DNS off the
//!   workers) and [`os::unix::net`] (Unix domain sockets) — the API of `std::net`,
//!   where a call that would block suspends only its coroutine, with timeouts that
//!   fail with `ErrorKind::TimedOut`; [`io::Pollable`] does the same for any
//!   pollable descriptor;
//! * [`time`] — [`sleep`](time::sleep) and [`sleep_until`](time::sleep_until);
//! * [`signal`] — Unix signals ([`wait`](signal::wait),
//!   [`Signals`](signal::Signals)), waited for like a socket;
//! * [`generator`] — standalone stackful generators that suspend from any call depth,
//!   usable without a runtime;
//! * [`stack`] — the configuration of coroutine stacks (lazily committed, guarded,
//!   pooled; an overflow is reported by name and aborts, never silently corrupts).
//!
//! With the opt-in Cargo feature **`hooks`** (Linux with glibc), unmodified
//! blocking code cooperates too: libc's `read`, `recv`, `write`, `send`,
//! `connect`, `accept`, `poll`, `nanosleep` and their relatives, called from
//! `std::net`, `std::thread::sleep` or C code inside a coroutine, suspend only that
//! coroutine; everywhere else they are libc's after one thread-local check.
//! Regular files and `getaddrinfo` still block: use [`spawn_blocking`] for those.
//! docs/ARCHITECTURE.md's "Running blocking crates" has the list and the limits.
//! Turned on with `stackweave = { version = "0.1", features = ["hooks"] }`; nothing
//! changes without it.
//!
//! A coroutine never changes OS thread once it has started (its stack may hold
//! `Rc`s, `MutexGuard`s, thread-local borrows), which is why [`spawn`] is a safe
//! function: only the `Send` closure of a coroutine that has not started yet can be
//! stolen by another worker. Each worker has its own `epoll` reactor and timers;
//! outside a coroutine, every blocking call blocks the calling thread like std.
//!
//! ```
//! use stackweave::generator::{Generator, GeneratorState, Yielder};
//!
//! let mut g = Generator::new(|y: &Yielder<u32>| {
//!     y.suspend(1);
//!     y.suspend(2);
//!     "done"
//! });
//! assert_eq!(g.resume(), GeneratorState::Yielded(1));
//! assert_eq!(g.resume(), GeneratorState::Yielded(2));
//! assert_eq!(g.resume(), GeneratorState::Complete("done"));
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod blocking;
mod coroutine;
pub mod future;
pub mod generator;
#[cfg(feature = "hooks")]
mod hooks;
pub mod io;
pub mod net;
pub mod os;
mod rt;
pub mod runtime;
pub mod signal;
pub mod stack;
pub mod sync;
mod thread_exit;
pub mod time;

pub use blocking::spawn_blocking;
pub use coroutine::local::LocalKey;
pub use coroutine::{
    current, park, park_timeout, spawn, yield_now, Builder, Cancelled, Coroutine, CoroutineId,
    JoinHandle, Placement, Unwound,
};
pub use runtime::Runtime;

// The bare context switch, for benches/switch.rs only: not part of the API.
#[doc(hidden)]
pub use rt::context::BareSwitch as __BareSwitch;

/// The context-switch backend compiled in: `"hand-written x86_64"` or
/// `"corosensei"` (with the `corosensei-backend` feature, or on targets without a
/// file in `arch/`).
///
/// # Examples
///
/// ```
/// println!("stackweave switches with {}", stackweave::SWITCH_BACKEND);
/// ```
pub const SWITCH_BACKEND: &str = rt::context::BACKEND;

/// The code blocks of README.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The code blocks of docs/ARCHITECTURE.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/ARCHITECTURE.md")]
struct ArchitectureDoctests;
