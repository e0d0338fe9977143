//! The coroutine dump on a small server: a line-based TCP server whose connections
//! are served by one coroutine each, a few clients that connect and go quiet, a
//! pool of workers waiting on a channel for jobs, a coroutine that joins another,
//! and a ticker that sleeps. The dump shows each coroutine's state, what it waits
//! for (the socket and its peer, the channel, the timer, the join) and its
//! backtrace from the blocking call the code made; the pool's identical stacks are
//! printed once.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example dump              # prints one dump and exits
//! cargo run --release --example dump -- --wait    # then waits: kill -QUIT <pid>
//! ```
//!
//! With `--wait` the server runs until stdin closes, and `SIGQUIT` (Ctrl-\ in a
//! terminal) prints a dump each time, as Go does: the runtime is built with
//! `Builder::dump_on_signal(Some(SIGQUIT))`. Any program can get the same without
//! a code change by setting `STACKWEAVE_DUMP_SIGNAL=QUIT`.

use stackweave::net::{TcpListener, TcpStream};
use stackweave::runtime::CoroutineState;
use stackweave::signal::SIGQUIT;
use stackweave::sync::mpsc;
use stackweave::{Builder, Runtime};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

/// Serves one connection: echoes lines back in upper case.
#[inline(never)]
fn handle_client(stream: TcpStream) -> std::io::Result<usize> {
    let mut lines = 0;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        writer.write_all(line.to_uppercase().as_bytes())?;
        line.clear();
        lines += 1;
    }
    Ok(lines)
}

/// Accepts connections, one coroutine each.
#[inline(never)]
fn accept_loop(listener: TcpListener) -> std::io::Result<()> {
    for (n, stream) in listener.incoming().enumerate() {
        let stream = stream?;
        Builder::new()
            .name(format!("client-{n}"))
            .spawn(move || handle_client(stream))?;
    }
    Ok(())
}

/// One worker of the job pool.
#[inline(never)]
fn pool_worker(jobs: stackweave::sync::mpmc::Receiver<u64>) -> u64 {
    let mut sum = 0;
    while let Ok(job) = jobs.recv() {
        sum += job;
    }
    sum
}

/// Wakes every few seconds.
#[inline(never)]
fn ticker() -> u64 {
    let mut ticks = 0;
    loop {
        stackweave::time::sleep(Duration::from_secs(5));
        ticks += 1;
        if ticks == u64::MAX {
            return ticks;
        }
    }
}

fn main() -> std::io::Result<()> {
    let wait = std::env::args().any(|a| a == "--wait");
    let rt = Runtime::builder()
        .workers(2)
        .dump_on_signal(Some(SIGQUIT))
        .build()?;
    let listener = rt.block_on(|| TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.handle()
        .try_spawn(Builder::new().name("acceptor".into()), move || {
            accept_loop(listener)
        })?;
    // Clients that connect, say hello once and then go quiet.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(rt.block_on(move || -> std::io::Result<TcpStream> {
            let mut s = TcpStream::connect(addr)?;
            s.write_all(b"hello\n")?;
            Ok(s)
        })?);
    }
    let (jobs_tx, jobs_rx) = stackweave::sync::mpmc::unbounded::<u64>();
    for i in 0..8 {
        let jobs = jobs_rx.clone();
        rt.handle()
            .try_spawn(Builder::new().name(format!("pool-{i}")), move || {
                pool_worker(jobs)
            })?;
    }
    rt.handle()
        .try_spawn(Builder::new().name("ticker".into()), ticker)?;
    let (tx, rx) = mpsc::channel::<()>();
    let waiter = rt.spawn(move || rx.recv());
    rt.handle()
        .try_spawn(Builder::new().name("supervisor".into()), move || {
            waiter.join()
        })?;

    // Let every coroutine reach its blocking point, then dump.
    let expected = 3 + 8 + 4;
    let dump = loop {
        let dump = rt.dump();
        let waiting = dump
            .coroutines()
            .iter()
            .filter(|c| c.state() == CoroutineState::Waiting)
            .count();
        if waiting >= expected {
            break dump;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("{dump}");

    if wait {
        eprintln!(
            "server on {addr}, pid {}: send SIGQUIT (kill -QUIT {0}, or Ctrl-\\) for a dump; \
             close stdin (Ctrl-D) to stop",
            std::process::id()
        );
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink)? > 0 {}
    }
    drop(jobs_tx);
    drop(tx);
    drop(clients);
    Ok(())
}
