//! Regression: a destructor that blocks while its coroutine unwinds.
//!
//! std keeps "this thread is panicking" per OS thread, so a coroutine suspended in
//! the middle of an unwind would make every other coroutine of its worker run as if
//! panicking. Before the fix, a destructor that joined another coroutine during a
//! runtime shutdown either aborted with a double panic or hung the shutdown forever.
//! Now the runtime refuses loudly: one clear line on stderr, then abort. A generator
//! has no such problem (its resumer runs on the same thread and resumes it at once),
//! so there a suspend during a drop-unwind simply returns.

mod common;

use common::{is_child, run_child};
use stackweave::generator::{Generator, GeneratorState, Yielder};
use stackweave::{JoinHandle, Runtime};
use std::os::unix::process::ExitStatusExt;

/// Yields (always a suspension) and joins another coroutine when dropped.
struct BlockOnDrop(Option<JoinHandle<()>>);

impl Drop for BlockOnDrop {
    fn drop(&mut self) {
        stackweave::yield_now();
        if let Some(other) = self.0.take() {
            let _ = other.join();
        }
    }
}

#[test]
fn destructor_that_blocks_during_shutdown_unwind_aborts_with_a_message() {
    const TEST: &str = "destructor_that_blocks_during_shutdown_unwind_aborts_with_a_message";
    if is_child(TEST) {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let parked = rt.spawn(|| loop {
            stackweave::park();
        });
        let _holder = rt.spawn(move || {
            let _guard = BlockOnDrop(Some(parked));
            loop {
                stackweave::park();
            }
        });
        while rt.metrics().run_queue_depths.iter().sum::<usize>() > 0
            || rt.metrics().injector_depth > 0
        {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(rt); // unwinds the holder, whose guard joins: abort
        unreachable!("the shutdown should have aborted");
    }
    let child = run_child(TEST);
    assert_eq!(child.status.signal(), Some(libc::SIGABRT), "{child}");
    assert!(
        child.stderr.contains("tried to block while unwinding"),
        "{child}"
    );
}

#[test]
fn generator_destructor_that_suspends_during_drop_unwind_does_not_abort() {
    struct SuspendOnDrop<'y>(&'y Yielder<u32>);
    impl Drop for SuspendOnDrop<'_> {
        fn drop(&mut self) {
            self.0.suspend(99);
        }
    }
    let mut g = Generator::new(|y: &Yielder<u32>| {
        let _guard = SuspendOnDrop(y);
        y.suspend(1);
    });
    assert_eq!(g.resume(), GeneratorState::Yielded(1));
    drop(g); // unwinds; the guard's suspend returns instead of panicking again
}
