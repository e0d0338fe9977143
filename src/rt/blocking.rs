//! A small pool of threads for calls that block the OS thread (name resolution),
//! so that no worker ever blocks on them.
//!
//! Invariant: every job submitted runs exactly once, on a pool thread (or on the
//! submitting thread when no pool thread exists and none can be started); a job
//! owns everything it uses (`'static`), so its submitter may be gone by the time it
//! runs (`spawn_blocking`, a layer above, parks the calling coroutine until the
//! job has filled its slot). The pool starts threads on demand, up to
//! [`MAX_THREADS`] (or the configured maximum); a thread with nothing to do for
//! [`IDLE_TIMEOUT`] exits. Jobs beyond the threads wait in a queue, in order.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The most threads the pool runs at once, unless configured.
pub(crate) const MAX_THREADS: usize = 16;
/// How long an idle pool thread waits for a job before it exits.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A job for the pool: it owns everything it uses.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<State>,
    available: Condvar,
}

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// Threads running a job.
    busy: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        queue: VecDeque::new(),
        threads: 0,
        idle: 0,
        busy: 0,
    }),
    available: Condvar::new(),
};

/// Threads of the pool, and how many of them run a job, for the metrics.
pub(crate) fn thread_counts() -> (usize, usize) {
    let state = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
    (state.threads, state.busy)
}

/// Sets the most threads the pool may run at once (at least 1).
pub(crate) fn set_max_threads(n: usize) {
    MAX.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

static MAX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(MAX_THREADS);

/// Queues `job` for a pool thread, starting one if none is idle and the maximum
/// allows (with no thread at all, runs it on the calling thread).
pub(crate) fn submit(job: Job) {
    let mut state = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
    state.queue.push_back(job);
    if state.idle > 0 {
        POOL.available.notify_one();
        return;
    }
    if state.threads < MAX.load(std::sync::atomic::Ordering::Relaxed) {
        let spawned = std::thread::Builder::new()
            .name("stackweave-blocking".into())
            .spawn(work);
        if spawned.is_ok() {
            state.threads += 1;
        }
        // If no thread could be started, the job waits for a running one; with
        // none running at all, run it here rather than never.
        else if state.threads == 0 {
            let job = state.queue.pop_back().expect("just pushed");
            drop(state);
            job();
        }
    }
}

fn work() {
    let mut state = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        // Threads started under a higher limit stay, but no more than the current
        // limit run jobs at once.
        let max = MAX.load(std::sync::atomic::Ordering::Relaxed);
        if state.busy < max {
            if let Some(job) = state.queue.pop_front() {
                state.busy += 1;
                drop(state);
                job();
                state = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
                state.busy -= 1;
                continue;
            }
        }
        state.idle += 1;
        let (next, timeout) = POOL
            .available
            .wait_timeout(state, IDLE_TIMEOUT)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if timeout.timed_out() && state.queue.is_empty() {
            state.threads -= 1;
            return;
        }
    }
}
