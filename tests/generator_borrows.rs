//! A suspended generator never outlives a value that a `with` call lent it.
//!
//! A generator can suspend inside `KEY.with(|v| …)` and keep `v` on its own stack,
//! then be stored anywhere and resumed or dropped later. These tests try each way
//! that could outlive the lent value (through `coroutine_local!` and through std's
//! `thread_local!`), through the safe API only, and check that the value is intact
//! whenever code can see it and that no code runs after it is destroyed.
//!
//! Cases that end in an abort or in `process::exit` run in a child process (see
//! `common`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod common;

use stackweave::generator::{Generator, GeneratorState, Yielder};
use std::cell::{Cell, RefCell};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const FILL: u64 = 0x1111_1111_1111_1111;

stackweave::coroutine_local! {
    static KEY: Vec<u64> = vec![FILL; 64];
    static COUNT: Cell<u64> = Cell::new(0);
}

/// Sum of a vector as `KEY` holds it.
fn expected_sum() -> u64 {
    FILL.wrapping_mul(64)
}

/// Writes a marker line to stderr with one `write(2)`: usable while thread-locals
/// (std's output capture included) are being destroyed.
fn marker(line: &str) {
    let line = format!("{line}\n");
    // SAFETY: writes bytes from a live buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

// ---- coroutine_local! ----

thread_local! {
    static SLOT: RefCell<Option<Generator<'static, (), (u64, usize)>>> = const { RefCell::new(None) };
}

/// The first reproducer: a generator started in coroutine A borrows a
/// coroutine-local and suspends; A returns; coroutine B resumes the generator.
#[test]
fn coroutine_local_borrowed_by_a_generator_outlives_the_coroutine_that_started_it() {
    let rt = stackweave::Runtime::builder().workers(1).build().unwrap();
    for round in 0..200u64 {
        rt.block_on(move || {
            KEY.with(|v| assert_eq!(v.len(), 64)); // A's own value, dropped when A ends
            let mut g = Generator::new(|y: &Yielder<()>| {
                KEY.with(|v: &Vec<u64>| {
                    y.suspend(());
                    (v.iter().fold(0u64, |a, x| a.wrapping_add(*x)), v.len())
                })
            });
            assert_eq!(g.resume(), GeneratorState::Yielded(()));
            SLOT.with(|s| *s.borrow_mut() = Some(g));
        });
        let (sum, len) = rt.block_on(move || {
            // Churn the allocator where A's values were.
            let junk: Vec<Vec<u64>> = (0..64).map(|i| vec![0xdead_0000 + i + round; 64]).collect();
            let mut g = SLOT.with(|s| s.borrow_mut().take()).expect("one worker");
            let out = match g.resume() {
                GeneratorState::Complete(x) => x,
                GeneratorState::Yielded(()) => unreachable!(),
            };
            drop(junk);
            out
        });
        assert_eq!((sum, len), (expected_sum(), 64), "round {round}");
    }
}

/// Inside a generator, `coroutine_local!` values are the generator's own: not the
/// resuming coroutine's, not the thread's; nested generators each have theirs.
#[test]
fn a_generator_has_its_own_coroutine_locals_and_so_does_a_nested_one() {
    COUNT.with(|c| c.set(5)); // this thread's value
    let mut outer = Generator::new(|y: &Yielder<u64>| {
        COUNT.with(|c| c.set(1));
        let mut inner = Generator::new(|y: &Yielder<u64>| {
            y.suspend(COUNT.with(Cell::get));
            COUNT.with(|c| c.set(2));
            y.suspend(COUNT.with(Cell::get));
        });
        for v in &mut inner {
            y.suspend(v);
        }
        y.suspend(COUNT.with(Cell::get)); // the inner one did not touch ours
    });
    let seen: Vec<u64> = std::iter::from_fn(|| match outer.resume() {
        GeneratorState::Yielded(v) => Some(v),
        GeneratorState::Complete(()) => None,
    })
    .collect();
    assert_eq!(seen, [0, 2, 1]);
    assert_eq!(COUNT.with(Cell::get), 5);
}

/// A coroutine that suspends (yields to its worker) while inside a generator takes
/// the generator's locals with it: the coroutines that run meanwhile on the same
/// worker see their own values.
#[test]
fn coroutines_that_run_while_another_is_inside_a_generator_see_their_own_locals() {
    let rt = stackweave::Runtime::builder().workers(1).build().unwrap();
    let handles: Vec<_> = (0..2_000u64)
        .map(|i| {
            rt.spawn(move || {
                COUNT.with(|c| c.set(i));
                let mut g = Generator::new(move |y: &Yielder<u64>| {
                    COUNT.with(|c| c.set(1_000_000 + i));
                    stackweave::yield_now(); // suspends the coroutine, inside the generator
                    y.suspend(COUNT.with(Cell::get));
                });
                assert_eq!(g.resume(), GeneratorState::Yielded(1_000_000 + i));
                stackweave::yield_now();
                COUNT.with(Cell::get)
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i as u64);
    }
}

static LOCAL_DROPS: AtomicUsize = AtomicUsize::new(0);

struct CountsDrop;
impl Drop for CountsDrop {
    fn drop(&mut self) {
        LOCAL_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

stackweave::coroutine_local! {
    static DROPPED_WITH_GENERATOR: RefCell<Option<CountsDrop>> = RefCell::new(None);
}

/// A generator's locals are dropped with it, after its stack has unwound: a
/// destructor on that stack still sees them intact.
#[test]
fn a_generators_locals_drop_after_its_stack_unwinds() {
    struct ReadsOnUnwind;
    impl Drop for ReadsOnUnwind {
        fn drop(&mut self) {
            let sum = KEY.with(|v| v.iter().fold(0u64, |a, x| a.wrapping_add(*x)));
            assert_eq!(sum, expected_sum());
            assert!(DROPPED_WITH_GENERATOR.with(|d| d.borrow().is_some()));
        }
    }
    let before = LOCAL_DROPS.load(Ordering::SeqCst);
    for _ in 0..1_000 {
        let mut g = Generator::new(|y: &Yielder<()>| {
            DROPPED_WITH_GENERATOR.with(|d| *d.borrow_mut() = Some(CountsDrop));
            KEY.with(|_v| {
                let _guard = ReadsOnUnwind;
                y.suspend(());
            });
        });
        assert_eq!(g.resume(), GeneratorState::Yielded(()));
        drop(g); // unwinds the stack, then drops the generator's locals
    }
    assert_eq!(LOCAL_DROPS.load(Ordering::SeqCst) - before, 1_000);
}

/// A panic that unwinds through a suspended-and-resumed `with` sees its value
/// intact, and reaches the resumer.
#[test]
fn a_panic_through_a_resumed_with_sees_the_value_intact() {
    struct Check;
    impl Drop for Check {
        fn drop(&mut self) {
            KEY.with(|v| assert_eq!(v.len(), 64));
        }
    }
    let rt = stackweave::Runtime::builder().workers(1).build().unwrap();
    let result = rt.block_on(|| {
        let mut g = Generator::new(|y: &Yielder<()>| {
            KEY.with(|v| {
                let _check = Check;
                y.suspend(());
                if v.len() == 64 {
                    panic!("boom inside with");
                }
            })
        });
        g.resume();
        SLOT2.with(|s| *s.borrow_mut() = Some(g));
        let h = stackweave::spawn(|| {
            let mut g = SLOT2.with(|s| s.borrow_mut().take()).expect("same worker");
            g.resume();
        });
        h.join()
    });
    let payload = result.expect_err("the generator's panic reaches the resumer");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom inside with"));
}

thread_local! {
    static SLOT2: RefCell<Option<Generator<'static, (), ()>>> = const { RefCell::new(None) };
}

// ---- coroutines suspended inside `with`: cancellation and runtime drop ----

thread_local! {
    static WORKER_VALUE: Vec<u64> = vec![FILL; 64];
}

/// Checks, as it drops while its coroutine unwinds, that both borrowed values are
/// intact, and counts itself in its counter (one per test: the tests run in
/// parallel).
struct ChecksBorrows<'a>(&'a Vec<u64>, &'a Vec<u64>, &'static AtomicUsize);
impl Drop for ChecksBorrows<'_> {
    fn drop(&mut self) {
        let sum = |v: &Vec<u64>| v.iter().fold(0u64, |a, x| a.wrapping_add(*x));
        assert_eq!(sum(self.0), expected_sum());
        assert_eq!(sum(self.1), expected_sum());
        self.2.fetch_add(1, Ordering::SeqCst);
    }
}

/// Parks forever inside both kinds of `with`, once there counting itself in `parked`;
/// counts in `intact` when it unwinds and finds both values intact.
fn park_inside_both_withs(parked: &AtomicUsize, intact: &'static AtomicUsize) {
    KEY.with(|local| {
        WORKER_VALUE.with(|tls| {
            let _check = ChecksBorrows(local, tls, intact);
            parked.fetch_add(1, Ordering::SeqCst);
            loop {
                stackweave::park();
            }
        })
    });
}

/// Cancelling coroutines suspended inside `coroutine_local!` and `thread_local!`
/// `with` calls unwinds them while both values are alive.
#[test]
fn cancelling_coroutines_suspended_inside_with_sees_the_values_intact() {
    let rt = stackweave::Runtime::builder().workers(2).build().unwrap();
    static CANCEL_PARKED: AtomicUsize = AtomicUsize::new(0);
    static CANCEL_INTACT: AtomicUsize = AtomicUsize::new(0);
    let handles: Vec<_> = (0..1_000)
        .map(|_| rt.spawn(|| park_inside_both_withs(&CANCEL_PARKED, &CANCEL_INTACT)))
        .collect();
    while CANCEL_PARKED.load(Ordering::SeqCst) < 1_000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for h in handles {
        h.cancel();
        assert!(h.join().is_err());
    }
    assert_eq!(CANCEL_INTACT.load(Ordering::SeqCst), 1_000);
}

/// Dropping the runtime while coroutines are suspended inside both kinds of `with`
/// unwinds them before their worker threads (and so the thread-locals) go away.
#[test]
fn dropping_the_runtime_with_coroutines_suspended_inside_with_sees_the_values_intact() {
    let rt = stackweave::Runtime::builder().workers(2).build().unwrap();
    static DROP_PARKED: AtomicUsize = AtomicUsize::new(0);
    static DROP_INTACT: AtomicUsize = AtomicUsize::new(0);
    let handles: Vec<_> = (0..1_000)
        .map(|_| rt.spawn(|| park_inside_both_withs(&DROP_PARKED, &DROP_INTACT)))
        .collect();
    while DROP_PARKED.load(Ordering::SeqCst) < 1_000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(rt);
    assert_eq!(DROP_INTACT.load(Ordering::SeqCst), 1_000);
    for h in handles {
        assert!(h.join().is_err());
    }
}

// ---- std's thread_local! and thread exit ----

/// What happened, in order, in the thread-exit tests, by thread (`gettid`, which
/// needs no thread-local, so it works while they are destroyed).
static EVENTS: Mutex<Vec<(libc::pid_t, &'static str)>> = Mutex::new(Vec::new());

fn tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn event(e: &'static str) {
    EVENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((tid(), e));
}

/// The events of thread `tid`.
fn events_of(tid: libc::pid_t) -> Vec<&'static str> {
    let events = EVENTS.lock().unwrap_or_else(|p| p.into_inner());
    events
        .iter()
        .filter(|(t, _)| *t == tid)
        .map(|(_, e)| *e)
        .collect()
}

struct Loud(Vec<u64>);
impl Drop for Loud {
    fn drop(&mut self) {
        event("value destroyed");
        marker("value destroyed");
        self.0.iter_mut().for_each(|x| *x = 0xdead);
        self.0.clear();
        self.0.shrink_to_fit();
    }
}

struct UseOnDrop<'a>(&'a Loud);
impl Drop for UseOnDrop<'_> {
    fn drop(&mut self) {
        event("generator code read the value");
        marker(&format!(
            "generator code read the value: first={:#x} len={}",
            self.0 .0.first().copied().unwrap_or(0),
            self.0 .0.len()
        ));
    }
}

thread_local! {
    static HOLDER: RefCell<Option<Generator<'static, (), ()>>> = const { RefCell::new(None) };
    static LENT: Loud = Loud(vec![7; 16]);
}

/// The second reproducer: a thread-local destructor that runs after the
/// lent value's own drops a generator suspended inside `LENT.with`. The generator
/// is leaked, not unwound: its code never runs after the value is destroyed.
#[test]
fn a_generator_dropped_by_a_later_thread_local_destructor_is_leaked_not_unwound() {
    let thread = std::thread::spawn(|| {
        HOLDER.with(|_| {}); // registered first, so destroyed after LENT
        let mut g = Generator::new(|y: &Yielder<()>| {
            LENT.with(|v| {
                let _guard = UseOnDrop(v);
                y.suspend(());
            });
        });
        g.resume();
        HOLDER.with(|s| *s.borrow_mut() = Some(g));
        tid()
    })
    .join()
    .unwrap();
    assert_eq!(events_of(thread), ["value destroyed"]);
}

/// The same with a generator dropped normally on the same thread, before exit: it
/// unwinds (the guard runs, with the value alive).
#[test]
fn a_suspended_generator_dropped_before_thread_exit_still_unwinds() {
    let ran = std::thread::spawn(|| {
        let mut g = Generator::new(|y: &Yielder<()>| {
            LENT.with(|v| {
                let _guard = UseOnDrop(v);
                y.suspend(());
            });
        });
        g.resume();
        drop(g);
        let before_exit = events_of(tid());
        (tid(), before_exit)
    })
    .join()
    .unwrap();
    assert_eq!(ran.1, ["generator code read the value"]);
    assert_eq!(
        events_of(ran.0),
        ["generator code read the value", "value destroyed"]
    );
}

struct ResumesOnDrop(Generator<'static, (), ()>);
impl Drop for ResumesOnDrop {
    fn drop(&mut self) {
        marker("resuming from a thread-local destructor");
        self.0.resume();
    }
}

thread_local! {
    static RESUMER: RefCell<Option<ResumesOnDrop>> = const { RefCell::new(None) };
}

/// A thread-local destructor that *resumes* a generator suspended inside another
/// thread-local's `with`, after that value was destroyed, gets a panic (which std
/// turns into an abort there) instead of running the generator.
#[test]
fn resuming_a_suspended_generator_from_a_thread_local_destructor_panics() {
    const NAME: &str = "resuming_a_suspended_generator_from_a_thread_local_destructor_panics";
    if common::is_child(NAME) {
        std::thread::spawn(|| {
            RESUMER.with(|_| {});
            let mut g = Generator::new(|y: &Yielder<()>| {
                LENT.with(|v| {
                    y.suspend(());
                    marker(&format!("generator code read the value: len={}", v.0.len()));
                });
            });
            g.resume();
            RESUMER.with(|s| *s.borrow_mut() = Some(ResumesOnDrop(g)));
        })
        .join()
        .ok();
        marker("thread exited");
        return;
    }
    let child = common::run_child(NAME);
    assert!(child.stderr.contains("value destroyed"), "{child}");
    assert!(
        child
            .stderr
            .contains("resuming from a thread-local destructor"),
        "{child}"
    );
    assert!(
        !child.stderr.contains("generator code read the value"),
        "{child}"
    );
    assert!(
        child.stderr.contains("destroys its thread-locals"),
        "{child}"
    );
    assert_eq!(child.status.signal(), Some(libc::SIGABRT), "{child}");
}

/// `process::exit` destroys the calling thread's thread-locals too: a generator
/// dropped by one of those destructors is leaked as well.
#[test]
fn process_exit_leaks_a_generator_dropped_by_a_thread_local_destructor() {
    const NAME: &str = "process_exit_leaks_a_generator_dropped_by_a_thread_local_destructor";
    if common::is_child(NAME) {
        HOLDER.with(|_| {});
        let mut g = Generator::new(|y: &Yielder<()>| {
            LENT.with(|v| {
                let _guard = UseOnDrop(v);
                y.suspend(());
            });
        });
        g.resume();
        HOLDER.with(|s| *s.borrow_mut() = Some(g));
        marker("exiting");
        std::process::exit(0);
    }
    let child = common::run_child(NAME);
    assert!(child.status.success(), "{child}");
    assert!(child.stderr.contains("exiting"), "{child}");
    assert!(child.stderr.contains("value destroyed"), "{child}");
    assert!(
        !child.stderr.contains("generator code read the value"),
        "{child}"
    );
}
