//! libc's own entry points, behind the hooks that shadow them.
//!
//! Invariant: every slot of [`REAL`] is 0 or the address `dlsym(RTLD_NEXT, name)`
//! returned for its [`Sym`], written once by [`resolve`] and never changed. While the
//! table is being filled (by any thread), a hook that finds its slot empty makes the
//! system call itself with `syscall(2)` (the `call_real!` fallback), so a hooked
//! function that `dlsym` itself calls can never recurse into the resolution.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The functions the hooks forward to.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(super) enum Sym {
    Read,
    Readv,
    Recv,
    Recvfrom,
    Recvmsg,
    Write,
    Writev,
    Send,
    Sendto,
    Sendmsg,
    Connect,
    Accept,
    Accept4,
    Poll,
    Ppoll,
    Select,
    Nanosleep,
    ClockNanosleep,
    Usleep,
    Sleep,
    Close,
    Dup,
    Dup2,
    Dup3,
    Fcntl,
    Fcntl64,
    Ioctl,
    Setsockopt,
    ReadChk,
    RecvChk,
    RecvfromChk,
    PollChk,
    PpollChk,
    Recvmmsg,
    Sendmmsg,
    Pselect,
}

/// The symbol names, NUL-terminated, in the order of [`Sym`].
const NAMES: [&[u8]; 36] = [
    b"read\0",
    b"readv\0",
    b"recv\0",
    b"recvfrom\0",
    b"recvmsg\0",
    b"write\0",
    b"writev\0",
    b"send\0",
    b"sendto\0",
    b"sendmsg\0",
    b"connect\0",
    b"accept\0",
    b"accept4\0",
    b"poll\0",
    b"ppoll\0",
    b"select\0",
    b"nanosleep\0",
    b"clock_nanosleep\0",
    b"usleep\0",
    b"sleep\0",
    b"close\0",
    b"dup\0",
    b"dup2\0",
    b"dup3\0",
    b"fcntl\0",
    b"fcntl64\0",
    b"ioctl\0",
    b"setsockopt\0",
    b"__read_chk\0",
    b"__recv_chk\0",
    b"__recvfrom_chk\0",
    b"__poll_chk\0",
    b"__ppoll_chk\0",
    b"recvmmsg\0",
    b"sendmmsg\0",
    b"pselect\0",
];

static REAL: [AtomicUsize; 36] = [const { AtomicUsize::new(0) }; 36];

/// 0: not resolved; 1: being resolved; 2: done.
static STATE: AtomicU8 = AtomicU8::new(0);

/// The address of libc's `sym`, or 0 while the table is being filled (the caller
/// then makes the system call itself).
#[inline]
pub(super) fn get(sym: Sym) -> usize {
    let f = REAL[sym as usize].load(Ordering::Acquire);
    if f != 0 {
        return f;
    }
    resolve();
    REAL[sym as usize].load(Ordering::Acquire)
}

/// Fills the table once (the first caller does; a caller that finds it being filled
/// returns at once).
#[cold]
pub(super) fn resolve() {
    if STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    for (slot, name) in REAL.iter().zip(NAMES) {
        // SAFETY: `name` is NUL-terminated; RTLD_NEXT looks the symbol up in the
        // objects loaded after this one (libc), skipping our own definition.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
        slot.store(f as usize, Ordering::Release);
    }
    STATE.store(2, Ordering::Release);
}

/// Calls libc's function `$sym` of type `fn($ty,*) -> $ret` with `$arg`s, or
/// evaluates `$fallback` (a raw system call) while the table is being filled.
macro_rules! call_real {
    ($sym:ident, fn($($ty:ty),* $(,)?) -> $ret:ty, ($($arg:expr),*), $fallback:expr) => {{
        let f = $crate::hooks::real::get($crate::hooks::real::Sym::$sym);
        if f == 0 {
            #[allow(unused_unsafe)]
            // SAFETY: the caller's arguments are those of the hooked call, passed on
            // to the kernel unchanged.
            unsafe { $fallback }
        } else {
            // SAFETY: `f` is libc's definition of this very function (real module
            // invariant), whose C type is the one named here.
            let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(f) };
            // SAFETY: the arguments are the hooked call's, passed on unchanged: the
            // caller of the hook promised libc's contract for them.
            unsafe { f($($arg),*) }
        }
    }};
}
pub(super) use call_real;
