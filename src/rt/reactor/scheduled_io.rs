//! The readiness state of one registered file descriptor, and the coroutines waiting
//! on it.
//!
//! Invariant (edges are never lost): each direction has a tick that the reactor bumps
//! *before* it takes that direction's waiters under the lock. A coroutine reads the
//! tick, tries its system call, and on `WouldBlock` adds itself to the waiters under
//! the same lock only if the tick has not moved; so an edge that arrives between its
//! system call and its wait is either seen as a moved tick or finds it in the list.
//! Spurious wakeups and stale ticks are harmless: a woken coroutine retries the
//! system call first.
//!
//! Invariant (memory): a `ScheduledIo` is never freed. Sources take one from a
//! process-wide free list and give it back when dropped; its address is the
//! `mio::Token`, so an event that is already in a worker's event buffer when its
//! source goes away touches a live (maybe reused) slot, which at worst makes some
//! waiter retry its system call once.

use crate::rt::scheduler::{self, Shared, TaskRef, Why};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A direction of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read = 0,
    Write = 1,
}

/// One registration slot (see the module invariants).
pub(crate) struct ScheduledIo {
    ticks: [AtomicU32; 2],
    /// Set once an event said the read side is closed (or in error): from then on a
    /// read never blocks, whatever the ticks say (see `Source::do_read`).
    read_closed: AtomicBool,
    /// The runtime (`Arc::as_ptr` of its `Shared`) whose worker's `Poll` the fd is
    /// registered with; null before. Only compared, never dereferenced: the `Arc`
    /// in `Inner::registration` keeps it alive.
    registered: AtomicPtr<Shared>,
    /// The runtime ([`Shared::id`]) whose list of listeners to interrupt at a
    /// drain holds this slot (see `runtime::drain`); 0 before. An id, not the
    /// `Shared`'s address: a runtime built after another was dropped can get its
    /// address, and would then skip listing a slot the dead one had listed.
    drain_listed: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiters: [Vec<TaskRef>; 2],
    /// The runtime and worker whose `Poll` the fd is registered with.
    registration: Option<(Arc<Shared>, usize)>,
}

/// Slots are made this many at a time.
const CHUNK: usize = 64;

static FREE: Mutex<Vec<&'static ScheduledIo>> = Mutex::new(Vec::new());

impl ScheduledIo {
    fn new() -> ScheduledIo {
        ScheduledIo {
            ticks: [AtomicU32::new(0), AtomicU32::new(0)],
            read_closed: AtomicBool::new(false),
            registered: AtomicPtr::new(std::ptr::null_mut()),
            drain_listed: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Takes a slot from the free list (making more when it is empty).
    pub(crate) fn allocate() -> &'static ScheduledIo {
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(io) = free.pop() {
            return io;
        }
        let chunk: &'static [ScheduledIo] =
            Box::leak((0..CHUNK).map(|_| ScheduledIo::new()).collect());
        free.extend(chunk[1..].iter());
        &chunk[0]
    }

    /// Deregisters `fd` (which must still be open) and returns the slot to the free
    /// list. No coroutine may be waiting on it (a waiter borrows the source).
    pub(crate) fn release(&'static self, fd: RawFd) {
        let registration = {
            let mut inner = self.lock();
            debug_assert!(inner.waiters.iter().all(Vec::is_empty));
            inner.registration.take()
        };
        if let Some((shared, worker)) = registration {
            // Errors mean the fd is no longer in that epoll set: nothing to undo.
            let remote = &shared.remotes[worker];
            let _ = remote.registry.deregister(&mut SourceFd(&fd));
            remote.registrations.fetch_sub(1, Ordering::Relaxed);
        }
        self.registered
            .store(std::ptr::null_mut(), Ordering::Release);
        self.read_closed.store(false, Ordering::Relaxed);
        FREE.lock().unwrap_or_else(|e| e.into_inner()).push(self);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token that names this slot in a `Poll`.
    fn token(&'static self) -> Token {
        Token(self as *const ScheduledIo as usize)
    }

    /// The slot a token names.
    ///
    /// # Safety
    ///
    /// `token` came from [`ScheduledIo::token`] (not the waker's token).
    pub(crate) unsafe fn from_token(token: Token) -> &'static ScheduledIo {
        // SAFETY: the token is the address of a slot, and slots are never freed.
        unsafe { &*(token.0 as *const ScheduledIo) }
    }

    /// The current tick of `dir`; read it before the system call that may block.
    pub(crate) fn tick(&self, dir: Direction) -> u32 {
        self.ticks[dir as usize].load(Ordering::Acquire)
    }

    /// Whether an event said the read side is closed or in error.
    pub(crate) fn is_read_closed(&self) -> bool {
        self.read_closed.load(Ordering::Acquire)
    }

    /// Called by the reactor for an event: bumps the ticks of the ready directions,
    /// then moves their waiters to `wake` (the caller wakes them outside the lock).
    pub(crate) fn dispatch(
        &self,
        read: bool,
        write: bool,
        read_closed: bool,
        wake: &mut Vec<TaskRef>,
    ) {
        if read_closed {
            self.read_closed.store(true, Ordering::Release);
        }
        if read {
            self.ticks[0].fetch_add(1, Ordering::AcqRel);
        }
        if write {
            self.ticks[1].fetch_add(1, Ordering::AcqRel);
        }
        let mut inner = self.lock();
        if read {
            wake.append(&mut inner.waiters[0]);
        }
        if write {
            wake.append(&mut inner.waiters[1]);
        }
    }

    /// Whether this slot is in the drain list of `shared`; if not, marks it so
    /// (the caller then adds it, see `runtime::drain`).
    pub(crate) fn list_for_drain(&self, shared: &Shared) -> bool {
        let ours = shared.id;
        // A plain load on the accept path; the swap only the first time.
        self.drain_listed.load(Ordering::Acquire) == ours
            || self.drain_listed.swap(ours, Ordering::AcqRel) == ours
    }

    /// Makes a waiter for readability look again, as an event would: how a drain
    /// ends the accepts that wait on a listener (their next try sees the drain).
    pub(crate) fn interrupt_read(&self) {
        self.interrupt(true, false, false);
    }

    /// Dispatches an event of its own making and wakes whom it woke.
    fn interrupt(&self, readable: bool, writable: bool, closed: bool) {
        let mut woken = Vec::new();
        self.dispatch(readable, writable, closed, &mut woken);
        for task in woken {
            task.wake();
        }
    }

    /// Wakes every waiter of both directions, as an event would (the hooks' `close`
    /// of a descriptor coroutines wait on: their retry then sees it closed).
    #[cfg(feature = "hooks")]
    pub(crate) fn interrupt_all(&self) {
        self.interrupt(true, true, true);
    }

    /// Deregisters `fd` (still open) and forgets the registration, keeping the slot
    /// (the hooks' per-number slots, which are never given back).
    #[cfg(feature = "hooks")]
    pub(crate) fn reset(&'static self, fd: RawFd) {
        let registration = self.lock().registration.take();
        if let Some((shared, worker)) = registration {
            let _ = shared.remotes[worker]
                .registry
                .deregister(&mut SourceFd(&fd));
        }
        self.registered
            .store(std::ptr::null_mut(), Ordering::Release);
        self.read_closed.store(false, Ordering::Relaxed);
    }

    /// Forgets the registration without deregistering: for a registration that may
    /// have been made for a descriptor closed meanwhile (the kernel drops it with the
    /// file; if the file lives on in a duplicate, its events are spurious wakeups).
    #[cfg(feature = "hooks")]
    pub(crate) fn forget_registration(&self) {
        self.lock().registration = None;
        self.registered
            .store(std::ptr::null_mut(), Ordering::Release);
    }

    /// Adds `task` (running) to the waiters of `dir`, registering `fd` first, unless
    /// the tick moved from `seen` (returns false then). One of several waits of the
    /// hooks' `poll`; the caller removes it with [`remove_waiter`](Self::remove_waiter).
    #[cfg(feature = "hooks")]
    pub(crate) fn add_waiter(
        &'static self,
        fd: RawFd,
        task: &TaskRef,
        dir: Direction,
        seen: u32,
    ) -> io::Result<bool> {
        self.ensure_registered(fd, task)?;
        let mut inner = self.lock();
        if self.tick(dir) != seen {
            return Ok(false);
        }
        inner.waiters[dir as usize].push(task.clone());
        Ok(true)
    }

    /// Takes `task` off the waiters of `dir` (if an event has not already).
    #[cfg(feature = "hooks")]
    pub(crate) fn remove_waiter(&self, task: &TaskRef, dir: Direction) {
        let mut inner = self.lock();
        inner.waiters[dir as usize].retain(|t| !TaskRef::ptr_eq(t, task));
    }

    /// Registers `fd` with the `Poll` of `task`'s home worker, once per runtime
    /// that is alive: a source first used on a runtime that has since shut down is
    /// moved to the caller's. (While both runtimes live, the first one's worker keeps
    /// the registration and wakes the other's coroutines through their inboxes.)
    fn ensure_registered(&'static self, fd: RawFd, task: &TaskRef) -> io::Result<()> {
        let ours = Arc::as_ptr(&task.shared).cast_mut();
        if self.registered.load(Ordering::Acquire) == ours {
            return Ok(());
        }
        let mut inner = self.lock();
        match &inner.registration {
            Some((shared, _)) if !shared.shutdown.load(Ordering::Acquire) => return Ok(()),
            Some((shared, worker)) => {
                // Its runtime is gone: nobody polls that `Poll` any more.
                let remote = &shared.remotes[*worker];
                let _ = remote.registry.deregister(&mut SourceFd(&fd));
                remote.registrations.fetch_sub(1, Ordering::Relaxed);
                inner.registration = None;
            }
            None => {}
        }
        let home = task.home().expect("a running coroutine has a home");
        task.shared.remotes[home].registry.register(
            &mut SourceFd(&fd),
            self.token(),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        task.shared.remotes[home]
            .registrations
            .fetch_add(1, Ordering::Relaxed);
        inner.registration = Some((task.shared.clone(), home));
        self.registered.store(ours, Ordering::Release);
        Ok(())
    }

    /// Suspends the running coroutine `task` until `dir`'s tick moves from `seen` (an
    /// edge arrived since the caller's system call) or `deadline` passes
    /// (`ErrorKind::TimedOut`).
    pub(crate) fn wait(
        &'static self,
        fd: RawFd,
        task: &TaskRef,
        dir: Direction,
        seen: u32,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        self.ensure_registered(fd, task)?;
        {
            let mut inner = self.lock();
            if self.tick(dir) != seen {
                return Ok(());
            }
            inner.waiters[dir as usize].push(task.clone());
        }
        // Removes the waiter however this ends (a timeout, or an unwind out of
        // `suspend_current`).
        let mut waiting = Waiting {
            io: self,
            task,
            dir,
            listed: true,
        };
        let moved = || self.tick(dir) != seen;
        let ready = match deadline {
            None => {
                let why = Why::io(dir == Direction::Read, fd);
                while !moved() {
                    scheduler::wait_current(why);
                }
                true
            }
            // The timer and its cancellation are `suspend_until`'s.
            Some(deadline) => {
                let why = Why::io(dir == Direction::Read, fd);
                crate::rt::suspend::suspend_until(deadline, why, moved).unwrap_or(false)
            }
        };
        if !ready {
            return Err(super::timed_out());
        }
        // The event that moved the tick takes (or took) us off the list.
        waiting.listed = false;
        Ok(())
    }
}

struct Waiting<'a> {
    io: &'static ScheduledIo,
    task: &'a TaskRef,
    dir: Direction,
    listed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.listed {
            return;
        }
        // A timeout or an unwind: nobody will take us off the list.
        let mut inner = self.io.lock();
        inner.waiters[self.dir as usize].retain(|t| !TaskRef::ptr_eq(t, self.task));
    }
}
