//! The stall watchdog: a monitor thread that reports a coroutine running too long
//! without suspending.
//!
//! A started coroutine never leaves its home worker, so one that keeps the worker's
//! thread (a CPU loop, `std::thread::sleep`, a blocking `std::net` call, a C
//! library) stalls every other coroutine homed there: they cannot move. Each worker
//! publishes an [`Activity`]: how many runs it has begun, and the [`Owner`] of the
//! coroutine it resumed last (null while it sleeps). The monitor samples them; a run
//! count unchanged with an owner set for the threshold is a stall, reported once on
//! stderr and counted in the metrics, and its end is reported when the count moves.
//! No signal interrupts the worker.
//!
//! Invariant (soundness): an inspector (the monitor, or a coroutine dump looking
//! at a busy worker) reads a published owner only between raising `inspecting` (a
//! count of inspectors) and lowering it, having loaded the pointer (`SeqCst`) after
//! raising it; before a worker lets a finished coroutine go, it clears the
//! published owner (`SeqCst`) and then waits until `inspecting` is zero. Either the monitor's load
//! comes after the clear (and sees null, or a later coroutine's owner), or the
//! worker's check comes after the raise (and the worker waits): so an owner the
//! monitor reads is alive. Every coroutine a worker resumes is alive until that
//! worker finishes it, because the worker keeps its started coroutines.
//!
//! Cost on a worker: two plain stores per run (the count and the owner), on a line
//! of its own; a clear and a load per finished coroutine; a clear when it goes to
//! sleep. Nothing when the watchdog is off but those stores.

use super::{Remote, Shared};
use crate::rt::stack::Owner;
use std::io;
use std::panic::Location;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What one worker publishes for the watchdog (module docs).
#[derive(Default)]
pub(crate) struct Activity {
    /// Runs begun, written only by the worker.
    runs: AtomicU64,
    /// The owner of the coroutine of the latest run; null while the worker sleeps
    /// and once that coroutine has finished.
    owner: AtomicPtr<Owner>,
    /// Inspectors reading `owner` now (the monitor, dumps).
    inspecting: AtomicUsize,
    /// Stalls reported on this worker (written only by the monitor).
    pub(crate) stalls: AtomicU64,
}

impl Activity {
    /// A run of the coroutine named by `owner` begins.
    #[inline(always)]
    pub(crate) fn begin_run(&self, owner: &Owner) {
        let runs = self.runs.load(Ordering::Relaxed).wrapping_add(1);
        self.runs.store(runs, Ordering::Relaxed);
        // Release: the monitor's acquire load of the pointer then sees the owner.
        self.owner
            .store(ptr::from_ref(owner).cast_mut(), Ordering::Release);
    }

    /// Runs begun so far (for the metrics).
    pub(crate) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The worker has no coroutine to run: it looks for work or sleeps.
    pub(crate) fn idle(&self) {
        self.owner.store(ptr::null_mut(), Ordering::Release);
    }

    /// The coroutine of the latest run has finished: once this returns, the monitor
    /// no longer reads its owner (module invariant).
    #[inline]
    pub(crate) fn finished(&self) {
        self.owner.store(ptr::null_mut(), Ordering::SeqCst);
        if self.inspecting.load(Ordering::SeqCst) != 0 {
            self.wait_inspection();
        }
    }

    #[cold]
    fn wait_inspection(&self) {
        while self.inspecting.load(Ordering::Acquire) != 0 {
            thread::yield_now();
        }
    }

    /// Who runs the run numbered `runs`, if it still runs (the monitor's side of the
    /// invariant).
    fn inspect(&self, runs: u64) -> Option<Stalled> {
        self.inspecting.fetch_add(1, Ordering::SeqCst);
        let owner = self.owner.load(Ordering::SeqCst);
        let stalled = if owner.is_null() || self.runs.load(Ordering::Relaxed) != runs {
            None
        } else {
            // SAFETY: loaded after `inspecting` went up and read before it goes down,
            // so the coroutine has not finished yet (module invariant); an owner is
            // immutable once its task is made, and the release store that published
            // it makes its contents visible to our load.
            let owner = unsafe { &*owner };
            Some(Stalled {
                id: owner.id,
                name: owner.name.clone(),
                spawned_at: owner.spawned_at,
            })
        };
        self.inspecting.fetch_sub(1, Ordering::Release);
        stalled
    }

    /// The coroutine running on the worker now, if any: its id, name and spawn
    /// location (for a dump of a busy worker).
    pub(crate) fn running(&self) -> Option<Stalled> {
        self.inspect(self.runs.load(Ordering::Relaxed))
    }
}

/// What the report says of a stalled coroutine (copied while it is safe to).
pub(crate) struct Stalled {
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) spawned_at: Option<&'static Location<'static>>,
}

impl Stalled {
    /// `coroutine #7 'name' (spawned at src/main.rs:10:5)`, as the overflow report
    /// names coroutines.
    fn describe(&self) -> String {
        let mut text = format!("coroutine #{}", self.id);
        if let Some(name) = &self.name {
            text.push_str(&format!(" '{name}'"));
        }
        if let Some(at) = self.spawned_at {
            text.push_str(&format!(" (spawned at {at})"));
        }
        text
    }
}

/// What the monitor saw of one worker.
struct Seen {
    runs: u64,
    /// When the monitor first saw the current run.
    since: Instant,
    /// The current run, once reported.
    stall: Option<Stalled>,
}

/// The monitor thread of one runtime.
pub(crate) struct Monitor {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Monitor {
    /// Starts watching `shared`'s workers for runs longer than `threshold`.
    pub(crate) fn start(shared: &Arc<Shared>, threshold: Duration) -> io::Result<Monitor> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new()
            .name("stackweave-watchdog".into())
            .spawn({
                let shared = shared.clone();
                let stop = stop.clone();
                move || watch(&shared, threshold, &stop)
            })?;
        Ok(Monitor { stop, thread })
    }

    /// Stops the monitor, after a last look (which reports the end of a stall that
    /// ended since the previous one).
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// How often the monitor looks at the workers: a quarter of the threshold, so a
/// stall is reported between 1 and 1.25 thresholds after it began.
fn period(threshold: Duration) -> Duration {
    (threshold / 4).clamp(Duration::from_millis(1), Duration::from_millis(250))
}

/// The monitor's loop.
fn watch(shared: &Shared, threshold: Duration, stop: &AtomicBool) {
    let period = period(threshold);
    let start = Instant::now();
    let mut seen: Vec<Seen> = (0..shared.remotes.len())
        .map(|_| Seen {
            runs: 0,
            since: start,
            stall: None,
        })
        .collect();
    loop {
        let last = stop.load(Ordering::Acquire);
        let now = Instant::now();
        for (worker, (remote, seen)) in shared.remotes.iter().zip(&mut seen).enumerate() {
            look(remote, worker, seen, threshold, now);
        }
        if last {
            return;
        }
        thread::park_timeout(period);
    }
}

/// One look at one worker.
fn look(remote: &Remote, worker: usize, seen: &mut Seen, threshold: Duration, now: Instant) {
    let activity = &remote.activity;
    let runs = activity.runs.load(Ordering::Relaxed);
    let running = !activity.owner.load(Ordering::Relaxed).is_null();
    if !running || runs != seen.runs {
        if let Some(stall) = seen.stall.take() {
            let took = now.saturating_duration_since(seen.since);
            report(&format!(
                "stackweave: {} on worker {worker} suspended or finished after a stall of about \
                 {} ms\n",
                stall.describe(),
                took.as_millis()
            ));
        }
        seen.runs = runs;
        seen.since = now;
        return;
    }
    let took = now.saturating_duration_since(seen.since);
    if seen.stall.is_some() || took < threshold {
        return;
    }
    let Some(stall) = activity.inspect(runs) else {
        return;
    };
    activity.stalls.fetch_add(1, Ordering::Relaxed);
    // The stalled coroutine is one of those homed there.
    let others = remote.homed.load(Ordering::Relaxed).saturating_sub(1);
    report(&format!(
        "stackweave: {} has run for {} ms on worker {worker} without suspending; the {others} \
         other coroutine(s) homed on that worker wait meanwhile (stall threshold {} ms). Move \
         blocking calls and long computations to stackweave::spawn_blocking, or call \
         stackweave::yield_now() now and then in long loops.\n",
        stall.describe(),
        took.as_millis(),
        threshold.as_millis()
    ));
    seen.stall = Some(stall);
}

/// Writes one report line: one formatted write, so that reports of several workers
/// (or runtimes) do not interleave; `eprint!` so that test harnesses capture it.
fn report(line: &str) {
    eprint!("{line}");
}
