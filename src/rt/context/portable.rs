//! The portable backend: the `corosensei` crate drives the switch on our stacks.

use super::asan::{Fiber, FiberPtr, Resumer};
use super::Entry;
use crate::rt::stack::Stack;
use corosensei::stack::StackPointer;
use corosensei::{Coroutine, CoroutineResult, Yielder};

/// Name of this backend, for benchmarks and diagnostics.
pub(crate) const BACKEND: &str = "corosensei";

// SAFETY: `top()` and `limit()` delimit the usable, writable part of the mapping the
// `Stack` owns, top is 16-byte aligned, and the mapping lives as long as the value.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.top() as usize).expect("stack top is not null")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.limit() as usize).expect("stack limit is not null")
    }
}

/// A context on a stack of its own (see the module docs of `context`).
pub(crate) struct Context {
    co: Coroutine<usize, usize, usize, Stack>,
    stack_size: usize,
    /// The stack's lowest usable address, for the ASan annotations.
    limit: usize,
}

/// The coroutine side's handle for switching back.
#[derive(Clone, Copy)]
pub(crate) struct Suspender {
    yielder: *const Yielder<usize, usize>,
    /// The context's stack is `[limit, top)`.
    limit: usize,
    top: usize,
    /// The context's ASan fiber record, in the closure's frame (zero-sized without
    /// `--cfg stackweave_asan`).
    fiber: FiberPtr,
}

impl Context {
    /// Prepares `stack` to run `E::run(value, data, suspender)` on the first resume.
    ///
    /// # Safety
    ///
    /// * `data` must stay valid for as long as `E::run` may use it.
    pub(crate) unsafe fn new<E: Entry>(stack: Stack, data: *mut ()) -> Context {
        let stack_size = stack.size();
        let (limit, top) = (stack.limit() as usize, stack.top() as usize);
        let co = Coroutine::with_stack(stack, move |yielder: &Yielder<usize, usize>, value| {
            // Lives in this frame for as long as the entry runs.
            let mut fiber = Fiber::entered();
            let suspender = Suspender {
                yielder,
                limit,
                top,
                fiber: fiber.as_ptr(),
            };
            // SAFETY: forwarded from `Context::new`'s contract; called once.
            let last = unsafe { E::run(value, data, suspender) };
            // SAFETY: the context's fiber, on its stack; corosensei's final switch
            // follows (through its own code only).
            unsafe { Fiber::finish(suspender.fiber) };
            last
        });
        Context {
            co,
            stack_size,
            limit,
        }
    }

    /// Runs the context until it suspends or its entry returns.
    ///
    /// # Safety
    ///
    /// * The context must not have returned from its entry yet.
    /// * It must not be running.
    #[inline(always)]
    pub(crate) unsafe fn resume(&mut self, value: usize) -> usize {
        let asan = Resumer::leave(|| (self.limit as *const u8, self.stack_size));
        let result = match self.co.resume(value) {
            CoroutineResult::Yield(v) | CoroutineResult::Return(v) => v,
        };
        asan.back();
        result
    }

    /// Whether the context has been resumed at least once.
    pub(crate) fn is_started(&self) -> bool {
        self.co.started()
    }

    /// Whether the entry has returned.
    #[inline(always)]
    pub(crate) fn is_finished(&self) -> bool {
        self.co.done()
    }

    /// Usable size of the stack this context runs on.
    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size
    }

    /// The stack back.
    ///
    /// # Safety
    ///
    /// * The entry must have returned, or the context must never have been resumed.
    pub(crate) unsafe fn into_stack(mut self) -> Stack {
        // corosensei only gives the stack back once the coroutine is done; for one
        // that never started, `force_unwind` just drops its initial closure (which
        // holds nothing but `entry` and `data`) and marks it done.
        if !self.co.done() {
            self.co.force_unwind();
        }
        self.co.into_stack()
    }
}

impl Suspender {
    /// Hands `value` to the resumer and waits to be resumed.
    ///
    /// # Safety
    ///
    /// * Must be called on the context's own stack, while it runs.
    #[inline(always)]
    pub(crate) unsafe fn suspend(self, value: usize) -> usize {
        // SAFETY: the context's fiber, on its stack (contract); the switch follows.
        unsafe { Fiber::leave(self.fiber) };
        // SAFETY: the yielder lives on the context's stack for as long as its entry
        // runs, and we are inside that entry (contract).
        let resumed = unsafe { (*self.yielder).suspend(value) };
        // SAFETY: as above, right after landing back on the context's stack.
        unsafe { Fiber::back(self.fiber) };
        resumed
    }

    /// Whether the caller runs on this suspender's context, i.e. an address in its
    /// frame lies in the context's stack.
    #[inline(always)]
    pub(crate) fn is_current(self) -> bool {
        stack_pointer().wrapping_sub(self.limit) < self.top.wrapping_sub(self.limit)
    }

    /// Whether `addr` lies in this suspender's stack.
    pub(crate) fn contains(self, addr: usize) -> bool {
        addr.wrapping_sub(self.limit) <= self.top.wrapping_sub(self.limit)
    }

    /// Bytes left below the caller's frame on this stack (0 if the caller does not
    /// run on it).
    #[inline(always)]
    pub(crate) fn headroom(self) -> usize {
        let sp = stack_pointer();
        if self.contains(sp) {
            sp - self.limit
        } else {
            0
        }
    }
}

/// An address in the caller's stack frame (the caller is inlined here): a local's.
#[inline(always)]
fn stack_pointer() -> usize {
    let here = 0u8;
    // black_box makes the local live in memory, in this frame.
    std::hint::black_box(&here) as *const u8 as usize
}
