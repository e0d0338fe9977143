//! Knowing, on a thread, that its thread-locals have started to be destroyed.
//!
//! Invariant: [`exiting`] returns true on a thread from before the first destructor
//! of a thread-local value (Rust's `thread_local!` with a `Drop` type, C++
//! `thread_local`) runs there, at thread exit or in `exit()`, and false before that.
//!
//! Why it matters: a suspended [`Generator`](crate::generator::Generator) may be
//! frozen inside `KEY.with(|v| …)` with `v` live on its own stack. The borrow is
//! sound only while the thread-local is alive, and the generator (stored, say, in
//! another thread-local) may be dropped or resumed by a destructor that runs *after*
//! the value's own. Destructors run last-registered first, and a value registers its
//! destructor on first use, so no library-level sentinel can be sure to run first.
//!
//! How it holds (Linux with glibc, dynamically linked, the supported setup): std
//! registers every thread-local destructor through `__cxa_thread_atexit_impl`. This
//! module defines that symbol in the final binary, forwards each registration to
//! glibc's own (found with `dlsym(RTLD_NEXT)`), and right after it registers
//! `mark_exiting`, which therefore runs before the destructor just registered. So
//! whichever destructor glibc runs first, a `mark_exiting` runs before it. If glibc
//! has no such function (older than 2.18), the registrations go to a list of our own,
//! run by a `pthread` key destructor that sets the flag first, the way std's own
//! fallback works.
//!
//! On other configurations (non-glibc, statically linked) `exiting` is always false;
//! see docs/DECISIONS.md for what that leaves open.

use std::cell::Cell;

thread_local! {
    // `const` and without a destructor: readable at any point of a thread's life,
    // including while its other thread-locals are being destroyed.
    static EXITING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread has started destroying its thread-locals (module invariant).
#[inline]
pub(crate) fn exiting() -> bool {
    EXITING.with(Cell::get)
}

#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static")
))]
mod glibc {
    use super::EXITING;
    use std::cell::Cell;
    use std::ffi::{c_int, c_void};
    use std::ptr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;

    type Dtor = unsafe extern "C" fn(*mut c_void);
    type AtExit = unsafe extern "C" fn(Dtor, *mut c_void, *mut c_void) -> c_int;

    /// Registers `dtor(obj)` to run when this thread exits, like glibc's function of
    /// the same name (which it calls), and arranges for the exiting flag to be set
    /// before it runs.
    ///
    /// # Safety
    ///
    /// As glibc's `__cxa_thread_atexit_impl`: `dtor` may be called with `obj` at
    /// thread exit; `dso` is null or the handle of the object that owns `dtor`.
    #[no_mangle]
    pub unsafe extern "C" fn __cxa_thread_atexit_impl(
        dtor: Dtor,
        obj: *mut c_void,
        dso: *mut c_void,
    ) -> c_int {
        let Some(real) = real() else {
            // SAFETY: forwarded contract.
            return unsafe { fallback::register(dtor, obj) };
        };
        // SAFETY: glibc's function, with the caller's arguments.
        let status = unsafe { real(dtor, obj, dso) };
        if status == 0 {
            // Registered after `dtor`, so it runs before it. `mark_exiting` lives in
            // the object that defines this function, which the caller's `dso` (or
            // the main program, for null) keeps loaded as long as `dtor`.
            // SAFETY: `mark_exiting` ignores its argument and touches only a
            // destructor-free thread-local.
            unsafe { real(mark_exiting, ptr::null_mut(), dso) };
        }
        status
    }

    unsafe extern "C" fn mark_exiting(_: *mut c_void) {
        EXITING.with(|e| e.set(true));
    }

    /// glibc's `__cxa_thread_atexit_impl`, if it has one.
    fn real() -> Option<AtExit> {
        // 0: not looked up yet; 1: none.
        static REAL: AtomicUsize = AtomicUsize::new(0);
        let mut f = REAL.load(Ordering::Acquire);
        if f == 0 {
            // SAFETY: a plain symbol lookup with a NUL-terminated name.
            let found =
                unsafe { libc::dlsym(libc::RTLD_NEXT, c"__cxa_thread_atexit_impl".as_ptr()) };
            let ours = __cxa_thread_atexit_impl as *const () as usize;
            f = match found as usize {
                0 => 1,
                f if f == ours => 1,
                f => f,
            };
            REAL.store(f, Ordering::Release);
        }
        // SAFETY: a non-sentinel value is the address of glibc's function, whose
        // signature is `AtExit`.
        (f > 1).then(|| unsafe { std::mem::transmute::<usize, AtExit>(f) })
    }

    /// Our own list, run by a `pthread` key destructor, for a glibc without the
    /// function.
    mod fallback {
        use super::*;

        struct Node {
            dtor: Dtor,
            obj: *mut c_void,
            next: *mut Node,
        }

        thread_local! {
            // `const` and destructor-free, so using it registers nothing.
            static LIST: Cell<*mut Node> = const { Cell::new(ptr::null_mut()) };
        }

        static KEY_ONCE: Once = Once::new();
        static KEY: AtomicUsize = AtomicUsize::new(0);

        /// # Safety
        ///
        /// As `__cxa_thread_atexit_impl`.
        pub(super) unsafe fn register(dtor: Dtor, obj: *mut c_void) -> c_int {
            KEY_ONCE.call_once(|| {
                let mut key: libc::pthread_key_t = 0;
                // SAFETY: `run` has the destructor signature pthread expects.
                if unsafe { libc::pthread_key_create(&mut key, Some(run)) } == 0 {
                    KEY.store(key as usize + 1, Ordering::Release);
                }
            });
            let key = KEY.load(Ordering::Acquire);
            if key == 0 {
                return -1;
            }
            let next = LIST.with(Cell::get);
            let node = Box::into_raw(Box::new(Node { dtor, obj, next }));
            LIST.with(|l| l.set(node));
            // SAFETY: a key we created; any non-null value makes `run` fire at exit.
            unsafe { libc::pthread_setspecific((key - 1) as libc::pthread_key_t, node.cast()) };
            0
        }

        /// Runs the list, last registered first, including entries added meanwhile.
        unsafe extern "C" fn run(_: *mut c_void) {
            EXITING.with(|e| e.set(true));
            loop {
                let node = LIST.with(|l| l.replace(ptr::null_mut()));
                if node.is_null() {
                    return;
                }
                // SAFETY: from `Box::into_raw` in `register`, unlinked just now.
                let node = unsafe { Box::from_raw(node) };
                LIST.with(|l| l.set(node.next));
                // SAFETY: registered to be called with `obj` at thread exit.
                unsafe { (node.dtor)(node.obj) };
            }
        }
    }
}
