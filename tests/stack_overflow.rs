//! A stack overflow inside a generator is never silent: the process aborts with a
//! message naming the generator and its stack size. Faults that are not generator
//! overflows still reach the handler that was there before (std's), or kill the
//! process with the signal as usual.
//!
//! Every crash runs in a child process (see `common`); the parent asserts on the
//! child's exit status and stderr.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod common;

use stackweave::generator::{Generator, Yielder};
use stackweave::stack::{DEFAULT_STACK_SIZE, MIN_STACK_SIZE};
use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::thread;

/// Recurses until the stack runs out. The black-boxed 1 KiB array and the use of the
/// recursive result keep the compiler from turning this into a loop.
#[inline(never)]
fn recurse_forever(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    black_box(&mut frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse_forever(depth + 1);
    below + u64::from(black_box(&frame)[(depth % 1024) as usize])
}

/// The stack size a generator asked for `requested` bytes really gets.
fn real_stack_size(requested: usize) -> usize {
    let mut g =
        Generator::with_stack_size(requested, |_: &Yielder<()>| {}).expect("creating a generator");
    g.resume(); // run it: this file is not about dropping unstarted generators
    g.stack_size()
}

/// The id printed by a generator's `Debug` (`Generator { id: 3, .. }`) on the child's
/// stderr line starting with `label`.
fn generator_id(child: &common::Child, label: &str) -> u64 {
    let line = child
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("the child did not print {label:?}\n{child}"));
    let digits: String = line
        .split_once("id: ")
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no generator id in {line:?}"))
}

/// Asserts that the child aborted with stackweave's message for generator `id` with a
/// stack of `size` bytes.
fn assert_generator_overflow(child: &common::Child, id: u64, size: usize) {
    assert_eq!(
        child.status.signal(),
        Some(libc::SIGABRT),
        "expected an abort\n{child}"
    );
    let expected = format!("stackweave: generator #{id} has overflowed its stack of {size} bytes");
    assert!(
        child.stderr.contains(&expected),
        "expected {expected:?}\n{child}"
    );
}

/// In the child: overflows a generator with a stack of `requested` bytes.
fn overflow_a_generator(requested: usize) {
    let mut g = Generator::with_stack_size(requested, |_: &Yielder<()>| {
        recurse_forever(0);
    })
    .expect("creating a generator");
    eprintln!("OVERFLOWING {g:?}");
    g.resume();
    unreachable!("the overflow must abort the process");
}

#[test]
fn stack_overflow_in_a_generator_aborts_with_message() {
    const NAME: &str = "stack_overflow_in_a_generator_aborts_with_message";
    if common::is_child(NAME) {
        overflow_a_generator(DEFAULT_STACK_SIZE);
    }
    let child = common::run_child(NAME);
    let id = generator_id(&child, "OVERFLOWING ");
    assert_generator_overflow(&child, id, real_stack_size(DEFAULT_STACK_SIZE));
}

#[test]
fn stack_overflow_in_a_tiny_generator_aborts_with_message() {
    const NAME: &str = "stack_overflow_in_a_tiny_generator_aborts_with_message";
    if common::is_child(NAME) {
        overflow_a_generator(MIN_STACK_SIZE);
    }
    let child = common::run_child(NAME);
    let id = generator_id(&child, "OVERFLOWING ");
    assert_generator_overflow(&child, id, real_stack_size(MIN_STACK_SIZE));
}

#[test]
fn stack_overflow_in_a_nested_generator_names_the_inner_one() {
    const NAME: &str = "stack_overflow_in_a_nested_generator_names_the_inner_one";
    const INNER: usize = 16 * 1024;
    if common::is_child(NAME) {
        let mut outer = Generator::new(|_: &Yielder<()>| {
            let mut inner = Generator::with_stack_size(INNER, |_: &Yielder<()>| {
                recurse_forever(0);
            })
            .expect("creating the inner generator");
            eprintln!("INNER {inner:?}");
            inner.resume();
        });
        eprintln!("OUTER {outer:?}");
        outer.resume();
        unreachable!("the overflow must abort the process");
    }
    let child = common::run_child(NAME);
    let outer = generator_id(&child, "OUTER ");
    let inner = generator_id(&child, "INNER ");
    assert_ne!(outer, inner);
    assert_generator_overflow(&child, inner, real_stack_size(INNER));
}

/// Entry of a thread created with `pthread_create`, which std knows nothing about:
/// it has no alternate signal stack until stackweave gives it one.
extern "C" fn overflow_on_a_foreign_thread(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: an all-zero stack_t is a valid out-parameter.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: querying this thread's alternate signal stack into a valid stack_t.
    let rc = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    eprintln!(
        "FOREIGN THREAD had an alternate signal stack: {}",
        rc == 0 && current.ss_flags & libc::SS_DISABLE == 0
    );
    overflow_a_generator(DEFAULT_STACK_SIZE);
    std::ptr::null_mut()
}

#[test]
fn stack_overflow_on_a_thread_std_did_not_create_is_reported() {
    const NAME: &str = "stack_overflow_on_a_thread_std_did_not_create_is_reported";
    if common::is_child(NAME) {
        // SAFETY: an all-zero pthread_t is a valid out-parameter.
        let mut thread: libc::pthread_t = unsafe { std::mem::zeroed() };
        // SAFETY: default attributes, an entry with the right signature that does not
        // unwind (a panic in it aborts), and no argument.
        let rc = unsafe {
            libc::pthread_create(
                &mut thread,
                std::ptr::null(),
                overflow_on_a_foreign_thread,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "pthread_create");
        // SAFETY: joining the thread created above, once.
        unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
        unreachable!("the overflow must abort the process");
    }
    let child = common::run_child(NAME);
    assert!(
        child
            .stderr
            .contains("FOREIGN THREAD had an alternate signal stack: false"),
        "the foreign thread should start without an alternate signal stack\n{child}"
    );
    let id = generator_id(&child, "OVERFLOWING ");
    assert_generator_overflow(&child, id, real_stack_size(DEFAULT_STACK_SIZE));
}

#[test]
fn thread_stack_overflow_still_reports_through_std_after_a_generator_ran() {
    const NAME: &str = "thread_stack_overflow_still_reports_through_std_after_a_generator_ran";
    if common::is_child(NAME) {
        // Creating and running a generator installs stackweave's signal handler.
        let g = Generator::new(|y: &Yielder<u8>| y.suspend(1));
        assert_eq!(g.collect::<Vec<_>>(), [1]);
        let t = thread::Builder::new()
            .name("overflowing-thread".into())
            .stack_size(256 * 1024)
            .spawn(|| recurse_forever(0))
            .expect("spawning a thread");
        let _ = t.join();
        unreachable!("the overflow must abort the process");
    }
    let child = common::run_child(NAME);
    assert_eq!(
        child.status.signal(),
        Some(libc::SIGABRT),
        "expected std's abort\n{child}"
    );
    assert!(
        // std prints `thread 'name' has overflowed..`, newer versions with the thread
        // id after the name: `thread 'name' (1234) has overflowed..`.
        child
            .stderr
            .lines()
            .any(|l| l.starts_with("thread 'overflowing-thread'")
                && l.ends_with("has overflowed its stack")),
        "std's overflow message is missing\n{child}"
    );
    assert!(
        !child.stderr.contains("stackweave:"),
        "a thread overflow was reported as a generator's\n{child}"
    );
}

/// In the child: writes through a pointer into the null page (address 16, not 0, so
/// that debug builds' null checks do not turn it into a panic first).
fn write_to_null_page() {
    let p = std::ptr::without_provenance_mut::<u8>(16);
    // SAFETY: deliberately invalid: the null page is never mapped, so this store
    // faults (SIGSEGV) before anything is written, which is what the test wants. The
    // volatile write keeps the compiler from reasoning the store away.
    unsafe { p.write_volatile(1) };
}

fn assert_killed_by_sigsegv(child: &common::Child) {
    assert_eq!(
        child.status.signal(),
        Some(libc::SIGSEGV),
        "expected death by SIGSEGV\n{child}"
    );
    assert!(
        !child.stderr.contains("overflowed"),
        "a plain fault was reported as an overflow\n{child}"
    );
}

#[test]
fn null_pointer_write_after_a_generator_ran_dies_by_sigsegv() {
    const NAME: &str = "null_pointer_write_after_a_generator_ran_dies_by_sigsegv";
    if common::is_child(NAME) {
        let g = Generator::new(|y: &Yielder<u8>| y.suspend(1));
        assert_eq!(g.collect::<Vec<_>>(), [1]);
        write_to_null_page();
        unreachable!("the write must kill the process");
    }
    assert_killed_by_sigsegv(&common::run_child(NAME));
}

#[test]
fn null_pointer_write_inside_a_generator_dies_by_sigsegv() {
    const NAME: &str = "null_pointer_write_inside_a_generator_dies_by_sigsegv";
    if common::is_child(NAME) {
        let mut g = Generator::new(|_: &Yielder<()>| write_to_null_page());
        g.resume();
        unreachable!("the write must kill the process");
    }
    assert_killed_by_sigsegv(&common::run_child(NAME));
}
