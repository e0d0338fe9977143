//! The typed part of a coroutine's task: its closure, then its result.
//!
//! Invariant: a [`CoroutineBody`] lives in its task's allocation (one allocation per
//! coroutine). Its closure is touched only by the thread holding the right to run
//! the task (the task module's invariant), which takes it once; its result goes
//! through the [`Packet`] (the join module's invariant).

use super::join::Packet;
use super::local;
use crate::rt::context::Context;
use crate::rt::scheduler::{context_for, Body, Payload, Task};
use crate::rt::stack::Stack;
use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};

/// The closure `F` of a coroutine, then its result `T`.
pub(super) struct CoroutineBody<F, T> {
    start: UnsafeCell<Option<F>>,
    pub(super) packet: Packet<T>,
}

// SAFETY: only the thread holding the right to run the task reaches `start` (module
// invariant), so sharing the body never shares `F`; `Packet<T>` is `Sync` on its own.
unsafe impl<F: Send, T: Send> Sync for CoroutineBody<F, T> {}

impl<F, T> CoroutineBody<F, T> {
    pub(super) fn new(f: F) -> CoroutineBody<F, T> {
        CoroutineBody {
            start: UnsafeCell::new(Some(f)),
            packet: Packet::new(),
        }
    }
}

impl<F, T> Body for CoroutineBody<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    unsafe fn context(&self, stack: Stack, task: *const ()) -> Context {
        // SAFETY: forwarded: `task` is the `Task<Self>` holding this body.
        unsafe { context_for::<Self>(stack, task) }
    }

    unsafe fn run(&self, task: &Task, skip: Option<Payload>) {
        // SAFETY: the caller holds the right to run the task and calls this once
        // (trait contract), so nothing else touches the closure.
        let Some(f) = (unsafe { (*self.start.get()).take() }) else {
            return;
        };
        let result = match skip {
            None => {
                let result = panic::catch_unwind(AssertUnwindSafe(f));
                // Like thread-locals before a thread's join returns.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                    // SAFETY: `skip` is `None`, so we are the coroutine, on its stack,
                    // and its closure has returned.
                    unsafe { local::drop_task_locals(task) }
                }));
                result
            }
            Some(payload) => {
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(f)));
                Err(payload)
            }
        };
        // Counted before the joiner can see the result, so that metrics read after a
        // join include this coroutine.
        task.shared.count_completed();
        // SAFETY: the closure ran (or was dropped) just now, once: this is the one
        // completion.
        unsafe { self.packet.complete(result) };
    }

    fn output(&self) -> &(dyn Any + Send + Sync) {
        &self.packet
    }
}
