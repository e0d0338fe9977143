//! Coroutines of a runtime, with the API of `std::thread`.
//!
//! [`spawn`], [`Builder`], [`JoinHandle`], [`current`], [`park`], [`yield_now`] and
//! [`Coroutine`] mirror their `std::thread` namesakes: a thread-per-task program
//! ports by changing its `use` lines. Every blocking call here suspends only the
//! calling coroutine; called from a plain thread, it blocks that thread, like std.
//!
//! Invariant: a coroutine's result travels through its `Packet`, which lives in the
//! coroutine's task (one allocation with its closure), written once by the coroutine
//! (or by the runtime, if it is torn down first) before `done` is set; a joiner
//! registers as the packet's waiter under the waiter lock and re-checks `done`
//! there, so the completion either sees the waiter or the joiner sees `done`.

mod body;
mod join;
pub(crate) mod local;

use crate::rt::scheduler::{WaitKind, Why};
use body::CoroutineBody;
pub use join::JoinHandle;

pub use crate::rt::scheduler::Placement;
use crate::rt::scheduler::{
    self, current_task, suspend_current, Request, Runnable, Shared, Task, TaskRef,
};
use crate::rt::stack::{self, Owner};
pub use crate::rt::unwind::{Cancelled, Unwound};
use crate::runtime;
use std::fmt;
use std::io;
use std::num::NonZeroU64;
use std::panic;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A unique identifier of a coroutine (or, for [`current`] outside a coroutine, of
/// a thread).
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| stackweave::current().id());
/// let id = h.coroutine().id();
/// assert_eq!(h.join().unwrap(), id);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoroutineId(NonZeroU64);

impl CoroutineId {
    /// The id numbered `id` (as `as_u64` gives it; 0, which no coroutine has,
    /// becomes 1).
    pub(crate) fn from_raw(id: u64) -> CoroutineId {
        CoroutineId(NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN))
    }

    fn next() -> CoroutineId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        CoroutineId(NonZeroU64::new(id).expect("coroutine ids do not wrap"))
    }

    /// The id as a number.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(stackweave::current().id().as_u64() > 0);
    /// ```
    pub fn as_u64(&self) -> u64 {
        self.0.get()
    }
}

/// A handle to a coroutine, like [`std::thread::Thread`]: cheap to clone, `Send`,
/// and the way to [`unpark`](Coroutine::unpark) it.
///
/// # Examples
///
/// ```
/// let h = stackweave::Builder::new()
///     .name("worker".into())
///     .spawn(|| stackweave::current().name().map(str::to_owned))?;
/// assert_eq!(h.coroutine().name(), Some("worker"));
/// assert_eq!(h.join().unwrap().as_deref(), Some("worker"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Coroutine {
    inner: Kind,
}

#[derive(Clone)]
enum Kind {
    Task(TaskRef),
    Thread(thread::Thread, CoroutineId),
}

impl Coroutine {
    fn task(task: TaskRef) -> Coroutine {
        Coroutine {
            inner: Kind::Task(task),
        }
    }

    /// The task, for a coroutine's handle.
    #[cfg(test)]
    pub(crate) fn as_task(&self) -> Option<&TaskRef> {
        match &self.inner {
            Kind::Task(task) => Some(task),
            Kind::Thread(..) => None,
        }
    }

    /// This coroutine's id.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = stackweave::spawn(|| {});
    /// let b = stackweave::spawn(|| {});
    /// assert_ne!(a.coroutine().id(), b.coroutine().id());
    /// ```
    pub fn id(&self) -> CoroutineId {
        match &self.inner {
            Kind::Task(task) => {
                CoroutineId(NonZeroU64::new(task.owner.id).expect("coroutine ids are not zero"))
            }
            Kind::Thread(_, id) => *id,
        }
    }

    /// This coroutine's name, if it was given one with [`Builder::name`] (for a
    /// thread: the thread's name).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = stackweave::spawn(|| {});
    /// assert_eq!(h.coroutine().name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        match &self.inner {
            Kind::Task(task) => task.owner.name.as_deref(),
            Kind::Thread(thread, _) => thread.name(),
        }
    }

    /// Makes the coroutine's pending or next [`park`] return. An unpark that comes
    /// before the park is not lost; several unparks before one park count as one.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = stackweave::spawn(|| {
    ///     stackweave::park(); // returns once unparked
    ///     "unparked"
    /// });
    /// h.coroutine().unpark();
    /// assert_eq!(h.join().unwrap(), "unparked");
    /// ```
    pub fn unpark(&self) {
        match &self.inner {
            Kind::Task(task) => {
                task.unparked.store(true, Ordering::Release);
                task.wake();
            }
            Kind::Thread(thread, _) => thread.unpark(),
        }
    }
}

impl fmt::Debug for Coroutine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coroutine")
            .field("id", &self.id())
            .field("name", &self.name())
            .finish()
    }
}

/// A handle to the running coroutine; outside a coroutine, to the running thread
/// (its [`unpark`](Coroutine::unpark) unparks the thread).
///
/// # Examples
///
/// ```
/// let me = stackweave::spawn(|| stackweave::current().id());
/// let id = me.coroutine().id();
/// assert_eq!(me.join().unwrap(), id);
/// ```
pub fn current() -> Coroutine {
    match current_task() {
        Some(task) => Coroutine::task(task),
        None => {
            thread_local! {
                static THREAD_ID: CoroutineId = CoroutineId::next();
            }
            Coroutine {
                inner: Kind::Thread(thread::current(), THREAD_ID.with(|id| *id)),
            }
        }
    }
}

/// Blocks the running coroutine until its handle is [unparked](Coroutine::unpark),
/// like [`std::thread::park`]; outside a coroutine, parks the thread.
///
/// If an unpark came since the last park, returns at once (consuming it).
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| {
///     stackweave::current().unpark(); // token stored
///     stackweave::park(); // consumes it, returns at once
/// });
/// h.join().unwrap();
/// ```
pub fn park() {
    park_for(Why::new(WaitKind::Park));
}

/// [`park`], recording `why` for the coroutine dump.
pub(crate) fn park_for(why: Why) {
    match current_task() {
        Some(task) => {
            while !task.unparked.swap(false, Ordering::AcqRel) {
                scheduler::wait_current(why);
            }
        }
        None => thread::park(),
    }
}

/// Blocks the running coroutine until it is [unparked](Coroutine::unpark) or
/// `timeout` has passed, like [`std::thread::park_timeout`]; outside a coroutine,
/// parks the thread.
///
/// As with std, a return does not say which happened (use a flag, or a channel);
/// a pending unpark is consumed.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let h = stackweave::spawn(|| {
///     let start = Instant::now();
///     stackweave::park_timeout(Duration::from_millis(20)); // nobody unparks us
///     start.elapsed()
/// });
/// assert!(h.join().unwrap() >= Duration::from_millis(20));
/// ```
pub fn park_timeout(timeout: Duration) {
    match current_task() {
        Some(task) => {
            let Some(deadline) = Instant::now().checked_add(timeout) else {
                return park();
            };
            crate::time::suspend_until(deadline, Why::new(WaitKind::Park), || {
                task.unparked.swap(false, Ordering::AcqRel)
            });
        }
        None => thread::park_timeout(timeout),
    }
}

/// Lets the other ready coroutines of this worker run before the caller continues;
/// outside a coroutine, [`std::thread::yield_now`].
///
/// # Examples
///
/// ```
/// let h = stackweave::spawn(|| {
///     for _ in 0..3 {
///         stackweave::yield_now();
///     }
/// });
/// h.join().unwrap();
/// ```
#[inline]
pub fn yield_now() {
    if !suspend_current(Request::Yield) {
        thread::yield_now();
    }
}

/// Spawns a coroutine running `f`, like [`std::thread::spawn`], and returns its
/// handle.
///
/// Inside a runtime's coroutine, the new coroutine joins the same runtime; anywhere
/// else it runs on the default runtime, started on first use with one worker per
/// available CPU (or `STACKWEAVE_WORKERS`).
///
/// `spawn` is safe because a coroutine never changes OS thread once it has started:
/// its stack may hold anything, but only the `Send` closure ever crosses threads.
///
/// # Panics
///
/// If no stack can be allocated; use [`Builder::spawn`] to get the error instead.
///
/// # Examples
///
/// ```
/// let handles: Vec<_> = (0..10).map(|i| stackweave::spawn(move || i * i)).collect();
/// let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(sum, 285);
/// ```
///
/// The closure must be `Send`: this does not compile.
///
/// ```compile_fail
/// let rc = std::rc::Rc::new(5);
/// stackweave::spawn(move || *rc);
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn(f)
        .expect("failed to spawn a coroutine")
}

/// Configures a coroutine before spawning it, like [`std::thread::Builder`].
///
/// # Examples
///
/// ```
/// let h = stackweave::Builder::new()
///     .name("parser".to_string())
///     .stack_size(64 * 1024)
///     .spawn(|| 6 * 7)?;
/// assert_eq!(h.join().unwrap(), 42);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    placement: Placement,
}

impl Builder {
    /// A builder with no name and the runtime's stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the coroutine: shown in panic messages, stack overflow reports and
    /// [`Coroutine::name`].
    pub fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    /// The usable size of the coroutine's stack in bytes (rounded up to pages; see
    /// [`stack::DEFAULT_STACK_SIZE`](crate::stack::DEFAULT_STACK_SIZE)).
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Where the coroutine starts: [`Placement::Balanced`] unless set. A coroutine
    /// never changes worker once started, so this lasts its whole life.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::{Builder, Placement};
    ///
    /// // A helper that answers its spawner's requests: keep the pair on one worker.
    /// let (to_helper, requests) = stackweave::sync::mpsc::channel::<u32>();
    /// let (to_spawner, replies) = stackweave::sync::mpsc::channel::<u32>();
    /// let answered = stackweave::spawn(move || {
    ///     let helper = Builder::new()
    ///         .placement(Placement::SameWorker)
    ///         .spawn(move || {
    ///             for n in requests {
    ///                 to_spawner.send(n * 2).unwrap();
    ///             }
    ///         })
    ///         .unwrap();
    ///     let sum: u32 = (1..=10).map(|n| {
    ///         to_helper.send(n).unwrap();
    ///         replies.recv().unwrap()
    ///     }).sum();
    ///     drop(to_helper);
    ///     helper.join().unwrap();
    ///     sum
    /// });
    /// assert_eq!(answered.join().unwrap(), 110);
    /// ```
    pub fn placement(mut self, placement: Placement) -> Builder {
        self.placement = placement;
        self
    }

    /// Spawns the coroutine on the current runtime (the default one outside any).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::OutOfMemory`] when no stack can be had (memory or memory maps
    /// exhausted); [`io::ErrorKind::InvalidInput`] for a [`Placement::Worker`] index
    /// the runtime does not have; an error of kind [`io::ErrorKind::Other`] whose
    /// payload is a [`RuntimeShutdown`](crate::runtime::RuntimeShutdown) if the
    /// runtime is shutting down (see there how to tell it from the others): after
    /// [`Runtime::shutdown`](crate::Runtime::shutdown) began, and for a spawn from
    /// outside the runtime while
    /// [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout) drains it.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = scheduler::current_runtime().unwrap_or_else(runtime::default_shared);
        self.spawn_on(&shared, f)
    }

    /// Spawns on `shared`'s runtime; the caller's caller (through the public spawn
    /// functions, all `#[track_caller]`) is recorded as where it was spawned.
    #[track_caller]
    pub(crate) fn spawn_on<F, T>(self, shared: &Arc<Shared>, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let spawned_at = std::panic::Location::caller();
        // Off the runtime's workers, announce the spawn before checking for shutdown:
        // `Runtime::shutdown` sets the flag, then waits for in-flight spawns before
        // its last sweep of the worker queues, so a task is either refused here or
        // completed there. On one of its workers the task goes to that worker's own
        // deque, which the same thread drains at shutdown after its coroutine
        // suspends: nothing to announce.
        let _done = if shared.is_own_worker() {
            None
        } else {
            shared.spawning.fetch_add(1, Ordering::SeqCst);
            Some(SpawnGuard(shared))
        };
        if shared.shutdown.load(Ordering::SeqCst) {
            return Err(runtime::RuntimeShutdown.into());
        }
        if _done.is_some() && shared.draining.load(Ordering::Acquire) {
            // Its own coroutines may still spawn: they finish the work in flight.
            return Err(runtime::RuntimeShutdown.into());
        }
        shared.check_placement(self.placement)?;
        let stack = stack::pool::take(self.stack_size.unwrap_or(shared.stack_size))?;
        let owner = Owner {
            kind: "coroutine",
            id: CoroutineId::next().as_u64(),
            name: self.name.map(String::into_boxed_str),
            spawned_at: Some(spawned_at),
        };
        let body = CoroutineBody::<F, T>::new(f);
        let (runnable, task) = Runnable::spawn(Task::new(owner, shared.clone(), stack, body));
        shared.schedule_new(runnable, self.placement);
        Ok(JoinHandle::new(task))
    }
}

/// Marks the end of an in-flight spawn (see `Builder::spawn_on`).
struct SpawnGuard<'a>(&'a Arc<Shared>);

impl Drop for SpawnGuard<'_> {
    fn drop(&mut self) {
        self.0.spawning.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Prints `coroutine 'name' (id) panicked at …` for panics inside coroutines, the way
/// std names threads; anything else goes to the hook that was installed before.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let Some(task) = current_task() else {
                return previous(info);
            };
            let name = task.owner.name.as_deref().unwrap_or("<unnamed>");
            let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                *s
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.as_str()
            } else {
                "Box<dyn Any>"
            };
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let backtrace = std::backtrace::Backtrace::capture();
            let tail = match backtrace.status() {
                std::backtrace::BacktraceStatus::Captured => format!("stack backtrace:\n{backtrace}"),
                _ => "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
                    .to_string(),
            };
            let text = format!(
                "\ncoroutine '{name}' ({}) panicked at {location}:\n{message}\n{tail}",
                task.owner.id
            );
            // One formatted write, so lines from several workers do not interleave;
            // `eprint!` so that test harnesses capture it like std's own message.
            eprint!("{text}");
        }));
    });
}
