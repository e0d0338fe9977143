//! The reactor: one `mio::Poll` per worker, turning readiness events into wakeups.
//!
//! Invariant: a file descriptor is registered (edge-triggered, for reading and
//! writing) with at most one `Poll`: the one of the home worker of the first
//! coroutine that had to wait on it. Its events are handled on that worker, which
//! wakes every coroutine waiting on the fd, whatever its home: a waiter from another
//! worker is handed over through that worker's inbox by [`Task::wake`]. Clones made
//! with `try_clone` are separate descriptors with separate registrations, so a
//! reader and a writer on different workers each wait on their own worker's `Poll`.
//!
//! Only the owning worker polls its `Poll`; registering and deregistering go through
//! a cloned `mio::Registry`, which any thread may use.

pub(crate) mod scheduled_io;

use crate::rt::scheduler::TaskRef;
use mio::{Events, Poll, Token};
use scheduled_io::ScheduledIo;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

pub(crate) use scheduled_io::Direction;

/// The token of each worker's `mio::Waker` (no slot lives at address 0).
pub(crate) const WAKER_TOKEN: Token = Token(0);

/// Events taken per `poll` call.
const EVENTS_PER_POLL: usize = 1024;

/// One worker's `Poll` and its event buffer.
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    wake: Vec<TaskRef>,
}

impl Reactor {
    /// A reactor for a new worker.
    pub(crate) fn new(poll: Poll) -> Reactor {
        Reactor {
            poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            wake: Vec::new(),
        }
    }

    /// Waits up to `timeout` (forever for `None`) for readiness and moves the
    /// coroutines waiting on ready descriptors into `woken`.
    pub(crate) fn poll(&mut self, timeout: Option<Duration>, woken: &mut Vec<TaskRef>) {
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                // epoll_wait fails only on a bad epoll fd or buffer: a bug.
                panic!("stackweave: polling the reactor failed: {e}");
            }
            return;
        }
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            // SAFETY: every other token we register is a slot's (ScheduledIo::token).
            let io = unsafe { ScheduledIo::from_token(event.token()) };
            let error = event.is_error();
            io.dispatch(
                error || event.is_readable() || event.is_read_closed(),
                error || event.is_writable() || event.is_write_closed(),
                error || event.is_read_closed(),
                &mut self.wake,
            );
        }
        woken.append(&mut self.wake);
    }
}

/// The error every blocking call returns when its timeout passes.
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "operation timed out")
}

/// Blocks the calling *thread* (not a coroutine) until `fd` is ready for `dir` or
/// `deadline` passes, with `poll(2)`.
pub(crate) fn block_thread_on(
    fd: RawFd,
    dir: Direction,
    deadline: Option<Instant>,
) -> io::Result<()> {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out());
                }
                // Round up: never wake before the deadline.
                let ms = left.as_nanos().div_ceil(1_000_000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n > 0 {
            if pfd.revents & libc::POLLNVAL != 0 {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            if pfd.revents & events == 0 {
                // Only an error or hang-up condition, which poll(2) reports forever:
                // let the caller retry its call (which usually reports it), but not
                // in a busy loop if it still would block.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
