//! Context-switch benchmarks: stackweave against corosensei and a stackless `async`
//! state machine, measured side by side in one process.
//!
//! # What is measured
//!
//! * **Round trip**: one `resume` into a suspended coroutine plus its `suspend`
//!   back, for
//!   * a stackweave [`Generator`] whose closure loops on [`Yielder::suspend`];
//!   * a `corosensei::Coroutine` of the same shape;
//!   * a stackless baseline: an `async` block looping on a future that is
//!     `Pending` once and then `Ready`, polled with a no-op waker. One poll that
//!     returns `Pending` counts as one round trip.
//!
//!   Each contender counts its own suspensions and every sample checks, outside the
//!   timed loop, that it made exactly the round trips it was asked for.
//! * **Create + run + drop**: build a coroutine whose closure suspends once, resume
//!   it twice (to the suspend, then to completion) and drop it, for
//!   * stackweave, whose stacks come from its per-thread pool (warmed up first, so
//!     every iteration reuses a stack);
//!   * corosensei with one stack reused through `Coroutine::with_stack` and
//!     `into_stack` (the fair comparison);
//!   * corosensei with a fresh `DefaultStack` every time (`mmap` + `mprotect` +
//!     first-touch page fault + `munmap`: what pooling saves; not a like-for-like
//!     comparison).
//!
//!   All stacks are [`DEFAULT_STACK_SIZE`] bytes.
//! * **Bare switch**: the same round trip on stackweave's raw context, with no
//!   `Generator` around it (`stackweave::__BareSwitch`, hidden, for this bench
//!   only: the switch of the compiled-in backend, 64 KiB stack), against the bare
//!   `corosensei::Coroutine` again; what the `Generator` adds is the difference
//!   between the two stackweave rows. (This was an `#[ignore]`d test in
//!   `src/context/x86_64.rs` before.)
//!
//! The contenders alternate round-robin: every round times each of them once
//! (the starting contender rotates from round to round), so drift in clock speed
//! or background load hits them all alike. The table shows the median, minimum
//! and maximum over the rounds of the mean time per operation of each round.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench switch                                # hand-written switch
//! cargo bench --bench switch --features corosensei-backend  # stackweave over corosensei
//! cargo bench --bench switch -- --quick                     # fast smoke run (CI)
//! ```
//!
//! `--quick` runs fewer rounds with fewer iterations; its numbers are noisier. Run
//! without `--bench` on the command line (as `cargo test --benches` does) the
//! binary also runs quick, since that is a smoke test, not a measurement. Other
//! arguments are ignored.
//!
//! # Reading the ratios
//!
//! The last column compares each rival's median with stackweave's median in the
//! same group: `corosensei/stackweave = 1.05x` means the rival takes 1.05 times as
//! long as stackweave per operation (stackweave is 5% faster); below `1.00x` the
//! rival is faster. Differences of a few percent are within the noise of a shared
//! machine; look at the min–max spread before trusting them.

mod harness;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult};
use harness::summary;
use stackweave::generator::{Generator, GeneratorState, Yielder};
use stackweave::stack::DEFAULT_STACK_SIZE;
use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How much to measure.
struct Config {
    /// Rounds; each round times every contender once.
    rounds: usize,
    /// Iterations per sample for the cheap operations (round trips, pooled create).
    iters: u64,
    /// Iterations per sample for the fresh-`mmap` contender (~100x slower).
    fresh_iters: u64,
}

impl Config {
    const FULL: Config = Config {
        rounds: 11,
        iters: 2_000_000,
        fresh_iters: 20_000,
    };
    const QUICK: Config = Config {
        rounds: 3,
        iters: 100_000,
        fresh_iters: 1_000,
    };

    fn from_args() -> (Config, &'static str) {
        match harness::quick_mode() {
            Some(why) => (Config::QUICK, why),
            None => (Config::FULL, "full"),
        }
    }
}

/// Which comparison a contender belongs to; the first contender of a group is
/// stackweave, the baseline of the ratios.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    RoundTrip,
    Create,
    Bare,
}

impl Group {
    fn title(self) -> &'static str {
        match self {
            Group::RoundTrip => "round trip: resume + suspend",
            Group::Create => "create + resume x2 + drop (suspends once)",
            Group::Bare => "bare switch: round trip without the Generator",
        }
    }
}

/// Runs `iters` operations and returns the time they took.
type Sample<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// One measured contender and its samples (ns per operation, one per round).
struct Contender<'a> {
    group: Group,
    name: &'static str,
    /// The short name used in the ratio column.
    short: &'static str,
    iters: u64,
    run: Sample<'a>,
    samples: Vec<f64>,
}

impl<'a> Contender<'a> {
    fn new(
        group: Group,
        name: &'static str,
        short: &'static str,
        iters: u64,
        run: impl FnMut(u64) -> Duration + 'a,
    ) -> Self {
        Contender {
            group,
            name,
            short,
            iters,
            run: Box::new(run),
            samples: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------
// Round trips

/// Panics unless a round-trip sample made exactly the switches it was asked for:
/// the coroutine's counter must have advanced by `iters`. Checked outside the timed
/// loop.
fn check_count(what: &str, before: u64, after: u64, iters: u64) {
    assert_eq!(
        after.wrapping_sub(before),
        iters,
        "{what}: the benchmark loop skipped or repeated round trips"
    );
}

fn stackweave_round_trip() -> impl FnMut(u64) -> Duration {
    let mut g = Generator::new(|y: &Yielder<u64>| {
        let mut i = 0u64;
        loop {
            i = i.wrapping_add(1);
            y.suspend(i);
        }
    });
    let mut last = 0u64;
    move |iters| {
        let before = last;
        let start = Instant::now();
        for _ in 0..iters {
            if let GeneratorState::Yielded(i) = black_box(&mut g).resume() {
                last = i;
            }
        }
        let elapsed = start.elapsed();
        check_count("stackweave", before, last, iters);
        elapsed
    }
}

fn corosensei_round_trip() -> impl FnMut(u64) -> Duration {
    let stack = DefaultStack::new(DEFAULT_STACK_SIZE).expect("corosensei stack");
    let mut co = Coroutine::with_stack(stack, |y: &corosensei::Yielder<(), u64>, ()| {
        let mut i = 0u64;
        loop {
            i = i.wrapping_add(1);
            y.suspend(i);
        }
    });
    let mut last = 0u64;
    move |iters| {
        let before = last;
        let start = Instant::now();
        for _ in 0..iters {
            if let CoroutineResult::Yield(i) = black_box(&mut co).resume(()) {
                last = i;
            }
        }
        let elapsed = start.elapsed();
        check_count("corosensei", before, last, iters);
        elapsed
    }
}

fn bare_round_trip() -> impl FnMut(u64) -> Duration {
    let mut ctx = stackweave::__BareSwitch::new().expect("bare switch stack");
    let mut last = 0u64;
    move |iters| {
        let before = last;
        let start = Instant::now();
        for _ in 0..iters {
            last = black_box(&mut ctx).resume() as u64;
        }
        let elapsed = start.elapsed();
        check_count("stackweave bare", before, last, iters);
        elapsed
    }
}

/// A future that is `Pending` on its first poll and `Ready` on the next: the
/// stackless equivalent of one suspend. It does not wake anyone; the benchmark
/// polls again by itself.
struct YieldOnce {
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            Poll::Pending
        }
    }
}

fn async_round_trip() -> impl FnMut(u64) -> Duration {
    let count = Rc::new(Cell::new(0u64));
    let counter = Rc::clone(&count);
    // Concrete type, so the poll inlines: the best case for the stackless side (an
    // executor would add an indirect call through the task's vtable).
    let mut fut = Box::pin(async move {
        loop {
            counter.set(counter.get().wrapping_add(1));
            YieldOnce { yielded: false }.await;
        }
    });
    let mut cx = Context::from_waker(Waker::noop());
    move |iters| {
        let before = count.get();
        let start = Instant::now();
        for _ in 0..iters {
            // The future is passed through black_box so that its state really lives
            // in memory and every poll loads and stores it.
            let poll: Poll<()> = black_box(fut.as_mut()).poll(&mut cx);
            let _ = black_box(poll);
        }
        let elapsed = start.elapsed();
        check_count("async", before, count.get(), iters);
        elapsed
    }
}

// ---------------------------------------------------------------------------------
// Create + run to completion + drop

fn stackweave_create() -> impl FnMut(u64) -> Duration {
    |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let mut g = Generator::new(|y: &Yielder<u64>| y.suspend(black_box(1)));
            black_box(g.resume());
            black_box(g.resume());
            drop(black_box(g));
        }
        start.elapsed()
    }
}

fn corosensei_create_reused() -> impl FnMut(u64) -> Duration {
    let mut stack = Some(DefaultStack::new(DEFAULT_STACK_SIZE).expect("corosensei stack"));
    move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let stack_in = stack.take().expect("stack returned by the last iteration");
            let mut co = Coroutine::with_stack(stack_in, |y: &corosensei::Yielder<(), u64>, ()| {
                y.suspend(black_box(1));
            });
            black_box(co.resume(()));
            black_box(co.resume(()));
            stack = Some(black_box(co).into_stack());
        }
        start.elapsed()
    }
}

fn corosensei_create_fresh() -> impl FnMut(u64) -> Duration {
    |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let stack = DefaultStack::new(DEFAULT_STACK_SIZE).expect("corosensei stack");
            let mut co = Coroutine::with_stack(stack, |y: &corosensei::Yielder<(), u64>, ()| {
                y.suspend(black_box(1));
            });
            black_box(co.resume(()));
            black_box(co.resume(()));
            drop(black_box(co));
        }
        start.elapsed()
    }
}

// ---------------------------------------------------------------------------------

fn main() {
    let (config, mode) = Config::from_args();
    let cfg = &config;
    let mut contenders = vec![
        Contender::new(
            Group::RoundTrip,
            "stackweave Generator",
            "stackweave",
            cfg.iters,
            stackweave_round_trip(),
        ),
        Contender::new(
            Group::RoundTrip,
            "corosensei Coroutine",
            "corosensei",
            cfg.iters,
            corosensei_round_trip(),
        ),
        Contender::new(
            Group::RoundTrip,
            "async state machine (stackless)",
            "async",
            cfg.iters,
            async_round_trip(),
        ),
        Contender::new(
            Group::Create,
            "stackweave (pooled stack)",
            "stackweave",
            cfg.iters / 2,
            stackweave_create(),
        ),
        Contender::new(
            Group::Create,
            "corosensei (stack reused)",
            "corosensei-reused",
            cfg.iters / 2,
            corosensei_create_reused(),
        ),
        Contender::new(
            Group::Create,
            "corosensei (fresh DefaultStack)",
            "corosensei-fresh",
            cfg.fresh_iters,
            corosensei_create_fresh(),
        ),
        Contender::new(
            Group::Bare,
            "stackweave bare context",
            "stackweave",
            cfg.iters,
            bare_round_trip(),
        ),
        Contender::new(
            Group::Bare,
            "corosensei Coroutine",
            "corosensei",
            cfg.iters,
            corosensei_round_trip(),
        ),
    ];

    println!("stackweave switch backend: {}", stackweave::SWITCH_BACKEND);
    println!(
        "mode: {mode}; {} rounds; {} iterations per sample ({} for create, {} for fresh \
         stacks); stacks of {} KiB",
        cfg.rounds,
        cfg.iters,
        cfg.iters / 2,
        cfg.fresh_iters,
        DEFAULT_STACK_SIZE / 1024
    );
    if cfg!(debug_assertions) {
        println!("warning: built without optimizations; the numbers mean little");
    }

    // Warm up: fills stackweave's stack pool, faults in the stacks and the code,
    // and lets the clock settle.
    for c in &mut contenders {
        black_box((c.run)((c.iters / 10).max(1)));
    }

    let n = contenders.len();
    for round in 0..cfg.rounds {
        for k in 0..n {
            let c = &mut contenders[(round + k) % n];
            let elapsed = (c.run)(c.iters);
            c.samples.push(elapsed.as_nanos() as f64 / c.iters as f64);
        }
    }

    print_table(&contenders);
}

fn print_table(contenders: &[Contender<'_>]) {
    let name_width = contenders.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!();
    println!(
        "{:<name_width$}  {:>10}  {:>10}  {:>10}  vs stackweave (median)",
        "benchmark", "median ns", "min ns", "max ns"
    );
    let mut group = None;
    let mut baseline = f64::NAN;
    for c in contenders {
        if group != Some(c.group) {
            group = Some(c.group);
            println!("-- {}", c.group.title());
        }
        let (median, min, max) = summary(&c.samples);
        let ratio = if c.short == "stackweave" {
            baseline = median;
            String::from("(baseline)")
        } else {
            format!("{}/stackweave = {:.2}x", c.short, median / baseline)
        };
        println!(
            "{:<name_width$}  {median:>10.2}  {min:>10.2}  {max:>10.2}  {ratio}",
            c.name
        );
    }
}
