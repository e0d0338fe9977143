//! Scopes that end the waits of a block of code: deadline scopes
//! (`time::deadline`) and drain scopes (`runtime::until_drain`), checked by every
//! suspension.
//!
//! Invariant: a coroutine's `Scopes::deadline` is the earliest deadline of its
//! active deadline scopes, with the depth of the scope that set it (the outermost
//! of those with that deadline), or `None` outside them; `Scopes::drain` is the
//! depth of its outermost drain scope, or 0 outside them. A timer on the home
//! worker wakes the coroutine at the deadline; a coroutine in a drain scope is
//! listed with its home worker (`Remote::drain_scopes`) from the scope's start to
//! its end, and a drain wakes every listed coroutine once it has set
//! `Shared::draining`. From then on, every suspension of the coroutine (every
//! blocking point goes through `suspend_current`) unwinds with [`Expired`] naming
//! the outermost of the ended scopes instead of waiting, until the scope at that
//! depth catches it and restores what it found at its start. The check is made
//! where cancellation is checked, so a blocking point that survives being
//! cancelled survives a deadline or a drain too: all unwind from the same places,
//! with the same guarantees.
//!
//! No drain is missed: the drain stores the flag, then takes each worker's list
//! lock. A coroutine listed after that lock was released sees the flag at its next
//! suspension (the lock orders the two). One listed before is woken; if it was
//! running then and missed the flag at the suspension that followed, the wake (an
//! acquire/release hand-over on its state word) runs it again, and its blocking
//! point's loop suspends once more and sees the flag.
//!
//! Only the running coroutine touches its scopes (they live in its coroutine
//! part), so nothing here is atomic.

use super::task::Payload;
use super::task_ref::TaskRef;
use super::worker::{add_timer, cancel_timer, current_task, with_current_task};
use super::Shared;
use crate::rt::timer_queue::TimerKey;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// The earliest deadline of a coroutine's active scopes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScopeDeadline {
    /// When it passes.
    pub(crate) at: Instant,
    /// The depth of the scope it belongs to (1 for the outermost).
    pub(crate) depth: u32,
}

/// A coroutine's scopes.
#[derive(Default)]
pub(crate) struct Scopes {
    /// The earliest deadline of the active deadline scopes.
    pub(crate) deadline: Option<ScopeDeadline>,
    /// The depth of the outermost active drain scope; 0 outside them.
    drain: u32,
    /// How many scopes (of both kinds) are active.
    depth: u32,
}

/// The unwind payload of a suspension after a scope ended (its deadline passed,
/// or the runtime began to drain): caught by the scope at `depth`, passed on by
/// the scopes inside it.
#[derive(Debug)]
pub(crate) struct Expired {
    pub(crate) depth: u32,
    /// Whether a drain ended it (else a deadline).
    pub(crate) drained: bool,
}

/// What a scope restores when it ends.
pub(crate) struct Entered {
    depth: u32,
    previous: Option<ScopeDeadline>,
    previous_drain: u32,
    timer: Option<TimerKey>,
    /// For the outermost drain scope: its place in its home worker's list.
    listed: Option<(usize, usize)>,
}

/// The unwind payload for a suspension of a coroutine with these `scopes`, if one
/// of them has ended: checked before each wait. Outside any scope, two loads of
/// one cache line.
#[inline(always)]
pub(crate) fn check(scopes: &Scopes) -> Option<Payload> {
    if scopes.deadline.is_none() && scopes.drain == 0 {
        None
    } else {
        check_ended(scopes)
    }
}

#[cold]
#[inline(never)]
fn check_ended(scopes: &Scopes) -> Option<Payload> {
    let timed_out = scopes
        .deadline
        .filter(|d| Instant::now() >= d.at)
        .map(|d| d.depth);
    let drained = (scopes.drain != 0 && draining()).then_some(scopes.drain);
    // The outermost ended scope: the unwind passes through the ones inside it.
    let (depth, drained) = match (timed_out, drained) {
        (Some(t), Some(d)) if d < t => (d, true),
        (Some(t), _) => (t, false),
        (None, Some(d)) => (d, true),
        (None, None) => return None,
    };
    Some(Box::new(Expired { depth, drained }))
}

/// Whether this worker's runtime drains.
fn draining() -> bool {
    super::with_current_runtime(|shared| shared.draining.load(Ordering::Acquire)).unwrap_or(false)
}

/// The coroutines of one worker that are inside a drain scope, for the drain to
/// wake (module invariant). Locked by the home worker at each outermost drain
/// scope's start and end, and by the drain once.
#[derive(Default)]
pub(crate) struct DrainScopes {
    tasks: Vec<Option<TaskRef>>,
    free: Vec<usize>,
}

impl DrainScopes {
    fn insert(&mut self, task: TaskRef) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.tasks[key] = Some(task);
                key
            }
            None => {
                self.tasks.push(Some(task));
                self.tasks.len() - 1
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if self.tasks[key].take().is_some() {
            self.free.push(key);
        }
    }
}

/// Wakes every coroutine of `shared`'s runtime that is inside a drain scope;
/// called by the drain after it set `Shared::draining` (module invariant).
pub(crate) fn wake_drain_scopes(shared: &Shared) {
    for remote in shared.remotes.iter() {
        let listed: Vec<TaskRef> = lock(&remote.drain_scopes)
            .tasks
            .iter()
            .flatten()
            .cloned()
            .collect();
        for task in listed {
            task.wake();
        }
    }
}

fn lock(list: &Mutex<DrainScopes>) -> std::sync::MutexGuard<'_, DrainScopes> {
    // Nothing panics while holding it; a poisoned list is still consistent.
    list.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Enters a drain scope in the running coroutine; `None` when not called from a
/// coroutine of a runtime.
pub(crate) fn enter_drain() -> Option<Entered> {
    let task = current_task()?;
    let home = task.home()?;
    // SAFETY: we are the running coroutine, so its part is ours (task module
    // invariant); the borrow ends in this block, before anything can suspend.
    let scopes = unsafe { &mut task.coroutine_part().scope };
    let depth = scopes.depth + 1;
    let previous_drain = scopes.drain;
    scopes.depth = depth;
    let previous = scopes.deadline;
    if previous_drain != 0 {
        // An outer drain scope listed the coroutine already and catches the unwind.
        return Some(Entered {
            depth,
            previous,
            previous_drain,
            timer: None,
            listed: None,
        });
    }
    scopes.drain = depth;
    let list = &task.shared.remotes[home].drain_scopes;
    let key = lock(list).insert(task.clone());
    Some(Entered {
        depth,
        previous,
        previous_drain,
        timer: None,
        listed: Some((home, key)),
    })
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
    let previous_drain = scopes.drain;
    if !earlier {
        return Some(Entered {
            depth,
            previous,
            previous_drain,
            timer: None,
            listed: None,
        });
    }
    scopes.deadline = Some(ScopeDeadline { at, depth });
    // The timer wakes the coroutine if it waits at the deadline; its next look at
    // the scope (in `suspend_current`) unwinds.
    let timer = add_timer(at, task);
    Some(Entered {
        depth,
        previous,
        previous_drain,
        timer,
        listed: None,
    })
}

/// Ends the scope `entered` of the running coroutine (its body returned or
/// unwound): what applied before it applies again.
fn leave(entered: Entered) {
    if let Some(timer) = entered.timer {
        cancel_timer(timer);
    }
    with_current_task(|task| {
        if let Some((home, key)) = entered.listed {
            lock(&task.shared.remotes[home].drain_scopes).remove(key);
        }
        // SAFETY: as in `enter`: the running coroutine's own part, briefly.
        let scopes = unsafe { &mut task.coroutine_part().scope };
        debug_assert_eq!(scopes.depth, entered.depth, "scopes end in order");
        scopes.depth = entered.depth - 1;
        scopes.deadline = entered.previous;
        scopes.drain = entered.previous_drain;
    });
}

/// Runs `body` inside the scope `entered`: `Err` with how the scope ended (true
/// for a drain) if a wait inside it unwound for this scope; any other unwind goes
/// on, after the scope has ended (so that a scope outside sees its own state).
pub(crate) fn within<T>(entered: Entered, body: impl FnOnce() -> T) -> Result<T, bool> {
    struct Scope(Option<Entered>);
    impl Drop for Scope {
        fn drop(&mut self) {
            if let Some(entered) = self.0.take() {
                leave(entered);
            }
        }
    }
    let depth = entered.depth;
    let scope = Scope(Some(entered));
    let result = panic::catch_unwind(AssertUnwindSafe(body));
    drop(scope);
    match result {
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast_ref::<Expired>() {
            Some(expired) if expired.depth == depth => Err(expired.drained),
            _ => panic::resume_unwind(payload),
        },
    }
}
