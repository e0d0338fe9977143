//! Deadline scopes: the earliest deadline among the scopes a coroutine is inside,
//! checked by every suspension.
//!
//! Invariant: a coroutine's `Scopes::deadline` is the earliest deadline of its
//! active scopes, with the depth of the scope that set it (the outermost of those
//! with that deadline), or `None` outside every scope. A timer on the home worker
//! wakes the coroutine at that deadline. From then on, every suspension of the
//! coroutine (every blocking point goes through `suspend_current`) unwinds with
//! [`Expired`] naming that depth instead of waiting, until the scope at that depth
//! catches it and restores the deadline it found at its start. The check is made
//! where cancellation is checked, so a blocking point that survives being
//! cancelled survives a deadline too: both unwind from the same places, with the
//! same guarantees.
//!
//! Only the running coroutine touches its scopes (they live in its coroutine
//! part), so nothing here is atomic.

use super::task::Payload;
use super::worker::{add_timer, cancel_timer, current_task, with_current_task};
use crate::time::queue::TimerKey;
use std::time::Instant;

/// The earliest deadline of a coroutine's active scopes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScopeDeadline {
    /// When it passes.
    pub(crate) at: Instant,
    /// The depth of the scope it belongs to (1 for the outermost).
    pub(crate) depth: u32,
}

/// A coroutine's deadline scopes.
#[derive(Default)]
pub(crate) struct Scopes {
    /// The earliest deadline of the active scopes.
    pub(crate) deadline: Option<ScopeDeadline>,
    /// How many scopes are active.
    depth: u32,
}

/// The unwind payload of a suspension after a scope's deadline: caught by the
/// scope at `depth`, passed on by the scopes inside it.
#[derive(Debug)]
pub(crate) struct Expired {
    pub(crate) depth: u32,
}

/// What a scope restores when it ends.
pub(crate) struct Entered {
    depth: u32,
    previous: Option<ScopeDeadline>,
    timer: Option<TimerKey>,
}

impl Entered {
    /// The depth of this scope: the one its [`Expired`] names.
    pub(crate) fn depth(&self) -> u32 {
        self.depth
    }
}

/// The unwind payload for a suspension of a coroutine with these `scopes`, if the
/// earliest deadline has passed: checked before and after each wait. Outside any
/// scope, one load.
#[inline(always)]
pub(crate) fn check(scopes: &Scopes) -> Option<Payload> {
    match &scopes.deadline {
        None => None,
        Some(deadline) => check_clock(deadline),
    }
}

#[cold]
#[inline(never)]
fn check_clock(deadline: &ScopeDeadline) -> Option<Payload> {
    if Instant::now() >= deadline.at {
        Some(Box::new(Expired {
            depth: deadline.depth,
        }))
    } else {
        None
    }
}

/// Enters a scope with deadline `at` in the running coroutine; `None` when not
/// called from a coroutine.
pub(crate) fn enter(at: Instant) -> Option<Entered> {
    let task = current_task()?;
    // SAFETY: we are the running coroutine, so its part is ours (task module
    // invariant); the borrow ends in this block, before anything can suspend.
    let scopes = unsafe { &mut task.coroutine_part().scope };
    let depth = scopes.depth + 1;
    let previous = scopes.deadline;
    scopes.depth = depth;
    let earlier = previous.is_none_or(|p| at < p.at);
    if !earlier {
        return Some(Entered {
            depth,
            previous,
            timer: None,
        });
    }
    scopes.deadline = Some(ScopeDeadline { at, depth });
    // The timer wakes the coroutine if it waits at the deadline; its next look at
    // the scope (in `suspend_current`) unwinds.
    let timer = add_timer(at, task);
    Some(Entered {
        depth,
        previous,
        timer,
    })
}

/// Ends the scope `entered` of the running coroutine (its body returned or
/// unwound): the deadline before it applies again.
pub(crate) fn leave(entered: Entered) {
    if let Some(timer) = entered.timer {
        cancel_timer(timer);
    }
    with_current_task(|task| {
        // SAFETY: as in `enter`: the running coroutine's own part, briefly.
        let scopes = unsafe { &mut task.coroutine_part().scope };
        debug_assert_eq!(scopes.depth, entered.depth, "scopes end in order");
        scopes.depth = entered.depth - 1;
        scopes.deadline = entered.previous;
    });
}
