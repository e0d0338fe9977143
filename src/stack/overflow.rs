//! Stack overflow reporting.
//!
//! Invariant: every `Stack`(super::Stack) has a `StackRecord` (guard range, usable
//! size, owner) on the heap, at an address that does not move, linked into the
//! `RECORDS` list of the thread that created the stack from the moment the stack is
//! mapped until it is unmapped (stacks never leave their thread). The list, followed
//! from its head, only ever reaches live records, at every instruction boundary (a
//! signal can arrive between any two stores). The record's `owner` points at the
//! [`Owner`] (kind, id, name) of the coroutine or generator that currently uses the
//! stack, or is null while the stack is idle; the owner is fully written before the
//! pointer is published, and the pointer is cleared before the owner goes away.
//!
//! A SIGSEGV/SIGBUS whose fault address lies in one of those guards is a stack
//! overflow: the handler writes one line to stderr naming the owner and the stack
//! size, then aborts. Every other fault is passed to the handler that was installed
//! before ours (std's, which reports overflows of thread stacks), or to the default
//! action.
//!
//! The list changes only when a stack is mapped or unmapped (rare: stacks are
//! pooled), never when a generator is created or on a switch: giving a pooled stack
//! to a new generator costs two plain stores of the owner pointer (set and clear),
//! and resuming and suspending cost no thread-local access.
//!
//! The handler runs on an alternate signal stack (`SA_ONSTACK`; the faulting stack
//! is exhausted) and only makes async-signal-safe calls: `write(2)`, `sigaction(2)`,
//! `abort(3)`, plain loads. It formats its message in a fixed buffer on its own stack.

use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Once, OnceLock};

/// Who runs on a stack, as the overflow message names it.
///
/// Lives in the user's control block (a generator's block on its stack top) while the
/// stack's record points at it.
pub(crate) struct Owner {
    /// What to call it in the message: "generator" or "coroutine".
    pub(crate) kind: &'static str,
    /// Numeric id, always printed.
    pub(crate) id: u64,
    /// Optional name, printed in quotes.
    pub(crate) name: Option<Box<str>>,
}

/// What the overflow handler needs to know about a stack; also where the
/// [`Stack`](super::Stack) keeps its geometry.
///
/// Owned by its `Stack`, on the heap, registered for the stack's whole life.
pub(crate) struct StackRecord {
    /// Lowest address of the mapping: the guard is `[low, low + guard)`, the usable
    /// part `[low + guard, low + guard + size)`.
    pub(super) low: NonNull<u8>,
    /// Bytes of guard at `low`.
    pub(super) guard: usize,
    /// Usable stack size in bytes.
    pub(super) size: usize,
    /// The current user of the stack, or null while it is idle. An atomic (used with
    /// release/acquire ordering, which on one thread only orders the compiler) because
    /// the signal handler reads it on the same thread between any two stores.
    owner: AtomicPtr<Owner>,
    /// Links of this thread's list; atomics for the same reason.
    next: AtomicPtr<StackRecord>,
    prev: AtomicPtr<StackRecord>,
}

impl StackRecord {
    /// A record for the mapping at `low` with `guard` bytes of guard and `size`
    /// usable bytes above it, without an owner, not yet registered.
    pub(super) fn new(low: NonNull<u8>, guard: usize, size: usize) -> Self {
        StackRecord {
            low,
            guard,
            size,
            owner: AtomicPtr::new(ptr::null_mut()),
            next: AtomicPtr::new(ptr::null_mut()),
            prev: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Names `owner` as the stack's user in overflow reports.
    ///
    /// # Safety
    ///
    /// `owner` stays alive and unchanged at its address until `set_owner` is called
    /// again (with another owner or null) on this record.
    #[inline]
    pub(crate) unsafe fn set_owner(&self, owner: *const Owner) {
        // Release: the owner's fields are written before the pointer is visible to
        // the handler (which can only run on this thread, so this orders the compiler).
        self.owner.store(owner.cast_mut(), Ordering::Release);
    }
}

thread_local! {
    // Const-initialised and without a destructor: reading it is a plain TLS load,
    // safe inside a signal handler, and it is never torn down.
    static RECORDS: AtomicPtr<StackRecord> = const { AtomicPtr::new(ptr::null_mut()) };
}

/// Links `record` into this thread's list.
///
/// # Safety
///
/// * `record` stays at its address, alive, until `unregister(record)` is called on
///   this same thread (or forever, if its owner is leaked).
/// * It is not registered already.
pub(crate) unsafe fn register(record: *const StackRecord) {
    let record = record.cast_mut();
    RECORDS.with(|head| {
        let first = head.load(Ordering::Relaxed);
        // SAFETY: `record` is alive (contract) and not yet reachable from the list, so
        // these stores are invisible to the handler until `head` is published.
        unsafe {
            (*record).next.store(first, Ordering::Relaxed);
            (*record).prev.store(ptr::null_mut(), Ordering::Relaxed);
        }
        if !first.is_null() {
            // SAFETY: list members are alive (module invariant).
            unsafe { (*first).prev.store(record, Ordering::Relaxed) };
        }
        // Release: the record's links are written before the handler can reach it.
        head.store(record, Ordering::Release);
    });
}

/// Unlinks `record` from this thread's list.
///
/// # Safety
///
/// * `record` was registered on this thread and not unregistered since.
pub(crate) unsafe fn unregister(record: *const StackRecord) {
    RECORDS.with(|head| {
        // SAFETY: `record` and its neighbours are alive list members (contract and
        // module invariant). At every step the forward chain from the head stays
        // made of live records: `record` itself is alive until we return.
        unsafe {
            let next = (*record).next.load(Ordering::Relaxed);
            let prev = (*record).prev.load(Ordering::Relaxed);
            if prev.is_null() {
                head.store(next, Ordering::Release);
            } else {
                (*prev).next.store(next, Ordering::Release);
            }
            if !next.is_null() {
                (*next).prev.store(prev, Ordering::Relaxed);
            }
        }
    });
}

/// The registered record whose guard contains `addr`, if any. Async-signal-safe.
fn record_for_fault(addr: usize) -> Option<&'static StackRecord> {
    let mut cursor = RECORDS.with(|head| head.load(Ordering::Acquire));
    while !cursor.is_null() {
        // SAFETY: list members are alive (module invariant); the handler that calls
        // this aborts or returns before any of them can be freed.
        let record = unsafe { &*cursor };
        if addr.wrapping_sub(record.low.as_ptr() as usize) < record.guard {
            return Some(record);
        }
        cursor = record.next.load(Ordering::Acquire);
    }
    None
}

static INSTALL: Once = Once::new();
static OLD_SEGV: OnceLock<libc::sigaction> = OnceLock::new();
static OLD_BUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the process-wide handler (once) and an alternate signal stack on the
/// calling thread (once per thread). Called before a stack is first used.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        for (sig, old) in [(libc::SIGSEGV, &OLD_SEGV), (libc::SIGBUS, &OLD_BUS)] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we
            // fill in the handler and flags, and `prev` is written by the kernel.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut prev) == 0 {
                    let _ = old.set(prev);
                }
            }
        }
    });
    ALTSTACK.with(|a| a.ensure());
}

/// This thread's alternate signal stack, if stackweave had to create it (std creates
/// one for the threads it spawns; other threads get ours).
struct AltStack {
    mapping: Cell<*mut libc::c_void>,
    len: Cell<usize>,
    checked: Cell<bool>,
}

thread_local! {
    static ALTSTACK: AltStack = const {
        AltStack { mapping: Cell::new(ptr::null_mut()), len: Cell::new(0), checked: Cell::new(false) }
    };
}

impl AltStack {
    fn ensure(&self) {
        if self.checked.replace(true) {
            return;
        }
        // SAFETY: querying the current alternate stack has no preconditions.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `current` is a valid out-pointer.
        if unsafe { libc::sigaltstack(ptr::null(), &mut current) } != 0 {
            return;
        }
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return; // the thread already has one (std's, or the program's)
        }
        let page = super::page_size();
        let size = (64 * 1024).max(libc::SIGSTKSZ);
        let len = size + page;
        // SAFETY: a fresh anonymous mapping; its first page becomes a guard.
        let mapping = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return; // overflows on this thread will then be reported by the kernel only
        }
        // SAFETY: the first page of our own mapping.
        unsafe { libc::mprotect(mapping, page, libc::PROT_NONE) };
        let stack = libc::stack_t {
            // SAFETY: page < len.
            ss_sp: unsafe { mapping.cast::<u8>().add(page).cast() },
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `stack` describes memory we own until the thread exits (Drop).
        if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
            // SAFETY: unmapping the mapping we just created and did not install.
            unsafe { libc::munmap(mapping, len) };
            return;
        }
        self.mapping.set(mapping);
        self.len.set(len);
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let mapping = self.mapping.get();
        if mapping.is_null() {
            return;
        }
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling this thread's alternate stack before unmapping it; the
        // thread is exiting and no signal handler runs on it now.
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(mapping, self.len.get());
        }
    }
}

/// The SIGSEGV/SIGBUS handler. Async-signal-safe.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(record) = record_for_fault(addr) {
        report(record);
        // SAFETY: abort is async-signal-safe and never returns.
        unsafe { libc::abort() };
    }
    chain(sig, info, ctx);
}

/// Passes a fault that is not ours to the previously installed handler.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let old = match sig {
        libc::SIGSEGV => OLD_SEGV.get(),
        libc::SIGBUS => OLD_BUS.get(),
        _ => None,
    };
    match old {
        Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the stored handler has this signature.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(old.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: without SA_SIGINFO the stored handler takes only the signal.
                let f: extern "C" fn(libc::c_int) =
                    unsafe { std::mem::transmute(old.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // Restore the default action and return: the faulting instruction runs
            // again and the kernel applies it (core dump / termination).
            // SAFETY: a zeroed sigaction with SIG_DFL is valid; sigaction is
            // async-signal-safe.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
    }
}

/// Writes `stackweave: generator #3 'name' has overflowed its stack of 65536 bytes;
/// aborting` to stderr, without allocating.
fn report(record: &StackRecord) {
    let mut buf = Buf {
        bytes: [0; 512],
        len: 0,
    };
    buf.push(b"\nstackweave: ");
    let owner = record.owner.load(Ordering::Acquire);
    if owner.is_null() {
        // Nothing should run on an idle stack; report what we know.
        buf.push(b"an idle coroutine stack");
    } else {
        // SAFETY: a non-null owner stays alive while it is set (`set_owner`'s
        // contract); the handler aborts before it could change.
        let owner = unsafe { &*owner };
        buf.push(owner.kind.as_bytes());
        buf.push(b" #");
        buf.push_num(owner.id);
        if let Some(name) = &owner.name {
            buf.push(b" '");
            let name = name.as_bytes();
            buf.push(&name[..name.len().min(MAX_NAME)]);
            buf.push(b"'");
        }
    }
    buf.push(b" has overflowed its stack of ");
    buf.push_num(record.size as u64);
    buf.push(b" bytes; aborting\n");
    let mut rest = &buf.bytes[..buf.len];
    while !rest.is_empty() {
        // SAFETY: write(2) on stderr from a valid buffer; async-signal-safe.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        rest = &rest[n as usize..];
    }
}

/// Longest name printed; longer names are cut so the message always fits.
const MAX_NAME: usize = 256;

/// A fixed-size message buffer; pieces that do not fit are cut off.
struct Buf {
    bytes: [u8; 512],
    len: usize,
}

impl Buf {
    fn push(&mut self, s: &[u8]) {
        let room = (self.bytes.len() - self.len).min(s.len());
        self.bytes[self.len..self.len + room].copy_from_slice(&s[..room]);
        self.len += room;
    }

    fn push_num(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_coroutine_and_its_size() {
        let mut b = Buf {
            bytes: [0; 512],
            len: 0,
        };
        b.push(b"x ");
        b.push_num(0);
        b.push(b" ");
        b.push_num(18_446_744_073_709_551_615);
        assert_eq!(&b.bytes[..b.len], b"x 0 18446744073709551615");
    }

    #[test]
    fn long_names_are_cut_not_overrun() {
        let mut b = Buf {
            bytes: [0; 512],
            len: 0,
        };
        b.push(&[b'a'; 2000]);
        assert_eq!(b.len, 512);
        b.push(b"more");
        assert_eq!(b.len, 512);
    }
}
