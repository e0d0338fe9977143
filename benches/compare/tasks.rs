//! The task rows: switch and yield round trips, spawn + join, channel ping-pong and
//! RSS per idle task, each for stackweave, tokio, may and threads. Every function
//! runs inside a sample child process and returns the row's value per operation.

use crate::harness::{panic_message, status_bytes};
use crate::rows::{thousands, Sizes};
use crate::sample::Sample;
use crate::servers::Rival;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Nanoseconds per operation.
pub(crate) fn per_op(elapsed: Duration, ops: u64) -> Sample {
    Sample::new(elapsed.as_nanos() as f64 / ops as f64)
}

pub(crate) fn stackweave_rt(workers: usize) -> Result<stackweave::Runtime, String> {
    stackweave::Runtime::builder()
        .workers(workers)
        .build()
        .map_err(|e| format!("stackweave runtime: {e}"))
}

pub(crate) fn tokio_rt(workers: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

pub(crate) fn tokio_current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

pub(crate) fn may_config(workers: usize) {
    may::config().set_workers(workers).set_worker_pin(false);
}

/// Pins the calling thread to the first CPU this process may run on.
pub(crate) fn pin_to_one_cpu() -> Result<(), String> {
    // SAFETY: an all-zero cpu_set_t is an empty set, a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a valid, writable cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: CPU_ISSET reads a bit of the valid set.
    let cpu = (0..libc::CPU_SETSIZE as usize)
        .find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .ok_or("no CPU in the affinity mask")?;
    // SAFETY: as above; CPU_ZERO/CPU_SET write bits of the valid set.
    unsafe {
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
    }
    // SAFETY: `set` is a valid cpu_set_t of `size` bytes.
    if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
        return Err(format!(
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Runs `a` and `b` on two threads pinned to the same CPU; the time from the start
/// of both until both are done.
fn two_pinned_threads(
    a: impl FnOnce() + Send + 'static,
    b: impl FnOnce() + Send + 'static,
) -> Result<Duration, String> {
    let go = Arc::new(AtomicBool::new(false));
    let spawn = |f: Box<dyn FnOnce() + Send>, go: Arc<AtomicBool>| {
        thread::spawn(move || -> Result<(), String> {
            pin_to_one_cpu()?;
            while !go.load(Ordering::Acquire) {
                thread::yield_now();
            }
            f();
            Ok(())
        })
    };
    let ta = spawn(Box::new(a), go.clone());
    let tb = spawn(Box::new(b), go.clone());
    thread::sleep(Duration::from_millis(10));
    let start = Instant::now();
    go.store(true, Ordering::Release);
    let ra = ta.join().map_err(|_| "a thread panicked")?;
    let rb = tb.join().map_err(|_| "a thread panicked")?;
    let elapsed = start.elapsed();
    ra?;
    rb?;
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------
// Switch: the cheapest way each rival has to switch to a suspended task and back.

pub fn switch(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let n = z.round_trips;
    match rival {
        Rival::Stackweave => {
            use stackweave::generator::{Generator, GeneratorState, Yielder};
            let mut g = Generator::new(|y: &Yielder<u64>| {
                let mut i = 0u64;
                loop {
                    i = i.wrapping_add(1);
                    y.suspend(i);
                }
            });
            time_resumes(n, || match black_box(&mut g).resume() {
                GeneratorState::Yielded(i) => Some(i),
                GeneratorState::Complete(()) => None,
            })
        }
        Rival::May => {
            let mut g = generator::Gn::<()>::new_scoped(|mut s| {
                let mut i = 0u64;
                loop {
                    i = i.wrapping_add(1);
                    s.yield_(i);
                }
            });
            time_resumes(n, || black_box(&mut g).resume())
        }
        Rival::Tokio => tokio_yields(n),
        Rival::Threads => {
            let n = n / 10;
            let turn = Arc::new(AtomicBool::new(false));
            let (ta, tb) = (turn.clone(), turn);
            let (tx, rx) = std::sync::mpsc::channel::<thread::Thread>();
            let (tx2, rx2) = std::sync::mpsc::channel::<thread::Thread>();
            let elapsed = two_pinned_threads(
                move || {
                    tx.send(thread::current()).ok();
                    let other = rx2.recv().expect("the other thread");
                    for _ in 0..n {
                        ta.store(true, Ordering::Release);
                        other.unpark();
                        while ta.load(Ordering::Acquire) {
                            thread::park();
                        }
                    }
                },
                move || {
                    tx2.send(thread::current()).ok();
                    let other = rx.recv().expect("the other thread");
                    for _ in 0..n {
                        while !tb.load(Ordering::Acquire) {
                            thread::park();
                        }
                        tb.store(false, Ordering::Release);
                        other.unpark();
                    }
                },
            )?;
            Ok(per_op(elapsed, n))
        }
    }
}

/// Times `n` calls of `resume` (a generator that yields 1, 2, 3, ...) after `n / 10`
/// untimed ones, and checks that every call made one round trip.
fn time_resumes(n: u64, mut resume: impl FnMut() -> Option<u64>) -> Result<Sample, String> {
    let mut last = 0;
    let mut run = |iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            if let Some(i) = resume() {
                last = i;
            }
        }
        start.elapsed()
    };
    run(n / 10);
    let elapsed = run(n);
    check(last, n + n / 10)?;
    Ok(per_op(elapsed, n))
}

fn check(last: u64, expected: u64) -> Result<(), String> {
    if last == expected {
        Ok(())
    } else {
        Err(format!(
            "the loop made {last} round trips instead of {expected}"
        ))
    }
}

/// Two tokio tasks on a current_thread runtime yielding `n` times each: `n` round
/// trips.
fn tokio_yields(n: u64) -> Result<Sample, String> {
    let rt = tokio_current_thread()?;
    rt.block_on(async move {
        let start = Instant::now();
        let a = tokio::spawn(async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
        });
        let b = tokio::spawn(async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
        });
        a.await.map_err(|e| e.to_string())?;
        b.await.map_err(|e| e.to_string())?;
        Ok(per_op(start.elapsed(), n))
    })
}

// ---------------------------------------------------------------------------------
// Yield: two tasks on one worker switching through the scheduler.

pub fn yield_round_trip(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let n = z.round_trips;
    match rival {
        Rival::Stackweave => {
            let rt = stackweave_rt(1)?;
            rt.block_on(move || {
                let start = Instant::now();
                let body = move || {
                    for _ in 0..n {
                        stackweave::yield_now();
                    }
                };
                let a = stackweave::spawn(body);
                let b = stackweave::spawn(body);
                a.join().map_err(|_| "a task panicked")?;
                b.join().map_err(|_| "a task panicked")?;
                Ok(per_op(start.elapsed(), n))
            })
        }
        Rival::Tokio => tokio_yields(n),
        Rival::May => {
            may_config(1);
            let start = Instant::now();
            let body = move || {
                for _ in 0..n {
                    may::coroutine::yield_now();
                }
            };
            let a = may::go!(body);
            let b = may::go!(body);
            a.join().map_err(|_| "a task panicked")?;
            b.join().map_err(|_| "a task panicked")?;
            Ok(per_op(start.elapsed(), n))
        }
        Rival::Threads => {
            let n = n / 10;
            let body = move || {
                for _ in 0..n {
                    thread::yield_now();
                }
            };
            Ok(per_op(two_pinned_threads(body, body)?, n))
        }
    }
}

// ---------------------------------------------------------------------------------
// Spawn + join

/// Spawns `z.spawn_total` empty tasks and joins them: in waves of `z.spawn_wave`,
/// or with `all_at_once` all spawned before the first join (threads: a tenth, in
/// waves of 1,000 or all at once).
pub fn spawn_join(rival: Rival, z: &Sizes, all_at_once: bool) -> Result<Sample, String> {
    let total = z.spawn_total;
    let wave = if all_at_once { total } else { z.spawn_wave };
    match rival {
        Rival::Stackweave => {
            let rt = stackweave_rt(2)?;
            rt.block_on(move || {
                let start = Instant::now();
                for _ in 0..total / wave {
                    let handles: Vec<_> = (0..wave).map(|_| stackweave::spawn(|| {})).collect();
                    for h in handles {
                        h.join().map_err(|_| "a task panicked")?;
                    }
                }
                Ok(per_op(start.elapsed(), total))
            })
        }
        Rival::Tokio => {
            let rt = tokio_rt(2)?;
            rt.block_on(async move {
                // Inside a task on the workers, like the others' spawners.
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..total / wave {
                        let handles: Vec<_> = (0..wave).map(|_| tokio::spawn(async {})).collect();
                        for h in handles {
                            h.await.map_err(|e| e.to_string())?;
                        }
                    }
                    Ok(per_op(start.elapsed(), total))
                })
                .await
                .map_err(|e| e.to_string())?
            })
        }
        Rival::May => {
            may_map_check(wave)?;
            may_config(2);
            let spawner = may::go!(move || -> Result<Sample, String> {
                let start = Instant::now();
                for _ in 0..total / wave {
                    let handles: Vec<_> = (0..wave).map(|_| may::go!(|| {})).collect();
                    for h in handles {
                        h.join().map_err(|_| "a task panicked")?;
                    }
                }
                Ok(per_op(start.elapsed(), total))
            });
            spawner.join().map_err(|_| "the spawner panicked")?
        }
        Rival::Threads => {
            let total = total / 10;
            let wave = if all_at_once { total } else { 1000 };
            let start = Instant::now();
            for _ in 0..total / wave {
                let mut handles = Vec::with_capacity(wave as usize);
                for i in 0..wave {
                    let spawned = thread::Builder::new().spawn(|| {});
                    handles.push(spawned.map_err(|e| format!("thread #{i}: {e}{}", maps_note()))?);
                }
                for h in handles {
                    h.join().map_err(|_| "a thread panicked")?;
                }
            }
            Ok(per_op(start.elapsed(), total))
        }
    }
}

// ---------------------------------------------------------------------------------
// Channel ping-pong: a value to the other task and back, n times.

/// The blocking ping-pong: the same code for every rival with blocking channels, given
/// its channel constructor and its spawn function.
macro_rules! blocking_ping_pong {
    ($n:expr, $channel:expr, $spawn:expr) => {{
        let n: u64 = $n;
        let (to_b, from_a) = $channel();
        let (to_a, from_b) = $channel();
        let b = $spawn(move || {
            while let Ok(v) = from_a.recv() {
                if to_a.send(v + 1).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        for i in 0..n {
            to_b.send(i).map_err(|e| e.to_string())?;
            check_echo(from_b.recv().map_err(|e| e.to_string())?, i)?;
        }
        let elapsed = start.elapsed();
        drop(to_b);
        b.join().map_err(|_| "the other task panicked")?;
        Ok(per_op(elapsed, n))
    }};
}

pub(crate) use blocking_ping_pong;

pub fn ping_pong(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let n = z.ping_pongs;
    match rival {
        Rival::Stackweave => stackweave_rt(2)?.block_on(move || {
            blocking_ping_pong!(n, stackweave::sync::mpsc::channel::<u64>, stackweave::spawn)
        }),
        Rival::Tokio => tokio_ping_pong(&tokio_rt(2)?, n),
        Rival::May => {
            may_config(2);
            let a = may::go!(move || -> Result<Sample, String> {
                blocking_ping_pong!(n, may::sync::mpsc::channel::<u64>, |f| may::go!(f))
            });
            a.join().map_err(|_| "the task panicked")?
        }
        Rival::Threads => {
            blocking_ping_pong!(n / 10, std::sync::mpsc::channel::<u64>, thread::spawn)
        }
    }
}

/// The tokio ping-pong over `unbounded_channel`, from inside a task on `rt`.
pub(crate) fn tokio_ping_pong(rt: &tokio::runtime::Runtime, n: u64) -> Result<Sample, String> {
    rt.block_on(async move {
        tokio::spawn(async move {
            use tokio::sync::mpsc;
            let (to_b, mut from_a) = mpsc::unbounded_channel::<u64>();
            let (to_a, mut from_b) = mpsc::unbounded_channel::<u64>();
            let b = tokio::spawn(async move {
                while let Some(v) = from_a.recv().await {
                    if to_a.send(v + 1).is_err() {
                        break;
                    }
                }
            });
            let start = Instant::now();
            for i in 0..n {
                to_b.send(i).map_err(|e| e.to_string())?;
                check_echo(from_b.recv().await.ok_or("closed")?, i)?;
            }
            let elapsed = start.elapsed();
            drop(to_b);
            b.await.map_err(|e| e.to_string())?;
            Ok(per_op(elapsed, n))
        })
        .await
        .map_err(|e| e.to_string())?
    })
}

pub(crate) fn check_echo(got: u64, sent: u64) -> Result<(), String> {
    if got == sent + 1 {
        Ok(())
    } else {
        Err(format!("sent {sent}, got {got} back"))
    }
}

// ---------------------------------------------------------------------------------
// Idle memory: n tasks sleeping for an hour.

/// How long the tasks sleep; the sample process exits long before.
const NAP: Duration = Duration::from_secs(3600);

/// Spawns `n` sleeping tasks and reports the growth of this process's RSS per task
/// (KiB), with page tables (`VmPTE`, not part of RSS) as an extra. The process exits
/// right after without waking them.
pub fn idle(rival: Rival, n: u64) -> Result<Sample, String> {
    let asleep = Arc::new(AtomicU64::new(0));
    // Every rival keeps its runtime alive until the process exits.
    let before;
    match rival {
        Rival::Stackweave => {
            let rt = stackweave_rt(2)?;
            before = baseline();
            let a = asleep.clone();
            rt.block_on(move || -> Result<(), String> {
                for i in 0..n {
                    let a = a.clone();
                    stackweave::Builder::new()
                        .spawn(move || {
                            a.fetch_add(1, Ordering::Relaxed);
                            stackweave::time::sleep(NAP);
                        })
                        .map_err(|e| format!("spawn #{i}: {e}"))?;
                }
                Ok(())
            })?;
            std::mem::forget(rt);
        }
        Rival::Tokio => {
            let rt = tokio_rt(2)?;
            before = baseline();
            let a = asleep.clone();
            rt.block_on(async move {
                for _ in 0..n {
                    let a = a.clone();
                    tokio::spawn(async move {
                        a.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(NAP).await;
                    });
                }
            });
            std::mem::forget(rt);
        }
        Rival::May => {
            may_map_check(n)?;
            may_config(2);
            before = baseline();
            let a = asleep.clone();
            let spawned = std::panic::catch_unwind(move || {
                for _ in 0..n {
                    let a = a.clone();
                    may::go!(move || {
                        a.fetch_add(1, Ordering::Relaxed);
                        may::coroutine::sleep(NAP);
                    });
                }
            });
            if let Err(p) = spawned {
                return Err(format!(
                    "failed after {} coroutines: {}",
                    asleep.load(Ordering::Relaxed),
                    panic_message(&*p).lines().next().unwrap_or("")
                ));
            }
        }
        Rival::Threads => {
            before = baseline();
            for i in 0..n {
                let a = asleep.clone();
                thread::Builder::new()
                    .stack_size(16 * 1024)
                    .spawn(move || {
                        a.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(NAP);
                    })
                    .map_err(|e| format!("thread #{i}: {e}{}", maps_note()))?;
            }
        }
    }
    let limit = Instant::now() + Duration::from_secs(60);
    while asleep.load(Ordering::Relaxed) < n {
        if Instant::now() > limit {
            return Err(format!(
                "only {} of {n} tasks started within 60 s",
                asleep.load(Ordering::Relaxed)
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    // Let the last ones reach their sleep.
    thread::sleep(Duration::from_millis(200));
    let (rss, pte) = memory();
    let per_task = |now: f64, then: f64| (now - then) / n as f64 / 1024.0;
    Ok(Sample::new(per_task(rss, before.0)).with("page_tables", per_task(pte, before.1)))
}

/// may guards each stack with `mprotect`, two memory maps per coroutine; past
/// `vm.max_map_count` its stack allocation fails and the process hangs or aborts
/// (seen: a sample that never finished). Refuses up front instead.
fn may_map_check(n: u64) -> Result<(), String> {
    let max: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or("cannot read vm.max_map_count")?;
    let used = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64);
    if used + 2 * n + 1000 > max {
        return Err(format!(
            "not run: may takes 2 memory maps per coroutine (mprotect guards); \
             vm.max_map_count {} allows ~{}",
            thousands(max),
            thousands(max.saturating_sub(used + 1000) / 2)
        ));
    }
    Ok(())
}

/// "; 65,470 memory maps in use, vm.max_map_count 65,530": why a thread could not
/// start (std threads take 4 maps each: stack and guard, signal stack and guard).
fn maps_note() -> String {
    let used = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64);
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match max {
        Some(max) => format!(
            " at {} memory maps of vm.max_map_count {}",
            thousands(used),
            thousands(max)
        ),
        None => String::new(),
    }
}

/// RSS and page tables of this process, in bytes.
fn memory() -> (f64, f64) {
    (
        status_bytes(None, "VmRSS").unwrap_or(f64::NAN),
        status_bytes(None, "VmPTE").unwrap_or(f64::NAN),
    )
}

/// [`memory`] after returning free heap to the kernel, so the baseline holds no
/// memory the tasks would reuse without growing RSS.
fn baseline() -> (f64, f64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    memory()
}
