//! A panic ends only the coroutine that panicked: its worker and the other
//! coroutines carry on, `join` returns the original payload, and the message on
//! stderr names the coroutine the way std names threads.

mod common;

use common::Watchdog;
use stackweave::{Builder, Runtime};
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A payload that is neither `&str` nor `String`.
#[derive(Debug, PartialEq)]
struct Payload(u32);

#[test]
fn join_returns_the_original_panic_payload() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let str_payload = rt.spawn(|| -> () { panic!("static message") });
    // A run-time value: a literal argument would be folded into a `&str` message.
    let n = std::hint::black_box(42);
    let string_payload = rt.spawn(move || -> () { panic!("formatted {n}") });
    let any_payload = rt.spawn(|| -> () { panic::panic_any(Payload(7)) });
    let err = str_payload.join().unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"static message"));
    let err = string_payload.join().unwrap_err();
    assert_eq!(
        err.downcast_ref::<String>().map(String::as_str),
        Some("formatted 42")
    );
    let err = any_payload.join().unwrap_err();
    assert_eq!(err.downcast_ref::<Payload>(), Some(&Payload(7)));
}

#[test]
fn panic_after_suspending_is_caught_too() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let h = rt.spawn(|| -> () {
        stackweave::yield_now();
        stackweave::current().unpark();
        stackweave::park();
        panic::panic_any(Payload(9))
    });
    assert_eq!(h.join().unwrap_err().downcast_ref(), Some(&Payload(9)));
}

#[test]
fn panic_does_not_take_down_its_worker() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let survivor_started = Arc::new(AtomicBool::new(false));
    // A coroutine started on the only worker before the panic, still in the middle
    // of its work when the panic happens.
    let survivor = rt.spawn({
        let started = survivor_started.clone();
        move || {
            started.store(true, Ordering::Release);
            stackweave::park();
            "survived"
        }
    });
    while !survivor_started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let panicked = rt.spawn(|| -> () { panic!("boom") });
    assert!(panicked.join().is_err());
    // The only worker still runs new coroutines and resumes old ones.
    assert_eq!(rt.spawn(|| 1 + 1).join().unwrap(), 2);
    survivor.coroutine().unpark();
    assert_eq!(survivor.join().unwrap(), "survived");
    assert_eq!(rt.metrics().live_coroutines, 0);
}

#[test]
fn panics_leave_the_other_coroutines_running() {
    let _watchdog = Watchdog::new("coroutines around panics", Duration::from_secs(30));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let sum = rt.block_on(|| {
        let handles: Vec<_> = (0..200u64)
            .map(|i| {
                stackweave::spawn(move || {
                    for _ in 0..(i % 5) {
                        stackweave::yield_now();
                    }
                    if i % 50 == 3 {
                        panic::panic_any(Payload(i as u32));
                    }
                    stackweave::yield_now();
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for (i, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(v) => {
                    assert_eq!(v, i as u64);
                    sum += v;
                }
                Err(payload) => {
                    assert_eq!(i % 50, 3, "coroutine {i} failed");
                    assert_eq!(payload.downcast_ref(), Some(&Payload(i as u32)));
                }
            }
        }
        sum
    });
    assert_eq!(sum, (0..200).filter(|i| i % 50 != 3).sum());
    let m = rt.metrics();
    assert_eq!((m.spawned, m.completed, m.live_coroutines), (201, 201, 0));
}

#[test]
fn panic_message_names_the_coroutine() {
    const NAME: &str = "panic_message_names_the_coroutine";
    if common::is_child(NAME) {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let named = rt
            .handle()
            .try_spawn(Builder::new().name("my-name".into()), || -> () {
                panic!("the named one panicked")
            })
            .unwrap();
        println!("NAMED {}", named.coroutine().id().as_u64());
        assert!(named.join().is_err());
        let unnamed = rt.spawn(|| -> () { panic::panic_any(Payload(1)) });
        println!("UNNAMED {}", unnamed.coroutine().id().as_u64());
        assert!(unnamed.join().is_err());
        return;
    }
    let child = common::run_child(NAME);
    assert!(child.status.success(), "{child}");
    // The harness prints the test's name on the same line before the output.
    let id = |label: &str| -> u64 {
        let mut words = child.stdout.split_whitespace();
        words.find(|&w| w == label);
        words
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no {label} id\n{child}"))
    };
    let named = format!(
        "coroutine 'my-name' ({}) panicked at tests/panic.rs:",
        id("NAMED")
    );
    assert!(child.stderr.contains(&named), "expected {named:?}\n{child}");
    assert!(child.stderr.contains("the named one panicked\n"), "{child}");
    let unnamed = format!(
        "coroutine '<unnamed>' ({}) panicked at tests/panic.rs:",
        id("UNNAMED")
    );
    assert!(
        child.stderr.contains(&unnamed),
        "expected {unnamed:?}\n{child}"
    );
    assert!(child.stderr.contains("Box<dyn Any>"), "{child}");
}

#[test]
fn panic_on_a_plain_thread_still_uses_std_message() {
    const NAME: &str = "panic_on_a_plain_thread_still_uses_std_message";
    if common::is_child(NAME) {
        // Building a runtime installs the coroutine panic hook process-wide.
        let _rt = Runtime::builder().workers(1).build().unwrap();
        let t = std::thread::Builder::new()
            .name("plain".into())
            .spawn(|| -> () { panic!("thread panic") })
            .unwrap();
        assert!(t.join().is_err());
        return;
    }
    let child = common::run_child(NAME);
    assert!(child.status.success(), "{child}");
    assert!(
        child.stderr.contains("thread 'plain'") && child.stderr.contains("panicked at"),
        "{child}"
    );
    assert!(!child.stderr.contains("coroutine '"), "{child}");
}
