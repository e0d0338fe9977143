//! Stack overflow reporting.
//!
//! Invariant: every mapped `Stack` has a `StackRecord` (guard range, usable size,
//! owner) reachable from the process-wide `RECORDS` list for as long as it is mapped.
//! Records are never freed: an unmapped stack's record is marked empty (guard of 0
//! bytes) and kept on a free list for the next mapping, so the list, followed from
//! its head from any thread, only ever reaches valid memory, at every instruction
//! boundary (a signal can arrive between any two stores, and other threads add
//! records concurrently). Stacks may therefore move between threads (a runtime
//! spawns on one thread and runs on another). The record's `owner` points at the
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
//! and resuming and suspending touch no shared state. Writers (mapping and
//! unmapping, ~10 µs operations anyway) serialise on a mutex; the handler takes no
//! lock.
//!
//! The handler runs on an alternate signal stack (`SA_ONSTACK`; the faulting stack
//! is exhausted) and only makes async-signal-safe calls: `write(2)`, `sigaction(2)`,
//! `abort(3)`, plain loads. It formats its message in a fixed buffer on its own stack.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

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
    /// Where a coroutine was spawned (`#[track_caller]` on the spawn functions), for
    /// the stall watchdog's report; `None` for generators.
    pub(crate) spawned_at: Option<&'static std::panic::Location<'static>>,
}

/// What the overflow handler needs to know about a stack; also where the
/// [`Stack`](super::Stack) keeps its geometry.
///
/// Allocated once and never freed (see the module invariant); reused for another
/// mapping after its stack is unmapped. The fields are atomics because the handler
/// reads them from any thread, at any instruction; a record's geometry only changes
/// while no `Stack` refers to it.
pub(crate) struct StackRecord {
    /// Lowest address of the mapping: the guard is `[low, low + guard)`, the usable
    /// part `[low + guard, low + guard + size)`.
    low: AtomicUsize,
    /// Bytes of guard at `low`; 0 while the record is free (matches no address).
    guard: AtomicUsize,
    /// Usable stack size in bytes.
    size: AtomicUsize,
    /// The current user of the stack, or null while it is idle.
    owner: AtomicPtr<Owner>,
    /// The next record of the process-wide list; written once, before the record is
    /// published.
    next: AtomicPtr<StackRecord>,
}

impl StackRecord {
    /// Lowest address of the mapping.
    #[inline]
    pub(super) fn low(&self) -> usize {
        self.low.load(Ordering::Relaxed)
    }

    /// Bytes of guard at `low`.
    #[inline]
    pub(super) fn guard(&self) -> usize {
        self.guard.load(Ordering::Relaxed)
    }

    /// Usable bytes above the guard.
    #[inline]
    pub(super) fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
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
        // the handler (which runs on the thread that runs the stack's coroutine).
        self.owner.store(owner.cast_mut(), Ordering::Release);
    }
}

/// Head of the process-wide list of every record ever allocated.
static RECORDS: AtomicPtr<StackRecord> = AtomicPtr::new(ptr::null_mut());
/// Records whose stacks were unmapped, ready for the next mapping.
static FREE: Mutex<Vec<&'static StackRecord>> = Mutex::new(Vec::new());

/// Registers the mapping at `low` (`guard` bytes of guard, then `size` usable bytes)
/// and returns its record, without an owner.
pub(super) fn register(low: usize, guard: usize, size: usize) -> &'static StackRecord {
    let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
    let record = match free.pop() {
        Some(record) => record,
        None => {
            let record: &'static StackRecord = Box::leak(Box::new(StackRecord {
                low: AtomicUsize::new(0),
                guard: AtomicUsize::new(0),
                size: AtomicUsize::new(0),
                owner: AtomicPtr::new(ptr::null_mut()),
                next: AtomicPtr::new(ptr::null_mut()),
            }));
            // Publish it at the head. Writers hold FREE's lock, so a plain
            // load-then-store would do; Release makes `next` visible with it.
            let head = RECORDS.load(Ordering::Relaxed);
            record.next.store(head, Ordering::Relaxed);
            RECORDS.store(ptr::from_ref(record).cast_mut(), Ordering::Release);
            record
        }
    };
    drop(free);
    record.low.store(low, Ordering::Relaxed);
    record.size.store(size, Ordering::Relaxed);
    record.owner.store(ptr::null_mut(), Ordering::Relaxed);
    // Release: a handler that sees the guard also sees the geometry written above.
    record.guard.store(guard, Ordering::Release);
    record
}

/// Marks `record` empty and keeps it for the next mapping.
///
/// # Safety
///
/// * `record` came from `register` and no `Stack` refers to it any more.
pub(super) unsafe fn unregister(record: &'static StackRecord) {
    record.guard.store(0, Ordering::Release);
    record.owner.store(ptr::null_mut(), Ordering::Relaxed);
    FREE.lock().unwrap_or_else(|e| e.into_inner()).push(record);
}

/// The registered record whose guard contains `addr`, if any. Async-signal-safe: no
/// lock, no allocation, only loads of memory that is never freed.
fn record_for_fault(addr: usize) -> Option<&'static StackRecord> {
    let mut cursor = RECORDS.load(Ordering::Acquire);
    while !cursor.is_null() {
        // SAFETY: records are never freed (module invariant).
        let record: &'static StackRecord = unsafe { &*cursor };
        let guard = record.guard.load(Ordering::Acquire);
        if addr.wrapping_sub(record.low()) < guard {
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
    buf.push_num(record.size() as u64);
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
