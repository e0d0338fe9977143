//! The coroutine dump (`Runtime::dump`): what each coroutine waits for, and the
//! backtrace of its suspended stack through the user's blocking call.
//!
//! Behaviour only, never timing: every wait for a state is a loop of dumps bounded
//! by a watchdog that turns a hang into a failure.

mod common;

use stackweave::net::{TcpListener, TcpStream};
use stackweave::runtime::{CoroutineState, Dump, Handle, WaitingFor};
use stackweave::sync::mpsc;
use stackweave::{Builder, JoinHandle, Placement, Runtime};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Long enough that a worker of a loaded CI machine always gets to the dump.
const PATIENT: Duration = Duration::from_secs(120);

fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .stall_threshold(None)
        .build()
        .expect("runtime")
}

fn named(name: &str) -> Builder {
    Builder::new().name(name.into())
}

/// Dumps until `ready` holds for a dump, and returns that dump.
fn dump_until(handle: &Handle, what: &str, ready: impl Fn(&Dump) -> bool) -> Dump {
    let _watchdog = common::Watchdog::new(what, Duration::from_secs(300));
    loop {
        let dump = handle.dump_timeout(PATIENT);
        if ready(&dump) {
            return dump;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn waiting(dump: &Dump, name: &str) -> bool {
    dump.find(name)
        .is_some_and(|c| c.state() == CoroutineState::Waiting)
}

#[inline(never)]
fn blocked_in_read(stream: &mut TcpStream) -> u8 {
    let mut byte = [0u8];
    stream.read_exact(&mut byte).expect("read");
    byte[0]
}

#[inline(never)]
fn blocked_in_recv(rx: &mpsc::Receiver<u32>) -> u32 {
    rx.recv().expect("recv")
}

// Each of these does something after its blocking call, so that the call is not
// made as a tail call (which would leave no frame of the function on the stack).
#[inline(never)]
fn blocked_in_sleep() -> u32 {
    stackweave::time::sleep(Duration::from_secs(3600));
    std::hint::black_box(1)
}

#[inline(never)]
fn blocked_in_join(h: JoinHandle<()>) -> u32 {
    h.join().expect("join");
    std::hint::black_box(1)
}

#[test]
fn dump_names_what_each_coroutine_waits_for_and_where() {
    let rt = runtime(2);
    let handle = rt.handle();
    let listener = rt
        .block_on(|| TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = rt.spawn(move || listener.accept().expect("accept").0);
    let reader = handle
        .try_spawn(named("reader"), move || {
            let mut stream = TcpStream::connect(addr).expect("connect");
            blocked_in_read(&mut stream)
        })
        .unwrap();
    let mut server_side = server.join().unwrap();
    let (tx, rx) = mpsc::channel();
    let receiver = handle
        .try_spawn(named("receiver"), move || blocked_in_recv(&rx))
        .unwrap();
    let _sleeper = handle
        .try_spawn(named("sleeper"), blocked_in_sleep)
        .unwrap();
    let parked = handle.try_spawn(named("parked"), stackweave::park).unwrap();
    let parked_id = parked.coroutine().id();
    let parked_co = parked.coroutine().clone();
    let joiner = handle
        .try_spawn(named("joiner"), move || blocked_in_join(parked))
        .unwrap();

    let names = ["reader", "receiver", "sleeper", "joiner", "parked"];
    let dump = dump_until(&handle, "the five coroutines wait", |d| {
        names.iter().all(|n| waiting(d, n))
    });
    let text = dump.to_string();

    let r = dump.find("reader").unwrap();
    match r.waiting_for() {
        Some(WaitingFor::Read { fd, peer }) => {
            assert!(fd >= 0, "{text}");
            assert_eq!(peer, Some(addr), "{text}");
        }
        other => panic!("reader waits for {other:?}\n{text}"),
    }
    assert!(r.backtrace_contains("blocked_in_read"), "{text}");
    assert!(r.waited().is_some() && r.spawned_at().is_some(), "{text}");

    let c = dump.find("receiver").unwrap();
    assert_eq!(c.waiting_for(), Some(WaitingFor::Channel), "{text}");
    assert!(c.backtrace_contains("blocked_in_recv"), "{text}");

    let s = dump.find("sleeper").unwrap();
    assert_eq!(s.waiting_for(), Some(WaitingFor::Sleep), "{text}");
    assert!(s.deadline().is_some(), "{text}");
    assert!(s.backtrace_contains("blocked_in_sleep"), "{text}");

    let j = dump.find("joiner").unwrap();
    assert_eq!(j.waiting_for(), Some(WaitingFor::Join(parked_id)), "{text}");
    assert!(j.backtrace_contains("blocked_in_join"), "{text}");

    let p = dump.find("parked").unwrap();
    assert_eq!(p.waiting_for(), Some(WaitingFor::Park), "{text}");

    // The runtime's own frames are trimmed from the top: each trace starts at the
    // blocking call the user made, and never shows the capture itself.
    for c in dump.coroutines() {
        let frames = c.backtrace().unwrap_or_else(|| panic!("{text}"));
        assert!(
            !frames.iter().any(|f| f.name().contains("dump::capture")),
            "{text}"
        );
    }
    assert!(text.contains("coroutine "), "{text}");
    assert!(text.contains("\"reader\" [read on fd"), "{text}");
    assert!(text.contains("blocked_in_recv"), "{text}");

    // The dump took nothing from them: each still gets what it waits for.
    server_side.write_all(&[7]).unwrap();
    assert_eq!(reader.join().unwrap(), 7);
    tx.send(42).unwrap();
    assert_eq!(receiver.join().unwrap(), 42);
    parked_co.unpark();
    joiner.join().unwrap();
    drop(rt);
}

#[test]
fn wakes_that_race_with_dumps_are_not_lost() {
    const PAIRS: usize = 20;
    const ROUNDS: usize = 500;
    let rt = runtime(2);
    let done = Arc::new(AtomicUsize::new(0));
    let _watchdog = common::Watchdog::new("ping-pong under dumps", Duration::from_secs(300));
    let mut handles = Vec::new();
    for _ in 0..PAIRS {
        let (to_b, from_a) = mpsc::channel::<usize>();
        let (to_a, from_b) = mpsc::channel::<usize>();
        let done_b = done.clone();
        handles.push(rt.spawn(move || {
            for i in 0..ROUNDS {
                to_b.send(i).unwrap();
                assert_eq!(from_b.recv().unwrap(), i);
            }
        }));
        handles.push(rt.spawn(move || {
            for _ in 0..ROUNDS {
                let i = from_a.recv().unwrap();
                to_a.send(i).unwrap();
            }
            done_b.fetch_add(1, Ordering::Relaxed);
        }));
    }
    // Dump over and over while they wake each other, from a thread and from a
    // coroutine (which suspends while the workers serve it).
    let mut dumps = 0;
    while done.load(Ordering::Relaxed) < PAIRS {
        let dump = if dumps % 2 == 0 {
            rt.handle().dump_timeout(PATIENT)
        } else {
            let h = rt.handle();
            rt.spawn(move || h.dump_timeout(PATIENT)).join().unwrap()
        };
        assert!(dump.workers().iter().all(|w| !w.is_busy()));
        dumps += 1;
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(dumps > 0);
}

#[test]
fn a_busy_worker_is_reported_and_does_not_hang_the_dump() {
    let rt = runtime(2);
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicBool::new(false));
    let (s, sp) = (stop.clone(), spinning.clone());
    let spinner = rt
        .handle()
        .try_spawn(
            named("spinner").placement(Placement::Worker(0)),
            move || {
                sp.store(true, Ordering::Release);
                while !s.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            },
        )
        .unwrap();
    let parked = rt
        .handle()
        .try_spawn(
            named("parked").placement(Placement::Worker(1)),
            stackweave::park,
        )
        .unwrap();
    while !spinning.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let handle = rt.handle();
    let dump = {
        let _watchdog =
            common::Watchdog::new("the parked coroutine waits", Duration::from_secs(300));
        loop {
            let dump = handle.dump_timeout(Duration::from_millis(200));
            if waiting(&dump, "parked") {
                break dump;
            }
        }
    };
    let text = dump.to_string();
    stop.store(true, Ordering::Release);
    assert!(dump.workers()[0].is_busy(), "{text}");
    assert!(!dump.workers()[1].is_busy(), "{text}");
    let s = dump
        .find("spinner")
        .expect("the running coroutine is named");
    assert_eq!(s.state(), CoroutineState::Running, "{text}");
    assert_eq!(s.worker(), 0, "{text}");
    assert_eq!(s.not_captured(), Some("worker busy"), "{text}");
    assert!(text.contains("worker 0 busy"), "{text}");
    spinner.join().unwrap();
    parked.coroutine().unpark();
    parked.join().unwrap();
}

#[inline(never)]
fn one_of_many() -> u32 {
    stackweave::park();
    std::hint::black_box(1)
}

#[test]
fn a_dump_of_100_000_coroutines_shares_their_stack() {
    const N: usize = 100_000;
    let rt = Runtime::builder()
        .workers(2)
        .stall_threshold(None)
        .stack_size(stackweave::stack::MIN_STACK_SIZE)
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let started = started.clone();
            rt.spawn(move || {
                started.fetch_add(1, Ordering::Relaxed);
                one_of_many()
            })
        })
        .collect();
    let handle = rt.handle();
    let before = common::proc_status_kib("VmRSS");
    let dump = dump_until(&handle, "100,000 coroutines park", |d| {
        started.load(Ordering::Relaxed) == N
            && d.coroutines().len() == N
            && d.coroutines()
                .iter()
                .all(|c| c.state() == CoroutineState::Waiting)
    });
    // One symbolized trace for all of them, shared.
    assert_eq!(dump.distinct_stacks(), 1, "{}", dump.workers().len());
    let first = dump.coroutines()[0].backtrace().unwrap().as_ptr();
    assert!(dump
        .coroutines()
        .iter()
        .all(|c| c.backtrace().unwrap().as_ptr() == first));
    assert!(dump.coroutines()[0].backtrace_contains("one_of_many"));
    let text = dump.to_string();
    let after = common::proc_status_kib("VmRSS");
    eprintln!(
        "100,000 coroutines: dump took {:?}, RSS {before} KiB before the dumps, {after} KiB \
         with the dump held",
        dump.took()
    );
    assert!(
        text.contains(" coroutines with this stack [park"),
        "{}",
        &text[..2000.min(text.len())]
    );
    assert!(
        text.lines().count() < 100,
        "grouped: {} lines",
        text.lines().count()
    );
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[inline(never)]
fn blocked_for_signal(rx: &mpsc::Receiver<u32>) -> u32 {
    rx.recv().expect("recv")
}

/// The child's part of the signal tests: a runtime whose coroutine waits; tells the
/// parent it is ready, then goes on until the parent writes a line.
fn signalled_child(builder: stackweave::runtime::Builder) {
    let rt = builder.workers(1).stall_threshold(None).build().unwrap();
    let (tx, rx) = mpsc::channel();
    let h = rt
        .handle()
        .try_spawn(named("signalled"), move || blocked_for_signal(&rx))
        .unwrap();
    dump_until(&rt.handle(), "the coroutine waits", |d| {
        waiting(d, "signalled")
    });
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    tx.send(5).unwrap();
    assert_eq!(h.join().unwrap(), 5);
    println!("CHILD DONE");
}

/// Sends `signal` to the child once it is ready, waits for its dump on stderr, lets
/// it finish and checks it exited normally.
fn signal_dump_in_child(test: &str, vars: &[(&str, &str)], signal: i32) {
    let _watchdog = common::Watchdog::new(test, Duration::from_secs(300));
    let mut child = common::spawn_child_with_env(test, vars);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (err_tx, err_rx) = std::sync::mpsc::channel::<String>();
    let err_thread = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let mut out_lines = stdout.lines().map_while(Result::ok);
    let mut out = Vec::new();
    for line in out_lines.by_ref() {
        // The harness prints "test <name> ... " on the same line first.
        let ready = line.ends_with("READY");
        out.push(line);
        if ready {
            break;
        }
    }
    assert!(out.last().is_some_and(|l| l.ends_with("READY")), "{out:?}");
    // SAFETY: kill has no memory preconditions; the pid is our live child's.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let mut err = Vec::new();
    loop {
        let line = err_rx
            .recv()
            .expect("the child's stderr ended before its dump");
        let done = line.contains("blocked_for_signal");
        err.push(line);
        if done {
            break;
        }
    }
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"go on\n").unwrap();
    stdin.flush().unwrap();
    out.extend(out_lines);
    let status = child.wait().unwrap();
    err_thread.join().unwrap();
    err.extend(err_rx.try_iter());
    let err = err.join("\n");
    assert!(status.success(), "{status:?}\n{out:?}\n{err}");
    assert!(
        out.iter().any(|l| l.contains("CHILD DONE")),
        "{out:?}\n{err}"
    );
    assert!(err.contains("stackweave: coroutine dump"), "{err}");
    assert!(err.contains("\"signalled\" [channel"), "{err}");
}

#[test]
fn sigquit_prints_the_dump_and_the_program_goes_on() {
    const NAME: &str = "sigquit_prints_the_dump_and_the_program_goes_on";
    if common::is_child(NAME) {
        return signalled_child(Runtime::builder());
    }
    signal_dump_in_child(
        NAME,
        &[("STACKWEAVE_DUMP_SIGNAL", "SIGQUIT")],
        libc::SIGQUIT,
    );
}

#[test]
fn builder_dump_on_signal_prints_the_dump_on_that_signal() {
    const NAME: &str = "builder_dump_on_signal_prints_the_dump_on_that_signal";
    if common::is_child(NAME) {
        return signalled_child(
            Runtime::builder().dump_on_signal(Some(stackweave::signal::SIGUSR2)),
        );
    }
    signal_dump_in_child(NAME, &[], libc::SIGUSR2);
}

#[test]
fn a_signal_the_runtime_needs_cannot_dump() {
    let err = Runtime::builder()
        .workers(1)
        .dump_on_signal(Some(libc::SIGSEGV))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[cfg(feature = "hooks")]
#[inline(never)]
fn blocked_in_std_sleep() -> u32 {
    std::thread::sleep(Duration::from_secs(3600));
    std::hint::black_box(1)
}

/// With the `hooks` feature a plain `std::thread::sleep` suspends the coroutine, and
/// the dump says so.
#[cfg(feature = "hooks")]
#[test]
fn a_hooked_libc_call_is_named_in_the_dump() {
    let rt = runtime(1);
    let handle = rt.handle();
    let h = handle
        .try_spawn(named("std-sleeper"), blocked_in_std_sleep)
        .unwrap();
    let dump = dump_until(&handle, "the hooked sleep waits", |d| {
        waiting(d, "std-sleeper")
    });
    let text = dump.to_string();
    let c = dump.find("std-sleeper").unwrap();
    assert_eq!(c.waiting_for(), Some(WaitingFor::HookedCall), "{text}");
    assert!(c.backtrace_contains("blocked_in_std_sleep"), "{text}");
    // A cancel ends a hooked call with an error rather than an unwind through
    // libc's frame (the hooks module): the sleep returns early.
    h.cancel();
    let _ = h.join();
}
