//! A bridge from blocking-style code to `async` code.
//!
//! [`block_on`] waits for any [`Future`] from inside a coroutine, suspending only
//! that coroutine: the future's `Waker` reschedules it on its home worker. In the
//! other direction, a [`JoinHandle`](crate::JoinHandle) is a `Future`, so `async`
//! code can await a coroutine.
//!
//! Invariant: the waker's flag is set before the coroutine (or thread) is woken,
//! and `block_on` clears it before each poll; so a wakeup that arrives during a
//! poll makes the next wait return at once, and none is lost.

use crate::rt::{WaitKind, Why};
use crate::sync::waiter::Waiter;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Runs `future` to completion and returns its output. In a coroutine, the
/// coroutine is suspended while the future is pending (other coroutines run on its
/// worker); outside one, the thread blocks.
///
/// The future is polled on the caller's stack; whatever it needs from an `async`
/// runtime (a tokio reactor for tokio's sockets or timers, say) must be available
/// to it, as with any executor. Futures that only need a `Waker` — channels, locks,
/// the `futures` crate's combinators, another runtime's `JoinHandle` — just work.
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| {
///     // An async block awaited from blocking-style code:
///     let x = stackweave::future::block_on(async { 20 + 1 });
///     x * 2
/// });
/// assert_eq!(h.join().unwrap(), 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waiter = Arc::new(Waiter::current_inline());
    let waker = Waker::from(waiter.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        waiter.rearm();
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        waiter.block(None, Why::new(WaitKind::Future));
    }
}

/// The future's waker notifies the coroutine (or thread) blocked in `block_on`.
impl Wake for Waiter {
    fn wake(self: Arc<Self>) {
        self.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notify();
    }
}
