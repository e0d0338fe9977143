//! The one flag the libc hooks (`hooks` feature) read: whether this thread is
//! running a coroutine. The worker sets it around each resume; the hooks, a layer
//! above, only read it, so the engine never names them. (`hooks::init` is called
//! by the runtime layer, before it starts the workers.)
//!
//! Invariant: true on a worker thread exactly while one of its coroutines runs.

use std::cell::Cell;

thread_local! {
    /// Set while this thread runs a coroutine (around the worker's resume).
    static IN_COROUTINE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running a coroutine (true) or its scheduler (false).
#[inline(always)]
pub(crate) fn set_in_coroutine(running: bool) {
    IN_COROUTINE.with(|c| c.set(running));
}

/// Whether this thread is running a coroutine: the hooks' one check.
#[inline(always)]
pub(crate) fn in_coroutine() -> bool {
    IN_COROUTINE.with(Cell::get)
}
