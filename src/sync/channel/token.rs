//! The claim at the heart of the channel core (the module docs of `channel`): a
//! waiter's [`Token`], which operations complete by claiming it, and the
//! [`Packet`] through which a claimed operation's message moves.
//!
//! Invariant: a token is claimed at most once, ever — from `WAITING` to either
//! `ABORTED` (its owner gave up) or `SELECTED + oper` (somebody completed its
//! operation `oper`), with one compare-and-swap; only the claimer wakes the owner,
//! after its claim, so an owner that saw the wakeup sees everything the claimer did
//! before it. A packet is touched only under the lock of the channel its
//! operation is parked on, or by its owner once that operation is off every line.

use crate::rt::{WaitKind, Why};
use crate::sync::waiter::{lock, Waiter};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The token is not claimed: its owner is (about to be) waiting.
pub(super) const WAITING: usize = 0;
/// Its owner gave up (timeout, unwind, or it found an operation ready itself).
pub(super) const ABORTED: usize = 1;
/// Operation `oper` was completed by somebody else: `SELECTED + oper`.
pub(super) const SELECTED: usize = 2;

/// What a waiting coroutine or thread is waiting for: the claim on it. The waiter
/// (who to wake, and whether it was) is embedded, not shared separately: one
/// allocation per wait, not two.
pub(crate) struct Token {
    selected: AtomicUsize,
    waiter: Waiter,
}

impl Token {
    /// A fresh, unclaimed token for the calling coroutine (or thread).
    pub(crate) fn new() -> Arc<Token> {
        Arc::new(Token::unshared())
    }

    /// The same, to embed in a larger shared value (a `Single`).
    pub(super) fn unshared() -> Token {
        Token {
            selected: AtomicUsize::new(WAITING),
            waiter: Waiter::current_inline(),
        }
    }

    /// Claims the token for its operation `oper`; false if it was claimed already.
    pub(super) fn try_select(&self, oper: usize) -> bool {
        self.selected
            .compare_exchange(
                WAITING,
                SELECTED + oper,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Whether nobody claimed it yet.
    pub(crate) fn is_waiting(&self) -> bool {
        self.selected.load(Ordering::Acquire) == WAITING
    }

    /// Gives up: `None` when that worked (no operation of the token will complete
    /// now), or the operation somebody claimed it for first.
    pub(crate) fn abort(&self) -> Option<usize> {
        match self
            .selected
            .compare_exchange(WAITING, ABORTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => None,
            Err(ABORTED) => None,
            Err(sel) => Some(sel - SELECTED),
        }
    }

    /// Waits (the caller must be the token's coroutine or thread) until an
    /// operation claims the token, or gives up at `deadline`; returns the claimed
    /// operation, or `None` after giving up. May unwind (coroutine shutdown or
    /// cancellation): the caller must then [`abort`](Token::abort) and leave.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<usize> {
        if self.waiter.block(deadline, Why::new(WaitKind::Channel)) {
            // Only the claimer notifies, after its claim.
            let sel = self.selected.load(Ordering::Acquire);
            debug_assert!(sel >= SELECTED);
            return Some(sel - SELECTED);
        }
        self.abort()
    }

    /// Completes the claim: wakes the owner.
    pub(super) fn wake(&self) {
        self.waiter.notify();
    }

    /// Whether the claimer's wakeup arrived: then everything the claimer did
    /// before [`wake`](Token::wake) (under the channel lock: taking the entry off
    /// its line, moving the message) happens-before what the caller does next. The
    /// flag is set only by `wake`, which only a claimer calls, after its claim; its
    /// `swap` is `AcqRel` and this load `Acquire`, so they synchronize.
    pub(super) fn was_woken(&self) -> bool {
        self.waiter.is_notified()
    }
}

/// The one-message slot of a parked operation. Only touched under the lock of the
/// channel the operation is parked on (its own mutex only keeps this safe code).
pub(crate) struct Packet<T>(pub(super) Mutex<Option<T>>);

impl<T> Packet<T> {
    pub(crate) fn new(msg: Option<T>) -> Arc<Packet<T>> {
        Arc::new(Packet(Mutex::new(msg)))
    }

    pub(super) fn put(&self, msg: T) {
        *lock(&self.0) = Some(msg);
    }

    /// Takes the message out, if any. Without the channel lock only while the
    /// packet is not parked.
    pub(crate) fn take(&self) -> Option<T> {
        lock(&self.0).take()
    }
}
