//! Measures how much stack common workloads touch inside a generator, to choose
//! `stackweave::stack::DEFAULT_STACK_SIZE`.
//!
//! Run: `cargo run --release --example stack_usage`
//!
//! Each workload runs in a fresh generator with a large stack. The kernel commits
//! stack pages only when they are touched, so counting the resident pages below the
//! generator's first frame (with `mincore(2)`) gives the deepest point the workload
//! reached, to page granularity.
//!
//! Printed on the 2-core x86_64 Linux development VM (release build):
//!
//! ```text
//! workload                                                    stack touched
//! println! of a formatted struct                                      4 KiB
//! format! a 10k-element Vec<f64>                                      4 KiB
//! HashMap<String, Vec<u8>> with 10k entries                           4 KiB
//! TCP connect + write + read on 127.0.0.1                             4 KiB
//! panic caught, RUST_BACKTRACE=1 (cold) message + backtrace          24 KiB
//! Backtrace::force_capture().to_string()                              8 KiB
//! ```
//!
//! A debug build touched at most 24 KiB as well (16 KiB for a warm backtrace).

use stackweave::generator::{Generator, Yielder};
use std::collections::HashMap;
use std::hint::black_box;
use std::io::{Read, Write};

const PAGE: usize = 4096;

/// Bytes of stack below `start` that are resident, scanning down until a long run of
/// untouched pages.
fn touched_below(start: usize) -> usize {
    let mut page = start & !(PAGE - 1);
    let mut deepest = page;
    let mut untouched_run = 0;
    while untouched_run < 64 {
        page -= PAGE;
        let mut vec = 0u8;
        // SAFETY: mincore only reads page-table state for the given range and writes
        // one byte to `vec`; an unmapped page makes it fail with ENOMEM, which ends
        // the scan.
        let rc = unsafe { libc::mincore(page as *mut libc::c_void, PAGE, &mut vec) };
        if rc != 0 {
            break;
        }
        if vec & 1 == 1 {
            deepest = page;
            untouched_run = 0;
        } else {
            untouched_run += 1;
        }
    }
    start - deepest
}

fn measure(size_pages: usize, work: fn()) -> usize {
    // A distinct stack size per workload: the pool never hands out a used stack.
    let size = 8 * 1024 * 1024 + size_pages * PAGE;
    let mut g = Generator::with_stack_size(size, move |y: &Yielder<usize>| {
        let marker = 0u8;
        let start = black_box(&marker) as *const u8 as usize;
        work();
        y.suspend(touched_below(start));
    })
    .expect("stack");
    match g.resume() {
        stackweave::generator::GeneratorState::Yielded(n) => n,
        _ => unreachable!(),
    }
}

#[derive(Debug)]
#[allow(dead_code)]
struct Sample {
    name: String,
    values: [f64; 8],
}

fn main() {
    // std reads RUST_BACKTRACE once, at the first panic: set it before any.
    std::env::set_var("RUST_BACKTRACE", "1");
    let workloads: [(&str, fn()); 6] = [
        ("println! of a formatted struct", || {
            let s = Sample {
                name: "x".repeat(20),
                values: [1.5; 8],
            };
            println!("{s:?}");
        }),
        ("format! a 10k-element Vec<f64>", || {
            let v: Vec<f64> = (0..10_000).map(|i| i as f64 * 0.5).collect();
            black_box(format!("{v:?}"));
        }),
        ("HashMap<String, Vec<u8>> with 10k entries", || {
            let mut m = HashMap::new();
            for i in 0..10_000 {
                m.insert(format!("key{i}"), vec![0u8; 16]);
            }
            black_box(m);
        }),
        ("TCP connect + write + read on 127.0.0.1", || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
        }),
        (
            "panic caught, RUST_BACKTRACE=1 (cold) message + backtrace",
            || {
                black_box(std::panic::catch_unwind(|| panic!("measured panic")).is_err());
            },
        ),
        ("Backtrace::force_capture().to_string()", || {
            black_box(std::backtrace::Backtrace::force_capture().to_string());
        }),
    ];
    let mut results = Vec::new();
    for (i, (name, work)) in workloads.iter().enumerate() {
        results.push((name, measure(i + 1, *work)));
    }
    println!("{:<58} {:>14}", "workload", "stack touched");
    for (name, bytes) in results {
        println!("{:<58} {:>10} KiB", name, bytes.div_ceil(1024));
    }
    println!(
        "default stack size: {} KiB",
        stackweave::stack::DEFAULT_STACK_SIZE / 1024
    );
}
