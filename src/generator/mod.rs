//! Standalone stackful generators, usable without any runtime.
//!
//! A [`Generator`] runs a closure on a stack of its own. The closure receives a
//! [`Yielder`]; [`Yielder::suspend`] hands a value to whoever called
//! [`Generator::resume`] and freezes the closure's whole call stack until the next
//! `resume`. Unlike Python's generator-based coroutines (or Rust's `async fn`), a
//! stackful generator can suspend from any depth of ordinary nested function calls:
//! helpers need no `yield from`, no `.await`, no special colouring.
//!
//! ```
//! use stackweave::generator::{Generator, GeneratorState, Yielder};
//!
//! // A plain recursive helper that yields from deep inside the recursion.
//! fn count_down(y: &Yielder<u32>, n: u32) {
//!     if n > 0 {
//!         y.suspend(n);
//!         count_down(y, n - 1);
//!     }
//! }
//!
//! let mut g = Generator::new(|y: &Yielder<u32>| {
//!     count_down(y, 3);
//!     "done"
//! });
//! assert_eq!(g.resume(), GeneratorState::Yielded(3));
//! assert_eq!(g.resume(), GeneratorState::Yielded(2));
//! assert_eq!(g.resume(), GeneratorState::Yielded(1));
//! assert_eq!(g.resume(), GeneratorState::Complete("done"));
//! assert!(g.is_complete());
//! ```
//!
//! # Guarantees
//!
//! * A panic inside the generator is caught at the root of its stack (it never
//!   unwinds through the context switch) and re-raised from [`Generator::resume`] on
//!   the caller's side with its original payload.
//! * Dropping a generator that has started but not finished unwinds its stack, so
//!   every destructor on it runs, as if the pending `suspend` had panicked. (The
//!   unwind does not invoke the panic hook, so nothing is printed.)
//! * A generator stays on the thread that created it: [`Generator`] and [`Yielder`]
//!   are neither `Send` nor `Sync`, because the stack may hold anything (an `Rc`, a
//!   `MutexGuard`, a borrow of a thread-local).
//! * [`coroutine_local!`](crate::coroutine_local) values used inside a generator are
//!   the generator's own, dropped with it (see [`LocalKey`](crate::LocalKey)).
//!
//! # Thread-locals and thread exit
//!
//! A generator can suspend inside `KEY.with(|v| …)` of a `thread_local!`, keeping
//! `v` on its stack. That borrow is sound only while the thread-local is alive, and
//! a thread destroys its thread-locals one by one when it exits: a generator stored
//! in one of them may be dropped after another's value is gone. So once the
//! thread has started destroying its thread-locals, a generator that has started
//! and not finished is never run again:
//!
//! * dropping it *leaks* its stack (and its `coroutine_local!` values) instead of
//!   unwinding it: no destructor on that stack runs, nothing of it is reused, and
//!   nothing can observe a dead thread-local (leaking is safe; running code on
//!   destroyed thread-locals is not);
//! * resuming it panics (a panic in a thread-local's destructor aborts the process).
//!
//! Generators that have not started, or have finished, are dropped as usual. This
//! relies on knowing when thread-local destruction begins, which the crate knows on
//! Linux with glibc (see `docs/DECISIONS.md`).
//!
//! # Lifetimes
//!
//! The closure only has to live for `'a`, so it may borrow local data. This is sound
//! because a generator's code runs only while someone calls `resume` (or drops it):
//! the borrow checker ties both to `'a`. Leaking a suspended generator with
//! `mem::forget` leaks its stack, which is never resumed or reused, so nothing on it
//! can observe the borrowed data going away.
//!
//! # Invariants
//!
//! * The block shared by both sides (the closure, the result slot and the overflow
//!   `Owner` that names the generator) sits at the top of the
//!   generator's own stack, is owned by the `Generator`, and is only touched by one
//!   side at a time: the resumer before and after a switch, the generator's stack
//!   between the two. The stack's overflow record points at the block's owner from
//!   creation until `Drop`, which clears it before dropping the block.
//! * A yielded value crosses the switch by address: `Yielder::suspend` passes a
//!   pointer to the value, which stays in its frame on the generator's stack, and
//!   the resumer moves it out (exactly once, before doing anything else) while that
//!   frame is frozen. The message `MSG_COMPLETE` (0, never a valid address) says
//!   that the closure has returned and its result is in the block.

use crate::coroutine::local::{self, GeneratorMap};
use crate::rt::context::{self, Context, Suspender};
use crate::rt::stack::{self, Owner};
use crate::thread_exit;
use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

/// What [`Generator::resume`] returns: a value the generator suspended with, or the
/// value its closure returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeneratorState<Y, R> {
    /// The generator called [`Yielder::suspend`] with this value and can be resumed.
    Yielded(Y),
    /// The generator's closure returned this value; the generator is complete.
    Complete(R),
}

// Resumer -> generator commands, passed through the switch.
const CMD_RESUME: usize = 0;
const CMD_UNWIND: usize = 1;
// Generator -> resumer messages: the address of a yielded `Y` (never 0), or this.
const MSG_COMPLETE: usize = 0;

/// The payload used to unwind a generator that is dropped while suspended.
struct ForcedUnwind;

/// The part of the shared block that does not depend on the closure's type.
struct Common<R> {
    result: Option<thread::Result<R>>,
    /// Names the generator in stack overflow reports.
    owner: Owner,
    /// The generator's `coroutine_local!` values.
    locals: GeneratorMap,
}

/// The shared block: `Common` first, so a `*mut Block<R, F>` is also a
/// `*mut Common<R>`.
#[repr(C)]
struct Block<R, F> {
    common: Common<R>,
    /// Taken by `entry` on the first resume; dropped by `Drop` if that never came.
    f: ManuallyDrop<F>,
}

/// A stackful generator: a closure running on its own stack that can suspend with a
/// value of type `Y` from any call depth and finally returns an `R`.
///
/// See the [module documentation](self) for the guarantees.
///
/// # Examples
///
/// A generator whose closure returns `()` is an [`Iterator`]:
///
/// ```
/// use stackweave::generator::{Generator, Yielder};
///
/// let squares = Generator::new(|y: &Yielder<u64>| {
///     for i in 1..=4 {
///         y.suspend(i * i);
///     }
/// });
/// assert_eq!(squares.collect::<Vec<_>>(), [1, 4, 9, 16]);
/// ```
///
/// A generator cannot leave its thread (its stack may hold thread-bound values),
/// so it cannot be moved into a coroutine or `spawn_blocking`:
///
/// ```compile_fail
/// use stackweave::generator::{Generator, Yielder};
///
/// let g = Generator::new(|y: &Yielder<u8>| y.suspend(1));
/// stackweave::spawn_blocking(move || g.count());
/// ```
pub struct Generator<'a, Y, R> {
    context: ManuallyDrop<Context>,
    block: NonNull<Common<R>>,
    drop_block: unsafe fn(NonNull<Common<R>>, bool),
    // Owns Y and R values (dropck), borrows for 'a, and is neither Send nor Sync.
    _marker: PhantomData<(Y, R, &'a (), *const ())>,
}

/// The generator side's handle: [`suspend`](Yielder::suspend) hands a value to the
/// resumer.
///
/// A `&Yielder` is passed to the generator's closure and cannot escape it. It is
/// neither `Send` nor `Sync`.
pub struct Yielder<Y> {
    // One word on the hand-written backend, so that a loop of suspends keeps it in a
    // register that survives the switch.
    suspender: Suspender,
    // Hands out Y values (invariant in Y), and is neither Send nor Sync.
    _marker: PhantomData<*mut Y>,
}

impl<'a, Y, R> Generator<'a, Y, R> {
    /// Creates a generator that will run `f` on a stack of
    /// [`DEFAULT_STACK_SIZE`](crate::stack::DEFAULT_STACK_SIZE) bytes. Nothing runs
    /// until the first [`resume`](Generator::resume).
    ///
    /// # Panics
    ///
    /// Panics if no stack can be allocated (out of memory or of memory maps), or if
    /// the closure's captures do not fit in half of the stack (the closure is kept at
    /// the top of the generator's own stack); use
    /// [`with_stack_size`](Generator::with_stack_size) to get an error instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::generator::{Generator, GeneratorState, Yielder};
    ///
    /// let mut g = Generator::new(|y: &Yielder<&str>| {
    ///     y.suspend("hello");
    ///     42
    /// });
    /// assert_eq!(g.resume(), GeneratorState::Yielded("hello"));
    /// assert_eq!(g.resume(), GeneratorState::Complete(42));
    /// ```
    pub fn new<F>(f: F) -> Self
    where
        F: FnOnce(&Yielder<Y>) -> R + 'a,
    {
        match Self::with_stack_size(stack::DEFAULT_STACK_SIZE, f) {
            Ok(g) => g,
            Err(e) => panic!("failed to create a generator: {e}"),
        }
    }

    /// Creates a generator whose stack has at least `size` usable bytes (rounded up
    /// to whole pages and to [`MIN_STACK_SIZE`](crate::stack::MIN_STACK_SIZE)).
    ///
    /// Stacks are reused from a per-thread pool when one of the same size is free.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::OutOfMemory`] when the stack cannot be mapped (out of memory
    /// or of `vm.max_map_count` memory maps); [`io::ErrorKind::InvalidInput`] for an
    /// absurd size, or when the closure's captures take more than half of the stack
    /// (box large captures).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::generator::{Generator, Yielder};
    ///
    /// let g = Generator::with_stack_size(64 * 1024, |y: &Yielder<u8>| y.suspend(7))?;
    /// assert_eq!(g.stack_size(), 64 * 1024);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_stack_size<F>(size: usize, f: F) -> io::Result<Self>
    where
        F: FnOnce(&Yielder<Y>) -> R + 'a,
    {
        let mut stack = stack::pool::take(size)?;
        // The block lives at the top of the generator's own stack: no allocation.
        let layout = std::alloc::Layout::new::<Block<R, F>>();
        let Some(place) = stack.reserve_top(layout) else {
            return Err(block_too_big(stack, layout.size()));
        };
        let place = place.cast::<Block<R, F>>().as_ptr();
        // SAFETY: `reserve_top` set aside a writable area with the block's size and
        // alignment at the top of the stack, outside the context's use. The fields are
        // written in place, one by one, rather than built elsewhere and copied.
        unsafe {
            (&raw mut (*place).common.result).write(None);
            (&raw mut (*place).common.owner).write(Owner {
                kind: "generator",
                id: next_id(),
                name: None,
                spawned_at: None,
            });
            (&raw mut (*place).common.locals).write(GeneratorMap::default());
            (&raw mut (*place).f).write(ManuallyDrop::new(f));
        }
        // SAFETY: the owner sits in the block, which stays in place, unchanged, until
        // `Drop` resets the stack's owner before dropping the block.
        unsafe { stack.set_owner(&raw const (*place).common.owner) };
        // SAFETY: `place` is not null (it came from a NonNull).
        let block = unsafe { NonNull::new_unchecked(place.cast::<Common<R>>()) };
        // SAFETY: `block` stays valid until `drop_block` runs in `Drop`, after the
        // context has finished or been abandoned unstarted; `GeneratorEntry<Y, R, F>`
        // matches the block's real type.
        let context = unsafe { Context::new::<GeneratorEntry<Y, R, F>>(stack, place.cast()) };
        Ok(Generator {
            context: ManuallyDrop::new(context),
            block,
            drop_block: drop_block::<R, F>,
            _marker: PhantomData,
        })
    }

    /// Runs the generator until it suspends or completes.
    ///
    /// # Panics
    ///
    /// * If the generator's closure panics, the panic continues from here with its
    ///   original payload; the generator is then complete.
    /// * If the generator is already complete.
    /// * If it has started and this thread is destroying its thread-locals (see
    ///   [Thread-locals and thread exit](self#thread-locals-and-thread-exit)).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::generator::{Generator, GeneratorState, Yielder};
    ///
    /// let mut g = Generator::new(|y: &Yielder<i32>| y.suspend(1));
    /// assert_eq!(g.resume(), GeneratorState::Yielded(1));
    /// assert_eq!(g.resume(), GeneratorState::Complete(()));
    /// ```
    #[inline]
    pub fn resume(&mut self) -> GeneratorState<Y, R> {
        if self.context.is_finished() {
            resume_complete();
        }
        if self.context.is_started() && thread_exit::exiting() {
            resume_while_exiting();
        }
        match self.switch_in(CMD_RESUME) {
            // SAFETY: the generator suspended with this message (see `switch_in`).
            Some(msg) => GeneratorState::Yielded(unsafe { take_yielded(msg) }),
            None => match self.take_result() {
                Ok(r) => GeneratorState::Complete(r),
                Err(payload) => panic::resume_unwind(payload),
            },
        }
    }

    /// Whether the generator has finished (returned or panicked).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::generator::{Generator, Yielder};
    ///
    /// let mut g = Generator::new(|_: &Yielder<()>| {});
    /// assert!(!g.is_complete());
    /// g.resume();
    /// assert!(g.is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.context.is_finished()
    }

    /// Usable size of this generator's stack in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::generator::{Generator, Yielder};
    ///
    /// let g = Generator::new(|_: &Yielder<()>| {});
    /// assert_eq!(g.stack_size(), stackweave::stack::DEFAULT_STACK_SIZE);
    /// ```
    pub fn stack_size(&self) -> usize {
        self.context.stack_size()
    }

    /// Switches into the generator with `cmd`. Returns the message of a generator that
    /// suspended (the address of its value, to be taken with `take_yielded` before
    /// anything else touches the generator), or `None` when it completed.
    #[inline(always)]
    fn switch_in(&mut self, cmd: usize) -> Option<usize> {
        // The generator's code sees its own `coroutine_local!` map while it runs.
        let previous = local::swap_generator_map(self.locals());
        // SAFETY: the context has not finished (checked by every caller) and is not
        // running: `&mut self` rules out a resume from inside it.
        let msg = unsafe { self.context.resume(cmd) };
        local::restore_generator_map(previous);
        // The context finishes exactly when the closure has returned.
        debug_assert_eq!(msg == MSG_COMPLETE, self.context.is_finished());
        (msg != MSG_COMPLETE).then_some(msg)
    }

    /// The generator's `coroutine_local!` map, in its block.
    #[inline(always)]
    fn locals(&self) -> *const GeneratorMap {
        // SAFETY: the block lives as long as `self`; only an address is taken.
        unsafe { &raw const (*self.block.as_ptr()).locals }
    }

    /// For `Debug`.
    fn state_name(&self) -> &'static str {
        if !self.context.is_started() {
            "NotStarted"
        } else if self.context.is_finished() {
            "Complete"
        } else {
            "Suspended"
        }
    }

    fn take_result(&mut self) -> thread::Result<R> {
        // SAFETY: the generator has completed; its stack no longer touches the block.
        unsafe { (*self.block.as_ptr()).result.take() }
            .expect("a completed generator left its result")
    }
}

impl<Y, R> Drop for Generator<'_, Y, R> {
    fn drop(&mut self) {
        let mut escaped: Option<Box<dyn Any + Send>> = None;
        let started = self.context.is_started();
        if started && !self.context.is_finished() && thread_exit::exiting() {
            // Its stack may borrow thread-locals that are already destroyed: leave it
            // frozen for good (module docs). The context, stack, block and locals
            // are never touched or reused again.
            return;
        }
        if started && !self.context.is_finished() {
            // Unwind the stack: the pending `suspend` panics with ForcedUnwind. If the
            // closure catches that and suspends again, keep unwinding.
            while let Some(msg) = self.switch_in(CMD_UNWIND) {
                // SAFETY: the generator suspended with this message.
                drop(unsafe { take_yielded::<Y>(msg) });
            }
            match self.take_result() {
                Err(payload) if payload.is::<ForcedUnwind>() => {}
                Err(payload) => escaped = Some(payload),
                Ok(_) => {}
            }
        }
        // SAFETY: the context finished or never started: nothing lives on the stack;
        // the context is not used again.
        let context = unsafe { ManuallyDrop::take(&mut self.context) };
        // SAFETY: as above.
        let mut stack = unsafe { context.into_stack() };
        // The stack no longer names this generator: its owner is about to go.
        stack.reset();
        // SAFETY: the stack has finished or never started, and the block is alive.
        unsafe { local::drop_generator_locals(self.locals()) };
        // SAFETY: the block is of the type `drop_block` was made for, and the stack
        // no longer uses it. The closure is still in it only if it never started.
        unsafe { (self.drop_block)(self.block, !started) };
        stack::pool::give(stack);
        if let Some(payload) = escaped {
            // A destructor or the closure panicked with its own payload while the
            // generator was being unwound: report it unless we are already unwinding.
            if !thread::panicking() {
                panic::resume_unwind(payload);
            }
        }
    }
}

impl<Y> Iterator for Generator<'_, Y, ()> {
    type Item = Y;

    fn next(&mut self) -> Option<Y> {
        if self.is_complete() {
            return None;
        }
        match self.resume() {
            GeneratorState::Yielded(y) => Some(y),
            GeneratorState::Complete(()) => None,
        }
    }
}

impl<Y, R> fmt::Debug for Generator<'_, Y, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: the block lives as long as `self`; only a plain field is read.
        let id = unsafe { (*self.block.as_ptr()).owner.id };
        f.debug_struct("Generator")
            .field("id", &id)
            .field("state", &format_args!("{}", self.state_name()))
            .field("stack_size", &self.stack_size())
            .finish()
    }
}

impl<Y> Yielder<Y> {
    /// Hands `value` to the caller of [`Generator::resume`] and suspends the whole
    /// generator, with every frame on its stack, until the next `resume`.
    ///
    /// Callable from any depth of nested calls inside the generator's closure.
    ///
    /// # Panics
    ///
    /// * When the generator is dropped while suspended here, this call unwinds (so
    ///   the stack's destructors run). Code that catches that unwind should let it
    ///   continue.
    /// * If called while a different generator runs (for example from a nested
    ///   generator that captured this yielder).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::generator::{Generator, Yielder};
    ///
    /// fn helper(y: &Yielder<char>) {
    ///     y.suspend('a');
    ///     y.suspend('b');
    /// }
    /// let g = Generator::new(|y: &Yielder<char>| helper(y));
    /// assert_eq!(g.collect::<String>(), "ab");
    /// ```
    #[inline]
    pub fn suspend(&self, value: Y) {
        if !self.suspender.is_current() {
            suspend_outside();
        }
        // The resumer moves the value out of this frame while it is frozen (module
        // invariant), so it must not be dropped here.
        let value = ManuallyDrop::new(value);
        // SAFETY: we are on the generator's own stack (checked above), and it runs.
        // The address of a local is never 0 (MSG_COMPLETE).
        let cmd = unsafe { self.suspender.suspend(&raw const value as usize) };
        // A destructor that suspends while the generator is already being unwound
        // just returns (a second panic would abort); the drop keeps resuming.
        if cmd == CMD_UNWIND && !thread::panicking() {
            panic::resume_unwind(Box::new(ForcedUnwind));
        }
    }
}

impl<Y> fmt::Debug for Yielder<Y> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Yielder").finish_non_exhaustive()
    }
}

/// The context entry of a generator running an `F`.
struct GeneratorEntry<Y, R, F>(PhantomData<fn(Y, R, F)>);

impl<Y, R, F> context::Entry for GeneratorEntry<Y, R, F>
where
    F: FnOnce(&Yielder<Y>) -> R,
{
    /// Runs on the generator's stack: the closure under `catch_unwind`.
    ///
    /// # Safety
    ///
    /// `data` is the `Block<R, F>` built by `with_stack_size`, alive until the
    /// generator is dropped; called once.
    #[inline(always)]
    unsafe fn run(cmd: usize, data: *mut (), suspender: Suspender) -> usize {
        // SAFETY: forwarded.
        unsafe { entry::<Y, R, F>(cmd, data, suspender) }
    }
}

/// Runs on the generator's stack: the closure under `catch_unwind`.
///
/// # Safety
///
/// As for `GeneratorEntry::run`.
#[inline(always)]
unsafe fn entry<Y, R, F>(cmd: usize, data: *mut (), suspender: Suspender) -> usize
where
    F: FnOnce(&Yielder<Y>) -> R,
{
    let block = data.cast::<Block<R, F>>();
    // SAFETY: the block is valid (contract) and the resumer does not touch it while
    // we run. A generator is entered once, with CMD_RESUME (an unstarted one is
    // dropped without being entered), and from then on `Drop` knows that the closure
    // is gone (the context has started).
    let f = unsafe { ManuallyDrop::take(&mut (*block).f) };
    debug_assert_eq!(cmd, CMD_RESUME);
    let yielder = Yielder {
        suspender,
        _marker: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&yielder)));
    // SAFETY: as above; the resumer reads the result after the final switch.
    unsafe { (*block).common.result = Some(result) };
    MSG_COMPLETE
}

/// Drops, in place, a block of the real type `Block<R, F>`, with its closure if
/// `with_closure`.
///
/// # Safety
///
/// `block` points at a live `Block<R, F>` that is not used afterwards, whose closure
/// is still there if and only if `with_closure`.
unsafe fn drop_block<R, F>(block: NonNull<Common<R>>, with_closure: bool) {
    let block = block.cast::<Block<R, F>>().as_ptr();
    // SAFETY: contract.
    unsafe {
        if with_closure {
            ManuallyDrop::drop(&mut (*block).f);
        }
        std::ptr::drop_in_place(&raw mut (*block).common);
    }
}

/// Moves a yielded value out of the suspended generator's frame.
///
/// # Safety
///
/// `msg` is the message of a generator that has just suspended with a `Y`, and the
/// value has not been taken yet.
#[inline(always)]
unsafe fn take_yielded<Y>(msg: usize) -> Y {
    // SAFETY: `msg` is the address of a live `ManuallyDrop<Y>` in the frozen frame of
    // `Yielder::suspend`, which leaves it to us (module invariant).
    unsafe { std::ptr::read(msg as *const Y) }
}

/// The error for a closure too big for the top of its stack; gives the stack back.
#[cold]
fn block_too_big(stack: stack::Stack, bytes: usize) -> io::Error {
    let size = stack.size();
    stack::pool::give(stack);
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the generator's closure and slots ({bytes} bytes) do not fit in half of \
             its {size}-byte stack: box the captures or use a bigger stack"
        ),
    )
}

#[cold]
#[inline(never)]
fn resume_complete() -> ! {
    panic!("Generator::resume called on a complete generator")
}

#[cold]
#[inline(never)]
fn resume_while_exiting() -> ! {
    panic!(
        "Generator::resume called on a suspended generator while this thread destroys \
         its thread-locals: it may borrow one that is gone"
    )
}

#[cold]
#[inline(never)]
fn suspend_outside() -> ! {
    panic!("Yielder::suspend called outside its own generator")
}

/// A process-wide unique generator id, taken from a per-thread batch so that the
/// shared counter is touched once per 1,024 generators.
fn next_id() -> u64 {
    const BATCH: u64 = 1024;
    static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_BATCH.fetch_add(BATCH, Ordering::Relaxed);
            end = next + BATCH;
        }
        ids.set((next + 1, end));
        next
    })
}
