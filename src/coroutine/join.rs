//! Joining a coroutine: its result on the way to whoever waits for it, from a
//! coroutine, a thread or an `async` task, and cancelling it.
//!
//! Invariant: the result is stored before `done` is set, and the waiter registered
//! under the waiter lock is taken and woken after `done` is set; a joiner checks
//! `done` again under that lock before it waits, so it is never left waiting for a
//! result that is already there.

use super::{Coroutine, Kind};
use crate::rt::scheduler::Why;
use crate::rt::wake::Wakeup;
use crate::rt::{wait_current, TaskRef};
use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::thread;

/// A coroutine's result, on its way to the joiner (inside the coroutine's task).
pub(super) struct Packet<T> {
    /// Written once, by [`complete`](Self::complete), before `done` is set; read
    /// only by the one `JoinHandle`, after it saw `done`.
    result: UnsafeCell<Option<thread::Result<T>>>,
    done: AtomicBool,
    /// Who waits for the coroutine to finish: the joining coroutine or thread, or
    /// the `async` task awaiting the [`JoinHandle`].
    waiter: Mutex<Option<Wakeup>>,
}

// SAFETY: `result` is written by one thread before the `done` release store and read
// by the one `JoinHandle` (owned or `&mut`) after an acquire load saw `done`, so the
// two never overlap and `T` only moves from one thread to another (hence `T: Send`);
// everything else is atomic or locked.
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    pub(super) fn new() -> Packet<T> {
        Packet {
            result: UnsafeCell::new(None),
            done: AtomicBool::new(false),
            waiter: Mutex::new(None),
        }
    }

    /// Stores the result and wakes the joiner.
    ///
    /// # Safety
    ///
    /// Called once per packet.
    pub(super) unsafe fn complete(&self, result: thread::Result<T>) {
        // SAFETY: the one write (contract), before `done` is set: no reader yet.
        unsafe { *self.result.get() = Some(result) };
        self.done.store(true, Ordering::Release);
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Registers the caller as the waiter; false if the result is already there.
    fn register(&self) -> bool {
        let mut waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner());
        if self.done.load(Ordering::Acquire) {
            return false;
        }
        *waiter = Some(Wakeup::current());
        true
    }

    /// Takes the result, once `done` was seen set.
    ///
    /// # Safety
    ///
    /// The caller is the packet's `JoinHandle` (the only reader), through an owned
    /// or `&mut` handle, and an acquire load saw `done` set.
    unsafe fn take(&self) -> Option<thread::Result<T>> {
        // SAFETY: the write happened before `done` was set, which the caller saw; no
        // other reader exists (contract).
        unsafe { (*self.result.get()).take() }
    }
}

/// An owned permission to join a coroutine, like [`std::thread::JoinHandle`].
/// Dropping it detaches the coroutine.
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| "result");
/// assert_eq!(h.join().unwrap(), "result");
/// ```
pub struct JoinHandle<T> {
    /// Holds the task, whose body holds the packet.
    coroutine: Coroutine,
    /// The `Packet<T>` in the task's body: valid while `coroutine` holds the task.
    packet: NonNull<Packet<T>>,
}

// SAFETY: as `Arc<Packet<T>>` would be: the handle reaches the task (`Send + Sync`)
// and its `Packet<T>` (`Send + Sync` for `T: Send`), and moves a `T` out of it.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: as above; through `&JoinHandle` only `done` (an atomic) and the task are
// read.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T: 'static> JoinHandle<T> {
    /// The handle of the coroutine of `task`, whose body's output is a `Packet<T>`.
    pub(super) fn new(task: TaskRef) -> JoinHandle<T> {
        let packet = NonNull::from(
            task.body
                .output()
                .downcast_ref::<Packet<T>>()
                .expect("a coroutine of T has a Packet<T>"),
        );
        JoinHandle {
            coroutine: Coroutine::task(task),
            packet,
        }
    }
}

impl<T> JoinHandle<T> {
    fn packet(&self) -> &Packet<T> {
        // SAFETY: the packet lives in the task's allocation, which `self.coroutine`
        // keeps alive and which never moves.
        unsafe { self.packet.as_ref() }
    }

    /// Waits for the coroutine to finish and returns its result: `Err` with the panic
    /// payload if it panicked ([`Unwound`](crate::Unwound) if its runtime shut down first,
    /// [`Cancelled`](crate::Cancelled) if it was cancelled).
    ///
    /// From a coroutine this suspends only the caller; from a thread it blocks the
    /// thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = stackweave::spawn(|| panic!("boom"));
    /// let err = h.join().unwrap_err();
    /// assert_eq!(err.downcast_ref::<&str>(), Some(&"boom"));
    /// ```
    pub fn join(self) -> thread::Result<T> {
        let packet = self.packet();
        loop {
            if packet.done.load(Ordering::Acquire) {
                // SAFETY: we own the handle and saw `done`.
                let result = unsafe { packet.take() };
                return result.expect("a finished coroutine leaves its result once");
            }
            if !packet.register() {
                continue;
            }
            if !wait_current(Why::join(self.coroutine.id().as_u64())) {
                thread::park();
            }
        }
    }

    /// Cancels the coroutine: at its next blocking point — an I/O wait, `sleep`,
    /// `park`, a channel or lock wait, `join`, `yield_now` — it unwinds its stack
    /// (destructors run) instead of waiting, on its home worker, and its
    /// [`join`](Self::join) returns `Err` with a [`Cancelled`](crate::Cancelled)
    /// payload. A coroutine that has not started yet never runs. One that never
    /// reaches a blocking point again (an endless computation) is not interrupted;
    /// one that has finished is not affected. Calling it more than once is
    /// harmless.
    ///
    /// A coroutine that catches the unwind (`catch_unwind`) and blocks again is
    /// unwound again there. As with any unwind, a destructor must not block while it
    /// runs (the process aborts with a message saying so), and a
    /// [`sync::Mutex`](crate::sync::Mutex) held by the cancelled coroutine is
    /// poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::Cancelled;
    ///
    /// struct Cleanup(std::sync::mpsc::Sender<&'static str>);
    /// impl Drop for Cleanup {
    ///     fn drop(&mut self) {
    ///         let _ = self.0.send("cleaned up");
    ///     }
    /// }
    ///
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let h = stackweave::spawn(move || {
    ///     let _guard = Cleanup(tx.clone());
    ///     tx.send("started").unwrap();
    ///     stackweave::time::sleep(Duration::from_secs(3600)); // cancelled here
    /// });
    /// // Once it has started (cancelled before that, it would never run, and its
    /// // guard would never exist).
    /// assert_eq!(rx.recv().unwrap(), "started");
    /// h.cancel();
    /// assert!(h.join().unwrap_err().is::<Cancelled>());
    /// assert_eq!(rx.recv().unwrap(), "cleaned up");
    /// ```
    pub fn cancel(&self) {
        if let Kind::Task(task) = &self.coroutine.inner {
            task.state.cancel();
            task.wake();
        }
    }

    /// Whether the coroutine has finished (its result is ready).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = stackweave::spawn(|| {});
    /// while !h.is_finished() {
    ///     std::thread::yield_now();
    /// }
    /// h.join().unwrap();
    /// ```
    pub fn is_finished(&self) -> bool {
        self.packet().done.load(Ordering::Acquire)
    }

    /// The coroutine's handle.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = stackweave::spawn(|| {});
    /// println!("spawned {:?}", h.coroutine().id());
    /// h.join().unwrap();
    /// ```
    pub fn coroutine(&self) -> &Coroutine {
        &self.coroutine
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("coroutine", &self.coroutine)
            .finish_non_exhaustive()
    }
}

/// A `JoinHandle` is also a future: `async` code can await a coroutine (its output is
/// what [`join`](JoinHandle::join) returns). Awaiting it suspends only the awaiting
/// task; the coroutine runs on its runtime meanwhile.
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| 6 * 7);
/// // Any executor will do; here, stackweave's own bridge.
/// let answer = stackweave::future::block_on(h);
/// assert_eq!(answer.unwrap(), 42);
/// ```
impl<T> Future for JoinHandle<T> {
    type Output = thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<thread::Result<T>> {
        let packet = self.get_mut().packet();
        if !packet.done.load(Ordering::Acquire) {
            let mut waiter = packet.waiter.lock().unwrap_or_else(|e| e.into_inner());
            if !packet.done.load(Ordering::Acquire) {
                if !waiter.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waiter = Some(Wakeup::waker(cx.waker()));
                }
                return Poll::Pending;
            }
        }
        // SAFETY: we hold the handle by `&mut` and saw `done`.
        let result = unsafe { packet.take() };
        Poll::Ready(result.expect("a JoinHandle is not polled after it completed"))
    }
}
