//! A generator driven by a runtime coroutine may block (park, yield, join) from
//! inside its own stack: the coroutine is suspended with the generator frozen
//! mid-call, and both continue where they were when the coroutine is resumed.

use stackweave::generator::{Generator, GeneratorState, Yielder};
use stackweave::Runtime;

#[test]
fn generator_inside_a_coroutine_can_block_the_coroutine() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let total = rt.block_on(|| {
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                stackweave::spawn(move || {
                    let thread = std::thread::current().id();
                    let mut g = Generator::new(|y: &Yielder<u64>| {
                        for k in 0..10 {
                            stackweave::yield_now(); // suspends the coroutine
                            let child = stackweave::spawn(move || k * 2);
                            y.suspend(child.join().unwrap() + i); // join blocks too
                        }
                    });
                    let mut sum = 0;
                    while let GeneratorState::Yielded(v) = g.resume() {
                        sum += v;
                        assert_eq!(std::thread::current().id(), thread);
                    }
                    sum
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    // Each coroutine: sum over k of (2k + i) = 90 + 10 i.
    let expected: u64 = (0..100u64).map(|i| 90 + 10 * i).sum();
    assert_eq!(total, expected);
}
