//! Why the `hooks` feature exists: without it, a blocking libc call inside a
//! coroutine (here `std::thread::sleep`) holds its worker, so the calls run one
//! after another and every coroutine homed there stalls meanwhile. (With the
//! feature, `tests/hooks` shows the same calls overlapping.) Only lower bounds are
//! asserted: a stall can only make these figures larger.
#![cfg(not(feature = "hooks"))]

use stackweave::Runtime;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLEEPERS: usize = 10;
const SLEEP: Duration = Duration::from_millis(30);

#[test]
fn std_thread_sleep_in_coroutines_holds_the_worker_and_stalls_its_neighbours() {
    let rt = Runtime::builder()
        .workers(1)
        .stall_threshold(None)
        .build()
        .unwrap();
    let (total, longest_gap) = rt.block_on(|| {
        let done = Arc::new(AtomicUsize::new(0));
        // The heartbeat spawns the sleepers after its first tick and ticks until all
        // of them are done, so every sleeper's run falls between two of its ticks.
        let heartbeat = stackweave::spawn({
            let done = done.clone();
            move || {
                let start = Instant::now();
                let mut last = Instant::now();
                let mut longest = Duration::ZERO;
                for _ in 0..SLEEPERS {
                    let done = done.clone();
                    stackweave::spawn(move || {
                        std::thread::sleep(SLEEP);
                        done.fetch_add(1, Ordering::AcqRel);
                    });
                }
                while done.load(Ordering::Acquire) < SLEEPERS {
                    stackweave::time::sleep(Duration::from_millis(1));
                    let now = Instant::now();
                    longest = longest.max(now - last);
                    last = now;
                }
                (start.elapsed(), longest)
            }
        });
        heartbeat.join().unwrap()
    });
    // One worker, one sleeping thread at a time: the sleeps add up.
    assert!(total >= SLEEP * SLEEPERS as u32, "{total:?}");
    // And the heartbeat waited out at least one whole sleep.
    assert!(longest_gap >= SLEEP, "{longest_gap:?}");
}
