//! `runtime::until_drain`: idle keep-alive connections end at the drain, while the
//! requests in flight finish; a body that does not wait is never cut; drain scopes
//! nest with deadline scopes.

mod common;

use common::eventually;
use stackweave::net::TcpListener;
use stackweave::runtime::{until_drain, Draining};
use stackweave::Runtime;
use stackweave::{Builder, Placement};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const IDLE: usize = 300;
const BUSY: usize = 50;
const REQUESTS_EACH: u32 = 5;

/// A keep-alive server: each request is 4 bytes, answered with `done:` and them;
/// requests starting with `S` take 200 ms of work after the drain began. The
/// connection's wait for its next request is in a drain scope. Returns the
/// runtime, the address, the count of requests read, and the flag the accept loop
/// sets once `incoming()` ended (the drain began).
fn keep_alive_server() -> (
    Runtime,
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
) {
    let server = Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicBool::new(false));
    server.spawn({
        let (read, draining) = (read.clone(), draining.clone());
        move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let (read, draining) = (read.clone(), draining.clone());
                stackweave::spawn(move || loop {
                    let mut request = [0; 4];
                    match until_drain(|| stream.read_exact(&mut request)) {
                        Ok(Ok(())) => {}
                        // The peer closed, or the drain ended the idle wait.
                        Ok(Err(_)) | Err(Draining { .. }) => return,
                    }
                    read.fetch_add(1, Ordering::AcqRel);
                    if request[0] == b'S' {
                        while !draining.load(Ordering::Acquire) {
                            stackweave::time::sleep(Duration::from_millis(1));
                        }
                        stackweave::time::sleep(Duration::from_millis(200));
                    }
                    // One write: two small ones would wait out Nagle's delay.
                    let mut answer = *b"done:....";
                    answer[5..].copy_from_slice(&request);
                    stream.write_all(&answer).unwrap();
                });
            }
            draining.store(true, Ordering::Release);
        }
    });
    (server, addr, read, draining)
}

fn request(stream: &mut std::net::TcpStream, body: [u8; 4]) -> io::Result<()> {
    stream.write_all(&body)?;
    let mut answer = [0; 9];
    stream.read_exact(&mut answer)?;
    assert_eq!(&answer[..5], b"done:");
    assert_eq!(answer[5..], body);
    Ok(())
}

#[test]
fn idle_keep_alive_connections_close_at_the_drain_while_requests_in_flight_finish() {
    let (server, addr, read, _draining) = keep_alive_server();
    // Idle connections: a few requests each (the scope is entered and left many
    // times, its list slots reused), then nothing.
    let mut idle: Vec<std::net::TcpStream> = (0..IDLE)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            for r in 0..REQUESTS_EACH {
                request(&mut stream, [b'i', i as u8, (i >> 8) as u8, r as u8]).unwrap();
            }
            stream
        })
        .collect();
    // Busy connections: one request each, in flight when the drain begins.
    let busy: Vec<_> = (0..BUSY)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                request(&mut stream, [b'S', i as u8, 0, 0]).unwrap();
                // Then the drain closes it, idle again.
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).unwrap();
                rest
            })
        })
        .collect();
    let expected = IDLE * REQUESTS_EACH as usize + BUSY;
    eventually("every request to be read", || {
        read.load(Ordering::Acquire) == expected
    });

    let drained = server.shutdown_timeout(Duration::from_secs(120)).unwrap();
    // Nothing waited for the deadline: the idle connections ended in their scopes,
    // the busy ones after answering, the accept loop by itself.
    assert_eq!(drained.cancelled, 0, "{drained:?}");
    assert_eq!(drained.finished, (IDLE + BUSY + 1) as u64, "{drained:?}");
    assert!(
        drained.elapsed < Duration::from_secs(120),
        "{drained:?}: the drain waited for its deadline"
    );
    for stream in &mut idle {
        let mut rest = [0; 1];
        assert_eq!(stream.read(&mut rest).unwrap(), 0, "closed by the server");
    }
    for client in busy {
        assert_eq!(client.join().unwrap(), b"", "nothing after the answer");
    }
}

#[test]
fn a_drain_scope_entered_after_the_drain_began_ends_at_its_first_wait_only() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let began = Arc::new(AtomicBool::new(false));
    // The accept loop on worker 0 tells the drain has begun; the coroutine under
    // test runs on worker 1, so that its busy loop cannot hold the accept loop up.
    rt.handle()
        .try_spawn(Builder::new().placement(Placement::Worker(0)), {
            let began = began.clone();
            move || {
                listener.incoming().for_each(drop);
                began.store(true, Ordering::Release);
            }
        })
        .unwrap();
    let checked = rt
        .handle()
        .try_spawn(Builder::new().placement(Placement::Worker(1)), {
            let began = began.clone();
            move || {
                // A body that does not wait runs to its end, though the drain
                // begins while it runs.
                let computed = until_drain(|| {
                    while !began.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    42
                });
                // Outside a scope, waits go on as usual during the drain.
                stackweave::time::sleep(Duration::from_millis(1));
                let without_wait = until_drain(|| 7);
                let sleeping = until_drain(|| stackweave::time::sleep(Duration::from_secs(60)));
                let yielding = until_drain(stackweave::yield_now);
                (computed, without_wait, sleeping, yielding)
            }
        })
        .unwrap();
    let drained = rt.shutdown_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!((drained.finished, drained.cancelled), (2, 0), "{drained:?}");
    let (computed, without_wait, sleeping, yielding) = checked.join().unwrap();
    assert_eq!(computed, Ok(42));
    assert_eq!(without_wait, Ok(7));
    assert_eq!(sleeping, Err(Draining::default()));
    assert_eq!(yielding, Err(Draining::default()));
}

#[test]
fn drain_scopes_and_deadline_scopes_nest_each_ending_by_its_own_rule() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let in_scopes = Arc::new(AtomicUsize::new(0));
    let nested = rt.spawn({
        let in_scopes = in_scopes.clone();
        move || {
            // Before the drain: a deadline inside a drain scope still fires.
            let deadline_inside = until_drain(|| {
                stackweave::time::timeout(Duration::from_millis(5), || {
                    stackweave::time::sleep(Duration::from_secs(60))
                })
            });
            assert!(matches!(deadline_inside, Ok(Err(_))), "{deadline_inside:?}");
            let mut server_side = listener.accept().unwrap().0;
            // Then the drain ends the inner drain scope; the deadline scope around
            // it returns what the body returned.
            let drain_inside = stackweave::time::timeout(Duration::from_secs(600), || {
                until_drain(|| {
                    in_scopes.fetch_add(1, Ordering::AcqRel);
                    let mut byte = [0; 1];
                    server_side.read(&mut byte)
                })
                .map(|read| read.map_err(|e| e.kind()))
            });
            // Nested drain scopes end together, at the outermost.
            let reached_inner_end = AtomicBool::new(false);
            let drain_nested = until_drain(|| {
                let inner = until_drain(|| stackweave::time::sleep(Duration::from_secs(60)));
                reached_inner_end.store(true, Ordering::Relaxed);
                inner
            });
            (drain_inside, drain_nested, reached_inner_end.into_inner())
        }
    });
    let _client = std::net::TcpStream::connect(addr).unwrap();
    eventually("the coroutine to wait in its scopes", || {
        in_scopes.load(Ordering::Acquire) == 1
    });
    let drained = rt.shutdown_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!((drained.finished, drained.cancelled), (1, 0), "{drained:?}");
    let (drain_inside, drain_nested, reached_inner_end) = nested.join().unwrap();
    assert_eq!(drain_inside, Ok(Err(Draining::default())));
    assert_eq!(drain_nested, Err(Draining::default()));
    assert!(
        !reached_inner_end,
        "the unwind went past the inner scope's end"
    );
}

#[test]
fn a_drain_of_another_runtime_does_not_end_a_scope() {
    let draining = Runtime::builder().workers(1).build().unwrap();
    let other = Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = stackweave::sync::mpsc::channel::<u32>();
    let waiting = other.spawn(move || until_drain(|| rx.recv()));
    thread::sleep(Duration::from_millis(10));
    let drained = draining.shutdown_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(drained.cancelled, 0);
    tx.send(5).unwrap();
    assert_eq!(waiting.join().unwrap(), Ok(Ok(5)));
}

#[test]
fn until_drain_outside_a_coroutine_panics_with_a_clear_message() {
    let panic = std::panic::catch_unwind(|| until_drain(|| 1)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("stackweave::runtime::until_drain called outside a coroutine"),
        "{message}"
    );
}

#[test]
fn a_drain_scope_reports_draining_through_io_error() {
    let e: io::Error = Draining::default().into();
    assert_eq!(e.kind(), io::ErrorKind::Other);
    assert!(e.to_string().contains("draining"), "{e}");
    // And an accept on a draining runtime carries the same type.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let accept = rt.spawn(move || listener.accept().map(|_| ()));
    thread::sleep(Duration::from_millis(10));
    rt.shutdown_timeout(Duration::from_secs(10)).unwrap();
    let err = accept.join().unwrap().unwrap_err();
    assert!(
        err.get_ref().is_some_and(|inner| inner.is::<Draining>()),
        "{err}"
    );
}
