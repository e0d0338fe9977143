//! Storage per coroutine: `coroutine_local!` and [`LocalKey`].
//!
//! Invariant: each coroutine owns a `LocalMap` in its task body, touched only by the
//! coroutine itself while it runs (so only on its home worker); each generator owns
//! one in the block at the top of its stack, touched only while the generator's
//! code runs; outside both the calling thread's own map is used instead. The map of
//! the innermost running generator wins, then the running coroutine's, then the
//! thread's: `GENERATOR_MAP` (in the engine's `rt::locals`, with `LocalMap`) names
//! the first, and a coroutine that switches out takes it along (see
//! `scheduler::suspend_current`). A map hands out references to
//! values in separate heap allocations that stay put until the map's owner ends (the
//! coroutine returns, the generator is dropped, or the thread exits), and no `&mut`
//! to the map is held while user code runs (`init` or the closure given to `with`).
//!
//! Why generators get their own: a generator can suspend inside `KEY.with(|v| …)`
//! with `v` live on its stack, then be stored anywhere and resumed or dropped after
//! the coroutine (or thread) whose map `v` pointed into has ended. A map owned by
//! the generator itself ends only after the generator's stack has finished or been
//! abandoned for good, so no frame can outlive the values it borrows.

use crate::rt::locals::{generator_map, LocalMap};
pub(crate) use crate::rt::locals::{restore_generator_map, swap_generator_map, GeneratorMap};
use crate::rt::{with_current_task, Task};
use std::any::Any;
use std::cell::UnsafeCell;

/// A key for a value stored per coroutine, declared with [`coroutine_local!`](crate::coroutine_local).
///
/// Like [`std::thread::LocalKey`], but each *coroutine* gets its own value, lazily
/// initialised on first use and dropped when the coroutine returns. Outside a
/// coroutine, the value is per thread, like `thread_local!`.
///
/// Code running inside a [`Generator`](crate::generator::Generator) sees the
/// *generator's* own values (dropped when the generator is), not those of the
/// coroutine or thread that resumes it: a generator can suspend in the middle of
/// [`with`](LocalKey::with) and be resumed later by another coroutine, after the
/// first one's values are gone, so lending it theirs would not be sound.
///
/// ```
/// use stackweave::generator::{Generator, Yielder};
/// use std::cell::Cell;
///
/// stackweave::coroutine_local! {
///     static HITS: Cell<u32> = Cell::new(0);
/// }
///
/// HITS.with(|h| h.set(5));
/// let mut g = Generator::new(|_: &Yielder<()>| HITS.with(|h| h.get()));
/// assert_eq!(g.resume(), stackweave::generator::GeneratorState::Complete(0));
/// assert_eq!(HITS.with(|h| h.get()), 5);
/// ```
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
///
/// stackweave::coroutine_local! {
///     static REQUESTS: Cell<u32> = Cell::new(0);
/// }
///
/// let a = stackweave::spawn(|| {
///     REQUESTS.with(|r| r.set(r.get() + 1));
///     REQUESTS.with(|r| r.get())
/// });
/// let b = stackweave::spawn(|| REQUESTS.with(|r| r.get()));
/// assert_eq!(a.join().unwrap(), 1);
/// assert_eq!(b.join().unwrap(), 0); // its own value
/// ```
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey { init }
    }

    /// Calls `f` with a reference to this coroutine's value, initialising it first if
    /// this coroutine has not used it yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::RefCell;
    ///
    /// stackweave::coroutine_local! {
    ///     static LOG: RefCell<Vec<&'static str>> = RefCell::new(Vec::new());
    /// }
    ///
    /// let h = stackweave::spawn(|| {
    ///     LOG.with(|l| l.borrow_mut().push("started"));
    ///     stackweave::yield_now();
    ///     LOG.with(|l| l.borrow().len())
    /// });
    /// assert_eq!(h.join().unwrap(), 1);
    /// ```
    pub fn with<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        let key = self as *const Self as usize;
        let value = with_map(|map| map.get(key));
        let value = match value {
            Some(value) => value,
            None => {
                // Initialise with no borrow of the map held: `init` may use other
                // keys (or even this one).
                let fresh: Box<dyn Any> = Box::new((self.init)());
                with_map(|map| map.get(key).unwrap_or_else(|| map.insert(key, fresh)))
            }
        };
        // SAFETY: the value lives in its own allocation until the map's owner ends,
        // which cannot happen while this coroutine (or thread) runs `f` (module
        // invariant); it was stored as a `T` under this key.
        f(unsafe { &*value.cast::<T>() })
    }
}

impl<T: 'static> std::fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

/// Declares [`LocalKey`]s: storage per coroutine, with the shape of `thread_local!`.
///
/// ```
/// use std::cell::Cell;
///
/// stackweave::coroutine_local! {
///     /// How deep this coroutine's recursion went.
///     pub static DEPTH: Cell<usize> = Cell::new(0);
///     static NAME: String = String::from("worker");
/// }
///
/// DEPTH.with(|d| d.set(3)); // outside a coroutine: this thread's value
/// assert_eq!(NAME.with(|n| n.len()), 6);
/// ```
#[macro_export]
macro_rules! coroutine_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])* $vis static $name: $crate::LocalKey<$t> = {
            fn __stackweave_init() -> $t {
                $init
            }
            $crate::LocalKey::new(__stackweave_init)
        };
        $crate::coroutine_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::coroutine_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}

thread_local! {
    static THREAD_MAP: UnsafeCell<LocalMap> = UnsafeCell::new(LocalMap::default());
}

/// Drops the values of a generator's map, repeating while destructors create new
/// ones (which they do in this same map).
///
/// # Safety
///
/// `map` is the map of a generator whose stack has finished or will never run
/// again, and the generator's block stays alive until this returns.
pub(crate) unsafe fn drop_generator_locals(map: *const GeneratorMap) {
    struct Restore(*const GeneratorMap);
    impl Drop for Restore {
        fn drop(&mut self) {
            restore_generator_map(self.0);
        }
    }
    // SAFETY: as below; a plain read of the map's length.
    if unsafe { (*(*map).get()).is_empty() } {
        return; // the common case: the generator used no `coroutine_local!`
    }
    let _restore = Restore(swap_generator_map(map));
    loop {
        // SAFETY: no code of the generator runs any more, so nothing else holds a
        // `&mut` to its map; the map is moved out before its values drop.
        let taken = std::mem::take(unsafe { &mut *(*map).get() });
        if taken.is_empty() {
            return;
        }
        drop(taken);
    }
}

/// Runs `f` with the map of the running generator, coroutine, or thread.
fn with_map<R>(f: impl FnOnce(&mut LocalMap) -> R) -> R {
    let generator = generator_map();
    if !generator.is_null() {
        // SAFETY: set only while that generator's code runs (and while it is being
        // dropped, by `drop_generator_locals`), so its block is alive; this `&mut`
        // lives only inside `f`, which runs no user code.
        return f(unsafe { &mut *(*generator).get() });
    }
    let mut f = Some(f);
    let in_task = with_current_task(|task| {
        let f = f.take().expect("once");
        // SAFETY: the running coroutine owns its body's map (module invariant); this
        // `&mut` lives only inside `f`, which runs no user code.
        f(unsafe { &mut task.coroutine_part().locals })
    });
    if let Some(result) = in_task {
        return result;
    }
    let f = f.take().expect("once");
    THREAD_MAP.with(|map| {
        // SAFETY: this thread's map, used only here, by this thread, with no user
        // code running inside `f`.
        f(unsafe { &mut *map.get() })
    })
}

/// Drops the values of `task`, the running coroutine, once its closure has
/// returned, repeating while destructors create new ones.
///
/// # Safety
///
/// Called by the coroutine of `task` itself, while it runs.
pub(crate) unsafe fn drop_task_locals(task: &Task) {
    loop {
        // SAFETY: as in `with_map` (the caller is the running coroutine); the map is
        // moved out before its values drop, so no `&mut` is held while they do.
        let map = std::mem::take(unsafe { &mut task.coroutine_part().locals });
        if map.is_empty() {
            return;
        }
        drop(map);
    }
}
