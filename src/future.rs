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

use crate::scheduler::{self, Request, Task};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

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
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        who: match scheduler::current_task() {
            Some(task) => Who::Task(task),
            None => Who::Thread(thread::current()),
        },
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        signal.woken.store(false, Ordering::Release);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        while !signal.woken.load(Ordering::Acquire) {
            match &signal.who {
                Who::Task(_) => {
                    scheduler::suspend_current(Request::Wait);
                }
                Who::Thread(_) => thread::park(),
            }
        }
    }
}

struct Signal {
    woken: AtomicBool,
    who: Who,
}

enum Who {
    Task(Arc<Task>),
    Thread(Thread),
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            match &self.who {
                Who::Task(task) => task.wake(),
                Who::Thread(thread) => thread.unpark(),
            }
        }
    }
}
