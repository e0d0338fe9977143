//! The scheduler's side of the coroutine dump (`Runtime::dump`): each worker lists
//! its own coroutines, and each suspended coroutine records its own backtrace, on
//! its own stack, on its home worker.
//!
//! How: the dumping thread posts a [`DumpRequest`] to every worker and wakes it.
//! A worker serves it between two runs (never in the middle of one: at a fairness
//! tick, or when it runs out of work, or wakes from its sleep): it takes in its
//! inbox, then resumes every suspended coroutine homed on it with
//! [`Resume::Dump`]. The code right after the switch inside `suspend_current` sees
//! that value, walks its own stack with an ordinary unwinder ([`capture`]: it runs
//! on the coroutine's stack, so nothing unwinds a foreign stack and nothing runs in
//! a signal handler), stores the return addresses in a thread-local buffer, and
//! switches straight back with `Request::Dumped`, before any of the coroutine's own
//! code runs. Its wait registration (waiter list, reactor interest, timer) is not
//! touched.
//!
//! Invariant (soundness): a worker resumes a coroutine for a dump only while it
//! holds the right to run it, as for any run (state module). For one queued on its
//! run queue it holds its `Runnable` already; the dump resumes it without
//! `begin_run` and puts it back where it was, its state word unchanged. For an
//! idle one it first claims the right with
//! [`Runnable::claim_for_dump`](super::Runnable::claim_for_dump) (`Idle` →
//! `Scheduled`, the step a wake takes), and after the capture gives it back with
//! `try_idle`: a wake that came in meanwhile left `Notified`, so `try_idle` fails
//! and the coroutine is queued, as after a run that suspended while woken. No
//! wake is lost and none is invented: the coroutine itself never returns from its
//! suspension point during a dump resume, so it cannot observe one. A coroutine
//! whose claim fails was woken since the inbox was taken in: it is reported ready,
//! without a backtrace.
//!
//! A worker that is busy (a coroutine runs on it without suspending) does not serve
//! the request; the dumping thread waits for it only until its deadline, and
//! reports that worker's coroutines as not captured.

use super::run_queue::RunQueue;
use super::started::Started;
use super::state::{Resume, Runnable};
use super::task::{Request, Task};
use super::task_ref::TaskRef;
use super::wait::{coarse_now, WaitKind, Why};
use super::Remote;
use crate::rt::context::{Context, Suspender};
use crate::rt::waiter::Waiter;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Frames kept per backtrace, at most.
const MAX_FRAMES: usize = 96;
/// Stack a capture needs below the suspended frame (the unwinder's own frames); a
/// coroutine suspended with less left is not captured, rather than overflowing.
const CAPTURE_HEADROOM: usize = 12 * 1024;

/// Where one worker is with a request.
const NOT_STARTED: u8 = 0;
const SERVING: u8 = 1;
const DONE: u8 = 2;

/// One dump, as posted to every worker.
pub(crate) struct DumpRequest {
    /// Per worker: `NOT_STARTED`, `SERVING`, `DONE`.
    progress: Box<[AtomicU8]>,
    /// Per worker: what it found, once `DONE`.
    results: Mutex<Vec<Option<Arc<WorkerDump>>>>,
    /// Set by the dumper when it stops waiting: workers that have not started then
    /// skip the work.
    abandoned: AtomicBool,
    /// The dumping coroutine or thread.
    waiter: Arc<Waiter>,
}

/// The pending dump requests of one worker (in its `Remote`).
#[derive(Default)]
pub(crate) struct DumpSlot {
    /// A request is waiting: the worker's cheap check, between runs.
    pub(crate) pending: AtomicBool,
    requests: Mutex<Vec<Arc<DumpRequest>>>,
}

/// What a worker found: its started coroutines, and their distinct stacks.
pub(crate) struct WorkerDump {
    pub(crate) entries: Vec<RawEntry>,
    /// Distinct stacks: return addresses, innermost first.
    pub(crate) stacks: Vec<Box<[usize]>>,
    /// Unstarted coroutines queued on this worker (deque and next slot).
    pub(crate) unstarted: usize,
    /// When the worker served the request, on the coarse clock.
    pub(crate) now: u64,
}

/// One started coroutine, as its worker found it.
pub(crate) struct RawEntry {
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) spawned_at: Option<&'static Location<'static>>,
    /// Waiting (it was idle), else ready.
    pub(crate) waiting: bool,
    pub(crate) why: Option<Why>,
    /// When its wait began, on the coarse clock.
    pub(crate) since: u64,
    /// The peer of a socket it waits on.
    pub(crate) peer: Option<SocketAddr>,
    /// Whether the socket it waits to read is a listening one (an accept).
    pub(crate) listening: bool,
    pub(crate) stack: Result<u32, &'static str>,
}

impl DumpRequest {
    /// A request for `workers` workers, from the calling coroutine or thread.
    pub(crate) fn new(workers: usize) -> Arc<DumpRequest> {
        Arc::new(DumpRequest {
            progress: (0..workers).map(|_| AtomicU8::new(NOT_STARTED)).collect(),
            results: Mutex::new((0..workers).map(|_| None).collect()),
            abandoned: AtomicBool::new(false),
            waiter: Waiter::current(),
        })
    }

    /// Posts the request to every worker and wakes them.
    pub(crate) fn post(self: &Arc<DumpRequest>, remotes: &[Remote]) {
        for remote in remotes {
            lock(&remote.dump.requests).push(self.clone());
            remote.dump.pending.store(true, Ordering::Release);
            remote.parker.unpark();
        }
    }

    /// Waits until every worker has served the request, or until `deadline` for
    /// those that have not begun (a worker that has begun finishes: serving is
    /// bounded work). Returns each worker's result, `None` for a busy one.
    pub(crate) fn wait(&self, deadline: std::time::Instant) -> Vec<Option<Arc<WorkerDump>>> {
        let mut timed_out = false;
        loop {
            self.waiter.rearm();
            let states: Vec<u8> = self
                .progress
                .iter()
                .map(|p| p.load(Ordering::Acquire))
                .collect();
            let serving = states.contains(&SERVING);
            let waiting = states.contains(&NOT_STARTED) && !timed_out;
            if !serving && !waiting {
                break;
            }
            let until = if waiting { Some(deadline) } else { None };
            if !self.waiter.block(until, Why::new(WaitKind::Dump))
                && std::time::Instant::now() >= deadline
            {
                timed_out = true;
                self.abandoned.store(true, Ordering::Release);
            }
        }
        // Cloned, not taken: a worker that begins after we stopped waiting still
        // finds its slot.
        lock(&self.results).clone()
    }

    fn finish(&self, worker: usize, dump: Arc<WorkerDump>) {
        lock(&self.results)[worker] = Some(dump);
        self.progress[worker].store(DONE, Ordering::Release);
        // A notification still pending from another worker wakes the dumper just
        // the same: it re-arms, then looks at every worker's progress again.
        self.waiter.notify();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The worker-side pieces a dump needs (lent by the worker's core).
pub(super) struct WorkerView<'a> {
    pub(super) index: usize,
    pub(super) remote: &'a Remote,
    pub(super) started: &'a RefCell<Started>,
    pub(super) run_queue: &'a RefCell<RunQueue<Runnable>>,
    pub(super) unstarted: usize,
}

/// Serves the pending dump requests of the calling worker (module docs). Called by
/// the worker between runs, when `pending` is set.
#[cold]
#[inline(never)]
pub(super) fn serve(view: WorkerView<'_>, take_inbox: impl FnOnce() -> bool) {
    view.remote.dump.pending.store(false, Ordering::Relaxed);
    let requests: Vec<Arc<DumpRequest>> = std::mem::take(&mut *lock(&view.remote.dump.requests));
    let requests: Vec<_> = requests
        .into_iter()
        .filter(|r| {
            let live = !r.abandoned.load(Ordering::Acquire);
            if live {
                r.progress[view.index].store(SERVING, Ordering::Release);
            }
            live
        })
        .collect();
    if requests.is_empty() {
        return;
    }
    let dump = Arc::new(collect(&view, take_inbox));
    for request in requests {
        request.finish(view.index, dump.clone());
    }
}

/// Lists and captures the worker's started coroutines.
fn collect(view: &WorkerView<'_>, take_inbox: impl FnOnce() -> bool) -> WorkerDump {
    take_inbox();
    let mut interned: HashMap<Box<[usize]>, u32> = HashMap::new();
    let mut dump = WorkerDump {
        entries: Vec::new(),
        stacks: Vec::new(),
        unstarted: view.unstarted,
        now: coarse_now(),
    };
    let mut seen: HashMap<*const Task, ()> = HashMap::new();
    // The ready ones: we hold their `Runnable`s; each goes back in its place.
    let mut queue = view.run_queue.borrow_mut().take_all();
    for runnable in queue.iter_mut() {
        seen.insert(TaskRef::as_ptr(runnable.task()), ());
        let stack = capture_runnable(runnable, &mut dump, &mut interned);
        dump.entries.push(entry(runnable.task(), false, stack));
    }
    {
        // Queued during the captures (wakes of this worker's own coroutines) go
        // behind the ones that were waiting already.
        let mut run_queue = view.run_queue.borrow_mut();
        let pushed = run_queue.take_all();
        run_queue.extend(queue);
        run_queue.extend(pushed);
    }
    let tasks: Vec<TaskRef> = view.started.borrow().tasks().cloned().collect();
    for task in &tasks {
        if seen.contains_key(&TaskRef::as_ptr(task)) {
            continue;
        }
        let Some(mut runnable) = Runnable::claim_for_dump(task) else {
            // Woken since the inbox was taken in: its `Runnable` is on its way.
            dump.entries
                .push(entry(task, false, Err("woken during the dump")));
            continue;
        };
        let stack = capture_runnable(&mut runnable, &mut dump, &mut interned);
        let mut e = entry(task, true, stack);
        // SAFETY: we hold the right to run the task and it is suspended (the wait
        // module's invariant); the borrow ends here.
        let record = unsafe { task.wait_record() };
        e.why = record.why;
        e.since = record.since;
        if let Some(why) = record.why {
            if matches!(why.kind, WaitKind::Read | WaitKind::Write) {
                e.peer = peer_addr(why.fd);
                e.listening = e.peer.is_none()
                    && crate::rt::sockopt::get_int(why.fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)
                        .is_ok_and(|on| on != 0);
            }
        }
        dump.entries.push(e);
        // Give the right back; a wake that came in meanwhile keeps it (module docs).
        if let Some(woken) = runnable.try_idle() {
            view.run_queue.borrow_mut().push_back(woken);
        }
    }
    dump
}

fn entry(task: &Task, waiting: bool, stack: Result<u32, &'static str>) -> RawEntry {
    RawEntry {
        id: task.owner.id,
        name: task.owner.name.clone(),
        spawned_at: task.owner.spawned_at,
        waiting,
        why: None,
        since: 0,
        peer: None,
        listening: false,
        stack,
    }
}

/// Resumes `runnable`'s coroutine for a capture and interns what it recorded.
fn capture_runnable(
    runnable: &mut Runnable,
    dump: &mut WorkerDump,
    interned: &mut HashMap<Box<[usize]>, u32>,
) -> Result<u32, &'static str> {
    let Some(context) = runnable.worker_part().context.as_mut() else {
        return Err("not started");
    };
    let context: *mut Context = context;
    FRAMES.with(|f| f.borrow_mut().clear());
    // SAFETY: we hold the right to run the task (module invariant); its context is
    // started, suspended in `suspend_current` and not finished (finished tasks
    // leave the started set). The coroutine answers `Resume::Dump` by recording its
    // stack and switching straight back without touching the worker's part, so
    // this pointer stays valid and unaliased across the resume.
    let request = unsafe { (*context).resume(Resume::Dump as usize) };
    debug_assert_eq!(Request::from_raw(request), Request::Dumped);
    FRAMES.with(|f| {
        let frames = f.borrow();
        match OUTCOME.get() {
            Some(reason) => Err(reason),
            None => {
                let next = dump.stacks.len() as u32;
                let id = *interned.entry(frames.as_slice().into()).or_insert(next);
                if id == next {
                    dump.stacks.push(frames.as_slice().into());
                }
                Ok(id)
            }
        }
    })
}

thread_local! {
    /// The return addresses a capture recorded (innermost first): written by the
    /// coroutine, read by its worker after the switch back; one thread.
    static FRAMES: RefCell<Vec<usize>> = RefCell::new(Vec::with_capacity(MAX_FRAMES));
    /// Why the last capture recorded nothing, if it did not.
    static OUTCOME: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// The coroutine's side of a dump resume (module docs): records this stack, then
/// switches back to the worker; returns the worker's next resume value. Runs on
/// the coroutine's stack, inside `suspend_current`, and never unwinds.
#[cold]
#[inline(never)]
pub(super) fn capture(suspender: Suspender) -> usize {
    let outcome = if !suspender.is_current() {
        // Suspended from a generator's stack, which the coroutine runs inside.
        Some("suspended inside a generator")
    } else if suspender.headroom() < CAPTURE_HEADROOM {
        Some("too little stack left to walk it")
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| record(suspender)))
            .unwrap_or(Some("the unwinder panicked"))
    };
    OUTCOME.set(outcome);
    // SAFETY: we run on the coroutine's own stack, resumed by its home worker
    // (`capture` is only reached from `suspend_current`'s switch).
    unsafe { suspender.suspend(Request::Dumped as usize) }
}

/// Walks this coroutine's stack into `FRAMES`, stopping where the walk leaves the
/// coroutine's stack for its resumer's (the switch's CFI links the two).
fn record(suspender: Suspender) -> Option<&'static str> {
    FRAMES.with(|f| {
        let mut frames = f.borrow_mut();
        let mut inside = false;
        backtrace::trace(|frame| {
            let sp = frame.sp() as usize;
            if sp != 0 && suspender.contains(sp) {
                inside = true;
            } else if inside {
                // Past the coroutine's base frame: the worker's stack.
                return false;
            }
            frames.push(frame.ip() as usize);
            frames.len() < MAX_FRAMES
        });
    });
    None
}

/// The peer address of socket `fd`, if it is a connected IP socket.
fn peer_addr(fd: i32) -> Option<SocketAddr> {
    if fd < 0 {
        return None;
    }
    // SAFETY: all-zero bytes are a valid `sockaddr_storage` (plain integers).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes; getpeername writes at most that
    // and fails harmlessly on a descriptor that is not a connected socket.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a `sockaddr_in` (family AF_INET), which
            // `sockaddr_storage` is large enough and aligned for.
            let a =
                unsafe { *(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for `sockaddr_in6`.
            let a = unsafe {
                *(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The names of the raw frames a capture of a parked coroutine recorded.
    fn raw_names() -> Vec<String> {
        let rt = crate::Runtime::builder().workers(1).build().unwrap();
        let parked = rt.spawn(crate::park);
        let names = rt.block_on(|| loop {
            let shared = super::super::current_runtime().unwrap();
            let request = DumpRequest::new(1);
            request.post(&shared.remotes);
            let found = request.wait(Instant::now() + Duration::from_secs(300));
            let found = found[0].clone().expect("the worker served the dump");
            // The parked coroutine, not this one (which waits for the dump).
            let Some(entry) = found
                .entries
                .iter()
                .find(|e| e.waiting && e.why.is_some_and(|w| w.kind == WaitKind::Park))
            else {
                continue;
            };
            let frames = &found.stacks[entry.stack.expect("captured") as usize];
            let mut names = Vec::new();
            for &ip in frames.iter() {
                backtrace::resolve((ip - 1) as *mut std::ffi::c_void, |s| {
                    names.push(s.name().map_or_else(String::new, |n| format!("{n:#}")));
                });
            }
            break names;
        });
        parked.coroutine().unpark();
        parked.join().unwrap();
        names
    }

    #[test]
    fn the_walk_stops_at_the_coroutine_base() {
        let names = raw_names();
        assert!(names.len() < MAX_FRAMES, "{names:#?}");
        // It went through the switch into the code that suspended...
        assert!(
            names.iter().any(|n| n.contains("scheduler::dump::capture")),
            "{names:#?}"
        );
        assert!(names.iter().any(|n| n.contains("park")), "{names:#?}");
        // ...down to the coroutine's entry, and not into the worker's stack.
        assert!(
            names.iter().any(|n| n.contains("CoroutineBody")),
            "{names:#?}"
        );
        assert!(
            !names
                .iter()
                .any(|n| n.contains("run_worker") || n.contains("serve")),
            "{names:#?}"
        );
        // The base frame: the hand-written trampoline, or corosensei's.
        let base = if crate::rt::context::BACKEND == "corosensei" {
            "stack_init_trampoline"
        } else {
            "stackweave_trampoline"
        };
        assert!(names.last().is_some_and(|n| n.contains(base)), "{names:#?}");
    }
}
