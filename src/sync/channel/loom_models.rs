//! A loom model of the channel's claim protocol (the module docs of `channel`): a
//! token claimed at most once, a claimer that completes the operation and wakes
//! the owner in one critical section, an owner that gives up (timeout) racing a
//! claim, and `leave_single`'s read of the packet without the channel lock once
//! the claimer's wakeup was seen.
//!
//! An extracted model: the real core blocks through `Waiter` (a coroutine or a
//! thread of a runtime), and its locks are `std::sync::Mutex`es. Each function
//! below is the real one with the same name, statement for statement, with the same
//! constants (imported) and orderings, for a rendezvous channel of `u32` with one
//! sender and one receiver (what a single claim exercises; the buffer paths only
//! add plain code under the lock). What differs:
//!
//! * `Waiter` is the token's `notified` flag (the same `AcqRel` swap and `Acquire`
//!   load) and a park token (a loom `Notify`); `Waiter::block(deadline)` is
//!   `rt::suspend::suspend_until`'s loop, with the deadline a flag that a timer thread
//!   sets (then wakes the owner), read where the real loop reads the clock;
//! * `recv`'s yield before parking when other coroutines are ready is left out (it
//!   only retries `try_recv` under the lock, a path the model already has);
//! * the packet is a loom `UnsafeCell`, not a `Mutex`: the real packet's mutex
//!   "only keeps this safe code", and without it loom checks what the protocol
//!   claims, that the claimer's write happens-before the owner's read.
//!
//! Keep this file in step with `channel/mod.rs` and `channel/token.rs` (`Token`,
//! `Packet`).

use super::token::{ABORTED, SELECTED, WAITING};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Mutex, Notify};
use loom::thread;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// `Token` (with its embedded `Waiter`), for a `Single` operation: its packet too.
struct Single {
    selected: AtomicUsize,
    notified: AtomicBool,
    /// The owner's park token (a loom `Notify`: loom's `unpark` must not reach a
    /// thread blocked elsewhere, in a `join`).
    park: Notify,
    /// The timer of the owner's deadline: set, then the owner is unparked.
    expired: AtomicBool,
    packet: UnsafeCell<Option<u32>>,
}

impl Single {
    fn new(msg: Option<u32>) -> Arc<Single> {
        Arc::new(Single {
            selected: AtomicUsize::new(WAITING),
            notified: AtomicBool::new(false),
            park: Notify::new(),
            expired: AtomicBool::new(false),
            packet: UnsafeCell::new(msg),
        })
    }

    /// `Token::try_select`.
    fn try_select(&self, oper: usize) -> bool {
        self.selected
            .compare_exchange(
                WAITING,
                SELECTED + oper,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// `Token::is_waiting`.
    fn is_waiting(&self) -> bool {
        self.selected.load(Ordering::Acquire) == WAITING
    }

    /// `Token::abort`.
    fn abort(&self) -> Option<usize> {
        match self
            .selected
            .compare_exchange(WAITING, ABORTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => None,
            Err(ABORTED) => None,
            Err(sel) => Some(sel - SELECTED),
        }
    }

    /// `Waiter::is_notified`.
    fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// `Waiter::block(deadline)` (a coroutine: `rt::suspend::suspend_until`), `timed`
    /// saying whether there is a deadline.
    fn block(&self, timed: bool) -> bool {
        loop {
            if self.is_notified() {
                return true;
            }
            if timed && self.expired.load(Ordering::Acquire) {
                return false;
            }
            self.park.wait();
        }
    }

    /// `Token::wait`.
    fn wait(&self, timed: bool) -> Option<usize> {
        if self.block(timed) {
            let sel = self.selected.load(Ordering::Acquire);
            assert!(sel >= SELECTED);
            return Some(sel - SELECTED);
        }
        self.abort()
    }

    /// `Token::wake` (`Waiter::notify`).
    fn wake(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.park.notify();
        }
    }

    /// `Token::was_woken`.
    fn was_woken(&self) -> bool {
        self.is_notified()
    }

    /// `Packet::put`: only by the claimer, under the channel lock.
    fn put(&self, msg: u32) {
        // SAFETY: not a real dereference race: loom's cell reports accesses that
        // happens-before does not order, which is what this model checks.
        self.packet.with_mut(|p| unsafe { *p = Some(msg) });
    }

    /// `Packet::take`.
    fn take(&self) -> Option<u32> {
        // SAFETY: as in `put`.
        self.packet.with_mut(|p| unsafe { (*p).take() })
    }
}

/// `State`, for a rendezvous channel (`cap == Some(0)`: never room).
struct State {
    recvq: VecDeque<Arc<Single>>,
    sendq: VecDeque<Arc<Single>>,
}

impl State {
    /// `State::claim` (every entry is a `Single`: operation 0).
    fn claim(line: &mut VecDeque<Arc<Single>>) -> Option<Arc<Single>> {
        while let Some(entry) = line.pop_front() {
            if entry.try_select(0) {
                return Some(entry);
            }
        }
        None
    }

    /// `State::try_send`: `Err` is `TrySendError::Full` (no room, ever).
    fn try_send(&mut self, msg: u32) -> Result<(), u32> {
        if let Some(entry) = State::claim(&mut self.recvq) {
            entry.put(msg);
            entry.wake();
            return Ok(());
        }
        Err(msg)
    }

    /// `State::try_recv` (the buffer is always empty): `None` is `Empty`.
    fn try_recv(&mut self) -> Option<u32> {
        if let Some(entry) = State::claim(&mut self.sendq) {
            let msg = entry.take().expect("a parked sender has its message");
            entry.wake();
            return Some(msg);
        }
        None
    }

    /// `State::unpark`.
    fn unpark(line: &mut VecDeque<Arc<Single>>, token: &Arc<Single>) {
        if let Some(i) = line.iter().position(|e| Arc::ptr_eq(e, token)) {
            line.remove(i);
        }
    }
}

/// `Chan`.
struct Chan {
    state: Mutex<State>,
}

impl Chan {
    fn new() -> Arc<Chan> {
        Arc::new(Chan {
            state: Mutex::new(State {
                recvq: VecDeque::new(),
                sendq: VecDeque::new(),
            }),
        })
    }

    /// `Chan::send`, without a deadline: `true` once sent.
    fn send(&self, msg: u32) -> bool {
        let mut state = self.state.lock().unwrap();
        let msg = match state.try_send(msg) {
            Ok(()) => return true,
            Err(msg) => msg,
        };
        let single = Single::new(Some(msg));
        state.sendq.push_back(single.clone());
        drop(state);
        let sel = single.wait(false);
        match (sel, self.leave_single(false, &single)) {
            (Some(_), None) => true,
            (_, other) => panic!("an untimed send ends sent, not with {other:?}"),
        }
    }

    /// `Chan::recv(deadline)`, `timed` for `Some(deadline)`: the message, or
    /// `None` for `Timeout`.
    fn recv(&self, timed: bool, single: Arc<Single>) -> Option<u32> {
        let mut state = self.state.lock().unwrap();
        if let Some(msg) = state.try_recv() {
            return Some(msg);
        }
        state.recvq.push_back(single.clone());
        drop(state);
        let sel = single.wait(timed);
        match (sel, self.leave_single(true, &single)) {
            (Some(_), Some(msg)) => Some(msg),
            (Some(_), None) => panic!("claimed without a message: disconnected?"),
            (None, msg) => {
                assert_eq!(msg, None, "a receiver that timed out holds a message");
                None
            }
        }
    }

    /// `Chan::leave` (`recv`: which line).
    fn leave(&self, recv: bool, token: &Arc<Single>) -> Option<u32> {
        let mut state = self.state.lock().unwrap();
        let line = if recv {
            &mut state.recvq
        } else {
            &mut state.sendq
        };
        State::unpark(line, token);
        token.take()
    }

    /// `Chan::leave_single`.
    fn leave_single(&self, recv: bool, single: &Arc<Single>) -> Option<u32> {
        if single.was_woken() {
            assert!(!single.is_waiting());
            return single.take();
        }
        self.leave(recv, single)
    }
}

/// The models' preemption bound: `LOOM_MAX_PREEMPTIONS` if set, else 3.
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A receiver (with a deadline when `timed`, whose timer fires on a third thread)
/// and a sender on a rendezvous channel. The message is received exactly once:
/// either the receive gets it and the send completed, or the receive timed out and
/// the sender is still parked with it (then a second receive, untimed, takes it).
fn rendezvous(timed: bool) {
    check(move || {
        let chan = Chan::new();
        let sender = {
            let chan = chan.clone();
            thread::spawn(move || assert!(chan.send(7)))
        };
        let single = Single::new(None);
        let timer = timed.then(|| {
            let single = single.clone();
            thread::spawn(move || {
                single.expired.store(true, Ordering::Release);
                single.park.notify();
            })
        });
        let got = match chan.recv(timed, single) {
            Some(msg) => msg,
            // Timed out: the message is still the sender's, parked; take it.
            None => chan
                .recv(false, Single::new(None))
                .expect("the parked sender's message"),
        };
        assert_eq!(got, 7);
        sender.join().unwrap();
        if let Some(timer) = timer {
            timer.join().unwrap();
        }
        let state = chan.state.lock().unwrap();
        assert!(state.recvq.is_empty(), "a parked receiver left");
        assert!(state.sendq.is_empty(), "a parked sender left");
    });
}

#[test]
fn loom_channel_a_claim_completes_the_parked_receive_exactly_once() {
    rendezvous(false);
}

#[test]
fn loom_channel_a_timeout_racing_a_claim_loses_no_message() {
    rendezvous(true);
}
