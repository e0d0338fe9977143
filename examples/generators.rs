//! Stackful generators: suspending from any depth of ordinary function calls.
//!
//! Run: `cargo run --release --example generators`
//!
//! Part 1 walks a binary tree in order with a plain recursive function that yields
//! each value from wherever the recursion happens to be. A Python generator would
//! need `yield from` at every level, and an `async fn` would need `.await` and a
//! boxed recursive future; here the helper is an ordinary `fn`.
//!
//! Part 2 is a pipeline of three generators, produce → filter → consume, where each
//! stage suspends from inside helper functions rather than from its closure's body.
//!
//! Output:
//!
//! ```text
//! in-order walk: 1 3 4 6 7 8 10 13 14
//! walk depth at each value: 3 2 4 3 4 1 2 4 3
//! consumer: batch [2 3 5 7], running sum 17
//! consumer: batch [11 13 17 19], running sum 77
//! consumer: batch [23 29], running sum 129
//! pipeline: produced 30, 10 primes passed the filter, sum 129
//! ```

use stackweave::generator::{Generator, GeneratorState, Yielder};

/// A binary search tree.
enum Tree {
    Leaf,
    Node(Box<Tree>, i32, Box<Tree>),
}

impl Tree {
    fn insert(self, v: i32) -> Tree {
        match self {
            Tree::Leaf => Tree::Node(Box::new(Tree::Leaf), v, Box::new(Tree::Leaf)),
            Tree::Node(l, x, r) if v < x => Tree::Node(Box::new(l.insert(v)), x, r),
            Tree::Node(l, x, r) => Tree::Node(l, x, Box::new(r.insert(v))),
        }
    }
}

/// An ordinary recursive function: it yields (value, depth) from any depth.
fn walk(y: &Yielder<(i32, usize)>, tree: &Tree, depth: usize) {
    if let Tree::Node(left, value, right) = tree {
        walk(y, left, depth + 1);
        y.suspend((*value, depth));
        walk(y, right, depth + 1);
    }
}

/// Stage 1 helper: emits the numbers 1..=n.
fn produce(y: &Yielder<u64>, n: u64) {
    for i in 1..=n {
        y.suspend(i);
    }
}

/// Stage 2 helper: a test that lives in its own function.
fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// Stage 2 helper: pulls from `source`, forwards what passes; returns how many it
/// pulled. It suspends from inside this helper, two calls below the closure.
fn forward_primes(y: &Yielder<u64>, source: &mut Generator<'_, u64, ()>) -> usize {
    let mut pulled = 0;
    for n in source {
        pulled += 1;
        if is_prime(n) {
            y.suspend(n);
        }
    }
    pulled
}

/// Stage 3 helper: reports one line per batch of primes, suspending from here.
fn report_batch(y: &Yielder<String>, batch: &[u64], running_sum: u64) {
    let text: Vec<String> = batch.iter().map(u64::to_string).collect();
    y.suspend(format!(
        "consumer: batch [{}], running sum {running_sum}",
        text.join(" ")
    ));
}

/// Stage 3: pulls primes from the filter, reports them in batches, returns a summary.
fn consume_in_batches(
    y: &Yielder<String>,
    filter: &mut Generator<'_, u64, usize>,
    batch_len: usize,
) -> String {
    let (mut batch, mut sum, mut count) = (Vec::new(), 0, 0);
    let pulled = loop {
        match filter.resume() {
            GeneratorState::Yielded(p) => {
                sum += p;
                count += 1;
                batch.push(p);
                if batch.len() == batch_len {
                    report_batch(y, &batch, sum);
                    batch.clear();
                }
            }
            GeneratorState::Complete(pulled) => break pulled,
        }
    };
    if !batch.is_empty() {
        report_batch(y, &batch, sum);
    }
    format!("pipeline: produced {pulled}, {count} primes passed the filter, sum {sum}")
}

fn main() {
    // Part 1: recursive tree walk.
    let tree = [8, 3, 10, 1, 6, 14, 4, 7, 13]
        .into_iter()
        .fold(Tree::Leaf, Tree::insert);
    let mut walker = Generator::new(|y: &Yielder<(i32, usize)>| walk(y, &tree, 1));
    let mut values = Vec::new();
    let mut depths = Vec::new();
    while let GeneratorState::Yielded((value, depth)) = walker.resume() {
        values.push(value.to_string());
        depths.push(depth.to_string());
    }
    println!("in-order walk: {}", values.join(" "));
    println!("walk depth at each value: {}", depths.join(" "));

    // Part 2: produce -> filter -> consume, three generators.
    let producer = Generator::new(|y: &Yielder<u64>| produce(y, 30));
    let filter = Generator::new(move |y: &Yielder<u64>| {
        let mut producer = producer;
        forward_primes(y, &mut producer)
    });
    let mut consumer = Generator::new(move |y: &Yielder<String>| {
        let mut filter = filter;
        consume_in_batches(y, &mut filter, 4)
    });
    let summary = loop {
        match consumer.resume() {
            GeneratorState::Yielded(line) => println!("{line}"),
            GeneratorState::Complete(summary) => break summary,
        }
    };
    println!("{summary}");
}
