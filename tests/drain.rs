//! `Runtime::shutdown_timeout`: the work in flight finishes, accept loops end by
//! themselves, spawns from outside are refused, and what outlives the deadline is
//! unwound and counted.

mod common;

use common::eventually;
use stackweave::net::{TcpListener, TcpStream};
use stackweave::os::unix::net::{UnixListener, UnixStream};
use stackweave::runtime::RuntimeShutdown;
use stackweave::Runtime;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Suspends the calling coroutine until `flag` is set.
fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        stackweave::time::sleep(Duration::from_millis(1));
    }
}

const IN_FLIGHT: usize = 200;

#[test]
fn requests_in_flight_get_their_full_response_and_the_accept_loop_ends() {
    let server = Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let read_request = Arc::new(AtomicUsize::new(0));
    // Set by the accept loop once `incoming()` ended, i.e. once the drain began.
    let draining = Arc::new(AtomicBool::new(false));
    let accept_loop = server.spawn({
        let (read_request, draining) = (read_request.clone(), draining.clone());
        move || {
            let mut accepted = 0;
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                accepted += 1;
                let (read_request, draining) = (read_request.clone(), draining.clone());
                stackweave::spawn(move || {
                    let mut request = [0; 4];
                    stream.read_exact(&mut request).unwrap();
                    read_request.fetch_add(1, Ordering::AcqRel);
                    // The handler's work: 100 ms, all of it after the drain began
                    // (however late the test thread gets to start it).
                    wait_for(&draining);
                    stackweave::time::sleep(Duration::from_millis(100));
                    stream.write_all(b"done:").unwrap();
                    stream.write_all(&request).unwrap();
                });
            }
            draining.store(true, Ordering::Release);
            accepted
        }
    });

    let clients_rt = Runtime::builder().workers(1).build().unwrap();
    let clients: Vec<_> = (0..IN_FLIGHT as u32)
        .map(|i| {
            clients_rt.spawn(move || -> io::Result<Vec<u8>> {
                let mut stream = TcpStream::connect(addr)?;
                stream.write_all(&i.to_le_bytes())?;
                let mut response = Vec::new();
                stream.read_to_end(&mut response)?;
                Ok(response)
            })
        })
        .collect();
    eventually("every request to be read", || {
        read_request.load(Ordering::Acquire) == IN_FLIGHT
    });

    let drained = server.shutdown_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(drained.cancelled, 0, "{drained:?}");
    // Every handler, and the accept loop, which ended by itself.
    assert_eq!(drained.finished, IN_FLIGHT as u64 + 1, "{drained:?}");
    assert!(drained.elapsed >= Duration::from_millis(100), "{drained:?}");
    assert_eq!(accept_loop.join().unwrap(), IN_FLIGHT);

    for (i, client) in clients.into_iter().enumerate() {
        let mut expected = b"done:".to_vec();
        expected.extend_from_slice(&(i as u32).to_le_bytes());
        assert_eq!(client.join().unwrap().unwrap(), expected, "client {i}");
    }
    // The accept loop dropped the listener on its way out.
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn an_accept_waiting_on_a_unix_listener_returns_the_drain_error() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let dir = std::env::temp_dir().join(format!("stackweave-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let acceptor = rt.spawn({
        let served = served.clone();
        move || {
            let (_first, _) = listener.accept()?;
            served.fetch_add(1, Ordering::AcqRel);
            // Waits here when the drain begins.
            listener.accept().map(|_| ())
        }
    });
    let _client = rt
        .block_on({
            let path = path.clone();
            move || UnixStream::connect(path)
        })
        .unwrap();
    eventually("the first connection to be accepted", || {
        served.load(Ordering::Acquire) == 1
    });
    let drained = rt.shutdown_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(drained.cancelled, 0, "{drained:?}");
    let err = acceptor.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("draining"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Counts its drops: proves a coroutine was unwound with its destructors run.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

#[test]
fn coroutines_that_outlive_the_deadline_are_unwound_and_counted() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let stuck: Vec<_> = (0..3)
        .map(|_| {
            let (dropped, parked) = (dropped.clone(), parked.clone());
            rt.spawn(move || {
                let _guard = Counted(dropped);
                parked.fetch_add(1, Ordering::AcqRel);
                loop {
                    stackweave::park();
                }
            })
        })
        .collect();
    eventually("the stuck coroutines to park", || {
        parked.load(Ordering::Acquire) == 3
    });
    let start = Instant::now();
    let drained = rt.shutdown_timeout(Duration::from_millis(200)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!((drained.finished, drained.cancelled), (0, 3), "{drained:?}");
    assert_eq!(dropped.load(Ordering::Acquire), 3);
    for h in stuck {
        assert!(h.join().is_err());
    }
}

#[test]
fn spawns_from_outside_are_refused_while_the_runtimes_own_coroutines_may_spawn() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let in_flight = rt.spawn({
        let go = go.clone();
        move || {
            wait_for(&go);
            // A helper for the work in flight: allowed during the drain.
            stackweave::spawn(|| 6 * 7).join().unwrap()
        }
    });
    let handle = rt.handle().clone();
    thread::scope(|s| {
        let drain = s.spawn(|| rt.shutdown_timeout(Duration::from_secs(30)));
        // Until the drain begins, spawns from here succeed.
        let refused = loop {
            match handle.try_spawn(stackweave::Builder::new(), || ()) {
                Ok(h) => drop(h),
                Err(e) => break e,
            }
            thread::yield_now();
        };
        let payload = refused.get_ref().and_then(|e| e.downcast_ref());
        assert_eq!(payload, Some(&RuntimeShutdown::default()), "{refused}");
        go.store(true, Ordering::Release);
        let drained = drain.join().unwrap().unwrap();
        assert_eq!(drained.cancelled, 0, "{drained:?}");
    });
    assert_eq!(in_flight.join().unwrap(), 42);
}

#[test]
fn shutdown_timeout_from_one_of_its_own_coroutines_is_a_deadlock_error() {
    let rt = Arc::new(Runtime::builder().workers(1).build().unwrap());
    let inner = rt.clone();
    let err = rt
        .block_on(move || inner.shutdown_timeout(Duration::from_secs(1)))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Deadlock, "{err}");
    // Left as it was.
    assert_eq!(rt.block_on(|| 5), 5);
}

/// The environment variable that makes this test binary the server of
/// [`sigterm_drains_a_server_process_and_it_exits_0`].
const SERVER_CHILD: &str = "STACKWEAVE_DRAIN_SERVER_CHILD";

/// The child process's server: prints its port, counts requests read (printing
/// `ready` at `IN_FLIGHT`), answers each 100 ms after the drain began (a request
/// `hang` never), and on SIGTERM drains with a 3 s deadline, prints what happened
/// and exits 0. (Were the 100 ms counted from the read, a loaded machine could
/// deliver the signal after some handlers finished, and the count would vary.)
fn serve_until_sigterm() -> ! {
    use stackweave::signal::{self, SIGTERM};
    let rt = Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("port {}", listener.local_addr().unwrap().port());
    let read = Arc::new(AtomicUsize::new(0));
    // Set by the accept loop once `incoming()` ended, i.e. once the drain began.
    let draining = Arc::new(AtomicBool::new(false));
    rt.spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let (read, draining) = (read.clone(), draining.clone());
            stackweave::spawn(move || {
                let mut request = [0; 4];
                stream.read_exact(&mut request).unwrap();
                if read.fetch_add(1, Ordering::AcqRel) + 1 == IN_FLIGHT {
                    println!("ready");
                }
                if &request == b"hang" {
                    loop {
                        stackweave::park();
                    }
                }
                wait_for(&draining);
                stackweave::time::sleep(Duration::from_millis(100));
                stream.write_all(b"done:").unwrap();
                stream.write_all(&request).unwrap();
            });
        }
        draining.store(true, Ordering::Release);
    });
    let got = rt.block_on(|| signal::wait(&[SIGTERM])).unwrap();
    assert_eq!(got, SIGTERM);
    let drained = rt.shutdown_timeout(Duration::from_secs(3)).unwrap();
    println!(
        "drained finished={} cancelled={}",
        drained.finished, drained.cancelled
    );
    std::process::exit(0)
}

/// A child process that is killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the server child, sends `IN_FLIGHT` requests (the first `hang` if `hang`),
/// SIGTERMs it once all are read, and checks the responses, the refusal of new
/// connections and the exit; returns the child's `drained` line.
fn drain_a_server_process(test: &str, hang: bool) -> String {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(SERVER_CHILD, test)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    // The harness's `test … ... ` may start the child's first line.
    let mut next_line = |marker: &str| loop {
        let line = lines.next().expect("the child's output ended").unwrap();
        if let Some(at) = line.find(marker) {
            return line[at + marker.len()..].to_string();
        }
    };
    let port: u16 = next_line("port ").parse().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let clients: Vec<_> = (0..IN_FLIGHT as u32)
        .map(|i| {
            thread::spawn(move || -> io::Result<Vec<u8>> {
                let mut stream = std::net::TcpStream::connect(addr)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                let request = if hang && i == 0 {
                    *b"hang"
                } else {
                    i.to_le_bytes()
                };
                stream.write_all(&request)?;
                let mut response = Vec::new();
                stream.read_to_end(&mut response)?;
                Ok(response)
            })
        })
        .collect();
    next_line("ready");
    let start = Instant::now();
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let drained = next_line("drained ");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "the server exited with {status}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "the drain took {:?}",
        start.elapsed()
    );
    for (i, client) in clients.into_iter().enumerate() {
        let response = client.join().unwrap().unwrap();
        if hang && i == 0 {
            // Cancelled at the deadline: the connection closed without an answer.
            assert!(response.is_empty(), "{response:?}");
            continue;
        }
        let mut expected = b"done:".to_vec();
        expected.extend_from_slice(&(i as u32).to_le_bytes());
        assert_eq!(response, expected, "client {i}");
    }
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    drained
}

#[test]
fn sigterm_drains_a_server_process_and_it_exits_0() {
    const TEST: &str = "sigterm_drains_a_server_process_and_it_exits_0";
    if std::env::var_os(SERVER_CHILD).is_some_and(|v| v == TEST) {
        serve_until_sigterm();
    }
    let drained = drain_a_server_process(TEST, false);
    // Every handler and the accept loop finished; the main coroutine had already.
    assert_eq!(drained, format!("finished={} cancelled=0", IN_FLIGHT + 1));
}

#[test]
fn sigterm_drain_cancels_a_handler_that_never_finishes_at_the_deadline() {
    const TEST: &str = "sigterm_drain_cancels_a_handler_that_never_finishes_at_the_deadline";
    if std::env::var_os(SERVER_CHILD).is_some_and(|v| v == TEST) {
        serve_until_sigterm();
    }
    let drained = drain_a_server_process(TEST, true);
    assert_eq!(drained, format!("finished={} cancelled=1", IN_FLIGHT));
}

#[test]
fn a_drain_ends_the_accept_of_a_listener_slot_a_dropped_runtime_had_listed() {
    // Each round's runtime often gets the address of the last one's, and its
    // listener the readiness slot of the last one's: the slot's record of which
    // runtime listed it for the drain must not mistake one for the other.
    for round in 0..50 {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let accepting = Arc::new(AtomicBool::new(false));
        let accept_loop = rt.spawn({
            let accepting = accepting.clone();
            move || {
                accepting.store(true, Ordering::Release);
                listener.incoming().count()
            }
        });
        eventually("the accept loop to start", || {
            accepting.load(Ordering::Acquire)
        });
        thread::sleep(Duration::from_millis(2));
        let drained = rt.shutdown_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            (drained.finished, drained.cancelled),
            (1, 0),
            "round {round}: {drained:?}"
        );
        assert_eq!(accept_loop.join().unwrap(), 0);
    }
}
