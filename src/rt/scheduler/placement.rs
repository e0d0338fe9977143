//! Where an unstarted coroutine starts.
//!
//! A coroutine never leaves the worker it started on (the soundness invariant of
//! the scheduler), so the one decision that spreads work over the cores is where a
//! coroutine *starts*. This module holds that decision and the queues it feeds.
//!
//! Invariant: everything here handles **unstarted** tasks only. A task in a
//! worker's [`NextSlot`], in its `spawn_inbox` or its deque has never run: it holds
//! only its `Send` closure and a stack nothing runs on, so handing it to any worker
//! is sound. Pinned tasks ([`Placement::SameWorker`], [`Placement::Worker`]) go to
//! queues no other worker takes from (the home's run queue or inbox).
//!
//! The default policy ([`Placement::Balanced`]):
//!
//! * **Load figure.** Each worker's load is the number of started, unfinished
//!   coroutines homed there plus the unstarted ones queued for it (its deque, its
//!   spawn inbox, its next slot). Long-lived coroutines (one per connection) are what
//!   decide a server's balance, and they are exactly what this counts; it is read
//!   from atomics the owner alone writes, so reading it takes no lock.
//! * **A spawn on a worker** compares its worker's load with one other worker's
//!   (chosen at random: the power of two choices). If the other is clearly lighter
//!   ([`imbalanced`]), the coroutine goes to that worker's spawn inbox. Otherwise it
//!   stays: it goes to the worker's [`NextSlot`], displacing the previous occupant
//!   into the deque, where idle workers may steal it at once. The queued ones count:
//!   an accept loop's connections are still queued, not yet homed, when its next
//!   accept decides. Alone, this would send about every other spawn of a burst
//!   across (an inbox push and an unpark each): the burst rule below bounds that.
//! * **A burst of spawns** (many in one run of the spawning coroutine) gets a wider
//!   slack once other workers are seen draining the spawner's deque ([`Burst`]):
//!   from then on, to the end of that run, its spawns stay in the deque while the
//!   spawner's load is less than [`BURST_SLACK`] ahead, and the thieves take them in
//!   batches instead of one inbox hand-over each ([`sends_across`]). Past that
//!   lead the thieves are not keeping up (busy, or without a CPU), and the balance
//!   test sends work across as before: the spawner would otherwise start the rest
//!   itself when it blocks, and an accept loop's connections would stay on its
//!   worker for life.
//! * **The next slot** keeps the last spawn with its spawner for [`GRACE`]: a
//!   coroutine that the spawner talks to (request/reply, spawn-then-join) usually
//!   runs as soon as the spawner blocks, on the same worker, so the pair never pays
//!   a cross-CPU wake. Other workers take from the slot only once the same task has
//!   sat there for [`GRACE`] (the spawner kept computing), and from another worker's
//!   spawn inbox only if that worker is awake and has not taken from it for
//!   [`INBOX_GRACE`] (it is busy); one task per grace, so fresh work waits for its
//!   chosen worker a little, and stuck work is never left behind while a worker
//!   idles. An idle worker steals from another's deque only if it does not already
//!   home clearly more coroutines ([`imbalanced`]): a coroutine it starts stays.
//! * **A spawn from outside** the runtime's workers goes to the least-loaded worker.
//!
//! The trade-off: a pair that talks is kept together only while the workers are
//! within [`imbalanced`]'s slack; past it, spreading wins over locality. Callers who
//! know better choose [`Placement::SameWorker`] or [`Placement::Worker`].

use super::{Runnable, TaskRef};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where a new coroutine starts (see [`Builder::placement`](crate::Builder::placement)).
///
/// A coroutine never changes worker thread once it has started, so this choice
/// lasts for its whole life.
///
/// # Examples
///
/// ```
/// use stackweave::{Builder, Placement, Runtime};
///
/// let rt = Runtime::builder().workers(2).build()?;
/// let names = rt.block_on(|| {
///     // Started on the second worker, whichever worker spawns it.
///     let pinned = Builder::new()
///         .placement(Placement::Worker(1))
///         .spawn(|| std::thread::current().name().map(str::to_owned))?;
///     // Started on the spawner's own worker: a helper it talks to.
///     let near = Builder::new()
///         .placement(Placement::SameWorker)
///         .spawn(|| std::thread::current().name().map(str::to_owned))?;
///     let here = std::thread::current().name().map(str::to_owned);
///     Ok::<_, std::io::Error>((pinned.join().unwrap(), near.join().unwrap() == here))
/// })?;
/// assert_eq!(names.0.as_deref(), Some("stackweave-worker-1"));
/// assert!(names.1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Placement {
    /// The default: near the spawner while the workers are about evenly loaded
    /// (so a coroutine that talks to its spawner shares its worker), else on a less
    /// loaded worker; from outside the runtime, on the least-loaded worker. An idle
    /// worker may still start it if it waits too long for its first run.
    #[default]
    Balanced,
    /// On the spawner's worker, never elsewhere (outside the runtime's workers:
    /// like [`Balanced`](Placement::Balanced)). For a coroutine that mostly talks to
    /// its spawner, or that must share its thread-locals' thread.
    SameWorker,
    /// On the least-loaded worker at the time of the spawn, ignoring locality (an
    /// idle worker may still start it if it waits too long).
    LeastLoaded,
    /// On worker `n` (`0..workers`; the worker threads are named
    /// `stackweave-worker-n`), never elsewhere. A spawn with an index past the last
    /// worker fails with [`ErrorKind::InvalidInput`](std::io::ErrorKind::InvalidInput).
    Worker(usize),
}

/// How long a spawn waits in its spawner's next slot before an idle worker takes
/// it (see the module docs): long enough for a spawner to reach its next blocking
/// call, short against any real computation.
pub(super) const GRACE: Duration = Duration::from_micros(50);

/// How long work placed on another worker waits for it before an idle worker takes
/// it back: longer than [`GRACE`], because that worker may only be waiting for a
/// CPU (the kernel's time slices are milliseconds), and a coroutine started by the
/// wrong worker stays there for life.
pub(super) const INBOX_GRACE: Duration = Duration::from_micros(500);

/// How long an idle worker that sees fresh work queued elsewhere sleeps before it
/// looks again (the reactor's timeouts are whole milliseconds).
pub(super) const RECHECK: Duration = Duration::from_millis(1);

/// Whether a worker with load `own` should leave a new coroutine to one with load
/// `other`: the other is lighter by more than a small slack (2, so a spawner and one
/// or two helpers stay together) plus a sixteenth (so large, nearly even counts do
/// not send every other spawn across).
pub(super) fn imbalanced(own: usize, other: usize) -> bool {
    own > other + 2 + other / 16
}

/// One unstarted task a worker keeps for itself for a while: its last spawn.
///
/// The owner puts and takes; another worker takes only through
/// [`Watch::slot_ripe`]. The task is behind a mutex (a task pointer is two words,
/// too wide for one atomic); `held` mirrors its address so that emptiness and
/// identity are read without the lock.
#[derive(Default)]
pub(crate) struct NextSlot {
    task: Mutex<Option<Runnable>>,
    held: AtomicUsize,
}

fn address(task: &Runnable) -> usize {
    TaskRef::as_ptr(task.task()).cast::<()>() as usize
}

impl NextSlot {
    /// Puts `task` in the slot; returns the task it displaced, if any.
    pub(super) fn put(&self, task: Runnable) -> Option<Runnable> {
        let mut slot = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        self.held.store(address(&task), Ordering::Release);
        slot.replace(task)
    }

    /// Takes the task out of the slot, if there is one.
    pub(super) fn take(&self) -> Option<Runnable> {
        if self.held.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut slot = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        self.held.store(0, Ordering::Release);
        slot.take()
    }

    /// The address of the task in the slot (0 when empty), for identity checks.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// Spawns of one run decided by the balance test alone; past them the run is a
/// [`Burst`].
pub(super) const BURST: u32 = 8;

/// Within a burst, spawns between two looks at whether other workers have taken
/// from the spawner's deque.
pub(super) const BURST_WINDOW: u32 = 16;

/// How far ahead of the other worker a spawner's load may run while others drain
/// its deque (the burst rule): a thief's batch or two.
pub(super) const BURST_SLACK: usize = 16;

/// Whether a spawn on a worker with load `own` goes to one with load `other`:
/// [`imbalanced`], with [`BURST_SLACK`] more slack while other workers drain the
/// spawner's deque (`draining`, from [`Burst::draining`]).
pub(super) fn sends_across(own: usize, other: usize, draining: bool) -> bool {
    let slack = if draining { BURST_SLACK } else { 0 };
    imbalanced(own, other + slack)
}

/// What a worker knows of the spawns made by the coroutine it runs now, for the
/// burst rule (module docs). Owned by the worker; no other thread reads it.
///
/// Each spawn past [`BURST`] in one run counts; every [`BURST_WINDOW`] of them the
/// deque's length is compared with what it would be had nobody taken from it
/// (`expected`: its length when the run's first spawn came, plus the spawner's own
/// pushes; a worker does not pop its deque while one of its coroutines runs).
/// Shorter means other workers are draining it: from then on, to the end of the
/// run, spawns stay in it for them to take in batches unless the spawner runs
/// [`BURST_SLACK`] ahead ([`sends_across`]). Once seen, it is not looked at again
/// in that run (each look reads a line the thieves write).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Burst {
    /// The run these counts are for (the worker's run counter).
    run: u64,
    /// Spawns in that run so far.
    spawns: u32,
    /// The deque's length if nobody took from it during the run.
    expected: usize,
    /// Others took from the deque during the run.
    drained: bool,
}

impl Burst {
    /// A spawn in run `run`, with the deque `len()` long: whether other workers
    /// are draining the deque in this run (the spawn gets [`BURST_SLACK`]). `len`
    /// is called only when the answer depends on it.
    pub(super) fn draining(&mut self, run: u64, len: impl FnOnce() -> usize) -> bool {
        if self.run != run {
            *self = Burst {
                run,
                spawns: 0,
                expected: usize::MAX,
                drained: false,
            };
        }
        self.spawns += 1;
        if self.drained {
            return true;
        }
        if self.spawns == 1 {
            self.expected = len();
        } else if self.spawns > BURST && (self.spawns - BURST) % BURST_WINDOW == 1 {
            self.drained = len() < self.expected;
        }
        self.drained
    }

    /// The spawner pushed one task on its own deque.
    pub(super) fn pushed(&mut self) {
        self.expected = self.expected.saturating_add(1);
    }
}

/// How long fresh work elsewhere waits before an idle worker takes it even though
/// that worker already homes clearly more coroutines (see [`imbalanced`]): beyond a
/// few of the kernel's time slices, the other worker is busy, not merely waiting
/// for a CPU.
pub(super) const STUCK: Duration = Duration::from_millis(5);

/// What an idle worker remembers of one other worker, to leave that worker's fresh
/// work to it for a while (module docs).
#[derive(Default, Clone, Copy)]
pub(super) struct Watch {
    /// The task seen in its next slot, and since when.
    slot: usize,
    slot_since: Option<Instant>,
    /// Its spawn-inbox take count while the inbox was seen non-empty, and since when.
    taken: u64,
    inbox_since: Option<Instant>,
}

impl Watch {
    /// How long the task now in the other worker's slot (`held`; 0 when empty) has
    /// been seen there.
    pub(super) fn slot_waited(&mut self, held: usize, now: Instant) -> Option<Duration> {
        if held == 0 {
            self.slot_since = None;
            return None;
        }
        match self.slot_since {
            Some(since) if self.slot == held => Some(now.duration_since(since)),
            _ => {
                self.slot = held;
                self.slot_since = Some(now);
                Some(Duration::ZERO)
            }
        }
    }

    /// How long the other worker's spawn inbox has been seen non-empty (`pending`)
    /// with the worker awake and taking nothing from it (`taken` unchanged).
    pub(super) fn inbox_waited(
        &mut self,
        pending: bool,
        taken: u64,
        now: Instant,
    ) -> Option<Duration> {
        if !pending {
            self.inbox_since = None;
            return None;
        }
        match self.inbox_since {
            Some(since) if self.taken == taken => Some(now.duration_since(since)),
            _ => {
                self.taken = taken;
                self.inbox_since = Some(now);
                Some(Duration::ZERO)
            }
        }
    }

    /// Whether an idle worker should take the other worker's fresh work now; `heavier`
    /// says the idle worker already homes clearly more coroutines.
    pub(super) fn ripe(
        &mut self,
        held: usize,
        pending: bool,
        taken: u64,
        heavier: bool,
        now: Instant,
    ) -> bool {
        let (slot_grace, inbox_grace) = if heavier {
            (STUCK, STUCK)
        } else {
            (GRACE, INBOX_GRACE)
        };
        let slot = self.slot_waited(held, now).is_some_and(|d| d >= slot_grace);
        let inbox = self
            .inbox_waited(pending, taken, now)
            .is_some_and(|d| d >= inbox_grace);
        slot || inbox
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `n` spawns of run `run` on a simulated deque of length `len`, `taken`
    /// of its tasks taken by others first; returns what each spawn was told.
    fn spawns(b: &mut Burst, run: u64, n: u32, len: &mut usize, taken: usize) -> Vec<bool> {
        *len -= taken;
        (0..n)
            .map(|_| {
                let draining = b.draining(run, || *len);
                b.pushed();
                *len += 1;
                draining
            })
            .collect()
    }

    #[test]
    fn a_burst_is_draining_once_others_take_from_the_deque() {
        let mut b = Burst::default();
        let mut len = 4;
        // The first spawns of a run, and every spawn while nobody takes from the
        // deque, get the balance test's usual slack.
        assert!(spawns(&mut b, 1, BURST + BURST_WINDOW, &mut len, 0)
            .iter()
            .all(|l| !l));
        // Others took some: from the next look on, the run's spawns get the
        // burst's slack, and keep it even if nobody takes any more.
        let told = spawns(&mut b, 1, 2 * BURST_WINDOW, &mut len, 5);
        assert!(told.iter().all(|l| *l));
        assert!(spawns(&mut b, 1, 100, &mut len, 0).iter().all(|l| *l));
        // A new run starts over.
        assert!(!spawns(&mut b, 2, 1, &mut len, 0)[0]);
        // Taken before the run's first spawn does not count.
        let mut b = Burst::default();
        let mut len = 10;
        assert!(spawns(&mut b, 1, BURST + BURST_WINDOW, &mut len, 3)
            .iter()
            .all(|l| !l));
    }

    #[test]
    fn a_draining_burst_still_sends_across_once_far_ahead() {
        // The spawner of a burst keeps its spawns while the thieves keep up...
        assert!(sends_across(4, 0, false));
        assert!(!sends_across(4, 0, true));
        assert!(!sends_across(BURST_SLACK + 3, 0, true));
        // ...but not once it runs the burst's slack ahead (plus the usual slack):
        // it would start the rest itself, for life.
        assert!(sends_across(BURST_SLACK + 4, 0, true));
        assert!(!sends_across(40 + BURST_SLACK + 5, 40, true));
        assert!(sends_across(40 + BURST_SLACK + 6, 40, true));
    }

    #[test]
    fn imbalance_needs_more_than_the_slack() {
        assert!(!imbalanced(1, 0), "a spawner and its helper stay together");
        assert!(!imbalanced(2, 0));
        assert!(imbalanced(3, 0));
        assert!(!imbalanced(87, 80), "nearly even large counts stay");
        assert!(imbalanced(88, 80));
    }

    #[test]
    fn slot_ripens_only_for_the_same_task_after_the_grace() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        let ripe = |w: &mut Watch, held, t| w.ripe(held, false, 0, false, t);
        assert!(!ripe(&mut w, 0x10, t0));
        assert!(!ripe(&mut w, 0x10, t0 + GRACE / 2));
        assert!(
            !ripe(&mut w, 0x20, t0 + GRACE),
            "another task: the clock restarts"
        );
        assert!(!ripe(&mut w, 0x20, t0 + GRACE + GRACE / 2));
        assert!(ripe(&mut w, 0x20, t0 + 2 * GRACE));
        assert!(!ripe(&mut w, 0, t0 + 3 * GRACE));
    }

    #[test]
    fn inbox_ripens_only_while_nothing_is_taken() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        let ripe = |w: &mut Watch, taken, t| w.ripe(0, true, taken, false, t);
        assert!(!ripe(&mut w, 5, t0));
        assert!(!ripe(&mut w, 5, t0 + GRACE), "the inbox waits longer");
        assert!(!ripe(&mut w, 6, t0 + INBOX_GRACE), "it took one: restart");
        assert!(ripe(&mut w, 6, t0 + 2 * INBOX_GRACE));
        assert!(!w.ripe(0, false, 6, false, t0 + 3 * INBOX_GRACE));
    }

    #[test]
    fn a_heavier_thief_waits_until_the_work_is_stuck() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        assert!(!w.ripe(0x10, true, 1, true, t0));
        assert!(!w.ripe(0x10, true, 1, true, t0 + INBOX_GRACE));
        assert!(w.ripe(0x10, true, 1, true, t0 + STUCK));
    }
}
