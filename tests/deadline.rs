//! Deadline scopes (`time::timeout`, `time::deadline`): every blocking point inside
//! the body ends at the scope's deadline, nested scopes take the earliest, spawned
//! coroutines are not covered, and nothing is lost when the deadline meets the
//! operation's completion.

use stackweave::net::{TcpListener, TcpStream};
use stackweave::sync::{mpmc, mpsc, Barrier, Condvar, Mutex, Semaphore};
use stackweave::time::{self, Elapsed};
use stackweave::{select, Runtime};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A short deadline: long enough to be the thing that ends the wait, short enough to
/// keep the suite fast. Nothing below asserts an upper bound on how late it ends.
const SHORT: Duration = Duration::from_millis(20);
/// What the bodies wait for when the deadline is not what ends them.
const LONG: Duration = Duration::from_secs(60);

/// Runs `body` in a coroutine of a fresh 2-worker runtime.
fn in_runtime<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(body)
}

/// Runs `wait` inside a `SHORT` scope and checks that the scope, not the wait,
/// ended it, no earlier than the deadline.
fn ends_at_the_deadline<T: std::fmt::Debug>(wait: impl FnOnce() -> T) {
    let start = Instant::now();
    let got = time::timeout(SHORT, wait);
    assert!(got.is_err(), "the wait returned {got:?}");
    assert!(
        start.elapsed() >= SHORT,
        "ended early: {:?}",
        start.elapsed()
    );
}

#[test]
fn a_socket_read_ends_at_the_deadline_and_the_coroutine_goes_on() {
    in_runtime(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = stackweave::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            let mut byte = [0];
            // Sent only after the server's scope ended.
            stream.read_exact(&mut byte).unwrap();
            stream.write_all(b"late").unwrap();
        });
        let (mut stream, _) = listener.accept().unwrap();
        ends_at_the_deadline(|| {
            let mut buf = [0; 4];
            stream.read(&mut buf)
        });
        // The scope is over: the same socket blocks as usual again.
        stream.write_all(b"!").unwrap();
        let mut buf = [0; 4];
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        client.join().unwrap();
    });
}

#[test]
fn accept_ends_at_the_deadline() {
    in_runtime(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ends_at_the_deadline(|| listener.accept().map(|_| ()));
    });
}

#[test]
fn a_write_to_a_peer_that_does_not_read_ends_at_the_deadline() {
    in_runtime(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (_peer, ()) = (TcpStream::connect(addr).unwrap(), ());
        let (mut stream, _) = listener.accept().unwrap();
        let chunk = vec![7u8; 1 << 20];
        // Fills both socket buffers, then waits for room that never comes.
        ends_at_the_deadline(|| loop {
            stream.write_all(&chunk).unwrap();
        });
    });
}

#[test]
fn channel_receives_and_sends_end_at_the_deadline() {
    in_runtime(|| {
        let (tx, rx) = mpsc::channel::<u32>();
        ends_at_the_deadline(|| rx.recv());
        let (full_tx, _full_rx) = mpsc::sync_channel::<u32>(1);
        full_tx.send(1).unwrap();
        ends_at_the_deadline(|| full_tx.send(2));
        let (_mtx, mrx) = mpmc::unbounded::<u32>();
        ends_at_the_deadline(|| mrx.recv());
        drop(tx);
    });
}

#[test]
fn select_ends_at_the_deadline() {
    in_runtime(|| {
        let (_a_tx, a) = mpsc::channel::<u32>();
        let (_b_tx, b) = mpsc::channel::<u32>();
        ends_at_the_deadline(|| {
            select! {
                recv(a) -> m => m.unwrap(),
                recv(b) -> m => m.unwrap(),
            }
        });
    });
}

#[test]
fn locks_condvars_semaphores_and_barriers_end_at_the_deadline() {
    in_runtime(|| {
        let mutex = Arc::new(Mutex::new(0));
        let holder = {
            let mutex = mutex.clone();
            let (held_tx, held_rx) = mpsc::channel();
            let h = stackweave::spawn(move || {
                let _guard = mutex.lock().unwrap();
                held_tx.send(()).unwrap();
                time::sleep(Duration::from_millis(300));
            });
            held_rx.recv().unwrap();
            h
        };
        ends_at_the_deadline(|| mutex.lock().map(|_| ()).map_err(|_| ()));
        holder.join().unwrap();
        // Released: the lock works again, and was not poisoned by the scope.
        *mutex.lock().unwrap() += 1;

        let pair = (Mutex::new(false), Condvar::new());
        let guard = pair.0.lock().unwrap();
        // The guard is dropped by the unwind (which poisons the mutex, as any
        // unwind through a guard does).
        ends_at_the_deadline(move || pair.1.wait(guard).map(|_| ()).map_err(|_| ()));

        let semaphore = Semaphore::new(0);
        ends_at_the_deadline(|| semaphore.acquire().forget());

        let barrier = Barrier::new(2);
        ends_at_the_deadline(|| barrier.wait().is_leader());
    });
}

#[test]
fn sleep_join_park_and_yield_loops_end_at_the_deadline() {
    in_runtime(|| {
        ends_at_the_deadline(|| time::sleep(LONG));
        let sleeper = stackweave::spawn(|| time::sleep(Duration::from_millis(300)));
        ends_at_the_deadline(|| sleeper.join().unwrap());
        ends_at_the_deadline(|| loop {
            stackweave::park();
        });
        ends_at_the_deadline(|| loop {
            stackweave::yield_now();
        });
    });
}

#[test]
fn destructors_of_the_body_run_when_the_deadline_ends_it() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::AcqRel);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let seen = dropped.clone();
    in_runtime(move || {
        let got = time::timeout(SHORT, || {
            let _outer = Counted(dropped.clone());
            let deep = || {
                let _inner = Counted(dropped.clone());
                time::sleep(LONG);
            };
            deep();
            "finished"
        });
        assert!(got.is_err());
    });
    assert_eq!(seen.load(Ordering::Acquire), 2);
}

#[test]
fn a_body_that_finishes_in_time_returns_ok_and_later_waits_are_not_cut() {
    in_runtime(|| {
        let got = time::timeout(Duration::from_millis(30), || {
            time::sleep(Duration::from_millis(1));
            42
        });
        assert_eq!(got, Ok(42));
        // Past the scope's deadline: its timer was disarmed and its deadline is gone.
        let start = Instant::now();
        time::sleep(Duration::from_millis(80));
        assert!(start.elapsed() >= Duration::from_millis(80));
    });
}

#[test]
fn nested_scopes_take_the_earliest_deadline_and_the_owner_reports_it() {
    in_runtime(|| {
        // The outer deadline comes first: the inner scope passes the unwind on.
        let inner_ran_on = Arc::new(AtomicUsize::new(0));
        let flag = inner_ran_on.clone();
        let outer = time::timeout(SHORT, move || {
            let inner = time::timeout(LONG, || time::sleep(LONG));
            // Never reached: the inner scope does not catch the outer's deadline.
            flag.store(1, Ordering::Release);
            inner
        });
        assert!(outer.is_err());
        assert_eq!(inner_ran_on.load(Ordering::Acquire), 0);

        // The inner deadline comes first: the inner scope reports it, and the
        // outer one goes on, its own deadline still in force afterwards.
        let outer_at = Instant::now() + Duration::from_millis(150);
        let outer = time::deadline(outer_at, || {
            let inner = time::timeout(SHORT, || time::sleep(LONG));
            let inner_err: Elapsed = inner.unwrap_err();
            assert!(inner_err.deadline() < outer_at);
            // Still inside the outer scope.
            time::sleep(LONG);
        });
        assert_eq!(outer.unwrap_err().deadline(), outer_at);
        assert!(Instant::now() >= outer_at);
    });
}

#[test]
fn a_per_call_timeout_shorter_than_the_scope_still_applies() {
    in_runtime(|| {
        let (_tx, rx) = mpsc::channel::<u32>();
        let got = time::timeout(LONG, || rx.recv_timeout(SHORT));
        assert_eq!(got, Ok(Err(mpsc::RecvTimeoutError::Timeout)));
    });
}

#[test]
fn coroutines_spawned_in_a_scope_are_not_covered() {
    in_runtime(|| {
        let mut child = None;
        let got = time::timeout(SHORT, || {
            child = Some(stackweave::spawn(|| {
                time::sleep(Duration::from_millis(100));
                "child finished"
            }));
            time::sleep(LONG);
        });
        assert!(got.is_err());
        assert_eq!(child.unwrap().join().unwrap(), "child finished");
    });
}

#[test]
fn a_scope_whose_deadline_passed_ends_at_the_first_wait_and_not_before() {
    in_runtime(|| {
        let past = Instant::now();
        let mut computed = 0;
        let got = time::deadline(past, || {
            // No wait here: not interrupted.
            computed = (1..=10u64).sum();
            time::sleep(LONG);
        });
        assert!(got.is_err());
        assert_eq!(computed, 55);
        // A body with no wait at all returns what it computed.
        assert_eq!(time::deadline(past, || 7), Ok(7));
    });
}

#[test]
fn elapsed_converts_to_a_timed_out_io_error() {
    in_runtime(|| {
        let read = || -> io::Result<()> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            time::timeout(SHORT, || listener.accept().map(|_| ()))??;
            Ok(())
        };
        assert_eq!(read().unwrap_err().kind(), io::ErrorKind::TimedOut);
    });
}

#[test]
fn a_panic_in_the_body_goes_on_unwinding_and_the_scope_is_left() {
    in_runtime(|| {
        let caught =
            std::panic::catch_unwind(|| time::timeout(LONG, || panic!("the body's own panic")));
        let payload = caught.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the body's own panic")
        );
        // Outside any scope again: a sleep past nothing is not cut.
        time::sleep(Duration::from_millis(5));
    });
}

#[test]
fn outside_a_coroutine_a_scope_panics_with_a_clear_message() {
    let caught = std::panic::catch_unwind(|| time::timeout(SHORT, || ()));
    let payload = caught.unwrap_err();
    let message = payload.downcast_ref::<String>().unwrap();
    assert!(message.contains("outside a coroutine"), "{message}");
}

/// Sends 1 to `n` (letting the receivers run every 64), then disconnects: the
/// receivers stop once the channel is empty and disconnected.
fn send_numbered(tx: mpmc::Sender<usize>, rx: mpmc::Receiver<usize>, n: usize) {
    for v in 1..=n {
        tx.send(v).unwrap();
        if v % 64 == 0 {
            stackweave::yield_now();
        }
    }
    drop((tx, rx));
}

/// Many receivers whose deadlines race with senders: every message sent is either
/// received inside a scope, or received afterwards from the channel; none is lost
/// to a scope that ended as the message arrived.
#[test]
fn messages_racing_with_deadlines_are_never_lost() {
    const RECEIVERS: usize = 200;
    const MESSAGES: usize = 20_000;
    in_runtime(|| {
        let (tx, rx) = mpmc::unbounded::<usize>();
        let received = Arc::new(AtomicUsize::new(0));
        let sum = Arc::new(AtomicUsize::new(0));
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|i| {
                let (rx, received, sum) = (rx.clone(), received.clone(), sum.clone());
                stackweave::spawn(move || {
                    let mut timeouts = 0;
                    loop {
                        // Deadlines of 0 to 199 µs: many end as a message comes.
                        let d = Duration::from_micros(((i * 7919 + timeouts) % 200) as u64);
                        match time::timeout(d, || rx.recv_timeout(Duration::from_millis(20))) {
                            Ok(Ok(v)) => {
                                sum.fetch_add(v, Ordering::AcqRel);
                                received.fetch_add(1, Ordering::AcqRel);
                            }
                            Ok(Err(mpmc::RecvTimeoutError::Disconnected)) => break timeouts,
                            Ok(Err(mpmc::RecvTimeoutError::Timeout)) | Err(_) => timeouts += 1,
                        }
                    }
                })
            })
            .collect();
        send_numbered(tx, rx, MESSAGES);
        let timeouts: usize = receivers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(received.load(Ordering::Acquire), MESSAGES);
        assert_eq!(sum.load(Ordering::Acquire), MESSAGES * (MESSAGES + 1) / 2);
        assert!(timeouts > 0, "no deadline raced with a message");
    });
}

/// The same race for `select!` receivers.
#[test]
fn select_messages_racing_with_deadlines_are_never_lost() {
    const RECEIVERS: usize = 200;
    const MESSAGES: usize = 20_000;
    // The race is rarer with a select's several arms: five rounds.
    for _ in 0..5 {
        in_runtime(|| {
            let (tx, rx) = mpmc::unbounded::<usize>();
            let (_other_tx, other) = mpmc::unbounded::<usize>();
            let received = Arc::new(AtomicUsize::new(0));
            let sum = Arc::new(AtomicUsize::new(0));
            let receivers: Vec<_> = (0..RECEIVERS)
                .map(|i| {
                    let (rx, other) = (rx.clone(), other.clone());
                    let (received, sum) = (received.clone(), sum.clone());
                    stackweave::spawn(move || {
                        let mut round = 0;
                        loop {
                            let d = Duration::from_micros(((i * 7919 + round) % 200) as u64);
                            round += 1;
                            let got = time::timeout(d, || {
                                select! {
                                    recv(rx) -> m => Some(m.ok()),
                                    recv(other) -> m => Some(m.ok()),
                                    default(Duration::from_millis(20)) => None,
                                }
                            });
                            match got {
                                Ok(Some(Some(v))) => {
                                    sum.fetch_add(v, Ordering::AcqRel);
                                    received.fetch_add(1, Ordering::AcqRel);
                                }
                                // Disconnected: empty, and every message was sent.
                                Ok(Some(None)) => break,
                                Ok(None) | Err(_) => {}
                            }
                        }
                    })
                })
                .collect();
            send_numbered(tx, rx, MESSAGES);
            for h in receivers {
                h.join().unwrap();
            }
            assert_eq!(received.load(Ordering::Acquire), MESSAGES);
            assert_eq!(sum.load(Ordering::Acquire), MESSAGES * (MESSAGES + 1) / 2);
        });
    }
}

/// Bytes that arrive as the deadline passes are returned by the read, not dropped:
/// a stream of numbered bytes read under many short scopes arrives whole, in order.
#[test]
fn bytes_read_as_the_deadline_passes_are_returned() {
    const BYTES: usize = 200_000;
    in_runtime(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = stackweave::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let data: Vec<u8> = (0..BYTES).map(|i| i as u8).collect();
            for chunk in data.chunks(997) {
                stream.write_all(chunk).unwrap();
                stackweave::yield_now();
            }
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut got = Vec::with_capacity(BYTES);
        let mut buf = [0; 4096];
        let mut round = 0u64;
        while got.len() < BYTES {
            round += 1;
            let d = Duration::from_micros(round % 50);
            if let Ok(n) = time::timeout(d, || stream.read(&mut buf)) {
                got.extend_from_slice(&buf[..n.unwrap()]);
            }
        }
        writer.join().unwrap();
        assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
    });
}
