//! `stackweave::signal`: signals sent to the process with `kill(2)` reach the
//! coroutines (and threads) waiting for them, and a wait suspends only its
//! coroutine.
//!
//! Signals are process-wide and the tests of this file run in parallel threads, so
//! each test uses real-time signals of its own (`SIGRTMIN + n`); each registers
//! before it sends, since the default action of a real-time signal ends the
//! process.

mod common;

use common::eventually;
use stackweave::signal::{self, Signals};
use stackweave::{select, Runtime};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The `n`th real-time signal: one per test (see the module docs).
fn rt_signal(n: i32) -> i32 {
    let signal = libc::SIGRTMIN() + n;
    assert!(signal <= libc::SIGRTMAX(), "not enough real-time signals");
    signal
}

/// Sends `signal` to this process.
fn send(signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our own.
    let r = unsafe { libc::kill(libc::getpid(), signal) };
    assert_eq!(r, 0, "kill: {}", io::Error::last_os_error());
}

#[test]
fn a_signal_wakes_the_waiting_coroutine_while_its_worker_runs_the_others() {
    let sig = rt_signal(0);
    let rt = Runtime::builder().workers(1).build().unwrap();
    let registered = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(AtomicUsize::new(0));
    let waiter = rt.spawn({
        let registered = registered.clone();
        move || {
            let mut signals = Signals::new([sig])?;
            registered.store(true, Ordering::Release);
            signals.wait()
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = rt.spawn({
        let (ticks, stop) = (ticks.clone(), stop.clone());
        move || {
            while !stop.load(Ordering::Acquire) {
                ticks.fetch_add(1, Ordering::Relaxed);
                stackweave::time::sleep(Duration::from_millis(1));
            }
        }
    });
    eventually("the waiter to register", || {
        registered.load(Ordering::Acquire)
    });
    // The only worker keeps running the ticker while the waiter waits.
    let before = ticks.load(Ordering::Relaxed);
    eventually("the ticker to tick while the waiter waits", || {
        ticks.load(Ordering::Relaxed) >= before + 20
    });
    assert!(!waiter.is_finished(), "no signal was sent yet");
    send(sig);
    assert_eq!(waiter.join().unwrap().unwrap(), sig);
    stop.store(true, Ordering::Release);
    ticker.join().unwrap();
}

#[test]
fn a_signal_sent_before_the_wait_is_kept_for_it() {
    let sig = rt_signal(1);
    let mut signals = Signals::new([sig]).unwrap();
    send(sig);
    // Delivered to the handler by now or soon; the wait finds it either way.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let got = rt.block_on(move || signals.wait()).unwrap();
    assert_eq!(got, sig);
}

#[test]
fn every_set_registered_for_a_signal_receives_it() {
    let sig = rt_signal(2);
    let rt = Runtime::builder().workers(2).build().unwrap();
    let registered = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let registered = registered.clone();
            rt.spawn(move || {
                let mut signals = Signals::new([sig])?;
                registered.fetch_add(1, Ordering::AcqRel);
                signals.wait()
            })
        })
        .collect();
    eventually("every waiter to register", || {
        registered.load(Ordering::Acquire) == 4
    });
    send(sig);
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap().unwrap(), sig);
    }
}

#[test]
fn a_thousand_signals_in_turn_are_each_received() {
    // Each round sends one signal and waits for it before the next: a wakeup lost
    // between the drain and the wait would hang a round (the watchdog fails it).
    const ROUNDS: usize = 1000;
    let sig = rt_signal(3);
    let rt = Runtime::builder().workers(2).build().unwrap();
    let mut signals = Signals::new([sig]).unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = rt.spawn({
        let (received, done) = (received.clone(), done.clone());
        move || {
            for _ in 0..ROUNDS {
                assert_eq!(signals.wait().unwrap(), sig);
                received.fetch_add(1, Ordering::AcqRel);
            }
            done.store(true, Ordering::Release);
        }
    });
    for round in 0..ROUNDS {
        send(sig);
        eventually("the signal of this round to be received", || {
            received.load(Ordering::Acquire) > round
        });
    }
    receiver.join().unwrap();
    assert!(done.load(Ordering::Acquire));
    assert_eq!(received.load(Ordering::Acquire), ROUNDS);
}

#[test]
fn the_iterator_yields_each_signal_of_the_set_as_it_comes() {
    let (a, b) = (rt_signal(4), rt_signal(5));
    let rt = Runtime::builder().workers(1).build().unwrap();
    let signals = Signals::new([a, b]).unwrap();
    assert_eq!(signals.signals(), [a, b]);
    let seen = Arc::new(AtomicUsize::new(0));
    let reader = rt.spawn({
        let seen = seen.clone();
        move || {
            signals
                .take(3)
                .inspect(|_| {
                    seen.fetch_add(1, Ordering::AcqRel);
                })
                .collect::<Vec<i32>>()
        }
    });
    for (i, sig) in [a, b, a].into_iter().enumerate() {
        send(sig);
        eventually("the iterator to take the signal", || {
            seen.load(Ordering::Acquire) > i
        });
    }
    assert_eq!(reader.join().unwrap(), [a, b, a]);
}

#[test]
fn wait_timeout_gives_up_without_a_signal_and_returns_one_that_comes() {
    let sig = rt_signal(6);
    let rt = Runtime::builder().workers(1).build().unwrap();
    let mut signals = Signals::new([sig]).unwrap();
    let (signals, waited) = rt.block_on(move || {
        let start = Instant::now();
        let none = signals.wait_timeout(Duration::from_millis(50)).unwrap();
        assert_eq!(none, None);
        (signals, start.elapsed())
    });
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    let mut signals = signals;
    assert_eq!(signals.try_wait(), None);
    send(sig);
    let got = rt.block_on(move || signals.wait_timeout(Duration::from_secs(10)));
    assert_eq!(got.unwrap(), Some(sig));
}

#[test]
fn a_plain_thread_blocks_in_wait_until_the_signal_comes() {
    let sig = rt_signal(7);
    let mut signals = Signals::new([sig]).unwrap();
    let waiter = thread::spawn(move || signals.wait());
    thread::sleep(Duration::from_millis(20));
    assert!(!waiter.is_finished(), "no signal was sent yet");
    send(sig);
    assert_eq!(waiter.join().unwrap().unwrap(), sig);
}

#[test]
fn the_signal_channel_works_in_select_beside_other_channels() {
    let sig = rt_signal(8);
    let rt = Runtime::builder().workers(1).build().unwrap();
    let signals = signal::channel(&[sig]).unwrap();
    let (work_tx, work) = stackweave::sync::mpsc::channel::<u32>();
    let jobs = Arc::new(AtomicUsize::new(0));
    let got = rt.spawn({
        let jobs = jobs.clone();
        move || loop {
            select! {
                recv(work) -> job => {
                    job.unwrap();
                    jobs.fetch_add(1, Ordering::AcqRel);
                },
                recv(signals) -> signal => return signal.unwrap(),
            }
        }
    });
    for job in 0..3 {
        work_tx.send(job).unwrap();
    }
    // Only once the jobs are done: with both ready, select! may pick either.
    eventually("the jobs to be taken", || jobs.load(Ordering::Acquire) == 3);
    send(sig);
    assert_eq!(got.join().unwrap(), sig);
    assert_eq!(jobs.load(Ordering::Acquire), 3);
}

#[test]
fn signals_that_cannot_be_received_are_invalid_input_errors() {
    for bad in [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        0,
        -1,
        libc::SIGRTMAX() + 1,
    ] {
        let err = Signals::new([bad]).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "signal {bad}: {err}"
        );
        let err = signal::wait(&[libc::SIGUSR1, bad]).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "signal {bad}: {err}"
        );
    }
}
