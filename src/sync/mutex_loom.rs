//! A loom model of [`Mutex`](super::Mutex)'s state word: the `WOKEN` / `HANDOFF` /
//! `HANDED` hand-off and the unwind paths (`Leave`).
//!
//! An extracted model, not the real type under loom: the real mutex is built in
//! `const fn new` (loom's atomics are not `const`) and blocks through
//! `Waiter::block` and `scheduler::suspend_current`, which need a runtime. So each
//! function below is the real one with the same name, statement for statement, over
//! the same constants (imported from `mutex.rs`) and the same orderings; what
//! differs is named where it happens:
//!
//! * the list's `std::sync::Mutex<WaitList>` is a loom mutex around a `VecDeque` of
//!   model waiters (`push` = `push_back`, `pop_front` as is);
//! * `Waiter` is [`ModelWaiter`]: the same `notified` swap (`AcqRel`) and load
//!   (`Acquire`), with the coroutine's suspension a loom `park` (a lost wakeup parks
//!   a thread forever, which loom reports as a deadlock);
//! * `suspend_current(Request::Yield)` in the retry loop is `thread::yield_now`, and
//!   `spins` stands for `WOKEN_SPINS` (8 in the real code; one retry already
//!   reaches every branch, and more multiply the interleavings); `spins == 0` is a
//!   thread's path (its `suspend_current` returns false at once: one retry);
//! * an unwind out of a suspension point (cancellation) is a flag another thread
//!   sets before it unparks the waiter: the waiter sees it when it would suspend
//!   or resumes, and runs `Leave::drop` exactly as the real guard's drop does.
//!
//! Keep this file in step with `mutex.rs`: a change to a function there is the same
//! change here.

use super::{HANDED, HANDOFF, LOCKED, WAITERS, WOKEN};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
use loom::sync::{Arc, Mutex as ListLock, Notify};
use loom::thread;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// A model thread's park token and cancel flag (shared by all its waiters). The
/// token is a loom `Notify`: loom's `unpark` must not reach a thread blocked
/// elsewhere (on the list's lock, in a `join`).
struct Parking {
    /// Set by a canceller, which then wakes the thread: the next suspension point
    /// unwinds.
    cancel: AtomicBool,
    token: Notify,
}

impl Parking {
    fn new() -> Arc<Parking> {
        Arc::new(Parking {
            cancel: AtomicBool::new(false),
            token: Notify::new(),
        })
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}

/// `Waiter`, for a model thread.
struct ModelWaiter {
    notified: AtomicBool,
    parking: Arc<Parking>,
}

impl ModelWaiter {
    /// `Waiter::notify`.
    fn notify(&self) -> bool {
        if self.notified.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.parking.token.notify();
        true
    }

    /// `Waiter::is_notified`.
    fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// `Waiter::block(None)` for a coroutine (`while !notified { suspend }`); false
    /// if it unwinds (cancelled) instead: a cancelled coroutine unwinds from
    /// `suspend_current`, before it switches out or once it is resumed, whether or
    /// not it was notified meanwhile.
    fn block(&self) -> bool {
        while !self.is_notified() {
            if self.parking.cancelled() {
                return false;
            }
            self.parking.token.wait();
            if self.parking.cancelled() {
                return false;
            }
        }
        true
    }
}

type List = VecDeque<Arc<ModelWaiter>>;

/// The mutex: `state`, the wait list, and the data (a loom cell, so two holders at
/// once are reported).
struct Model {
    state: AtomicU8,
    waiters: ListLock<List>,
    data: UnsafeCell<usize>,
    /// Critical sections completed.
    locked: AtomicUsize,
}

/// How one locker gave up (the model's stand-in for an unwind).
struct Unwound;

impl Model {
    fn new() -> Arc<Model> {
        Arc::new(Model {
            state: AtomicU8::new(0),
            waiters: ListLock::new(VecDeque::new()),
            data: UnsafeCell::new(0),
            locked: AtomicUsize::new(0),
        })
    }

    fn list(&self) -> loom::sync::MutexGuard<'_, List> {
        self.waiters.lock().unwrap()
    }

    /// `Mutex::lock`.
    fn lock(&self, spins: u32, parking: &Arc<Parking>) -> Result<(), Unwound> {
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended(spins, parking)?;
        }
        Ok(())
    }

    /// `Mutex::lock_contended`; `Err` where the real one unwinds (then `Leave` has
    /// run).
    fn lock_contended(&self, spins: u32, parking: &Arc<Parking>) -> Result<(), Unwound> {
        if self.try_barge(false) {
            return Ok(());
        }
        let mut list = self.list();
        if self.acquire_or_announce(false) {
            return Ok(());
        }
        let mut starving = false;
        loop {
            let waiter = Arc::new(ModelWaiter {
                notified: AtomicBool::new(false),
                parking: parking.clone(),
            });
            if starving {
                list.push_front(waiter.clone());
            } else {
                list.push_back(waiter.clone());
            }
            drop(list);
            // `let leave = Leave { .. }`: run below wherever the real one drops.
            if !waiter.block() {
                self.leave(&waiter);
                return Err(Unwound);
            }
            if self.state.load(Ordering::Relaxed) & HANDED != 0 {
                list = self.list();
                if self.take_handed() {
                    return Ok(()); // mem::forget(leave)
                }
                drop(list);
            }
            // `while spins < WOKEN_SPINS`, with `spins` for `WOKEN_SPINS`.
            let mut n = 0;
            while n < spins.max(1) {
                if self.try_barge(true) {
                    return Ok(()); // mem::forget(leave)
                }
                // `if !suspend_current(Request::Yield) { break }`: false at once on
                // a thread; in a coroutine an unwind point too.
                if spins == 0 {
                    break;
                }
                if parking.cancelled() {
                    self.leave(&waiter);
                    return Err(Unwound);
                }
                thread::yield_now();
                n += 1;
            }
            // mem::forget(leave)
            list = self.list();
            starving = true;
            if self.acquire_or_announce(true) {
                return Ok(());
            }
        }
    }

    /// `Mutex::try_barge`.
    fn try_barge(&self, woken: bool) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & LOCKED == 0 {
            let next = if woken {
                (state | LOCKED) & !WOKEN
            } else {
                state | LOCKED
            };
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
        false
    }

    /// `Mutex::acquire_or_announce`.
    fn acquire_or_announce(&self, starving: bool) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = if state & LOCKED == 0 {
                state | LOCKED
            } else if starving {
                state | WAITERS | HANDOFF
            } else {
                state | WAITERS
            };
            let next = if starving { next & !WOKEN } else { next };
            if next == state {
                return false;
            }
            match self
                .state
                .compare_exchange(state, next, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return next & LOCKED != state & LOCKED,
                Err(actual) => state = actual,
            }
        }
    }

    /// `Mutex::take_handed`.
    fn take_handed(&self) -> bool {
        if self.state.load(Ordering::Acquire) & HANDED == 0 {
            return false;
        }
        self.state.fetch_and(!HANDED, Ordering::Relaxed);
        true
    }

    /// `Mutex::unlock`.
    fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_contended();
        }
    }

    /// `Mutex::unlock_contended`.
    fn unlock_contended(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & WOKEN != 0 {
            match self.state.compare_exchange_weak(
                state,
                state & !LOCKED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
        let mut list = self.list();
        self.release(&mut list);
    }

    /// `Mutex::release`.
    fn release(&self, list: &mut List) {
        let state = self.state.load(Ordering::Relaxed);
        let waiting = |n: usize| if list.len() > n { WAITERS } else { 0 };
        let (next, wake) = if state & WOKEN != 0 {
            (WOKEN | waiting(0), false)
        } else if list.is_empty() {
            (0, false)
        } else if state & HANDOFF != 0 {
            (LOCKED | HANDED | waiting(1), true)
        } else {
            (WOKEN | waiting(1), true)
        };
        self.state.store(next, Ordering::Release);
        if wake {
            let first = list.pop_front().expect("a waiter is queued");
            let notified = first.notify();
            assert!(notified, "a queued waiter is not notified yet");
        }
    }

    /// `Mutex::pass_on_woken`.
    fn pass_on_woken(&self, list: &mut List) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let wake = state & LOCKED == 0 && !list.is_empty();
            let next = if wake { state } else { state & !WOKEN };
            if next == state && !wake {
                return;
            }
            match self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if wake {
                        let first = list.pop_front().expect("a waiter is queued");
                        let notified = first.notify();
                        assert!(notified, "a queued waiter is not notified yet");
                    }
                    return;
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// `Leave::drop` (`WaitList::remove` is a search by pointer).
    fn leave(&self, waiter: &Arc<ModelWaiter>) {
        let mut list = self.list();
        let at = list.iter().position(|w| Arc::ptr_eq(w, waiter));
        if let Some(i) = at {
            list.remove(i);
        }
        if at.is_some() || !waiter.is_notified() {
            return;
        }
        if self.take_handed() {
            self.release(&mut list);
        } else {
            self.pass_on_woken(&mut list);
        }
    }

    /// One critical section: lock, write the data, unlock. False if cancelled.
    fn critical_section(&self, spins: u32, parking: &Arc<Parking>) -> bool {
        if self.lock(spins, parking).is_err() {
            return false;
        }
        // SAFETY: not a real dereference race: loom's cell reports two accesses
        // that happens-before does not order, which is what the model checks.
        self.data.with_mut(|d| unsafe { *d += 1 });
        self.locked.fetch_add(1, Ordering::Relaxed);
        self.unlock();
        true
    }
}

/// The models' preemption bound: `LOOM_MAX_PREEMPTIONS` if set, else `default`.
fn check(default: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(default);
    }
    builder.check(f);
}

/// `lockers` threads (retrying `spins` times when woken) each take the lock
/// `rounds` times while the main thread holds it at the start; every critical
/// section runs, one at a time, and the mutex ends unlocked with no waiter.
fn contend(lockers: usize, rounds: usize, spins: u32, bound: usize) {
    check(bound, move || {
        let model = Model::new();
        model
            .lock(spins, &Parking::new())
            .ok()
            .expect("uncontended");
        let threads: Vec<_> = (0..lockers)
            .map(|_| {
                let model = model.clone();
                thread::spawn(move || {
                    let parking = Parking::new();
                    for _ in 0..rounds {
                        assert!(model.critical_section(spins, &parking));
                    }
                })
            })
            .collect();
        model.unlock();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(model.locked.load(Ordering::Relaxed), lockers * rounds);
        model.assert_idle();
    });
}

impl Model {
    /// At the end: unlocked, no flag left, nobody queued.
    fn assert_idle(&self) {
        let state = self.state.load(Ordering::Relaxed);
        assert_eq!(state, 0, "left locked or flagged");
        assert!(self.list().is_empty());
    }
}

#[test]
fn loom_mutex_two_coroutines_wait_then_retry_with_woken() {
    contend(2, 1, 1, 3);
}

#[test]
fn loom_mutex_a_woken_thread_that_loses_asks_for_a_hand_over() {
    // Threads retry once and then queue with `HANDOFF`: the next unlock hands the
    // lock over (`HANDED`).
    contend(2, 2, 0, 2);
}

/// The main thread holds the lock; a coroutine waiter that is cancelled (flag, then
/// a wake, as a cancel does) races the unlock that wakes it or hands it the lock,
/// and a second waiter (taking the lock `rounds` times) must still get it:
/// whatever the cancelled one got is passed on (`Leave`: the hand-over released
/// again, or `WOKEN` passed to the next).
fn cancel_race(rounds: usize, bound: usize) {
    let spins = 1;
    check(bound, move || {
        let model = Model::new();
        model
            .lock(spins, &Parking::new())
            .ok()
            .expect("uncontended");
        let victim_parking = Parking::new();
        let victim = {
            let (model, parking) = (model.clone(), victim_parking.clone());
            thread::spawn(move || model.critical_section(spins, &parking))
        };
        let other = {
            let model = model.clone();
            thread::spawn(move || {
                let parking = Parking::new();
                for _ in 0..rounds {
                    assert!(model.critical_section(spins, &parking));
                }
            })
        };
        let canceller = thread::spawn(move || {
            victim_parking.cancel.store(true, Ordering::Release);
            victim_parking.token.notify();
        });
        model.unlock();
        let victim_ran = victim.join().unwrap();
        other.join().unwrap();
        canceller.join().unwrap();
        let expected = rounds + usize::from(victim_ran);
        assert_eq!(model.locked.load(Ordering::Relaxed), expected);
        model.assert_idle();
    });
}

#[test]
fn loom_mutex_a_cancelled_woken_coroutine_passes_the_wakeup_on() {
    cancel_race(1, 2);
}

#[test]
fn loom_mutex_a_cancelled_coroutine_passes_a_hand_over_on() {
    // The other waiter's second round barges past the victim, which then queues
    // with `HANDOFF` and may be handed the lock just as it is cancelled (this
    // needs 3 preemptions: checked by making that branch panic).
    cancel_race(2, 3);
}
