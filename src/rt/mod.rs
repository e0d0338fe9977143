//! The engine: the context switch, coroutine stacks, tasks and the work-stealing
//! scheduler, the driver (one reactor and one timer heap per worker), the blocking
//! pool, and the few types they share with the layers above.
//!
//! Invariant (layering): nothing under `src/rt/` names a public layer — `coroutine`,
//! `runtime`, `net`, `io`, `sync`, `time`, `generator`, `signal`, `os`, `future`,
//! `stack`, `blocking`, `hooks` — nor a crate-root re-export of theirs; the
//! dependencies only go down, from those layers into this folder. Types both sides
//! need live here and the public modules re-export them under their public paths
//! ([`Cancelled`](unwind::Cancelled) and [`Unwound`](unwind::Unwound) in `unwind`,
//! the `coroutine_local!` maps in `locals`, the stack internals in `stack`, the
//! timer heap in `timer_queue`, the waiters of `sync` in `waiter`). The `hooks`
//! feature only reads a flag the worker sets (`hook_flag`); the runtime layer calls
//! `hooks::init` before it starts the workers. `.ci/check_layers.py` (run by
//! `.ci/run`) keeps it so; unit tests (`#[cfg(test)]` modules) may drive the engine
//! through the public API.
//!
//! The narrow surface: the layers that wait on the engine (`sync`, `io`, `net`,
//! `os`, `signal`, `time`, `future`, `hooks`) use only what is re-exported at the
//! top of this module, plus the leaf modules `waiter`, `suspend`, `sockopt` and
//! `hook_flag`:
//! - the current task: [`current_task`], [`with_current_task`], [`Task`];
//! - suspending with a request: [`wait_current`] (with a [`Why`]),
//!   [`suspend_current`] (with a [`Request`]), [`others_ready`], and
//!   `suspend::suspend_until` for a wait with a deadline;
//! - waking: `Task::wake` (and the `waiter` lists built on it);
//! - timers: `suspend::suspend_until` adds the timer of a timed wait and cancels
//!   it however the wait ends; the deadline scopes of [`deadline`] do the same for
//!   a scope (both on `scheduler::{add_timer, cancel_timer}`);
//! - sources: a [`ScheduledIo`] readiness slot per registered descriptor, waited on
//!   in a [`Direction`], or [`block_thread_on`] outside a coroutine.
//!
//! `runtime`, `coroutine` and `generator` are the engine's owners rather than its
//! users: they build workers, tasks, contexts and stacks, and read the workers'
//! counters for the metrics, so they reach into `scheduler`, `context` and `stack`.

pub(crate) mod blocking;
pub(crate) mod context;
#[cfg(feature = "hooks")]
pub(crate) mod hook_flag;
pub(crate) mod locals;
pub(crate) mod reactor;
pub(crate) mod scheduler;
pub(crate) mod sockopt;
pub(crate) mod stack;
pub(crate) mod suspend;
pub(crate) mod timer_queue;
pub(crate) mod unwind;
pub(crate) mod waiter;
pub(crate) mod wake;

pub(crate) use reactor::scheduled_io::ScheduledIo;
pub(crate) use reactor::{block_thread_on, Direction};
pub(crate) use scheduler::deadline;
pub(crate) use scheduler::{
    current_task, others_ready, suspend_current, wait_current, with_current_task, Request, Task,
    TaskRef, WaitKind, Why,
};
