//! AddressSanitizer fiber annotations: tell ASan about every switch between stacks.
//!
//! ASan keeps, per thread, the bounds of the stack it believes the thread runs on.
//! A switch onto a coroutine stack that it was not told about makes it misread what
//! follows: an unwind on the coroutine stack (`__asan_handle_no_return`) looks like
//! a stack of unknown size ("False positive error reports may follow"), and a report
//! of a bad stack access names the wrong stack. The sanitizer interface has two calls
//! for this (`<sanitizer/common_interface_defs.h>`):
//!
//! * `__sanitizer_start_switch_fiber(&fake_stack_save, bottom, size)` right before a
//!   switch onto the stack `[bottom, bottom + size)`; ASan saves the current fake
//!   stack (for `detect_stack_use_after_return`) in `fake_stack_save`, or destroys it
//!   if that pointer is null: the final switch out of a finished context, whose
//!   stack is never switched back to;
//! * `__sanitizer_finish_switch_fiber(fake_stack_save, &old_bottom, &old_size)` right
//!   after a switch lands, on the new stack: restores the fake stack saved when this
//!   stack was left (null on a fresh stack) and reports the bounds of the stack just
//!   left.
//!
//! The two sides of a switch (the backends call these; no other code switches):
//!
//! * the resumer, in `Context::resume`: [`Resumer::leave`] before the switch (onto
//!   the context's stack, whose bounds the `Context` knows), [`Resumer::back`] after
//!   it returns;
//! * the context, through a [`Fiber`] that lives in the frame of the backend's first
//!   function on the new stack for as long as the context runs, and that the
//!   `Suspender` points at: [`Fiber::entered`] first thing on the new stack,
//!   [`Fiber::leave`] / [`Fiber::back`] around each suspend, [`Fiber::finish`] before
//!   the final switch. The stack to switch back to is the resumer's, which only ASan
//!   knows: each landing records the bounds it reports (a coroutine may be resumed
//!   from another worker's thread, or a generator from another stack, each time).
//!
//! All of it exists only in builds with `--cfg stackweave_asan` (set together with
//! `-Zsanitizer=address`, see `.ci/run`): without it every type here is a
//! zero-sized struct and every function an empty `#[inline(always)]` one, so the
//! switch compiles to what it was (and the `Suspender` stays one word). The bounds
//! of a stack are passed as a closure, so that computing them (loads from its
//! overflow record) is left out too.

#[cfg(stackweave_asan)]
mod imp {
    use std::ffi::c_void;
    use std::ptr;

    extern "C" {
        // The sanitizer runtime (linked by `-Zsanitizer=address`).
        fn __sanitizer_start_switch_fiber(
            fake_stack_save: *mut *mut c_void,
            bottom: *const c_void,
            size: usize,
        );
        fn __sanitizer_finish_switch_fiber(
            fake_stack_save: *mut c_void,
            bottom_old: *mut *const c_void,
            size_old: *mut usize,
        );
        fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
    }

    /// The resumer's side of one resume: its fake stack while the context runs.
    pub(crate) struct Resumer {
        fake_stack: *mut c_void,
    }

    impl Resumer {
        /// Right before switching onto the stack `[bottom, bottom + size)` that
        /// `bounds` returns.
        #[inline(always)]
        pub(crate) fn leave(bounds: impl FnOnce() -> (*const u8, usize)) -> Resumer {
            let (bottom, size) = bounds();
            let mut fake_stack = ptr::null_mut();
            // SAFETY: a plain call into the sanitizer runtime, which writes only
            // `fake_stack`; the switch follows at once.
            unsafe { __sanitizer_start_switch_fiber(&mut fake_stack, bottom.cast(), size) };
            Resumer { fake_stack }
        }

        /// Right after the switch has come back to the resumer's stack.
        #[inline(always)]
        pub(crate) fn back(self) {
            let (mut bottom, mut size) = (ptr::null(), 0);
            // SAFETY: the fake stack that `leave` saved, on the stack it was saved
            // on; the runtime writes only the two locals.
            unsafe { __sanitizer_finish_switch_fiber(self.fake_stack, &mut bottom, &mut size) };
        }
    }

    /// The context's side: its fake stack while it is switched out, and the bounds of
    /// the stack that resumed it last (where its next suspend goes).
    pub(crate) struct Fiber {
        fake_stack: *mut c_void,
        resumer_bottom: *const c_void,
        resumer_size: usize,
    }

    /// How a `Suspender` reaches its context's `Fiber`.
    pub(crate) type FiberPtr = *mut Fiber;

    impl Fiber {
        /// First thing on a fresh stack: records the resumer's stack.
        #[inline(always)]
        pub(crate) fn entered() -> Fiber {
            let mut fiber = Fiber {
                fake_stack: ptr::null_mut(),
                resumer_bottom: ptr::null(),
                resumer_size: 0,
            };
            // SAFETY: a fresh stack has no fake stack to restore (null); the runtime
            // writes only the two fields.
            unsafe {
                __sanitizer_finish_switch_fiber(
                    ptr::null_mut(),
                    &mut fiber.resumer_bottom,
                    &mut fiber.resumer_size,
                )
            };
            fiber
        }

        /// The pointer the `Suspender` carries.
        #[inline(always)]
        pub(crate) fn as_ptr(&mut self) -> FiberPtr {
            self
        }

        /// Right before a suspend switches back to the resumer.
        ///
        /// # Safety
        ///
        /// `fiber` is the running context's (alive in its entry frame), on its stack.
        #[inline(always)]
        pub(crate) unsafe fn leave(fiber: FiberPtr) {
            // SAFETY: the caller's contract: only the running context touches it.
            let fiber = unsafe { &mut *fiber };
            // SAFETY: a plain call into the sanitizer runtime, which writes only the
            // fake stack field; the switch follows at once.
            unsafe {
                __sanitizer_start_switch_fiber(
                    &mut fiber.fake_stack,
                    fiber.resumer_bottom,
                    fiber.resumer_size,
                )
            };
        }

        /// Right after a suspend returns (the context was resumed, maybe from
        /// another stack than last time): records the new resumer's stack.
        ///
        /// # Safety
        ///
        /// As for [`leave`](Fiber::leave).
        #[inline(always)]
        pub(crate) unsafe fn back(fiber: FiberPtr) {
            // SAFETY: the caller's contract.
            let fiber = unsafe { &mut *fiber };
            // SAFETY: the fake stack saved by `leave`, on this stack; the runtime
            // writes only the two bound fields.
            unsafe {
                __sanitizer_finish_switch_fiber(
                    fiber.fake_stack,
                    &mut fiber.resumer_bottom,
                    &mut fiber.resumer_size,
                )
            };
        }

        /// Right before the final switch out of a finished context: the stack is
        /// never switched back to, so ASan frees its fake stack (null save).
        ///
        /// # Safety
        ///
        /// As for [`leave`](Fiber::leave); nothing instrumented may run on this stack
        /// after it.
        #[inline(always)]
        pub(crate) unsafe fn finish(fiber: FiberPtr) {
            // SAFETY: the caller's contract.
            let fiber = unsafe { &*fiber };
            // SAFETY: a plain call into the sanitizer runtime; a null save asks it to
            // destroy this stack's fake stack.
            unsafe {
                __sanitizer_start_switch_fiber(
                    ptr::null_mut(),
                    fiber.resumer_bottom,
                    fiber.resumer_size,
                )
            };
        }
    }

    /// Clears the poisoning that frames left on the stack `[bottom, bottom + size)`
    /// that `bounds` returns: a stack about to be reused or unmapped (the entry
    /// frames of a finished context never return, so their redzones stay poisoned).
    #[inline(always)]
    pub(crate) fn unpoison_stack(bounds: impl FnOnce() -> (*const u8, usize)) {
        let (bottom, size) = bounds();
        // SAFETY: changes only ASan's shadow of memory the caller owns.
        unsafe { __asan_unpoison_memory_region(bottom.cast(), size) };
    }
}

#[cfg(not(stackweave_asan))]
mod imp {
    /// Nothing to remember without ASan.
    pub(crate) struct Resumer;

    impl Resumer {
        #[inline(always)]
        pub(crate) fn leave(_bounds: impl FnOnce() -> (*const u8, usize)) -> Resumer {
            Resumer
        }

        #[inline(always)]
        pub(crate) fn back(self) {}
    }

    /// Nothing to remember without ASan.
    pub(crate) struct Fiber;

    /// Zero-sized: the `Suspender` stays one word.
    #[derive(Clone, Copy)]
    pub(crate) struct FiberPtr;

    impl Fiber {
        #[inline(always)]
        pub(crate) fn entered() -> Fiber {
            Fiber
        }

        #[inline(always)]
        pub(crate) fn as_ptr(&mut self) -> FiberPtr {
            FiberPtr
        }

        /// # Safety
        ///
        /// None needed; `unsafe` to match the ASan build.
        #[inline(always)]
        pub(crate) unsafe fn leave(_fiber: FiberPtr) {}

        /// # Safety
        ///
        /// None needed; `unsafe` to match the ASan build.
        #[inline(always)]
        pub(crate) unsafe fn back(_fiber: FiberPtr) {}

        /// # Safety
        ///
        /// None needed; `unsafe` to match the ASan build.
        #[inline(always)]
        pub(crate) unsafe fn finish(_fiber: FiberPtr) {}
    }

    #[inline(always)]
    pub(crate) fn unpoison_stack(_bounds: impl FnOnce() -> (*const u8, usize)) {}
}

pub(crate) use imp::{unpoison_stack, Fiber, FiberPtr, Resumer};
