//! The one channel core behind [`mpsc`](super::mpsc), [`mpmc`](super::mpmc) and
//! [`select!`](crate::select).
//!
//! A channel is a `std::sync::Mutex` around its buffer (`queue`, at most `cap`
//! messages; `cap == Some(0)` is a rendezvous channel with no buffer at all), its
//! handle counts, and two lines of parked operations: receivers waiting for a
//! message (`recvq`) and senders waiting for room (`sendq`, each with its message).
//!
//! A parked operation is an [`Entry`]: the [`Token`] of the coroutine or thread that
//! waits (one token for all the operations of a `select!`), which of its operations
//! this is (`oper`), and a [`Packet`], the one-message slot through which the
//! operation is completed. Whoever completes a parked operation does so in one
//! critical section of the entry's channel: it first *claims* the token (a
//! compare-and-swap from "waiting" to "operation `oper` done": it succeeds once per
//! token, ever), and only if that succeeds moves the message (into the packet of a
//! parked receiver, or out of the packet of a parked sender into the caller or into
//! the buffer), takes the entry off its line, and wakes the waiter with
//! [`Waiter::notify`](super::waiter::Waiter::notify) (the token and the packet:
//! the `token` module). An entry whose token cannot be claimed any more (its owner
//! already completed another operation, gave up, or was unwound) is stale: it is
//! dropped from the line without touching its packet.
//!
//! Invariant (under the channel's lock):
//!
//! * every message is in exactly one place: the buffer, the packet of a parked
//!   sender, the packet of a receiver whose token was claimed for it, or the hands
//!   of the caller; it moves between them only under the lock, and into or out of a
//!   parked operation's packet only by the party that claimed its token;
//! * a live (claimable) receiver is parked only while the buffer is empty and no
//!   live sender is parked, and a live sender only while the buffer is full (always,
//!   for a rendezvous channel) and no live receiver is parked: an operation parks
//!   only after it found, under the same lock, that it cannot complete, and every
//!   operation that changes that first completes a live parked counterpart (a send
//!   hands its message to the first live parked receiver rather than buffer it; a
//!   receive that frees a buffer slot moves the first live parked sender's message
//!   in; the last sender or receiver to go claims every parked operation of the
//!   other side, which then fails with "disconnected");
//! * a waiter that stops waiting (timeout, unwind, or another operation of its
//!   `select!` completed) first settles its token (claims it as "aborted", or learns
//!   which operation was claimed), then, under each channel's lock, takes its
//!   entries off the lines and reads its packets: from then on nobody else touches
//!   them. A parked sender gets its message back unless its token was claimed.
//!
//! So a message is never lost or duplicated, a wakeup is never lost (every claim
//! completes an operation, and every claimed waiter collects its result), and a
//! token's operations complete at most one of them. No user code runs under the
//! lock: messages are never dropped there (messages a disconnected receiver
//! discards are dropped after it is released).

mod token;

pub(crate) use token::{Packet, Token};

use super::waiter::lock;
use crate::rt::{self, Request};
use std::collections::VecDeque;
use std::ptr;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A blocking send or receive (not a select): its token and its one packet in one
/// allocation. Its operation is always operation 0 of the token.
struct Single<T> {
    token: Token,
    packet: Packet<T>,
}

impl<T> Single<T> {
    fn new(msg: Option<T>) -> Arc<Single<T>> {
        Arc::new(Single {
            token: Token::unshared(),
            packet: Packet(Mutex::new(msg)),
        })
    }
}

/// One parked operation.
enum Entry<T> {
    /// A blocking send or receive, the only operation of its token.
    Single(Arc<Single<T>>),
    /// Operation `oper` of a select's token.
    Select {
        token: Arc<Token>,
        oper: usize,
        packet: Arc<Packet<T>>,
    },
}

impl<T> Entry<T> {
    fn token(&self) -> &Token {
        match self {
            Entry::Single(single) => &single.token,
            Entry::Select { token, .. } => token,
        }
    }

    fn oper(&self) -> usize {
        match self {
            Entry::Single(_) => 0,
            Entry::Select { oper, .. } => *oper,
        }
    }

    fn packet(&self) -> &Packet<T> {
        match self {
            Entry::Single(single) => &single.packet,
            Entry::Select { packet, .. } => packet,
        }
    }

    /// Whether another party than `me` could claim it now.
    fn is_live(&self, me: &Token) -> bool {
        !ptr::eq(self.token(), me) && self.token().is_waiting()
    }
}

/// Which line of parked operations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Send,
    Recv,
}

struct State<T> {
    queue: VecDeque<T>,
    /// `None`: unbounded.
    cap: Option<usize>,
    senders: usize,
    receivers: usize,
    recvq: VecDeque<Entry<T>>,
    sendq: VecDeque<Entry<T>>,
}

impl<T> State<T> {
    fn line(&mut self, side: Side) -> &mut VecDeque<Entry<T>> {
        match side {
            Side::Send => &mut self.sendq,
            Side::Recv => &mut self.recvq,
        }
    }

    fn has_room(&self) -> bool {
        self.cap.is_none_or(|cap| self.queue.len() < cap)
    }

    /// Claims the first live parked operation on `side` (dropping the stale ones
    /// before it) and returns it, off its line. (The caller has nothing parked: a
    /// select completes operations itself only before it parks any.)
    fn claim(&mut self, side: Side) -> Option<Entry<T>> {
        let line = self.line(side);
        while let Some(entry) = line.pop_front() {
            if entry.token().try_select(entry.oper()) {
                return Some(entry);
            }
            // Stale: its owner settled its token and will not look for it here.
        }
        None
    }

    fn try_send(&mut self, msg: T) -> Result<(), TrySendError<T>> {
        if self.receivers == 0 {
            return Err(TrySendError::Disconnected(msg));
        }
        if let Some(entry) = self.claim(Side::Recv) {
            entry.packet().put(msg);
            entry.token().wake();
            return Ok(());
        }
        if self.has_room() {
            self.queue.push_back(msg);
            return Ok(());
        }
        Err(TrySendError::Full(msg))
    }

    /// Takes back a message that a receiver was handed but cannot return (it
    /// unwound: cancelled, or its deadline scope ended as the message came): the
    /// first parked receiver gets it, or else the next receive, before any other.
    fn give_back(&mut self, msg: T) {
        if let Some(entry) = self.claim(Side::Recv) {
            entry.packet().put(msg);
            entry.token().wake();
        } else {
            self.queue.push_front(msg);
        }
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        if let Some(msg) = self.queue.pop_front() {
            // A slot is free: the first parked sender's message takes it.
            if let Some(entry) = self.claim(Side::Send) {
                let moved = entry
                    .packet()
                    .take()
                    .expect("a parked sender has its message");
                self.queue.push_back(moved);
                entry.token().wake();
            }
            return Ok(msg);
        }
        // Empty buffer: a parked sender (rendezvous) hands over directly.
        if let Some(entry) = self.claim(Side::Send) {
            let msg = entry
                .packet()
                .take()
                .expect("a parked sender has its message");
            entry.token().wake();
            return Ok(msg);
        }
        if self.senders == 0 {
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Whether an operation on `side` by `me` could complete now (`me`'s own
    /// parked operations do not count: it never completes with itself).
    fn is_ready(&self, side: Side, me: &Token) -> bool {
        match side {
            Side::Recv => {
                !self.queue.is_empty()
                    || self.senders == 0
                    || self.sendq.iter().any(|e| e.is_live(me))
            }
            Side::Send => {
                self.receivers == 0 || self.has_room() || self.recvq.iter().any(|e| e.is_live(me))
            }
        }
    }

    fn park(&mut self, side: Side, entry: Entry<T>) {
        self.line(side).push_back(entry);
    }

    fn unpark(&mut self, side: Side, token: &Token, oper: usize) {
        let line = self.line(side);
        if let Some(i) = line
            .iter()
            .position(|e| ptr::eq(e.token(), token) && e.oper() == oper)
        {
            line.remove(i);
        }
    }

    /// Claims every parked operation on `side` (they fail: disconnected).
    fn disconnect(&mut self, side: Side) {
        while let Some(entry) = self.claim(side) {
            entry.token().wake();
        }
    }
}

/// A channel: the shared core of both handles.
pub(crate) struct Chan<T> {
    state: Mutex<State<T>>,
}

/// How a blocking send failed; the message comes back.
pub(crate) enum SendFailed<T> {
    Disconnected(T),
    Timeout(T),
}

impl<T> Chan<T> {
    /// A channel with one sender and one receiver handle counted.
    fn new(cap: Option<usize>) -> Arc<Chan<T>> {
        Arc::new(Chan {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                cap,
                senders: 1,
                receivers: 1,
                recvq: VecDeque::new(),
                sendq: VecDeque::new(),
            }),
        })
    }

    pub(crate) fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        lock(&self.state).try_send(msg)
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        lock(&self.state).try_recv()
    }

    /// Sends, waiting for room (or, rendezvous, for a receiver) until `deadline`.
    pub(crate) fn send(&self, msg: T, deadline: Option<Instant>) -> Result<(), SendFailed<T>> {
        let mut state = lock(&self.state);
        let msg = match state.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(msg)) => return Err(SendFailed::Disconnected(msg)),
            Err(TrySendError::Full(msg)) => msg,
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            drop(state);
            crate::time::turn_after_expiry();
            return Err(SendFailed::Timeout(msg));
        }
        let single = Single::new(Some(msg));
        state.park(Side::Send, Entry::Single(single.clone()));
        drop(state);
        let sel = self.wait(Side::Send, &single.token, 0, &single.packet, deadline);
        match (sel, self.leave_single(Side::Send, &single)) {
            (Some(_), None) => Ok(()),
            (Some(_), Some(msg)) => Err(SendFailed::Disconnected(msg)),
            (None, Some(msg)) => Err(SendFailed::Timeout(msg)),
            (None, None) => unreachable!("an unclaimed sender keeps its message"),
        }
    }

    /// Receives, waiting for a message until `deadline`.
    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut state = lock(&self.state);
        match state.try_recv() {
            Ok(msg) => return Ok(msg),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            drop(state);
            crate::time::turn_after_expiry();
            return Err(RecvTimeoutError::Timeout);
        }
        if rt::others_ready() {
            // Other coroutines of this worker are ready (often the one that will
            // send next, as in a request/reply pair): let them run once before
            // parking. A message that arrives meanwhile is taken without the cost
            // of parking, claiming and waking.
            drop(state);
            rt::suspend_current(Request::Yield);
            state = lock(&self.state);
            match state.try_recv() {
                Ok(msg) => return Ok(msg),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
        }
        let single = Single::new(None);
        state.park(Side::Recv, Entry::Single(single.clone()));
        drop(state);
        let sel = self.wait(Side::Recv, &single.token, 0, &single.packet, deadline);
        match (sel, self.leave_single(Side::Recv, &single)) {
            (Some(_), Some(msg)) => Ok(msg),
            (Some(_), None) => Err(RecvTimeoutError::Disconnected),
            (None, _) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Waits on the token of one parked operation; on an unwind, leaves first.
    fn wait(
        &self,
        side: Side,
        token: &Token,
        oper: usize,
        packet: &Packet<T>,
        deadline: Option<Instant>,
    ) -> Option<usize> {
        struct Abandon<'a, T> {
            chan: &'a Chan<T>,
            side: Side,
            token: &'a Token,
            oper: usize,
            packet: &'a Packet<T>,
        }
        impl<T> Drop for Abandon<'_, T> {
            fn drop(&mut self) {
                self.token.abort();
                let mut state = lock(&self.chan.state);
                state.unpark(self.side, self.token, self.oper);
                match (self.side, self.packet.take()) {
                    // A sender claimed us just before we gave up: the message goes
                    // to the next receiver, not down with this unwind.
                    (Side::Recv, Some(msg)) => state.give_back(msg),
                    // Our own unsent message is dropped by the unwind, unlocked.
                    (Side::Send, msg) => {
                        drop(state);
                        drop(msg);
                    }
                    (Side::Recv, None) => {}
                }
            }
        }
        let abandon = Abandon {
            chan: self,
            side,
            token,
            oper,
            packet,
        };
        let sel = token.wait(deadline);
        std::mem::forget(abandon);
        sel
    }

    /// Whether `side` could complete now for the token `me` (whose own parked
    /// operations do not count); if not, parks the operation `oper` of `token`.
    /// Returns whether it parked.
    pub(crate) fn park_unless_ready(
        &self,
        side: Side,
        token: &Arc<Token>,
        oper: usize,
        packet: &Arc<Packet<T>>,
    ) -> bool {
        let mut state = lock(&self.state);
        if state.is_ready(side, token) {
            return false;
        }
        state.park(
            side,
            Entry::Select {
                token: token.clone(),
                oper,
                packet: packet.clone(),
            },
        );
        true
    }

    /// Takes back a message that a receive was handed but cannot return (see
    /// `State::give_back`).
    pub(crate) fn give_back(&self, msg: T) {
        lock(&self.state).give_back(msg);
    }

    /// Leaves after the token was settled (claimed or aborted): takes the entry off
    /// its line if it is still there, and returns what is in the packet.
    pub(crate) fn leave(
        &self,
        side: Side,
        token: &Token,
        oper: usize,
        packet: &Packet<T>,
    ) -> Option<T> {
        let mut state = lock(&self.state);
        state.unpark(side, token, oper);
        packet.take()
    }

    /// [`leave`](Chan::leave) for a blocking send or receive whose token was
    /// settled, without the channel lock when the claimer's wakeup was seen.
    ///
    /// Why that is enough: the token was claimed (only a claimer wakes, and only
    /// after its claim), and a claim is made only by [`State::claim`], which takes
    /// the entry off its line first; a `Single` token has no other entry. The
    /// claimer then moved the message into or out of the packet and woke the token,
    /// all in one critical section, in that order. `was_woken` reads the flag that
    /// wakeup set, with `Acquire` against the `AcqRel` swap that set it: so the
    /// entry's removal and the packet's final contents happen-before the `take`
    /// below, and nobody touches the packet afterwards (the claimer's clone of the
    /// `Arc` only keeps the allocation alive). The packet's own mutex still guards
    /// each access. Not woken (timed out, or claimed but the wakeup not seen yet:
    /// the claimer may still be mid-way), it takes the lock as before, which waits
    /// out any claimer's critical section.
    fn leave_single(&self, side: Side, single: &Single<T>) -> Option<T> {
        if single.token.was_woken() {
            debug_assert!(!single.token.is_waiting());
            return single.packet.take();
        }
        self.leave(side, &single.token, 0, &single.packet)
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.state).queue.len()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        lock(&self.state).cap
    }
}

/// A counted sending handle: the channel disconnects for receivers when the last
/// one is dropped.
pub(crate) struct Tx<T>(Arc<Chan<T>>);

/// A counted receiving handle: the channel disconnects for senders (and drops its
/// buffered messages) when the last one is dropped.
pub(crate) struct Rx<T>(Arc<Chan<T>>);

/// A new channel holding at most `cap` messages (`None`: unbounded; `Some(0)`:
/// rendezvous).
pub(crate) fn new<T>(cap: Option<usize>) -> (Tx<T>, Rx<T>) {
    let chan = Chan::new(cap);
    (Tx(chan.clone()), Rx(chan))
}

impl<T> std::ops::Deref for Tx<T> {
    type Target = Chan<T>;
    fn deref(&self) -> &Chan<T> {
        &self.0
    }
}

impl<T> std::ops::Deref for Rx<T> {
    type Target = Chan<T>;
    fn deref(&self) -> &Chan<T> {
        &self.0
    }
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Tx<T> {
        lock(&self.0.state).senders += 1;
        Tx(self.0.clone())
    }
}

impl<T> Clone for Rx<T> {
    fn clone(&self) -> Rx<T> {
        lock(&self.0.state).receivers += 1;
        Rx(self.0.clone())
    }
}

impl<T> Drop for Tx<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.senders -= 1;
        if state.senders == 0 {
            state.disconnect(Side::Recv);
        }
    }
}

impl<T> Drop for Rx<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.receivers -= 1;
        if state.receivers == 0 {
            state.disconnect(Side::Send);
            // Like std: a channel nobody can receive from drops what it holds,
            // now (outside the lock: the messages' destructors are user code).
            let discarded = std::mem::take(&mut state.queue);
            drop(state);
            drop(discarded);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(all(test, stackweave_loom))]
mod loom_models;
