//! Channels (`stackweave::sync::mpsc`, `stackweave::sync::mpmc`) and `select!`.
//!
//! Every behaviour `std::sync::mpsc` documents is checked with this side on a plain
//! thread and in a coroutine, and the other side on a plain thread and in a
//! coroutine (all four pairs). The stress tests run on a two-worker runtime and
//! check that every message is delivered exactly once, in order per producer.
//! Nothing here asserts on timing except that a timeout is not shorter than asked;
//! the checks that something stays blocked are negative (it must still be blocked
//! after a pause), so they cannot fail for a correct implementation.

mod common;

use common::Watchdog;
use stackweave::select;
use stackweave::sync::{mpmc, mpsc};
use stackweave::time::sleep;
use stackweave::Runtime;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Where a side of a test runs.
#[derive(Clone, Copy, Debug)]
enum Ctx {
    Thread,
    Coroutine,
}

const CTXS: [Ctx; 2] = [Ctx::Thread, Ctx::Coroutine];

/// The other side of a test: a plain thread or a coroutine.
enum Other<T> {
    Thread(std::thread::JoinHandle<T>),
    Coroutine(stackweave::JoinHandle<T>),
}

fn start<T: Send + 'static>(ctx: Ctx, f: impl FnOnce() -> T + Send + 'static) -> Other<T> {
    match ctx {
        Ctx::Thread => Other::Thread(std::thread::spawn(f)),
        Ctx::Coroutine => Other::Coroutine(stackweave::spawn(f)),
    }
}

impl<T> Other<T> {
    /// Joins without blocking a worker thread when called from a coroutine.
    fn join(self) -> T {
        match self {
            Other::Thread(h) => {
                while !h.is_finished() {
                    sleep(Duration::from_millis(1));
                }
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            }
            Other::Coroutine(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Other::Thread(h) => h.is_finished(),
            Other::Coroutine(h) => h.is_finished(),
        }
    }
}

/// Runs `test(other)` with this side on the test's thread and in a coroutine, and
/// the other side (`other`) on a thread and in a coroutine.
fn matrix(test: fn(Ctx)) {
    for me in CTXS {
        for other in CTXS {
            match me {
                Ctx::Thread => test(other),
                Ctx::Coroutine => stackweave::spawn(move || test(other))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            }
        }
    }
}

/// Waits (suspending, in a coroutine) until `cond` holds; fails after 20 s.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        sleep(Duration::from_millis(1));
    }
}

/// A pause after which something that must stay blocked is checked.
fn pause() {
    sleep(Duration::from_millis(30));
}

/// The sending end of either kind of std-like channel.
enum Tx<T> {
    Async(mpsc::Sender<T>),
    Sync(mpsc::SyncSender<T>),
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        match self {
            Tx::Async(tx) => Tx::Async(tx.clone()),
            Tx::Sync(tx) => Tx::Sync(tx.clone()),
        }
    }
}

impl<T> Tx<T> {
    fn send(&self, msg: T) -> Result<(), mpsc::SendError<T>> {
        match self {
            Tx::Async(tx) => tx.send(msg),
            Tx::Sync(tx) => tx.send(msg),
        }
    }
}

/// Channel kinds: unbounded, bounded, rendezvous.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Unbounded,
    Bounded(usize),
}

const KINDS: [Kind; 4] = [
    Kind::Unbounded,
    Kind::Bounded(1),
    Kind::Bounded(3),
    Kind::Bounded(0),
];

fn chan<T>(kind: Kind) -> (Tx<T>, mpsc::Receiver<T>) {
    match kind {
        Kind::Unbounded => {
            let (tx, rx) = mpsc::channel();
            (Tx::Async(tx), rx)
        }
        Kind::Bounded(n) => {
            let (tx, rx) = mpsc::sync_channel(n);
            (Tx::Sync(tx), rx)
        }
    }
}

fn two_workers() -> Runtime {
    Runtime::builder().workers(2).build().expect("runtime")
}

// ---------------------------------------------------------------------------
// std::sync::mpsc behaviours
// ---------------------------------------------------------------------------

#[test]
fn messages_arrive_in_order_both_ways() {
    matrix(|other| {
        for kind in KINDS {
            // The other side sends.
            let (tx, rx) = chan::<u32>(kind);
            let h = start(other, move || {
                for i in 0..500 {
                    tx.send(i).unwrap();
                }
            });
            for i in 0..500 {
                assert_eq!(rx.recv(), Ok(i), "{kind:?}");
            }
            assert_eq!(rx.recv(), Err(mpsc::RecvError));
            h.join();

            // The other side receives.
            let (tx, rx) = chan::<u32>(kind);
            let h = start(other, move || rx.iter().collect::<Vec<_>>());
            for i in 0..500 {
                tx.send(i).unwrap();
            }
            drop(tx);
            assert_eq!(h.join(), (0..500).collect::<Vec<_>>(), "{kind:?}");
        }
    });
}

#[test]
fn send_fails_with_the_message_once_the_receiver_is_gone() {
    matrix(|other| {
        for kind in KINDS {
            let (tx, rx) = chan::<String>(kind);
            start(other, move || drop(rx)).join();
            assert_eq!(tx.send("lost".into()), Err(mpsc::SendError("lost".into())));
        }
        // try_send too.
        let (tx, rx) = mpsc::sync_channel::<u8>(1);
        start(other, move || drop(rx)).join();
        assert_eq!(tx.try_send(1), Err(mpsc::TrySendError::Disconnected(1)));
    });
}

#[test]
fn a_blocked_send_fails_when_the_receiver_goes() {
    matrix(|other| {
        for bound in [0, 1] {
            let (tx, rx) = mpsc::sync_channel::<u32>(bound);
            if bound == 1 {
                tx.send(0).unwrap();
            }
            let blocked = Arc::new(AtomicBool::new(false));
            let b = blocked.clone();
            let h = start(other, move || {
                b.store(true, Ordering::SeqCst);
                tx.send(9)
            });
            wait_until("sender started", || blocked.load(Ordering::SeqCst));
            pause();
            assert!(!h.is_finished(), "the send should wait (bound {bound})");
            drop(rx);
            assert_eq!(h.join(), Err(mpsc::SendError(9)));
        }
    });
}

#[test]
fn recv_fails_once_every_sender_is_gone() {
    matrix(|other| {
        for kind in KINDS {
            let (tx, rx) = chan::<u32>(kind);
            let tx2 = tx.clone();
            // The other side waits in recv while the senders go, one by one.
            let h = start(other, move || (rx.recv(), rx.try_recv()));
            pause();
            drop(tx);
            pause();
            assert!(!h.is_finished(), "one sender is left ({kind:?})");
            drop(tx2);
            assert_eq!(
                h.join(),
                (Err(mpsc::RecvError), Err(mpsc::TryRecvError::Disconnected))
            );

            // The senders go on the other side.
            let (tx, rx) = chan::<u32>(kind);
            start(other, move || drop(tx)).join();
            assert_eq!(rx.recv(), Err(mpsc::RecvError));
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(5)),
                Err(mpsc::RecvTimeoutError::Disconnected)
            );
            assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        }
    });
}

#[test]
fn buffered_messages_are_delivered_after_the_senders_go() {
    matrix(|other| {
        for kind in [Kind::Unbounded, Kind::Bounded(3)] {
            let (tx, rx) = chan::<u32>(kind);
            start(other, move || {
                for i in 0..3 {
                    tx.send(i).unwrap();
                }
            })
            .join();
            assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
            assert_eq!(rx.recv(), Err(mpsc::RecvError));
        }
    });
}

#[test]
fn messages_are_dropped_when_the_receiver_goes() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    matrix(|other| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            tx.send(Counted(drops.clone())).unwrap();
        }
        start(other, move || drop(rx)).join();
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        drop(tx);
    });
}

#[test]
fn sync_send_blocks_until_there_is_room() {
    matrix(|other| {
        let (tx, rx) = mpsc::sync_channel::<u32>(2);
        let sent = Arc::new(AtomicUsize::new(0));
        let s = sent.clone();
        let h = start(other, move || {
            for i in 0..4 {
                tx.send(i).unwrap();
                s.store(i as usize + 1, Ordering::SeqCst);
            }
        });
        wait_until("two sent", || sent.load(Ordering::SeqCst) == 2);
        pause();
        assert_eq!(
            sent.load(Ordering::SeqCst),
            2,
            "the third send waits for room"
        );
        assert_eq!(rx.recv(), Ok(0));
        wait_until("three sent", || sent.load(Ordering::SeqCst) == 3);
        pause();
        assert_eq!(
            sent.load(Ordering::SeqCst),
            3,
            "the fourth send waits for room"
        );
        assert_eq!(rx.recv(), Ok(1));
        h.join();
        assert_eq!(rx.iter().collect::<Vec<_>>(), [2, 3]);
    });
}

#[test]
fn rendezvous_send_completes_only_when_received() {
    matrix(|other| {
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let h = start(other, move || {
            tx.send(7).unwrap();
            d.store(true, Ordering::SeqCst);
            tx
        });
        pause();
        assert!(!done.load(Ordering::SeqCst), "nobody received yet");
        assert_eq!(rx.recv(), Ok(7));
        let tx = h.join();
        assert!(done.load(Ordering::SeqCst));

        // try_send succeeds only while a receiver waits.
        assert_eq!(tx.try_send(1), Err(mpsc::TrySendError::Full(1)));
        let h = start(other, move || rx.recv());
        let mut n = 0;
        while let Err(mpsc::TrySendError::Full(m)) = tx.try_send(n) {
            n = m + 1;
            sleep(Duration::from_millis(1));
        }
        assert_eq!(h.join(), Ok(n));

        // A receiver that timed out took nothing: the send still waits.
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        let h = start(other, move || {
            (rx.recv_timeout(Duration::from_millis(10)), rx)
        });
        let (res, rx) = h.join();
        assert_eq!(res, Err(mpsc::RecvTimeoutError::Timeout));
        assert_eq!(tx.try_send(3), Err(mpsc::TrySendError::Full(3)));
        drop(rx);
        assert_eq!(tx.try_send(3), Err(mpsc::TrySendError::Disconnected(3)));
    });
}

#[test]
fn try_send_reports_full_and_disconnected() {
    matrix(|other| {
        let (tx, rx) = mpsc::sync_channel::<u32>(1);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Err(mpsc::TrySendError::Full(2)));
        let h = start(other, move || (rx.recv(), rx));
        let (got, rx) = h.join();
        assert_eq!(got, Ok(1));
        assert_eq!(tx.try_send(3), Ok(()));
        start(other, move || drop(rx)).join();
        assert_eq!(tx.try_send(4), Err(mpsc::TrySendError::Disconnected(4)));
    });
}

#[test]
fn recv_timeout_times_out_receives_and_disconnects() {
    matrix(|other| {
        for kind in KINDS {
            let (tx, rx) = chan::<u32>(kind);
            let timeout = Duration::from_millis(20);
            let t = Instant::now();
            assert_eq!(
                rx.recv_timeout(timeout),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            assert!(t.elapsed() >= timeout);

            let h = start(other, move || {
                sleep(Duration::from_millis(5));
                tx.send(5).unwrap();
                sleep(Duration::from_millis(5));
                drop(tx);
            });
            assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(5));
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(20)),
                Err(mpsc::RecvTimeoutError::Disconnected)
            );
            h.join();
        }
    });
}

#[test]
fn iterators_end_at_disconnection() {
    matrix(|other| {
        for kind in KINDS {
            let (tx, rx) = chan::<u32>(kind);
            let h = start(other, move || (0..50).for_each(|i| tx.send(i).unwrap()));
            assert_eq!(rx.iter().collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
            h.join();

            let (tx, rx) = chan::<u32>(kind);
            let h = start(other, move || (0..50).for_each(|i| tx.send(i).unwrap()));
            let mut got = Vec::new();
            for i in &rx {
                got.push(i);
            }
            assert_eq!(got, (0..50).collect::<Vec<_>>());
            h.join();

            let (tx, rx) = chan::<u32>(kind);
            let h = start(other, move || (0..50).for_each(|i| tx.send(i).unwrap()));
            let it: mpsc::IntoIter<u32> = rx.into_iter();
            assert_eq!(it.collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
            h.join();
        }
    });
}

#[test]
fn try_iter_takes_what_is_there_and_never_waits() {
    matrix(|other| {
        let (tx, rx) = mpsc::channel::<u32>();
        let tx = start(other, move || {
            (0..5).for_each(|i| tx.send(i).unwrap());
            tx
        })
        .join();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(rx.try_iter().next(), None); // tx is alive
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
        start(other, move || drop(tx)).join();
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    });
}

#[test]
fn error_types_are_std_s() {
    let e: std::sync::mpsc::SendError<u8> = mpsc::SendError(1);
    assert_eq!(e.to_string(), "sending on a closed channel");
    let _: std::sync::mpsc::TrySendError<u8> = mpsc::TrySendError::Full(1);
    let _: std::sync::mpsc::RecvError = mpsc::RecvError;
    let _: std::sync::mpsc::TryRecvError = mpsc::TryRecvError::Empty;
    let _: std::sync::mpsc::RecvTimeoutError = mpsc::RecvTimeoutError::Timeout;
    let _: std::sync::mpsc::RecvError = mpmc::RecvError;
    fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    is_error(&mpsc::RecvError);
    is_error(&mpsc::TrySendError::Full(1u8));
    // Handles are Send (and senders Sync) like std's.
    fn is_send<T: Send>() {}
    fn is_sync<T: Sync>() {}
    is_send::<mpsc::Sender<u8>>();
    is_sync::<mpsc::Sender<u8>>();
    is_send::<mpsc::SyncSender<u8>>();
    is_sync::<mpsc::SyncSender<u8>>();
    is_send::<mpsc::Receiver<u8>>();
    is_send::<mpmc::Receiver<u8>>();
    is_sync::<mpmc::Receiver<u8>>();
    let (tx, rx) = mpsc::channel::<u8>();
    assert_eq!(format!("{tx:?} {rx:?}"), "Sender { .. } Receiver { .. }");
}

// ---------------------------------------------------------------------------
// Unwinding: a coroutine unwound while it waits leaves nothing behind
// ---------------------------------------------------------------------------

#[test]
fn waiters_unwound_at_shutdown_leave_the_channel_intact() {
    let rt = two_workers();
    let (tx, rx) = mpmc::unbounded::<u32>();
    let (ztx, zrx) = mpmc::bounded::<u32>(0);
    let (stx, srx) = mpmc::bounded::<u32>(0);
    let started = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    {
        let (rx, s) = (rx.clone(), started.clone());
        handles.push(rt.spawn(move || {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = rx.recv();
            unreachable!("nothing is sent before shutdown");
        }));
    }
    {
        let (ztx, s) = (ztx.clone(), started.clone());
        handles.push(rt.spawn(move || {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = ztx.send(1);
            unreachable!("nobody receives before shutdown");
        }));
    }
    {
        let (rx, stx, s) = (rx.clone(), stx.clone(), started.clone());
        handles.push(rt.spawn(move || {
            s.fetch_add(1, Ordering::SeqCst);
            select! {
                recv(rx) -> _ => {}
                send(stx, 2) -> _ => {}
            }
            unreachable!("nothing is ready before shutdown");
        }));
    }
    wait_until("all waiting", || started.load(Ordering::SeqCst) == 3);
    pause();
    rt.shutdown();
    for h in handles {
        assert!(h.join().is_err());
    }
    // None of the unwound waiters takes a message now, or sent one.
    tx.send(10).unwrap();
    assert_eq!(rx.try_recv(), Ok(10));
    assert_eq!(zrx.try_recv(), Err(mpmc::TryRecvError::Empty));
    assert_eq!(srx.try_recv(), Err(mpmc::TryRecvError::Empty));
    assert_eq!(stx.try_send(3), Err(mpmc::TrySendError::Full(3)));
    assert_eq!(ztx.try_send(4), Err(mpmc::TrySendError::Full(4)));
}

// ---------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------

const PRODUCERS: u64 = 8;
const PER_PRODUCER: u64 = 100_000;

/// A stress test whose messages stop arriving for this long has lost a wakeup (see
/// `Watchdog::on_progress`).
const STALL: Duration = Duration::from_secs(60);

#[test]
fn eight_producers_one_receiver_nothing_lost_order_kept() {
    // On progress, not a time limit: 2.4 million hand-overs take a second or two on
    // an idle 2-CPU machine and a minute and a half with three CPU hogs beside them.
    let received = Arc::new(AtomicU64::new(0));
    let _watchdog = Watchdog::on_progress("mpsc stress", received.clone(), STALL);
    let rt = two_workers();
    for kind in [Kind::Unbounded, Kind::Bounded(4), Kind::Bounded(0)] {
        let received = received.clone();
        let counts = rt.block_on(move || {
            let (tx, rx) = chan::<(u64, u64)>(kind);
            for p in 0..PRODUCERS {
                let tx = tx.clone();
                stackweave::spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        tx.send((p, seq)).unwrap();
                    }
                });
            }
            drop(tx);
            let mut next = vec![0; PRODUCERS as usize];
            for (p, seq) in rx {
                assert_eq!(
                    seq, next[p as usize],
                    "producer {p} out of order ({kind:?})"
                );
                next[p as usize] += 1;
                received.fetch_add(1, Ordering::Relaxed);
            }
            next
        });
        assert_eq!(counts, vec![PER_PRODUCER; PRODUCERS as usize], "{kind:?}");
    }
}

#[test]
fn mpmc_four_producers_four_consumers_exactly_once() {
    const N: u64 = 50_000;
    let _watchdog = Watchdog::new("mpmc stress", Duration::from_secs(120));
    let rt = two_workers();
    for cap in [None, Some(3), Some(0)] {
        let got = rt.block_on(move || {
            let (tx, rx) = match cap {
                None => mpmc::unbounded::<(u64, u64)>(),
                Some(cap) => mpmc::bounded(cap),
            };
            for p in 0..4 {
                let tx = tx.clone();
                stackweave::spawn(move || {
                    for seq in 0..N {
                        tx.send((p, seq)).unwrap();
                    }
                });
            }
            drop(tx);
            let consumers: Vec<_> = (0..4)
                .map(|_| {
                    let rx = rx.clone();
                    stackweave::spawn(move || {
                        let mut last = [None::<u64>; 4];
                        let mut got = Vec::new();
                        for (p, seq) in rx.iter() {
                            // One consumer sees each producer's messages in order.
                            assert!(last[p as usize] < Some(seq));
                            last[p as usize] = Some(seq);
                            got.push(p * N + seq);
                        }
                        got
                    })
                })
                .collect();
            drop(rx);
            let mut all: Vec<u64> = consumers
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all.sort_unstable();
            all
        });
        assert_eq!(got.len() as u64, 4 * N, "{cap:?}");
        assert!(
            got.iter().copied().eq(0..4 * N),
            "{cap:?}: lost or duplicated"
        );
    }
}

// ---------------------------------------------------------------------------
// select!
// ---------------------------------------------------------------------------

#[test]
fn select_receives_from_the_ready_channel() {
    matrix(|other| {
        for which in 0..3 {
            let (tx0, rx0) = mpsc::channel::<u32>();
            let (tx1, rx1) = mpsc::sync_channel::<u32>(0);
            let (tx2, rx2) = mpmc::bounded::<u32>(1);
            let h = start(other, move || {
                sleep(Duration::from_millis(5));
                match which {
                    0 => tx0.send(10).unwrap(),
                    1 => tx1.send(11).unwrap(),
                    _ => tx2.send(12).unwrap(),
                }
                (tx0, tx1, tx2)
            });
            let got = select! {
                recv(rx0) -> m => (0, m.unwrap()),
                recv(rx1) -> m => (1, m.unwrap()),
                recv(&rx2) -> m => (2, m.unwrap()),
            };
            assert_eq!(got, (which, 10 + which));
            let _senders = h.join();
            assert!(rx0.try_recv().is_err() && rx1.try_recv().is_err() && rx2.is_empty());
        }
    });
}

#[test]
fn select_send_arm_completes_only_with_a_receiver() {
    matrix(|other| {
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        let (_keep, never) = mpsc::channel::<u32>();
        let h = start(other, move || {
            sleep(Duration::from_millis(5));
            rx.recv()
        });
        let r = select! {
            send(tx, 42) -> res => res,
            recv(never) -> _ => unreachable!(),
        };
        assert_eq!(r, Ok(()));
        assert_eq!(h.join(), Ok(42));
        // The receiver is gone: the arm fires with the message back.
        let r = select! {
            send(tx, 43) -> res => res,
            recv(never) -> _ => unreachable!(),
        };
        assert_eq!(r, Err(mpsc::SendError(43)));
    });
}

#[test]
fn select_with_both_ends_ready_takes_exactly_one() {
    matrix(|other| {
        // Two senders parked on two rendezvous channels: one select takes one
        // message; the other sender is still waiting, its message intact.
        let (tx0, rx0) = mpsc::sync_channel::<u32>(0);
        let (tx1, rx1) = mpsc::sync_channel::<u32>(0);
        let h0 = start(other, move || tx0.send(0));
        let h1 = start(other, move || tx1.send(1));
        pause();
        let first = select! {
            recv(rx0) -> m => m.unwrap(),
            recv(rx1) -> m => m.unwrap(),
        };
        pause();
        let (done, waiting, rx) = if first == 0 {
            (h0, h1, &rx1)
        } else {
            (h1, h0, &rx0)
        };
        assert_eq!(done.join(), Ok(()));
        assert!(!waiting.is_finished(), "the other send must still wait");
        assert_eq!(rx.recv(), Ok(1 - first));
        assert_eq!(waiting.join(), Ok(()));
    });
}

#[test]
fn select_fires_for_disconnected_channels() {
    let (tx, rx) = mpsc::channel::<u32>();
    drop(tx);
    let (stx, srx) = mpmc::bounded::<u32>(0);
    drop(srx);
    let got = select! {
        recv(rx) -> m => m.map(|_| ()).map_err(|_| "recv"),
        default(Duration::from_secs(20)) => Err("timeout"),
    };
    assert_eq!(got, Err("recv"));
    let got = select! {
        send(stx, 5) -> r => r,
        default(Duration::from_secs(20)) => panic!("timed out"),
    };
    assert_eq!(got, Err(mpmc::SendError(5)));
}

#[test]
fn select_default_fires_when_nothing_is_ready() {
    matrix(|other| {
        let (tx, rx) = mpsc::channel::<u32>();
        let (ztx, zrx) = mpsc::sync_channel::<u32>(0);
        let fired = select! {
            recv(rx) -> _ => "recv",
            send(ztx, 1) -> _ => "send",
            default => "default",
        };
        assert_eq!(fired, "default");
        // Ready now: the arm fires, not default.
        let h = start(other, move || {
            tx.send(3).unwrap();
            tx
        });
        let _tx = h.join();
        let fired = select! {
            recv(rx) -> m => { assert_eq!(m, Ok(3)); "recv" }
            send(ztx, 1) -> _ => "send",
            default => "default",
        };
        assert_eq!(fired, "recv");
        // The rendezvous send fired nothing: zrx has no message.
        assert_eq!(zrx.try_recv(), Err(mpsc::TryRecvError::Empty));
    });
}

#[test]
fn select_timeout_returns_after_the_timeout() {
    matrix(|other| {
        let (tx, rx) = mpsc::channel::<u32>();
        let (ztx, zrx) = mpmc::bounded::<u32>(0);
        let (ftx, frx) = mpsc::sync_channel::<u32>(1);
        ftx.send(0).unwrap();
        let timeout = Duration::from_millis(25);
        let t = Instant::now();
        let fired = select! {
            recv(rx) -> _ => "recv",
            send(ztx, 1) -> _ => "rendezvous",
            send(ftx, 2) -> _ => "full",
            recv(zrx) -> _ => "own rendezvous",
            default(timeout) => "timeout",
        };
        assert_eq!(fired, "timeout");
        assert!(t.elapsed() >= timeout);
        // Nothing was sent or taken; every channel still works.
        assert_eq!(zrx.try_recv(), Err(mpmc::TryRecvError::Empty));
        assert_eq!(frx.try_recv(), Ok(0));
        assert_eq!(frx.try_recv(), Err(mpsc::TryRecvError::Empty));
        let h = start(other, move || rx.recv());
        tx.send(8).unwrap();
        assert_eq!(h.join(), Ok(8));
        let h = start(other, move || zrx.recv());
        ztx.send(9).unwrap();
        assert_eq!(h.join(), Ok(9));
    });
}

#[test]
fn select_never_completes_with_itself() {
    // A send and a receive on the same channel in one select must not pair up.
    let (tx, rx) = mpmc::bounded::<u32>(0);
    let fired = select! {
        send(tx, 1) -> _ => "send",
        recv(rx) -> _ => "recv",
        default(Duration::from_millis(10)) => "timeout",
    };
    assert_eq!(fired, "timeout");
    // With a buffer, the send fires first (nothing to receive), then the receive.
    let (tx, rx) = mpmc::bounded::<u32>(1);
    for expect in ["send", "recv"] {
        let fired = select! {
            send(tx, 1) -> r => { r.unwrap(); "send" }
            recv(rx) -> m => { assert_eq!(m, Ok(1)); "recv" }
        };
        assert_eq!(fired, expect);
    }
}

/// Per-channel (count, checksum).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Tally {
    count: u64,
    sum: u64,
}

impl Tally {
    fn add(&mut self, v: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(v.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// A receiver that is never ready (its sender is kept alive in `keep`): replaces a
/// disconnected one in a select loop, whose arms are fixed.
fn never<T>(keep: &mut Vec<mpsc::Sender<T>>) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    keep.push(tx);
    rx
}

#[test]
fn select_under_contention_delivers_exactly_what_was_sent() {
    const N: u64 = 20_000;
    // On progress (selects completed), not a time limit: a fifth of a second on an
    // idle 2-CPU machine, most of a minute with three CPU hogs beside it.
    let progress = Arc::new(AtomicU64::new(0));
    let _watchdog = Watchdog::on_progress("select stress", progress.clone(), STALL);
    let rt = two_workers();
    let (sent, received, forwarded, sunk) = rt.block_on(move || {
        // Four channels of four kinds, and a rendezvous sink the consumers forward
        // to with `send` arms.
        let (a_tx, a_rx) = mpsc::channel::<u64>();
        let (b_tx, b_rx) = mpsc::sync_channel::<u64>(1);
        let (c_tx, c_rx) = mpsc::sync_channel::<u64>(0);
        let (d_tx, d_rx) = mpmc::bounded::<u64>(0);
        let (s_tx, s_rx) = mpmc::bounded::<u64>(0);
        let value = |p: u64, i: u64| (p << 32) | i;

        // Producers: two plain ones feeding every channel...
        let mut producers = Vec::new();
        for p in 0..2 {
            let (a, b, c, d) = (a_tx.clone(), b_tx.clone(), c_tx.clone(), d_tx.clone());
            producers.push(stackweave::spawn(move || {
                let mut t = [Tally::default(); 4];
                for i in 0..N {
                    let v = value(p, i);
                    a.send(v).unwrap();
                    t[0].add(v);
                    b.send(v).unwrap();
                    t[1].add(v);
                    c.send(v).unwrap();
                    t[2].add(v);
                    d.send(v).unwrap();
                    t[3].add(v);
                }
                t
            }));
        }
        // ... and one that selects between the two rendezvous channels.
        {
            let (c, d) = (c_tx.clone(), d_tx.clone());
            producers.push(stackweave::spawn(move || {
                let mut t = [Tally::default(); 4];
                for i in 0..N {
                    let v = value(2, i);
                    select! {
                        send(c, v) -> r => { r.unwrap(); t[2].add(v) }
                        send(d, v) -> r => { r.unwrap(); t[3].add(v) }
                    }
                }
                t
            }));
        }
        drop((a_tx, b_tx, c_tx, d_tx));

        // A rendezvous channel nobody receives from: the target of a send arm
        // when there is nothing to forward.
        let (idle_tx, idle_rx) = mpmc::bounded::<u64>(0);

        // Consumer 1: all four channels, forwarding what comes from `a`.
        let consumer1 = {
            let (s_tx, idle_tx, idle_rx) = (s_tx.clone(), idle_tx.clone(), idle_rx.clone());
            let (d_rx, progress) = (d_rx.clone(), progress.clone());
            stackweave::spawn(move || {
                let (mut a_rx, mut b_rx, mut c_rx, mut d_rx) = (a_rx, b_rx, c_rx, d_rx);
                let mut keep = Vec::new();
                let mut keep_mpmc = Vec::new();
                let mut open = 4;
                let mut t = [Tally::default(); 4];
                let mut fwd = Tally::default();
                let mut pending = std::collections::VecDeque::new();
                while open > 0 || !pending.is_empty() {
                    progress.fetch_add(1, Ordering::Relaxed);
                    let (target, v) = match pending.front() {
                        Some(&v) => (&s_tx, v),
                        None => (&idle_tx, 0),
                    };
                    select! {
                        recv(a_rx) -> m => match m {
                            Ok(v) => { t[0].add(v); pending.push_back(v) }
                            Err(_) => { a_rx = never(&mut keep); open -= 1 }
                        },
                        recv(b_rx) -> m => match m {
                            Ok(v) => t[1].add(v),
                            Err(_) => { b_rx = never(&mut keep); open -= 1 }
                        },
                        recv(c_rx) -> m => match m {
                            Ok(v) => t[2].add(v),
                            Err(_) => { c_rx = never(&mut keep); open -= 1 }
                        },
                        recv(d_rx) -> m => match m {
                            Ok(v) => t[3].add(v),
                            Err(_) => {
                                let (tx, rx) = mpmc::unbounded();
                                keep_mpmc.push(tx);
                                d_rx = rx;
                                open -= 1
                            }
                        },
                        send(target, v) -> r => {
                            r.unwrap();
                            fwd.add(v);
                            pending.pop_front();
                        }
                    }
                }
                drop(idle_rx);
                (t, fwd)
            })
        };
        // Consumer 2: competes for `d` and for the sink, forwarding all it gets.
        let consumer2 = {
            let (s_tx, progress) = (s_tx.clone(), progress.clone());
            stackweave::spawn(move || {
                let mut d_rx = d_rx;
                let mut keep = Vec::new();
                let mut open = true;
                let mut t = [Tally::default(); 4];
                let mut fwd = Tally::default();
                let mut pending = std::collections::VecDeque::new();
                while open || !pending.is_empty() {
                    progress.fetch_add(1, Ordering::Relaxed);
                    let (target, v) = match pending.front() {
                        Some(&v) => (&s_tx, v),
                        None => (&idle_tx, 0),
                    };
                    select! {
                        recv(d_rx) -> m => match m {
                            Ok(v) => { t[3].add(v); pending.push_back(v) }
                            Err(_) => {
                                let (tx, rx) = mpmc::unbounded();
                                keep.push(tx);
                                d_rx = rx;
                                open = false
                            }
                        },
                        send(target, v) -> r => {
                            r.unwrap();
                            fwd.add(v);
                            pending.pop_front();
                        }
                    }
                }
                drop(idle_rx);
                (t, fwd)
            })
        };
        drop(s_tx);
        let sink = stackweave::spawn(move || {
            let mut t = Tally::default();
            for v in s_rx {
                t.add(v);
                progress.fetch_add(1, Ordering::Relaxed);
            }
            t
        });
        let mut sent = [Tally::default(); 4];
        for p in producers {
            for (k, t) in p.join().unwrap().into_iter().enumerate() {
                sent[k].merge(t);
            }
        }
        let mut received = [Tally::default(); 4];
        let mut forwarded = Tally::default();
        for c in [consumer1, consumer2] {
            let (t, fwd) = c.join().unwrap();
            for k in 0..4 {
                received[k].merge(t[k]);
            }
            forwarded.merge(fwd);
        }
        (sent, received, forwarded, sink.join().unwrap())
    });
    assert_eq!(
        sent, received,
        "per channel: (count, checksum) sent vs received"
    );
    assert_eq!(sent[0].count, 2 * N);
    assert_eq!(sent[2].count + sent[3].count, 5 * N);
    assert_eq!(forwarded, sunk, "forwarded vs received by the sink");
    assert!(forwarded.count >= 2 * N, "everything from `a` is forwarded");
}

#[test]
fn select_syntax_variants() {
    let (tx, rx) = mpsc::channel::<u32>();
    let (mtx, mrx) = mpmc::unbounded::<u32>();
    // Only a default arm.
    assert_eq!(select! { default => 1 }, 1);
    assert_eq!(select! { default(Duration::ZERO) => { 2 } }, 2);
    // Expression bodies, the last without a comma; default first; by reference;
    // a temporary as the channel end.
    tx.send(5).unwrap();
    let got = select! {
        default(Duration::from_secs(20)) => 0,
        recv(&rx) -> m => m.unwrap(),
        recv(mrx.clone()) -> m => m.unwrap() + 100
    };
    assert_eq!(got, 5);
    mtx.send(6).unwrap();
    let got = select! {
        recv(rx) -> _m => 0,
        recv(mrx) -> m => m.unwrap() + 100,
    };
    assert_eq!(got, 106);
    // Statement position, block bodies without commas, a pattern binding.
    let mut seen = 0;
    mtx.send(7).unwrap();
    select! {
        recv(mrx) -> m => { seen = m.unwrap() }
        recv(rx) -> _ => {}
    }
    assert_eq!(seen, 7);
    // A send arm's result and a value moved in.
    let s = String::from("moved");
    let r = select! {
        send(mtx, 1) -> r => r.map(|()| s),
    };
    assert_eq!(r.unwrap(), "moved");
}

#[test]
fn select_timeouts_racing_with_claims_lose_nothing() {
    // Senders and receivers that all give up after a microsecond or three, and
    // retry (thousands of parked operations time out): a timeout racing with a
    // claim must neither lose nor duplicate a message.
    const N: u64 = 100_000;
    // On progress (messages sent), not a time limit: under AddressSanitizer, beside
    // other builds, the 200,000 sends took more than the 120 s this test once had.
    let progress = Arc::new(AtomicU64::new(0));
    let _watchdog = Watchdog::on_progress("select timeout stress", progress.clone(), STALL);
    let rt = two_workers();
    let (r0_tx, r0_rx) = mpmc::bounded::<u64>(0);
    let (b1_tx, b1_rx) = mpmc::bounded::<u64>(1);
    let short = Duration::from_micros(1);
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let (r0, b1, progress) = (r0_tx.clone(), b1_tx.clone(), progress.clone());
            rt.spawn(move || {
                let mut t = [Tally::default(); 2];
                let mut i = 0;
                while i < N {
                    let v = (p << 32) | i;
                    select! {
                        send(r0, v) -> r => { r.unwrap(); t[0].add(v); i += 1 }
                        send(b1, v) -> r => { r.unwrap(); t[1].add(v); i += 1 }
                        // Yield: a select whose timeout has passed before it would
                        // park returns without suspending (see below).
                        default(short * (1 + i % 3) as u32) => stackweave::yield_now(),
                    }
                    progress.store(i, Ordering::Relaxed);
                }
                t
            })
        })
        .collect();
    drop((r0_tx, b1_tx));
    let consume = move |r0: mpmc::Receiver<u64>, b1: mpmc::Receiver<u64>| {
        let mut t = [Tally::default(); 2];
        let (mut open0, mut open1) = (true, true);
        let (mut r0, mut b1) = (r0, b1);
        let mut keep = Vec::new();
        while open0 || open1 {
            select! {
                recv(r0) -> m => match m {
                    Ok(v) => t[0].add(v),
                    Err(_) => {
                        let (tx, rx) = mpmc::unbounded();
                        keep.push(tx);
                        r0 = rx;
                        open0 = false;
                    }
                },
                recv(b1) -> m => match m {
                    Ok(v) => t[1].add(v),
                    Err(_) => {
                        let (tx, rx) = mpmc::unbounded();
                        keep.push(tx);
                        b1 = rx;
                        open1 = false;
                    }
                },
                // A timeout that has passed before the select would park returns
                // at once, without suspending: where a select takes longer than
                // the microsecond (under AddressSanitizer, every time), a loop of
                // them would hold its worker forever and starve the producers.
                default(short) => stackweave::yield_now(),
            }
        }
        t
    };
    // Two coroutine consumers and one plain thread.
    let c1 = {
        let (r0, b1) = (r0_rx.clone(), b1_rx.clone());
        rt.spawn(move || consume(r0, b1))
    };
    let c2 = {
        let (r0, b1) = (r0_rx.clone(), b1_rx.clone());
        rt.spawn(move || consume(r0, b1))
    };
    let c3 = std::thread::spawn(move || consume(r0_rx, b1_rx));
    let mut sent = [Tally::default(); 2];
    for p in producers {
        for (k, t) in p.join().unwrap().into_iter().enumerate() {
            sent[k].merge(t);
        }
    }
    let mut received = [Tally::default(); 2];
    for t in [c1.join().unwrap(), c2.join().unwrap(), c3.join().unwrap()] {
        for k in 0..2 {
            received[k].merge(t[k]);
        }
    }
    assert_eq!(sent[0].count + sent[1].count, 2 * N);
    assert_eq!(sent, received);
}
