//! The machinery behind [`select!`](crate::select): waiting on several channel
//! operations at once, of which exactly one completes.
//!
//! Everything here is an implementation detail of the macro (hidden, and not
//! covered by semver); the macro's own documentation is the user's reference.
//!
//! ```
//! use stackweave::select;
//! use stackweave::sync::mpsc;
//!
//! let (tx, rx) = mpsc::sync_channel(0);
//! let (_other_tx, other_rx) = mpsc::channel::<u8>();
//! stackweave::spawn(move || tx.send(1u8).unwrap());
//! // Exactly one arm runs; the other channel is left untouched.
//! let got = select! {
//!     recv(rx) -> m => m.unwrap(),
//!     recv(other_rx) -> m => m.unwrap() + 100,
//! };
//! assert_eq!(got, 1);
//! assert!(other_rx.try_recv().is_err());
//! ```
//!
//! # The protocol
//!
//! It is built on the channel core's claims (see `channel/mod.rs`): a blocked operation
//! is parked on its channel as an entry naming its waiter's *token*, and another
//! party completes it only after claiming the token, with one compare-and-swap
//! from "waiting" to "operation `i` done", in the same critical section of that
//! channel's lock in which it moves the message. A `select!` uses **one token for
//! all its operations**, so at most one of them can be completed by others. The
//! select runs in rounds:
//!
//! 1. **Try**: every arm's operation is tried without waiting, from a random
//!    starting arm (fairness). The first that can complete does, and wins. At this
//!    point the select has nothing parked anywhere, so nobody else can complete
//!    another of its operations. No arm ready: `default` fires, or, past the
//!    timeout, `default(timeout)` does.
//! 2. **Park**: with a fresh token, each operation is parked on its channel, in the
//!    same order, unless under that channel's lock it finds the operation could
//!    complete now (a message, room, a live counterpart, a disconnection; its own
//!    other operations do not count). Parking after a check under the same lock
//!    that every state change takes means no change is missed: from then on,
//!    whoever makes the operation possible finds the entry and claims it. If an
//!    operation turns out ready, the select does not complete it (it would need
//!    its own token, which another channel may be claiming right now): it
//!    *aborts* its token (compare-and-swap "waiting" to "aborted"). If that fails,
//!    another party has already completed one of its parked operations: that arm
//!    wins.
//! 3. **Wait** until the token is claimed (the claimer wakes the waiter after its
//!    claim) or the timeout passes; then abort the token, which either succeeds
//!    (nothing completed: timeout) or reports the operation that was claimed.
//! 4. **Leave**: under each channel's lock in turn, take the entries off their
//!    lines (an entry already removed by a claimer, or dropped as stale, is simply
//!    not there) and read the packets. The claimed arm collects its result: the
//!    message its claimer put in its packet, or, for a send, whether a receiver took
//!    the message out (`Ok`) or the channel disconnected (`Err` with the message).
//!    A send arm that was not claimed gets its message back. After an abort in step
//!    2, the round repeats.
//!
//! Why exactly one arm fires, and no message is lost or duplicated: the token
//! moves out of "waiting" once, so others complete at most one of its operations,
//! and only the winner of that compare-and-swap moves a message into or out of a
//! parked operation's packet. The select completes an operation itself only in
//! step 1, when none of its operations is parked, and returns right after. A round
//! ends with the token settled (claimed or aborted) before the select reads any
//! packet, and with all its entries off their lines, so nobody touches them
//! afterwards; every claimed operation's result is collected and returned. A
//! message a send arm did not send stays in the arm and is dropped with it: the
//! message expression of every `send` arm is evaluated once, before the select
//! starts, whether or not that arm fires. If the waiting coroutine is unwound
//! (runtime shutdown, cancellation), the same abort-then-leave runs from a guard;
//! a message already handed to it by a claimed receive is then dropped with it.

use super::channel::{Chan, Packet, Side, Token};
use std::cell::Cell;
use std::sync::mpsc::{RecvError, SendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A channel end that `recv(…)` arms of [`select!`](crate::select) accept.
#[doc(hidden)]
pub trait Receives {
    /// The message type.
    type Msg;
    /// The arm receiving from this end.
    fn __select_recv(&self) -> RecvArm<'_, Self::Msg>;
}

/// A channel end that `send(…)` arms of [`select!`](crate::select) accept.
#[doc(hidden)]
pub trait Sends {
    /// The message type.
    type Msg;
    /// The arm sending `msg` on this end.
    fn __select_send(&self, msg: Self::Msg) -> SendArm<'_, Self::Msg>;
}

/// How long a select may wait.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Timeout {
    /// No `default` arm: until an arm fires.
    Never,
    /// `default`: not at all.
    Now,
    /// `default(timeout)`.
    After(Duration),
}

/// One arm, as the select loop drives it.
trait Arm {
    /// Completes the operation if it can without waiting.
    fn try_now(&mut self) -> bool;
    /// Parks the operation as `oper` of `token`, unless it could complete now
    /// (returns false then).
    fn park(&mut self, token: &Arc<Token>, oper: usize) -> bool;
    /// Leaves after `token` was settled; `selected`: the token was claimed for
    /// this operation.
    fn leave(&mut self, token: &Arc<Token>, oper: usize, selected: bool);
    /// The select unwinds after `leave` picked this operation (cancelled, or a
    /// deadline scope ended): a received message goes back to its channel.
    fn give_back(&mut self) {}
}

/// A type-erased arm for [`__run`].
#[doc(hidden)]
pub struct ArmRef<'a>(&'a mut (dyn Arm + 'a));

/// A `recv(…)` arm.
#[doc(hidden)]
pub struct RecvArm<'a, T> {
    chan: &'a Chan<T>,
    packet: Option<Arc<Packet<T>>>,
    result: Option<Result<T, RecvError>>,
}

impl<'a, T> RecvArm<'a, T> {
    pub(crate) fn new(chan: &'a Chan<T>) -> RecvArm<'a, T> {
        RecvArm {
            chan,
            packet: None,
            result: None,
        }
    }

    /// For [`__run`].
    pub fn __arm(&mut self) -> ArmRef<'_> {
        ArmRef(self)
    }

    /// Whether this arm fired.
    pub fn __won(&self) -> bool {
        self.result.is_some()
    }

    /// The result of the arm that fired.
    pub fn __take(&mut self) -> Result<T, RecvError> {
        self.result.take().expect("the arm fired")
    }
}

impl<T> Arm for RecvArm<'_, T> {
    fn try_now(&mut self) -> bool {
        match self.chan.try_recv() {
            Ok(msg) => self.result = Some(Ok(msg)),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => self.result = Some(Err(RecvError)),
            Err(std::sync::mpsc::TryRecvError::Empty) => return false,
        }
        true
    }

    fn park(&mut self, token: &Arc<Token>, oper: usize) -> bool {
        // Reused across rounds: empty, and on no line, between them.
        let packet = self.packet.get_or_insert_with(|| Packet::new(None));
        self.chan.park_unless_ready(Side::Recv, token, oper, packet)
    }

    fn leave(&mut self, token: &Arc<Token>, oper: usize, selected: bool) {
        let packet = self.packet.as_ref().expect("parked");
        let msg = self.chan.leave(Side::Recv, token, oper, packet);
        if selected {
            self.result = Some(msg.ok_or(RecvError));
        } else {
            debug_assert!(msg.is_none(), "only a claimer fills a packet");
        }
    }

    fn give_back(&mut self) {
        if let Some(Ok(msg)) = self.result.take() {
            self.chan.give_back(msg);
        }
    }
}

/// A `send(…)` arm.
#[doc(hidden)]
pub struct SendArm<'a, T> {
    chan: &'a Chan<T>,
    msg: Option<T>,
    packet: Option<Arc<Packet<T>>>,
    result: Option<Result<(), SendError<T>>>,
}

impl<'a, T> SendArm<'a, T> {
    pub(crate) fn new(chan: &'a Chan<T>, msg: T) -> SendArm<'a, T> {
        SendArm {
            chan,
            msg: Some(msg),
            packet: None,
            result: None,
        }
    }

    /// For [`__run`].
    pub fn __arm(&mut self) -> ArmRef<'_> {
        ArmRef(self)
    }

    /// Whether this arm fired.
    pub fn __won(&self) -> bool {
        self.result.is_some()
    }

    /// The result of the arm that fired.
    pub fn __take(&mut self) -> Result<(), SendError<T>> {
        self.result.take().expect("the arm fired")
    }
}

impl<T> Arm for SendArm<'_, T> {
    fn try_now(&mut self) -> bool {
        let msg = self.msg.take().expect("an unsent arm has its message");
        match self.chan.try_send(msg) {
            Ok(()) => self.result = Some(Ok(())),
            Err(std::sync::mpsc::TrySendError::Disconnected(msg)) => {
                self.result = Some(Err(SendError(msg)));
            }
            Err(std::sync::mpsc::TrySendError::Full(msg)) => {
                self.msg = Some(msg);
                return false;
            }
        }
        true
    }

    fn park(&mut self, token: &Arc<Token>, oper: usize) -> bool {
        let packet = Packet::new(self.msg.take());
        if self
            .chan
            .park_unless_ready(Side::Send, token, oper, &packet)
        {
            self.packet = Some(packet);
            true
        } else {
            // Never parked: nobody else saw it.
            self.msg = packet.take();
            false
        }
    }

    fn leave(&mut self, token: &Arc<Token>, oper: usize, selected: bool) {
        let packet = self.packet.take().expect("parked");
        let msg = self.chan.leave(Side::Send, token, oper, &packet);
        if selected {
            // A receiver took the message out, or the disconnection left it.
            self.result = Some(match msg {
                None => Ok(()),
                Some(msg) => Err(SendError(msg)),
            });
        } else {
            debug_assert!(msg.is_some(), "only a claimer empties a packet");
            self.msg = msg;
        }
    }
}

/// One round's parked operations; leaves them on drop (an unwind while waiting).
struct Round<'r, 'a> {
    arms: &'r mut [ArmRef<'a>],
    token: &'r Arc<Token>,
    start: usize,
    parked: usize,
    left: bool,
}

impl Round<'_, '_> {
    /// Leaves every parked operation of the settled token; `selected` collects.
    fn leave(&mut self, selected: Option<usize>) {
        self.left = true;
        let n = self.arms.len();
        for k in 0..self.parked {
            let i = (self.start + k) % n;
            self.arms[i].0.leave(self.token, i, selected == Some(i));
        }
    }
}

impl Drop for Round<'_, '_> {
    fn drop(&mut self) {
        if !self.left {
            let selected = self.token.abort();
            self.leave(selected);
            if let Some(i) = selected {
                self.arms[i].0.give_back();
            }
        }
    }
}

/// A cheap per-thread pseudo-random number below `n` (xorshift).
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u32> = const { Cell::new(0x9e37_79b9) };
    }
    let x = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.set(x);
        x
    });
    x as usize % n
}

/// Runs a select over `arms`: afterwards exactly one arm has fired (its `__won`
/// is true), or none did and the `default` arm is due.
#[doc(hidden)]
pub fn __run(arms: &mut [ArmRef<'_>], timeout: Timeout) {
    let deadline = match timeout {
        Timeout::After(timeout) => Instant::now().checked_add(timeout),
        Timeout::Never | Timeout::Now => None,
    };
    let n = arms.len();
    let start = if n > 1 { random_below(n) } else { 0 };
    loop {
        // 1. Try.
        for k in 0..n {
            if arms[(start + k) % n].0.try_now() {
                return;
            }
        }
        if matches!(timeout, Timeout::Now) {
            return;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            crate::time::turn_after_expiry();
            return;
        }
        // 2. Park.
        let token = Token::new();
        let mut round = Round {
            arms: &mut *arms,
            token: &token,
            start,
            parked: 0,
            left: false,
        };
        let mut ready = false;
        for k in 0..n {
            if !token.is_waiting() {
                break; // Claimed already: no need to park the rest.
            }
            if !round.arms[(start + k) % n].0.park(&token, (start + k) % n) {
                ready = true;
                break;
            }
            round.parked = k + 1;
        }
        // 3. Wait.
        let selected = if ready {
            token.abort()
        } else {
            token.wait(deadline)
        };
        // 4. Leave.
        round.leave(selected);
        if selected.is_some() || !ready {
            // An arm fired, or (not ready, not claimed) the timeout passed.
            return;
        }
    }
}

/// Waits on several channel operations at once and runs the arm of the one that
/// completes, like Go's `select` statement.
///
/// ```text
/// select! {
///     recv(rx) -> msg => body,          // msg: Result<T, RecvError>
///     send(tx, value) -> res => body,   // res: Result<(), SendError<T>>
///     default => body,                  // optional: when nothing is ready now
///     default(timeout) => body,         // or: when nothing was ready in time
/// }
/// ```
///
/// Receivers and senders of both [`mpsc`](crate::sync::mpsc) and
/// [`mpmc`](crate::sync::mpmc) channels work, in any number and mix of `recv` and
/// `send` arms (by value or by reference). Exactly one arm runs: the first
/// operation that can complete does (when several are ready, the arms are tried
/// in order from a random one), and the others do not happen: no message is
/// received or sent by an arm that does not run. A channel that is disconnected makes its arm ready:
/// `recv` gives `Err(RecvError)`, `send` gives `Err(SendError(value))`. Without a
/// `default` arm the select waits as long as it takes; with `default` it never
/// waits; with `default(timeout)` (a [`Duration`](std::time::Duration)) it runs the
/// default body once `timeout` has passed with no operation completed.
///
/// The `value` of every `send` arm is evaluated once, before waiting, whether or
/// not that arm runs (an arm that does not run drops it). Each body is a block or
/// an expression followed by a comma; the result patterns must be irrefutable. The
/// whole `select!` is an expression: its value is the value of the body that ran.
///
/// Waiting suspends only the calling coroutine; from a plain thread, it blocks the
/// thread. See the [`select` module](crate::sync::select) for the protocol that
/// makes exactly one operation complete.
///
/// # Examples
///
/// Receive from whichever channel has a message:
///
/// ```
/// use stackweave::select;
/// use stackweave::sync::{mpmc, mpsc};
///
/// let (tx1, rx1) = mpsc::channel::<&str>();
/// let (tx2, rx2) = mpmc::bounded::<i32>(0);
/// stackweave::spawn(move || tx2.send(42).unwrap());
/// let got = select! {
///     recv(rx1) -> msg => format!("rx1: {msg:?}"),
///     recv(rx2) -> msg => format!("rx2: {msg:?}"),
/// };
/// assert_eq!(got, "rx2: Ok(42)");
/// # drop(tx1);
/// ```
///
/// Send or receive, with a timeout, in a loop:
///
/// ```
/// use std::time::Duration;
/// use stackweave::select;
/// use stackweave::sync::mpsc;
///
/// let (in_tx, in_rx) = mpsc::channel();
/// let (out_tx, out_rx) = mpsc::sync_channel(0);
/// let echo = stackweave::spawn(move || {
///     let mut pending = Vec::new();
///     loop {
///         let next = pending.first().copied().unwrap_or(0);
///         select! {
///             recv(in_rx) -> msg => match msg {
///                 Ok(n) => pending.push(n),
///                 Err(_) => return pending, // in_tx is gone
///             },
///             send(out_tx, next) -> res => {
///                 res.unwrap();
///                 if !pending.is_empty() {
///                     pending.remove(0);
///                 }
///             }
///             default(Duration::from_secs(10)) => panic!("idle for too long"),
///         }
///     }
/// });
/// in_tx.send(7).unwrap();
/// // The echo offers 7 once it has it, 0 until then.
/// while out_rx.recv().unwrap() != 7 {}
/// drop(in_tx);
/// assert_eq!(echo.join().unwrap(), Vec::<i32>::new());
/// ```
///
/// `default` fires when nothing is ready, `default(timeout)` once the time has
/// passed:
///
/// ```
/// use std::time::{Duration, Instant};
/// use stackweave::select;
/// use stackweave::sync::mpsc;
///
/// let (_tx, rx) = mpsc::channel::<()>();
/// let ready = select! {
///     recv(rx) -> _ => true,
///     default => false,
/// };
/// assert!(!ready);
///
/// let start = Instant::now();
/// select! {
///     recv(rx) -> _ => panic!("nothing was sent"),
///     default(Duration::from_millis(20)) => {}
/// }
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// ```
#[macro_export]
macro_rules! select {
    // All arms parsed.
    (@parse [$($arms:tt)*] [$($default:tt)*]) => {
        $crate::select!(@emit [$($arms)*] [$($default)*])
    };
    // Separating comma.
    (@parse [$($arms:tt)*] [$($default:tt)*] , $($rest:tt)*) => {
        $crate::select!(@parse [$($arms)*] [$($default)*] $($rest)*)
    };
    // recv(rx) -> res => body
    (@parse [$($arms:tt)*] [$($default:tt)*]
        recv($rx:expr) -> $res:pat => $body:block $($rest:tt)*) => {
        $crate::select!(@parse
            [$($arms)* (__arm __end [&$rx] __select_recv() $res, $body)]
            [$($default)*] $($rest)*)
    };
    (@parse [$($arms:tt)*] [$($default:tt)*]
        recv($rx:expr) -> $res:pat => $body:expr, $($rest:tt)*) => {
        $crate::select!(@parse
            [$($arms)* (__arm __end [&$rx] __select_recv() $res, { $body })]
            [$($default)*] $($rest)*)
    };
    (@parse [$($arms:tt)*] [$($default:tt)*]
        recv($rx:expr) -> $res:pat => $body:expr) => {
        $crate::select!(@parse
            [$($arms)* (__arm __end [&$rx] __select_recv() $res, { $body })]
            [$($default)*])
    };
    // send(tx, msg) -> res => body
    (@parse [$($arms:tt)*] [$($default:tt)*]
        send($tx:expr, $msg:expr) -> $res:pat => $body:block $($rest:tt)*) => {
        $crate::select!(@parse
            [$($arms)* (__arm __end [&$tx] __select_send($msg) $res, $body)]
            [$($default)*] $($rest)*)
    };
    (@parse [$($arms:tt)*] [$($default:tt)*]
        send($tx:expr, $msg:expr) -> $res:pat => $body:expr, $($rest:tt)*) => {
        $crate::select!(@parse
            [$($arms)* (__arm __end [&$tx] __select_send($msg) $res, { $body })]
            [$($default)*] $($rest)*)
    };
    (@parse [$($arms:tt)*] [$($default:tt)*]
        send($tx:expr, $msg:expr) -> $res:pat => $body:expr) => {
        $crate::select!(@parse
            [$($arms)* (__arm __end [&$tx] __select_send($msg) $res, { $body })]
            [$($default)*])
    };
    // A second default.
    (@parse [$($arms:tt)*] [$($default:tt)+] default $($rest:tt)*) => {
        ::core::compile_error!("`select!` takes at most one `default` arm")
    };
    // default => body
    (@parse [$($arms:tt)*] [] default => $body:block $($rest:tt)*) => {
        $crate::select!(@parse [$($arms)*]
            [($crate::sync::select::Timeout::Now) $body] $($rest)*)
    };
    (@parse [$($arms:tt)*] [] default => $body:expr, $($rest:tt)*) => {
        $crate::select!(@parse [$($arms)*]
            [($crate::sync::select::Timeout::Now) { $body }] $($rest)*)
    };
    (@parse [$($arms:tt)*] [] default => $body:expr) => {
        $crate::select!(@parse [$($arms)*]
            [($crate::sync::select::Timeout::Now) { $body }])
    };
    // default(timeout) => body
    (@parse [$($arms:tt)*] [] default($timeout:expr) => $body:block $($rest:tt)*) => {
        $crate::select!(@parse [$($arms)*]
            [($crate::sync::select::Timeout::After($timeout)) $body] $($rest)*)
    };
    (@parse [$($arms:tt)*] [] default($timeout:expr) => $body:expr, $($rest:tt)*) => {
        $crate::select!(@parse [$($arms)*]
            [($crate::sync::select::Timeout::After($timeout)) { $body }] $($rest)*)
    };
    (@parse [$($arms:tt)*] [] default($timeout:expr) => $body:expr) => {
        $crate::select!(@parse [$($arms)*]
            [($crate::sync::select::Timeout::After($timeout)) { $body }])
    };
    // Anything else.
    (@parse [$($arms:tt)*] [$($default:tt)*] $($rest:tt)+) => {
        ::core::compile_error!(
            "expected `recv(receiver) -> pattern => body`, \
             `send(sender, value) -> pattern => body`, \
             `default => body` or `default(timeout) => body`"
        )
    };
    (@emit [$(($arm:ident $end:ident [$($target:tt)*] $method:ident($($msg:expr)?)
               $res:pat, $body:tt))*]
           [$(($timeout:expr) $default:tt)?]) => {{
        #[allow(unused_imports)]
        use $crate::sync::select::{Receives as _, Sends as _};
        $(
            let $end = $($target)*;
            #[allow(unused_mut)]
            let mut $arm = $end.$method($($msg)?);
        )*
        $crate::sync::select::__run(
            &mut [$($arm.__arm()),*],
            $crate::select!(@timeout $($timeout)?),
        );
        $(
            if $arm.__won() {
                let $res = $arm.__take();
                $body
            } else
        )*
        {
            $crate::select!(@default $($default)?)
        }
    }};
    (@timeout) => { $crate::sync::select::Timeout::Never };
    (@timeout $timeout:expr) => { $timeout };
    (@default) => { ::core::unreachable!("a select without `default` returns with an arm") };
    (@default $body:tt) => { $body };
    // Entry point.
    ($($tokens:tt)*) => {
        $crate::select!(@parse [] [] $($tokens)*)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::mpmc;

    #[test]
    fn a_claim_during_parking_wins_over_a_later_ready_arm() {
        // Step 2 of a round, driven by hand: arm 0 is parked and claimed by a
        // sender before arm 1 finds its channel ready.
        let (tx0, rx0) = mpmc::bounded::<u32>(0);
        let (tx1, rx1) = mpmc::unbounded::<u32>();
        let mut arm0 = rx0.__select_recv();
        let mut arm1 = rx1.__select_recv();
        let token = Token::new();
        assert!(arm0.park(&token, 0));
        tx0.send(10).unwrap(); // completes arm 0
        tx1.send(11).unwrap();
        assert!(!arm1.park(&token, 1), "ready");
        assert_eq!(token.abort(), Some(0), "arm 0 won");
        arm0.leave(&token, 0, true);
        assert_eq!(arm0.__take(), Ok(10));
        assert!(!arm1.__won());
        assert_eq!(rx1.try_recv(), Ok(11), "arm 1 took nothing");
    }

    #[test]
    fn an_unclaimed_send_arm_keeps_its_message() {
        let (tx, rx) = mpmc::bounded::<String>(0);
        let mut arm = tx.__select_send("kept".to_owned());
        let token = Token::new();
        assert!(arm.park(&token, 0));
        assert_eq!(token.abort(), None);
        arm.leave(&token, 0, false);
        assert!(rx.try_recv().is_err());
        // The next round can still send it.
        let h = crate::spawn(move || rx.recv());
        let mut arms = [arm.__arm()];
        __run(&mut arms, Timeout::Never);
        assert_eq!(arm.__take(), Ok(()));
        assert_eq!(h.join().unwrap().unwrap(), "kept");
    }
}
