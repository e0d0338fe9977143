//! Behaviour of standalone generators through the public API: values, completion,
//! panics, destructors, borrowing, nesting, scale, stack sizes, backtraces, threads.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod common;

use common::{page_size, proc_status_kib};
use stackweave::generator::{Generator, GeneratorState, Yielder};
use stackweave::stack::{self, DEFAULT_STACK_SIZE, MIN_STACK_SIZE};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::io;
use std::panic::{self, catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;

use GeneratorState::{Complete, Yielded};

/// Serialises the tests that create thousands of stacks, so that one does not disturb
/// the RSS another measures, nor share a `vm.max_map_count` budget with it.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_string()
    }
}

/// Counts how many times values of this type were dropped.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

// ---------------------------------------------------------------------------------
// Values and completion
// ---------------------------------------------------------------------------------

#[test]
fn yields_values_then_completes_with_the_return_value() {
    let mut g = Generator::new(|y: &Yielder<u32>| {
        y.suspend(1);
        y.suspend(2);
        "done"
    });
    assert_eq!(g.resume(), GeneratorState::Yielded(1));
    assert_eq!(g.resume(), GeneratorState::Yielded(2));
    assert_eq!(g.resume(), GeneratorState::Complete("done"));
    assert!(g.is_complete());
}

/// Yields on the way down and on the way up of a recursion, and checks after every
/// suspension that its own frame's locals survived it.
fn descend(y: &Yielder<u32>, level: u32, deepest: u32) {
    let locals = [level.wrapping_mul(0x9E37_79B9); 16];
    y.suspend(level);
    if level < deepest {
        descend(y, level + 1, deepest);
    }
    assert_eq!(
        black_box(locals),
        [level.wrapping_mul(0x9E37_79B9); 16],
        "a frame's locals changed across suspensions"
    );
    y.suspend(100 + level);
}

#[test]
fn yields_from_every_level_of_nested_calls() {
    let mut g = Generator::new(|y: &Yielder<u32>| {
        descend(y, 0, 6);
        "bottom reached and unwound"
    });
    let mut got = Vec::new();
    let result = loop {
        match g.resume() {
            Yielded(v) => got.push(v),
            Complete(r) => break r,
        }
    };
    let down = 0..=6;
    let up = (100..=106).rev();
    assert_eq!(got, down.chain(up).collect::<Vec<_>>());
    assert_eq!(result, "bottom reached and unwound");
}

#[test]
fn is_complete_turns_true_only_when_the_closure_returns() {
    let mut g = Generator::new(|y: &Yielder<()>| {
        y.suspend(());
        5
    });
    assert!(!g.is_complete(), "complete before it started");
    assert_eq!(g.resume(), Yielded(()));
    assert!(!g.is_complete(), "complete while suspended");
    assert_eq!(g.resume(), Complete(5));
    assert!(g.is_complete());
}

#[test]
fn unit_generator_is_an_iterator() {
    let squares = Generator::new(|y: &Yielder<u64>| {
        for i in 1..=5 {
            y.suspend(i * i);
        }
    });
    assert_eq!(squares.collect::<Vec<_>>(), [1, 4, 9, 16, 25]);
}

#[test]
fn iterator_returns_none_repeatedly_after_completion() {
    let mut g = Generator::new(|y: &Yielder<char>| y.suspend('x'));
    assert_eq!(g.next(), Some('x'));
    assert_eq!(g.next(), None);
    assert!(g.is_complete());
    for _ in 0..3 {
        assert_eq!(g.next(), None);
    }
}

#[test]
#[should_panic(expected = "complete generator")]
fn resuming_a_complete_generator_panics() {
    let mut g = Generator::new(|_: &Yielder<()>| 1);
    assert_eq!(g.resume(), Complete(1));
    g.resume();
}

// ---------------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct CustomPayload {
    code: u32,
    note: &'static str,
}

#[test]
fn panic_reaches_the_resumer_with_its_original_custom_payload() {
    let mut g: Generator<'_, u8, ()> = Generator::new(|y: &Yielder<u8>| {
        y.suspend(1);
        panic::panic_any(CustomPayload {
            code: 42,
            note: "from inside",
        });
    });
    assert_eq!(g.resume(), Yielded(1));
    let payload = catch_unwind(AssertUnwindSafe(|| g.resume())).expect_err("resume must panic");
    let payload = payload
        .downcast::<CustomPayload>()
        .expect("the payload keeps its type");
    assert_eq!(
        *payload,
        CustomPayload {
            code: 42,
            note: "from inside"
        }
    );
    assert!(g.is_complete(), "a generator that panicked is complete");
}

#[test]
fn panic_reaches_the_resumer_with_its_original_message() {
    let mut formatted: Generator<'_, (), ()> = Generator::new(|_: &Yielder<()>| {
        // A run-time argument: a constant one would be folded into a `&str`.
        panic!("formatted message {}", black_box(7));
    });
    let payload = catch_unwind(AssertUnwindSafe(|| formatted.resume())).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("formatted message 7")
    );
    assert!(formatted.is_complete());

    let mut literal: Generator<'_, (), ()> = Generator::new(|_: &Yielder<()>| {
        panic!("literal message");
    });
    let payload = catch_unwind(AssertUnwindSafe(|| literal.resume())).unwrap_err();
    assert_eq!(panic_message(&*payload), "literal message");
    assert!(literal.is_complete());
}

#[test]
fn panic_in_one_generator_leaves_another_alive_one_working() {
    let mut healthy = Generator::new(|y: &Yielder<u32>| {
        for i in 0..3 {
            y.suspend(i);
        }
        "healthy done"
    });
    let mut failing: Generator<'_, u32, ()> = Generator::new(|y: &Yielder<u32>| {
        y.suspend(10);
        panic!("failing generator");
    });
    assert_eq!(healthy.resume(), Yielded(0));
    assert_eq!(failing.resume(), Yielded(10));
    assert_eq!(healthy.resume(), Yielded(1));
    let payload = catch_unwind(AssertUnwindSafe(|| failing.resume())).unwrap_err();
    assert_eq!(panic_message(&*payload), "failing generator");
    assert!(failing.is_complete());
    assert!(!healthy.is_complete());
    assert_eq!(healthy.resume(), Yielded(2));
    assert_eq!(healthy.resume(), Complete("healthy done"));
    // The failed generator's stack is back in the pool; a new generator runs fine.
    let fresh = Generator::new(|y: &Yielder<u8>| y.suspend(9));
    assert_eq!(fresh.collect::<Vec<_>>(), [9]);
}

// ---------------------------------------------------------------------------------
// Destructors on drop
// ---------------------------------------------------------------------------------

/// Holds one guard per frame, `depth` frames deep, and suspends at the bottom.
fn guarded_frames(y: &Yielder<u32>, depth: u32, drops: &Rc<Cell<usize>>, after: &Cell<bool>) {
    let _guard = DropCounter(drops.clone());
    if depth == 0 {
        y.suspend(0);
    } else {
        guarded_frames(y, depth - 1, drops, after);
    }
    after.set(true);
}

#[test]
fn dropping_a_suspended_generator_runs_every_destructor_on_its_stack() {
    let drops = Rc::new(Cell::new(0));
    let after = Rc::new(Cell::new(false));
    let captured = DropCounter(drops.clone());
    let mut g = Generator::new({
        let (drops, after) = (drops.clone(), after.clone());
        move |y: &Yielder<u32>| {
            let _captured = captured;
            guarded_frames(y, 4, &drops, &after); // 5 frames, 5 guards
        }
    });
    assert_eq!(g.resume(), Yielded(0));
    assert_eq!(drops.get(), 0, "nothing is dropped while suspended");
    drop(g);
    assert_eq!(drops.get(), 5 + 1, "5 frame guards and the captured guard");
    assert!(!after.get(), "code after the pending suspend must not run");
}

#[test]
fn dropping_an_unstarted_generator_drops_its_closure_without_running_it() {
    let drops = Rc::new(Cell::new(0));
    let ran = Rc::new(Cell::new(false));
    let captured = DropCounter(drops.clone());
    let g = Generator::new({
        let ran = ran.clone();
        move |y: &Yielder<()>| {
            let _captured = captured;
            ran.set(true);
            y.suspend(());
        }
    });
    assert_eq!(drops.get(), 0);
    drop(g);
    assert_eq!(drops.get(), 1, "the captured value is dropped");
    assert!(!ran.get(), "the body never ran");
}

#[test]
fn dropping_a_suspended_minimum_size_generator_unwinds_it() {
    // Unwinding runs on the generator's own stack and needs several KiB of it; a
    // shallow suspension in the smallest stack leaves enough.
    let drops = Rc::new(Cell::new(0));
    let mut g = Generator::with_stack_size(MIN_STACK_SIZE, |y: &Yielder<u32>| {
        let _guard = DropCounter(drops.clone());
        y.suspend(1);
        y.suspend(2);
    })
    .unwrap();
    assert_eq!(g.resume(), Yielded(1));
    drop(g);
    assert_eq!(drops.get(), 1);
}

#[test]
fn catching_the_drop_unwind_and_suspending_again_still_unwinds() {
    let frame_drops = Rc::new(Cell::new(0));
    let value_drops = Rc::new(Cell::new(0));
    let caught = Rc::new(Cell::new(0));
    let after = Rc::new(Cell::new(false));
    let mut g = Generator::new({
        let (frame_drops, value_drops) = (frame_drops.clone(), value_drops.clone());
        let (caught, after) = (caught.clone(), after.clone());
        move |y: &Yielder<DropCounter>| {
            let _guard = DropCounter(frame_drops.clone());
            for _ in 0..3 {
                let value = DropCounter(value_drops.clone());
                if catch_unwind(AssertUnwindSafe(|| y.suspend(value))).is_err() {
                    caught.set(caught.get() + 1);
                }
            }
            // Caught three times; this suspend is not caught and must unwind too.
            y.suspend(DropCounter(value_drops.clone()));
            after.set(true);
        }
    });
    let first = match g.resume() {
        Yielded(v) => v,
        Complete(()) => panic!("expected a value"),
    };
    drop(first);
    assert_eq!(value_drops.get(), 1);
    drop(g);
    assert_eq!(caught.get(), 3, "every catch saw the unwind");
    assert!(!after.get(), "the generator was unwound, not resumed");
    assert_eq!(frame_drops.get(), 1, "the frame's guard was dropped");
    assert_eq!(
        value_drops.get(),
        4,
        "values suspended during the unwind are dropped, not leaked"
    );
}

#[test]
fn own_panic_raised_while_a_dropped_generator_unwinds_reaches_the_dropper() {
    let mut g: Generator<'_, (), ()> = Generator::new(|y: &Yielder<()>| {
        if catch_unwind(AssertUnwindSafe(|| y.suspend(()))).is_err() {
            panic::panic_any(CustomPayload {
                code: 7,
                note: "raised during drop",
            });
        }
    });
    assert_eq!(g.resume(), Yielded(()));
    let payload = catch_unwind(AssertUnwindSafe(move || drop(g))).expect_err("drop re-raises");
    let payload = payload
        .downcast::<CustomPayload>()
        .expect("original payload");
    assert_eq!(payload.code, 7);
}

#[derive(Debug)]
struct OuterPanic;

#[test]
fn dropping_a_suspended_generator_while_panicking_does_not_abort() {
    let drops = Rc::new(Cell::new(0));
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut plain = Generator::new(|y: &Yielder<u32>| {
            let _guard = DropCounter(drops.clone());
            guarded_frames(y, 2, &drops, &Cell::new(false));
        });
        // This one even panics with its own payload while being unwound: during a
        // panic that payload is dropped, not raised (which would abort).
        let mut stubborn: Generator<'_, (), ()> = Generator::new(|y: &Yielder<()>| {
            let _guard = DropCounter(drops.clone());
            if catch_unwind(AssertUnwindSafe(|| y.suspend(()))).is_err() {
                panic::panic_any(CustomPayload {
                    code: 1,
                    note: "second panic",
                });
            }
        });
        assert_eq!(plain.resume(), Yielded(0));
        assert_eq!(stubborn.resume(), Yielded(()));
        // Both generators are dropped by the unwinding of this panic.
        panic::panic_any(OuterPanic);
    }));
    let payload = result.expect_err("the outer panic propagates");
    assert!(
        payload.is::<OuterPanic>(),
        "the outer payload survives, got {:?}",
        panic_message(&*payload)
    );
    assert_eq!(drops.get(), 1 + 3 + 1, "both stacks were unwound");
}

// ---------------------------------------------------------------------------------
// Borrowing and nesting
// ---------------------------------------------------------------------------------

#[test]
fn generator_borrows_local_data_and_yields_references_into_it() {
    let words = vec![
        String::from("alpha"),
        String::from("beta"),
        String::from("gamma"),
    ];
    let g = Generator::new(|y: &Yielder<&String>| {
        for w in &words {
            y.suspend(w);
        }
    });
    let got: Vec<&String> = g.collect();
    assert_eq!(got.len(), words.len());
    for (r, w) in got.iter().zip(&words) {
        assert!(std::ptr::eq(*r, w), "a reference into the borrowed Vec");
    }

    let mut log = Vec::new();
    {
        let mut g = Generator::new(|y: &Yielder<usize>| {
            for i in 0..3 {
                log.push(i * 10);
                y.suspend(log.len());
            }
        });
        assert_eq!(g.by_ref().collect::<Vec<_>>(), [1, 2, 3]);
    }
    assert_eq!(
        log,
        [0, 10, 20],
        "the mutable borrow ended with the generator"
    );
}

#[test]
fn generator_drives_a_nested_generator() {
    let mut outer = Generator::new(|y: &Yielder<u32>| {
        let mut inner = Generator::new(|yi: &Yielder<u32>| {
            for i in 1..=3 {
                yi.suspend(i);
            }
            100
        });
        loop {
            match inner.resume() {
                Yielded(v) => y.suspend(v * 10),
                Complete(r) => break r + 1,
            }
        }
    });
    assert_eq!(outer.resume(), Yielded(10));
    assert_eq!(outer.resume(), Yielded(20));
    assert_eq!(outer.resume(), Yielded(30));
    assert_eq!(outer.resume(), Complete(101));
}

#[test]
fn suspending_the_outer_yielder_from_a_nested_generator_panics_clearly() {
    let mut outer = Generator::new(|y: &Yielder<u32>| {
        y.suspend(1);
        let mut inner: Generator<'_, u32, ()> = Generator::new(|_: &Yielder<u32>| {
            y.suspend(2); // misuse: not this generator's yielder
        });
        let payload = catch_unwind(AssertUnwindSafe(|| inner.resume()))
            .expect_err("suspending another generator's yielder must panic");
        assert!(inner.is_complete());
        // The outer generator is unharmed and can still suspend with its yielder.
        y.suspend(3);
        panic_message(&*payload)
    });
    assert_eq!(outer.resume(), Yielded(1));
    assert_eq!(outer.resume(), Yielded(3));
    match outer.resume() {
        Complete(msg) => assert!(
            msg.contains("Yielder::suspend called outside its own generator"),
            "unclear message: {msg:?}"
        ),
        Yielded(v) => panic!("the misuse yielded {v} instead of panicking"),
    }
}

#[test]
fn uncaught_outer_yielder_misuse_reaches_the_outermost_resumer() {
    let mut outer: Generator<'_, u32, ()> = Generator::new(|y: &Yielder<u32>| {
        let mut inner: Generator<'_, u32, ()> = Generator::new(|_: &Yielder<u32>| y.suspend(2));
        inner.resume();
    });
    let payload = catch_unwind(AssertUnwindSafe(|| outer.resume())).unwrap_err();
    assert!(panic_message(&*payload).contains("outside its own generator"));
    assert!(outer.is_complete());
}

// ---------------------------------------------------------------------------------
// Scale and memory
// ---------------------------------------------------------------------------------

#[cfg(target_os = "linux")]
#[test]
fn hundred_thousand_generators_alive_at_once_cost_little_memory() {
    let _heavy = heavy();
    // 16 KiB stacks: the RSS cost does not depend on the reservation, and a smaller
    // one keeps page tables and the address space used by this test small.
    const STACK: usize = 16 * 1024;
    let mut count = 100_000;
    if let Some(cap) = stack::stack_cap() {
        // mprotect guards: two memory maps per stack; stay well under the cap.
        count = count.min(cap * 3 / 4);
    }
    // Warm up this thread (pool, signal stack) so that only the generators count.
    Generator::with_stack_size(STACK, |y: &Yielder<usize>| y.suspend(0))
        .unwrap()
        .for_each(drop);
    let mut gens = Vec::with_capacity(count);
    let before = proc_status_kib("VmRSS");
    for i in 0..count {
        let mut g = Generator::with_stack_size(STACK, move |y: &Yielder<usize>| {
            y.suspend(i);
            i * 2
        })
        .expect("creating a generator");
        assert_eq!(g.resume(), Yielded(i)); // its stack is touched
        gens.push(g);
    }
    let after = proc_status_kib("VmRSS");
    let per_generator = after.saturating_sub(before) * 1024 / count;
    eprintln!(
        "{count} generators alive ({} KiB stacks, {:?} guards, {} backend): \
         RSS +{} KiB, {per_generator} bytes per generator",
        STACK / 1024,
        stack::guard_kind(),
        stackweave::SWITCH_BACKEND,
        after.saturating_sub(before),
    );
    assert!(
        per_generator < 64 * 1024,
        "{per_generator} bytes of RSS per idle generator"
    );
    for (i, g) in gens.iter_mut().enumerate() {
        assert_eq!(g.resume(), Complete(i * 2));
    }
    assert!(gens.iter().all(Generator::is_complete));
}

#[test]
fn with_stack_size_rounds_up_to_pages_and_the_minimum() {
    let page = page_size();
    assert_eq!(
        MIN_STACK_SIZE % page,
        0,
        "MIN_STACK_SIZE is page-aligned here"
    );
    // Every generator here is run to completion: this test is about sizes, not about
    // dropping unstarted generators (see the test of that).
    let mut default = Generator::new(|_: &Yielder<()>| {});
    assert_eq!(default.stack_size(), DEFAULT_STACK_SIZE);
    assert_eq!(default.resume(), Complete(()));
    for requested in [0, 1, 100, page - 1, page, MIN_STACK_SIZE - 1] {
        let mut g = Generator::with_stack_size(requested, |_: &Yielder<()>| {}).unwrap();
        assert_eq!(g.stack_size(), MIN_STACK_SIZE, "requested {requested}");
        assert_eq!(g.resume(), Complete(()), "a minimum-size stack runs");
    }
    for requested in [
        MIN_STACK_SIZE,
        MIN_STACK_SIZE + 1,
        20_000,
        64 * 1024,
        100_001,
        DEFAULT_STACK_SIZE,
        DEFAULT_STACK_SIZE + 3,
    ] {
        let mut g = Generator::with_stack_size(requested, |y: &Yielder<u8>| y.suspend(1)).unwrap();
        let size = g.stack_size();
        assert!(size >= requested, "{size} < requested {requested}");
        assert_eq!(size % page, 0, "{size} is not a page multiple");
        assert!(size < requested + page, "{size} rounds {requested} too far");
        assert_eq!(g.resume(), Yielded(1), "a rounded stack runs");
        assert_eq!(g.resume(), Complete(()));
    }
    for absurd in [usize::MAX, usize::MAX - page + 2] {
        let err = Generator::with_stack_size(absurd, |_: &Yielder<()>| {}).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::OutOfMemory
            ),
            "{absurd}: {err}"
        );
    }
}

#[test]
fn closure_with_captures_bigger_than_its_stack_runs_or_is_refused_cleanly() {
    const CAPTURED: usize = 2 * MIN_STACK_SIZE;
    let big = [7u8; CAPTURED];
    let sum = 7 * CAPTURED as u64;
    let result = Generator::with_stack_size(MIN_STACK_SIZE, move |y: &Yielder<u64>| {
        y.suspend(black_box(&big).iter().map(|&b| u64::from(b)).sum());
    });
    match result {
        Ok(g) => assert_eq!(g.collect::<Vec<_>>(), [sum]),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}"),
    }
    // The same closure on a roomy stack runs. (Roomy: unoptimised builds copy the
    // closure several times on the generator's stack while starting it.)
    let g = Generator::with_stack_size(1024 * 1024, move |y: &Yielder<u64>| {
        y.suspend(black_box(&big).iter().map(|&b| u64::from(b)).sum());
    })
    .unwrap();
    assert_eq!(g.collect::<Vec<_>>(), [sum]);
}

/// Recurses `depth` frames of at least 1 KiB each and calls `at_bottom` with the
/// address of the deepest frame's array.
#[inline(never)]
fn recurse_with_kib_frames(depth: usize, at_bottom: &mut dyn FnMut(usize)) -> u64 {
    let mut frame = [0u8; 1024];
    frame[depth % 1024] = depth as u8;
    black_box(&mut frame);
    let below = if depth == 0 {
        at_bottom(frame.as_ptr() as usize);
        0
    } else {
        recurse_with_kib_frames(depth - 1, at_bottom)
    };
    below + u64::from(black_box(&frame)[depth % 1024])
}

#[test]
fn deep_recursion_using_most_of_a_one_mib_stack_succeeds() {
    const STACK: usize = 1024 * 1024;
    let mut g = Generator::with_stack_size(STACK, |y: &Yielder<usize>| {
        let marker = 0u8;
        let top = black_box(&marker) as *const u8 as usize;
        // Measure this build's frame size, then fill three quarters of the stack.
        let mut deepest = 0;
        recurse_with_kib_frames(16, &mut |addr| deepest = addr);
        let frame = (top - deepest) / 16;
        assert!(frame >= 1024, "frames hold a 1 KiB array, measured {frame}");
        let levels = STACK * 3 / 4 / frame;
        // Suspend at the bottom: the deep stack must survive the suspension.
        recurse_with_kib_frames(levels, &mut |addr| y.suspend(top - addr));
        levels
    })
    .unwrap();
    let used = match g.resume() {
        Yielded(used) => used,
        Complete(_) => panic!("expected the bottom to suspend"),
    };
    eprintln!("deep recursion used {used} of {STACK} stack bytes");
    assert!(used > STACK / 2 && used < STACK, "used {used} bytes");
    match g.resume() {
        Complete(levels) => assert!(levels >= 400, "only {levels} levels"),
        Yielded(_) => panic!("expected completion"),
    }
}

// ---------------------------------------------------------------------------------
// Backtraces and threads
// ---------------------------------------------------------------------------------

/// Resumes `g` once; its distinctive name must show up in a backtrace taken inside
/// the generator.
#[inline(never)]
fn resumer_marker_for_backtrace(g: &mut Generator<'_, String, ()>) -> String {
    let text = match g.resume() {
        Yielded(text) => text,
        Complete(()) => panic!("expected a backtrace"),
    };
    // Work after the call, so it cannot become a tail call.
    black_box(text)
}

#[test]
fn backtrace_inside_a_generator_names_the_function_that_resumed_it() {
    let mut g = Generator::new(|y: &Yielder<String>| {
        y.suspend(std::backtrace::Backtrace::force_capture().to_string());
    });
    let text = resumer_marker_for_backtrace(&mut g);
    assert!(
        text.contains("resumer_marker_for_backtrace"),
        "the backtrace stops at the generator's stack:\n{text}"
    );
    g.for_each(drop);
}

#[test]
fn generators_run_on_many_threads_at_once() {
    let _heavy = heavy();
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1000;
    const STEPS: u64 = 3;
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let mut checked = 0;
                // Two rounds: the second reuses stacks from this thread's pool.
                for round in 0..2u64 {
                    let mut gens: Vec<_> = (0..PER_THREAD as u64)
                        .map(|i| {
                            let base = ((t as u64) << 32) | (round << 24) | (i << 4);
                            let sum = RefCell::new(0);
                            Generator::new(move |y: &Yielder<u64>| {
                                for k in 0..STEPS {
                                    *sum.borrow_mut() += base + k;
                                    y.suspend(base + k);
                                }
                                sum.into_inner()
                            })
                        })
                        .collect();
                    for k in 0..STEPS {
                        for (i, g) in gens.iter_mut().enumerate() {
                            let base = ((t as u64) << 32) | (round << 24) | ((i as u64) << 4);
                            assert_eq!(g.resume(), Yielded(base + k));
                            checked += 1;
                        }
                    }
                    for (i, g) in gens.iter_mut().enumerate() {
                        let base = ((t as u64) << 32) | (round << 24) | ((i as u64) << 4);
                        assert_eq!(g.resume(), Complete(3 * base + 3));
                    }
                }
                checked
            })
        })
        .collect();
    for t in threads {
        assert_eq!(
            t.join().expect("a generator thread failed"),
            2 * PER_THREAD * STEPS as usize
        );
    }
}
