//! The synchronization rows (formerly `benches/sync.rs` and the park/unpark group of
//! `benches/runtime.rs`): a contended mutex, the same with a yield while holding
//! it, a park/unpark ping-pong on 2 workers, the channel ping-pong on ONE worker
//! and with bounded channels (capacity 1), each for stackweave, tokio, may and
//! threads where the rival has it. Every function runs inside
//! a sample child process (so may's process-global worker count can differ per row)
//! and returns the row's value per operation.

use crate::rows::Sizes;
use crate::sample::Sample;
use crate::servers::Rival;
use crate::tasks::{
    blocking_ping_pong, check_echo, may_config, per_op, pin_to_one_cpu, stackweave_rt,
    tokio_current_thread, tokio_ping_pong, tokio_rt,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

/// Tasks (or threads) sharing the mutex.
pub const MUTEX_TASKS: u64 = 8;

fn check_count(count: u64, n: u64) -> Result<(), String> {
    if count == n {
        Ok(())
    } else {
        Err(format!("WRONG COUNT: {count} after {n} increments"))
    }
}

// ---------------------------------------------------------------------------------
// Contended mutex: MUTEX_TASKS tasks each lock a shared counter, increment it and
// unlock, n / MUTEX_TASKS times; with `yield_inside`, each yields while holding it,
// so the others really queue. Time per lock + unlock, spawning and joining the
// tasks included; the final count is checked.

pub fn mutex(rival: Rival, z: &Sizes, yield_inside: bool) -> Result<Sample, String> {
    let n = if yield_inside { z.locks_yield } else { z.locks };
    let per = n / MUTEX_TASKS;
    let total = per * MUTEX_TASKS;
    match rival {
        Rival::Stackweave => stackweave_rt(2)?.block_on(move || {
            let counter = Arc::new(stackweave::sync::Mutex::new(0u64));
            let start = Instant::now();
            let handles: Vec<_> = (0..MUTEX_TASKS)
                .map(|_| {
                    let counter = counter.clone();
                    stackweave::spawn(move || {
                        for _ in 0..per {
                            let mut count = counter.lock().expect("poisoned");
                            *count += 1;
                            if yield_inside {
                                stackweave::yield_now();
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| "a task panicked")?;
            }
            let elapsed = start.elapsed();
            check_count(*counter.lock().map_err(|_| "poisoned")?, total)?;
            Ok(per_op(elapsed, total))
        }),
        Rival::Tokio => {
            let rt = tokio_rt(2)?;
            rt.block_on(async move {
                // Inside a task on the workers, like the others' spawners.
                tokio::spawn(async move {
                    let counter = Arc::new(tokio::sync::Mutex::new(0u64));
                    let start = Instant::now();
                    let handles: Vec<_> = (0..MUTEX_TASKS)
                        .map(|_| {
                            let counter = counter.clone();
                            tokio::spawn(async move {
                                for _ in 0..per {
                                    let mut count = counter.lock().await;
                                    *count += 1;
                                    if yield_inside {
                                        tokio::task::yield_now().await;
                                    }
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.map_err(|e| e.to_string())?;
                    }
                    let elapsed = start.elapsed();
                    check_count(*counter.lock().await, total)?;
                    Ok(per_op(elapsed, total))
                })
                .await
                .map_err(|e| e.to_string())?
            })
        }
        Rival::May => {
            may_config(2);
            let spawner = may::go!(move || -> Result<Sample, String> {
                let counter = Arc::new(may::sync::Mutex::new(0u64));
                let start = Instant::now();
                let handles: Vec<_> = (0..MUTEX_TASKS)
                    .map(|_| {
                        let counter = counter.clone();
                        may::go!(move || {
                            for _ in 0..per {
                                let mut count = counter.lock().expect("poisoned");
                                *count += 1;
                                if yield_inside {
                                    may::coroutine::yield_now();
                                }
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().map_err(|_| "a task panicked")?;
                }
                let elapsed = start.elapsed();
                check_count(*counter.lock().map_err(|_| "poisoned")?, total)?;
                Ok(per_op(elapsed, total))
            });
            spawner.join().map_err(|_| "the spawner panicked")?
        }
        Rival::Threads => {
            // Not run with `yield_inside` (Row::not_applicable).
            let counter = Arc::new(std::sync::Mutex::new(0u64));
            let start = Instant::now();
            let handles: Vec<_> = (0..MUTEX_TASKS)
                .map(|_| {
                    let counter = counter.clone();
                    thread::spawn(move || {
                        for _ in 0..per {
                            *counter.lock().expect("poisoned") += 1;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| "a thread panicked")?;
            }
            let elapsed = start.elapsed();
            check_count(*counter.lock().map_err(|_| "poisoned")?, total)?;
            Ok(per_op(elapsed, total))
        }
    }
}

// ---------------------------------------------------------------------------------
// Park/unpark ping-pong: two tasks hand a turn back and forth through a shared
// atomic and their runtime's park/unpark; time per round trip.

/// One side of the ping-pong: waits for its turn `rounds` times, handing the turn
/// over before (first mover) or after each wait.
fn park_side(
    turn: &AtomicU32,
    rounds: u64,
    first_mover: bool,
    park: impl Fn(),
    unpark_other: impl Fn(),
) {
    let (mine, theirs) = if first_mover { (0, 1) } else { (1, 0) };
    for _ in 0..rounds {
        if first_mover {
            turn.store(theirs, Ordering::Release);
            unpark_other();
        }
        while turn.load(Ordering::Acquire) != mine {
            park();
        }
        if !first_mover {
            turn.store(theirs, Ordering::Release);
            unpark_other();
        }
    }
}

pub fn park_ping_pong(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let n = z.parks;
    match rival {
        Rival::Stackweave => stackweave_rt(2)?.block_on(move || {
            let turn = Arc::new(AtomicU32::new(0));
            let me = stackweave::current();
            let b = {
                let turn = turn.clone();
                stackweave::spawn(move || {
                    park_side(&turn, n, false, stackweave::park, || me.unpark());
                })
            };
            let other = b.coroutine().clone();
            let start = Instant::now();
            park_side(&turn, n, true, stackweave::park, || other.unpark());
            let elapsed = start.elapsed();
            b.join().map_err(|_| "the other task panicked")?;
            Ok(per_op(elapsed, n))
        }),
        Rival::Tokio => {
            use tokio::sync::Notify;
            let rt = tokio_rt(2)?;
            rt.block_on(async move {
                // One Notify per direction: its permit stands in for the turn.
                let to_a = Arc::new(Notify::new());
                let to_b = Arc::new(Notify::new());
                let b = {
                    let (to_a, to_b) = (to_a.clone(), to_b.clone());
                    tokio::spawn(async move {
                        for _ in 0..n {
                            to_b.notified().await;
                            to_a.notify_one();
                        }
                    })
                };
                let a = tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..n {
                        to_b.notify_one();
                        to_a.notified().await;
                    }
                    start.elapsed()
                });
                let elapsed = a.await.map_err(|e| e.to_string())?;
                b.await.map_err(|e| e.to_string())?;
                Ok(per_op(elapsed, n))
            })
        }
        Rival::May => {
            may_config(2);
            let a = may::go!(move || -> Result<Sample, String> {
                let turn = Arc::new(AtomicU32::new(0));
                let me = may::coroutine::current();
                let b = {
                    let turn = turn.clone();
                    may::go!(move || {
                        park_side(&turn, n, false, may::coroutine::park, || me.unpark());
                    })
                };
                let other = b.coroutine().clone();
                let start = Instant::now();
                park_side(&turn, n, true, may::coroutine::park, || other.unpark());
                let elapsed = start.elapsed();
                b.join().map_err(|_| "the other task panicked")?;
                Ok(per_op(elapsed, n))
            });
            a.join().map_err(|_| "the task panicked")?
        }
        Rival::Threads => {
            let n = n / 10;
            let turn = Arc::new(AtomicU32::new(0));
            let me = thread::current();
            let b = {
                let turn = turn.clone();
                thread::spawn(move || {
                    park_side(&turn, n, false, thread::park, || me.unpark());
                })
            };
            let other = b.thread().clone();
            let start = Instant::now();
            park_side(&turn, n, true, thread::park, || other.unpark());
            let elapsed = start.elapsed();
            b.join().map_err(|_| "the other thread panicked")?;
            Ok(per_op(elapsed, n))
        }
    }
}

// ---------------------------------------------------------------------------------
// Channel ping-pong on one worker: the pingpong row's code with everything on one
// worker (threads: two threads pinned to one CPU).

pub fn ping_pong_one_worker(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let n = z.ping_pongs;
    match rival {
        Rival::Stackweave => stackweave_rt(1)?.block_on(move || {
            blocking_ping_pong!(n, stackweave::sync::mpsc::channel::<u64>, stackweave::spawn)
        }),
        Rival::Tokio => tokio_ping_pong(&tokio_current_thread()?, n),
        Rival::May => {
            may_config(1);
            let a = may::go!(move || -> Result<Sample, String> {
                blocking_ping_pong!(n, may::sync::mpsc::channel::<u64>, |f| may::go!(f))
            });
            a.join().map_err(|_| "the task panicked")?
        }
        Rival::Threads => {
            // The other thread inherits this one's single-CPU affinity.
            pin_to_one_cpu()?;
            blocking_ping_pong!(n / 10, std::sync::mpsc::channel::<u64>, thread::spawn)
        }
    }
}

// ---------------------------------------------------------------------------------
// Bounded channel ping-pong: the pingpong row with channels of capacity 1.

pub fn ping_pong_bounded(rival: Rival, z: &Sizes) -> Result<Sample, String> {
    let n = z.ping_pongs;
    match rival {
        Rival::Stackweave => stackweave_rt(2)?.block_on(move || {
            blocking_ping_pong!(
                n,
                || stackweave::sync::mpsc::sync_channel::<u64>(1),
                stackweave::spawn
            )
        }),
        Rival::Tokio => {
            let rt = tokio_rt(2)?;
            rt.block_on(async move {
                tokio::spawn(async move {
                    use tokio::sync::mpsc;
                    let (to_b, mut from_a) = mpsc::channel::<u64>(1);
                    let (to_a, mut from_b) = mpsc::channel::<u64>(1);
                    let b = tokio::spawn(async move {
                        while let Some(v) = from_a.recv().await {
                            if to_a.send(v + 1).await.is_err() {
                                break;
                            }
                        }
                    });
                    let start = Instant::now();
                    for i in 0..n {
                        to_b.send(i).await.map_err(|e| e.to_string())?;
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
        // Not run (Row::not_applicable): may's mpsc has no bounded channel.
        Rival::May => Err("may's sync::mpsc has no bounded channel".into()),
        Rival::Threads => blocking_ping_pong!(
            n / 10,
            || std::sync::mpsc::sync_channel::<u64>(1),
            thread::spawn
        ),
    }
}
