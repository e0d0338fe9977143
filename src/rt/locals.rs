//! The maps behind `coroutine_local!`: one per coroutine (in its task), one per
//! generator, and which generator's map is current on this thread.
//!
//! Invariant: a map hands out pointers to values in separate heap allocations that
//! stay put until the map is dropped; `GENERATOR_MAP` names the map of the innermost
//! generator whose code runs on this thread (null: none), and a coroutine that
//! switches out takes it along (`scheduler::suspend_current` sets it to null and
//! back). The rules for who may touch which map are the public module's
//! (`coroutine::local`).

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::ptr;

/// The values of one coroutine (or thread), by key address.
#[derive(Default)]
pub(crate) struct LocalMap {
    entries: Vec<(usize, *mut dyn Any)>,
}

impl LocalMap {
    pub(crate) fn get(&self, key: usize) -> Option<*const dyn Any> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|&(_, v)| v.cast_const())
    }

    pub(crate) fn insert(&mut self, key: usize, value: Box<dyn Any>) -> *const dyn Any {
        let value = Box::into_raw(value);
        self.entries.push((key, value));
        value.cast_const()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Drop for LocalMap {
    fn drop(&mut self) {
        // One at a time: a destructor may use (and so re-create) other values.
        while let Some((_, value)) = self.entries.pop() {
            // SAFETY: from `Box::into_raw` in `insert`, and removed from the map, so
            // nothing hands out new references to it.
            drop(unsafe { Box::from_raw(value) });
        }
    }
}

thread_local! {
    /// The map of the innermost generator whose code runs now, or null.
    static GENERATOR_MAP: Cell<*const UnsafeCell<LocalMap>> = const { Cell::new(ptr::null()) };
}

/// The map of one generator, kept in its block.
pub(crate) type GeneratorMap = UnsafeCell<LocalMap>;

/// Makes `map` the current generator map (null: none) and returns the previous
/// one, which the caller must put back with [`restore_generator_map`] once the code
/// it is about to switch to has switched back.
///
/// Called with a generator's map just before that generator's code runs, and with
/// null by a coroutine about to switch out to its worker.
#[inline(always)]
pub(crate) fn swap_generator_map(map: *const GeneratorMap) -> *const GeneratorMap {
    GENERATOR_MAP.with(|m| m.replace(map))
}

/// Puts back what [`swap_generator_map`] returned.
#[inline(always)]
pub(crate) fn restore_generator_map(previous: *const GeneratorMap) {
    GENERATOR_MAP.with(|m| m.set(previous));
}

/// The current generator map (null: none), as [`swap_generator_map`] last set it.
#[inline(always)]
pub(crate) fn generator_map() -> *const GeneratorMap {
    GENERATOR_MAP.with(Cell::get)
}
