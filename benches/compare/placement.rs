//! The placement row: on which worker a server's connection handlers start.
//!
//! The server is the README's echo server shape, one blocking-style accept loop that
//! spawns a task per connection, on a 2-worker runtime (`--serve placement`, see
//! `benches/harness/servers.rs`): each handler first sends the kernel id of the OS
//! thread it started on, then echoes. Per trial the client opens 100 connections one
//! after another, reads the 100 thread ids, then closes them all; the trial's figure
//! is the share of the worker that started fewer of them, in % (50 = even, 0 = every
//! handler on one worker). A sample is 10 trials (`Sizes::trials`) 50 ms apart
//! against one server; its value is the worst trial.
//!
//! Why it matters: a started stackweave coroutine never leaves its worker, so where
//! a connection starts is where it is served for good, and a 95/5 split leaves one
//! core idle however busy the other is. tokio and may can still move a task later;
//! for them this row only says where tasks start.

use crate::rows::Sizes;
use crate::sample::Sample;
use crate::servers::{Protocol, Rival, ServerProcess};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

/// Connections per trial.
const CONNECTIONS: usize = 100;
/// The server's workers.
const WORKERS: usize = 2;
/// Between trials: time for the closed connections' handlers to end and the workers
/// to go idle.
const PAUSE: Duration = Duration::from_millis(50);

pub fn placement(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let server = ServerProcess::start(Protocol::Placement, rival)?;
    let shares: Result<Vec<f64>, String> = (0..z.trials)
        .map(|i| {
            if i > 0 {
                thread::sleep(PAUSE);
            }
            trial(server.addr).map_err(|e| format!("trial {}: {e}", i + 1))
        })
        .collect();
    server.stop()?;
    let shares = shares?;
    let worst = shares.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    Ok(Sample::new(worst).with("mean", mean).with_trials(shares))
}

/// One trial: the smaller worker's share of `CONNECTIONS` new connections, in %.
fn trial(addr: SocketAddr) -> Result<f64, String> {
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connection {i}: connect: {e}"))?;
        conns.push(s);
    }
    // (thread id, handlers that started on it)
    let mut started: Vec<(u64, usize)> = Vec::new();
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut id = [0u8; 8];
        s.read_exact(&mut id)
            .map_err(|e| format!("connection {i}: no thread id from its handler: {e}"))?;
        let id = u64::from_le_bytes(id);
        match started.iter_mut().find(|t| t.0 == id) {
            Some(t) => t.1 += 1,
            None => started.push((id, 1)),
        }
    }
    if started.len() > WORKERS {
        return Err(format!(
            "the handlers started on {} threads; the runtime has {WORKERS} workers",
            started.len()
        ));
    }
    let fewest = if started.len() < WORKERS {
        0
    } else {
        started.iter().map(|t| t.1).min().unwrap_or(0)
    };
    Ok(fewest as f64 * 100.0 / CONNECTIONS as f64)
}
