//! `park` / `Coroutine::unpark` behave like `std::thread::park` / `Thread::unpark`:
//! an unpark is never lost, several unparks before a park count as one, and
//! `current()` names the running coroutine (or, outside one, the running thread).

mod common;

use common::Watchdog;
use stackweave::{Coroutine, JoinHandle, Runtime};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// Park/unpark round trips in the ping-pong tests (each is two hand-overs).
const ROUND_TRIPS: u64 = if cfg!(miri) { 100 } else { 1_000_000 };

/// A game that stops advancing for this long has lost a wakeup. (A slow game is
/// not a failure: on a loaded 2-core machine a round trip can take a millisecond.)
const STALL: Duration = Duration::from_secs(30);

/// Taken by each ping-pong test: two games at once would put four spinning workers
/// on the two CPUs of the CI machine.
static ONE_GAME_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One ping-pong game: a turn counter and the two players' handles.
struct Table {
    turn: AtomicU64,
    players: [OnceLock<Coroutine>; 2],
}

impl Table {
    fn new() -> Arc<Table> {
        Arc::new(Table {
            turn: AtomicU64::new(0),
            players: [OnceLock::new(), OnceLock::new()],
        })
    }

    /// Seats both players (from their join handles) and wakes them.
    fn seat(&self, a: &Coroutine, b: &Coroutine) {
        for (slot, player) in self.players.iter().zip([a, b]) {
            assert!(slot.set(player.clone()).is_ok(), "seated once");
        }
        a.unpark();
        b.unpark();
    }

    /// Plays side `me` (0 or 1): on each of its turns, passes the turn on and unparks
    /// the other side; parks while it is the other side's turn. Returns the thread
    /// it ran on, after checking that it never changed.
    fn play(&self, me: usize) -> ThreadId {
        let thread = thread::current().id();
        let other = loop {
            if let Some(other) = self.players[1 - me].get() {
                break other.clone();
            }
            stackweave::park();
        };
        let end = 2 * ROUND_TRIPS;
        loop {
            let turn = loop {
                let turn = self.turn.load(Ordering::Acquire);
                if turn >= end || turn % 2 == me as u64 {
                    break turn;
                }
                stackweave::park();
            };
            if turn >= end {
                break;
            }
            self.turn.store(turn + 1, Ordering::Release);
            other.unpark();
            if turn % 4096 < 2 {
                assert_eq!(thread::current().id(), thread, "a coroutine changed thread");
            }
        }
        assert_eq!(thread::current().id(), thread, "a coroutine changed thread");
        thread
    }

    /// Waits until both players have finished, aborting the process (the players
    /// may be stuck in a state that shutdown cannot end) if the game stalls.
    fn watch(&self, players: [&JoinHandle<ThreadId>; 2]) {
        let mut last = (self.turn.load(Ordering::Acquire), Instant::now());
        while !players.iter().all(|p| p.is_finished()) {
            thread::sleep(Duration::from_millis(10));
            let turn = self.turn.load(Ordering::Acquire);
            if turn != last.0 {
                last = (turn, Instant::now());
            } else if last.1.elapsed() > STALL {
                let message = format!(
                    "ping-pong stalled at turn {turn} for {STALL:?}: a lost wakeup; aborting\n"
                );
                let _ = std::io::stderr().write_all(message.as_bytes());
                std::process::abort();
            }
        }
    }
}

#[test]
fn park_unpark_ping_pong_across_workers_loses_no_wakeup() {
    let _one_game = ONE_GAME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::builder().workers(2).build().unwrap();
    let table = Table::new();
    let a_started = Arc::new(AtomicBool::new(false));
    let b_started = Arc::new(AtomicBool::new(false));

    // A occupies its worker without ever returning to the scheduler until B has
    // started; so B, spawned from outside after A started, can only be picked up by
    // the other worker. Once started, each stays on its worker for good.
    let a = rt.spawn({
        let (table, a_started, b_started) = (table.clone(), a_started.clone(), b_started.clone());
        move || {
            a_started.store(true, Ordering::Release);
            while !b_started.load(Ordering::Acquire) {
                thread::yield_now(); // the OS thread's yield, not the coroutine's
            }
            table.play(0)
        }
    });
    while !a_started.load(Ordering::Acquire) {
        thread::yield_now();
    }
    let b = rt.spawn({
        let (table, b_started) = (table.clone(), b_started.clone());
        move || {
            b_started.store(true, Ordering::Release);
            table.play(1)
        }
    });
    table.seat(a.coroutine(), b.coroutine());
    table.watch([&a, &b]);

    let a_thread = a.join().unwrap();
    let b_thread = b.join().unwrap();
    assert_ne!(
        a_thread, b_thread,
        "the players must run on different workers"
    );
    assert_eq!(table.turn.load(Ordering::Acquire), 2 * ROUND_TRIPS);
}

#[test]
fn park_unpark_ping_pong_loses_no_wakeup_wherever_the_players_land() {
    let _one_game = ONE_GAME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::builder().workers(2).build().unwrap();
    let table = Table::new();
    let a = rt.spawn({
        let table = table.clone();
        move || table.play(0)
    });
    let b = rt.spawn({
        let table = table.clone();
        move || table.play(1)
    });
    table.seat(a.coroutine(), b.coroutine());
    table.watch([&a, &b]);
    // Same worker or not, both finish and each stays on its thread (checked inside).
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(table.turn.load(Ordering::Acquire), 2 * ROUND_TRIPS);
}

#[test]
fn unpark_before_park_is_not_lost() {
    let _watchdog = Watchdog::new("unpark before park", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let unparked = Arc::new(AtomicBool::new(false));
    let h = rt.spawn({
        let unparked = unparked.clone();
        move || {
            // Wait (without parking) until the unpark has happened.
            while !unparked.load(Ordering::Acquire) {
                stackweave::yield_now();
            }
            stackweave::park(); // the stored token makes this return
            "parked once"
        }
    });
    h.coroutine().unpark();
    unparked.store(true, Ordering::Release);
    assert_eq!(h.join().unwrap(), "parked once");
}

#[test]
fn unpark_of_self_before_park_is_not_lost() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        stackweave::current().unpark();
        stackweave::park();
    });
}

#[test]
fn several_unparks_before_a_park_count_as_one() {
    let _watchdog = Watchdog::new("several unparks", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let unparked = Arc::new(AtomicBool::new(false));
    let first_park_returned = Arc::new(AtomicBool::new(false));
    let second_park_returned = Arc::new(AtomicBool::new(false));
    let h = rt.spawn({
        let unparked = unparked.clone();
        let first = first_park_returned.clone();
        let second = second_park_returned.clone();
        move || {
            while !unparked.load(Ordering::Acquire) {
                stackweave::yield_now();
            }
            stackweave::park(); // consumes the one token the three unparks left
            first.store(true, Ordering::Release);
            stackweave::park(); // blocks until the next unpark
            second.store(true, Ordering::Release);
        }
    });
    for _ in 0..3 {
        h.coroutine().unpark();
    }
    unparked.store(true, Ordering::Release);
    while !first_park_returned.load(Ordering::Acquire) {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(50));
    assert!(
        !second_park_returned.load(Ordering::Acquire),
        "the second park returned without a new unpark"
    );
    h.coroutine().unpark();
    h.join().unwrap();
    assert!(second_park_returned.load(Ordering::Acquire));
}

#[test]
fn park_blocks_only_the_coroutine_not_its_worker() {
    let _watchdog = Watchdog::new("park on one worker", Duration::from_secs(30));
    let rt = Runtime::builder().workers(1).build().unwrap();
    let parked = rt.spawn(|| {
        stackweave::park();
        "woken"
    });
    // The only worker still runs other coroutines, one of which unparks the first.
    let waker = parked.coroutine().clone();
    let other = rt.spawn(move || {
        waker.unpark();
        "ran"
    });
    assert_eq!(other.join().unwrap(), "ran");
    assert_eq!(parked.join().unwrap(), "woken");
}

#[test]
fn current_inside_a_coroutine_matches_its_handle() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            rt.spawn(|| {
                let before = stackweave::current().id();
                stackweave::yield_now();
                assert_eq!(stackweave::current().id(), before);
                before
            })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        let id = h.coroutine().id();
        assert_eq!(h.join().unwrap(), id);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16, "ids are unique");
    // The thread's own id is not one of them.
    assert!(!ids.contains(&stackweave::current().id()));
}

#[test]
fn current_outside_a_coroutine_names_the_thread() {
    let me = stackweave::current();
    assert_eq!(me.id(), stackweave::current().id(), "stable on one thread");
    let other = thread::Builder::new()
        .name("park-test-thread".into())
        .spawn(|| {
            let c = stackweave::current();
            (c.id(), c.name().map(str::to_owned))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_ne!(other.0, me.id(), "threads have different ids");
    assert_eq!(other.1.as_deref(), Some("park-test-thread"));
}

#[test]
fn unpark_of_a_threads_current_unparks_the_thread() {
    let _watchdog = Watchdog::new("unparking a thread", Duration::from_secs(30));
    let rt = Runtime::builder().workers(1).build().unwrap();

    // A token stored before the park makes the thread's park return.
    stackweave::current().unpark();
    stackweave::park();

    // A coroutine unparks a thread that parks in a loop on a flag.
    let me = stackweave::current();
    let done = Arc::new(AtomicBool::new(false));
    let h = rt.spawn({
        let done = done.clone();
        move || {
            thread::sleep(Duration::from_millis(20)); // let the thread park first
            done.store(true, Ordering::Release);
            me.unpark();
        }
    });
    while !done.load(Ordering::Acquire) {
        stackweave::park();
    }
    h.join().unwrap();
}
