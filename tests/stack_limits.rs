//! Running out of memory maps or of address space makes
//! `Generator::with_stack_size` return an `io::Error` of kind `OutOfMemory`, never a
//! crash, and the process recovers once memory is available again.
//!
//! The exhaustion runs in a child process (see `common`), so that a failure cannot
//! take the whole test binary down and the limits do not leak into other tests.
#![cfg(target_os = "linux")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod common;

use common::{page_size, proc_status_kib};
use stackweave::generator::{Generator, GeneratorState, Yielder};
use stackweave::stack::{guard_kind, stack_cap, GuardKind, MIN_STACK_SIZE};
use std::io;
use std::ptr;

use GeneratorState::{Complete, Yielded};

/// Free memory inside the allocator, so that the small allocations made while the
/// process is at a limit (a generator's control block, an error message) need no new
/// mapping: 1 MiB of small blocks is allocated and freed again, with one block kept
/// above them so that the allocator cannot give the freed range back to the kernel.
struct AllocatorHeadroom {
    _fence: Box<[u8; 256]>,
}

impl AllocatorHeadroom {
    fn new() -> Self {
        let blocks: Vec<Box<[u8; 256]>> = (0..4096).map(|_| Box::new([1; 256])).collect();
        let fence = Box::new([2; 256]);
        drop(blocks);
        AllocatorHeadroom { _fence: fence }
    }
}

/// A generator that yields `i` once and returns `2 * i`.
fn small_generator(size: usize, i: u32) -> io::Result<Generator<'static, u32, u32>> {
    Generator::with_stack_size(size, move |y: &Yielder<u32>| {
        y.suspend(i);
        2 * i
    })
}

fn run_to_completion(g: &mut Generator<'_, u32, u32>, i: u32) {
    assert_eq!(g.resume(), Yielded(i));
    assert_eq!(g.resume(), Complete(2 * i));
}

/// Runs test `name` in a child process: it must exit successfully, having printed
/// `CHILD-OK`; its stderr is shown.
fn expect_child_ok(name: &str) {
    let child = common::run_child(name);
    assert!(child.status.success(), "{child}");
    assert!(child.stderr.contains("CHILD-OK"), "{child}");
    eprintln!("{}", child.stderr.trim());
}

/// Lowers this (child) process's soft address-space limit to `budget` bytes;
/// returns the old limit for [`restore_address_space`].
fn limit_address_space(budget: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
    assert!(old.rlim_max == libc::RLIM_INFINITY || old.rlim_max >= budget);
    let limited = libc::rlimit {
        rlim_cur: budget,
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads a valid rlimit; lowering the soft limit of this child
    // process only makes its later mappings fail.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limited) }, 0);
    old
}

/// Puts back the limit [`limit_address_space`] replaced.
fn restore_address_space(old: libc::rlimit) {
    // SAFETY: setrlimit reads a valid rlimit; raising the soft limit back to its old
    // value.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) }, 0);
}

#[test]
fn stack_cap_is_consistent_with_guard_kind() {
    match guard_kind() {
        GuardKind::Mprotect => {
            let cap = stack_cap().expect("mprotect guards cap the number of stacks");
            assert!(cap > 1000, "cap of {cap} stacks");
        }
        GuardKind::GuardInstall => assert_eq!(stack_cap(), None),
    }
    // Stable across calls.
    assert_eq!(guard_kind(), guard_kind());
    assert_eq!(stack_cap(), stack_cap());
}

#[test]
// Under AddressSanitizer the runtime's own mappings (shadow, allocator, fake
// stacks) fail first once the map count is exhausted, and ASan aborts the process.
#[cfg_attr(
    stackweave_asan,
    ignore = "ASan's own mmaps fail first when the map count runs out"
)]
fn exhausting_memory_maps_returns_out_of_memory() {
    const NAME: &str = "exhausting_memory_maps_returns_out_of_memory";
    if common::is_child(NAME) {
        exhaust_memory_maps();
        return;
    }
    expect_child_ok(NAME);
}

/// Stack size used while at the limit: not the size of the warm-up stack, so that
/// this thread's pool holds no stack of it and every attempt needs a fresh mapping.
const LIMIT_STACK: usize = 64 * 1024;

fn exhaust_memory_maps() {
    let page = page_size();
    let max_maps: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("vm.max_map_count")
        .trim()
        .parse()
        .expect("vm.max_map_count is a number");
    if max_maps > 1_000_000 {
        eprintln!("vm.max_map_count is {max_maps}: too many maps to exhaust quickly; skipped");
        eprintln!("CHILD-OK");
        return;
    }
    // Settle everything that maps memory once (pool, signal stack, guard kind).
    run_to_completion(&mut small_generator(MIN_STACK_SIZE, 1).unwrap(), 1);
    let kind = guard_kind();
    const TRIES: usize = 100_000;
    let mut gens = Vec::with_capacity(TRIES);
    let headroom = AllocatorHeadroom::new();

    // One big inaccessible region; making every other page readable splits it into
    // one map per page until the kernel refuses with ENOMEM (vm.max_map_count).
    let pages = 2 * (max_maps + 1024);
    let len = pages * page;
    // SAFETY: a fresh private anonymous reservation; no existing memory is affected.
    let region = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(region, libc::MAP_FAILED, "reserving {len} bytes");
    let mut readable = 0;
    let mut refused = None;
    for i in (0..pages).step_by(2) {
        // SAFETY: page `i` lies inside the region mapped above, which nothing uses.
        let rc = unsafe {
            libc::mprotect(
                region.cast::<u8>().add(i * page).cast(),
                page,
                libc::PROT_READ,
            )
        };
        if rc != 0 {
            refused = Some(io::Error::last_os_error());
            break;
        }
        readable += 1;
    }
    let refused = refused.expect("mprotect never ran out of memory maps");
    assert_eq!(refused.raw_os_error(), Some(libc::ENOMEM), "{refused}");
    // mprotect stops one or two maps short of the limit, and a new stack may merge
    // into a neighbouring map (MADV_GUARD_INSTALL keeps a stack a single map): fill
    // the last slots with shared pages, which never merge, until mmap refuses too.
    let mut shared = Vec::with_capacity(16);
    loop {
        assert!(
            shared.len() < 16,
            "mmap kept succeeding past vm.max_map_count"
        );
        // SAFETY: a fresh one-page shared anonymous mapping.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            break;
        }
        shared.push(p);
    }

    // At the limit: creating generators fails with OutOfMemory, never crashes.
    let mut failure = None;
    for i in 0..TRIES {
        match small_generator(LIMIT_STACK, i as u32) {
            Ok(g) => gens.push(g),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // Generators created before (or at) the limit still run.
    for (i, g) in gens.iter_mut().enumerate() {
        run_to_completion(g, i as u32);
    }

    let shared_pages = shared.len();
    for p in shared {
        // SAFETY: unmapping a page mapped above; nothing points into it.
        unsafe { libc::munmap(p, page) };
    }
    // SAFETY: unmapping exactly the region mapped above; nothing points into it.
    unsafe { libc::munmap(region, len) };
    drop(headroom);

    let err = failure.expect("no generator creation failed at the memory-map limit");
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
    eprintln!(
        "child: {kind:?} guards, vm.max_map_count {max_maps}: {readable} pages made readable \
         before mprotect failed, {shared_pages} more maps taken by single shared pages, \
         {} stacks created at the limit, then: {err}",
        gens.len()
    );
    drop(gens);

    // Below the limit again: generators can be created and run.
    for i in 0..100 {
        run_to_completion(
            &mut small_generator(LIMIT_STACK, i).expect("after release"),
            i,
        );
    }
    eprintln!("CHILD-OK");
}

#[test]
fn exhausting_address_space_returns_out_of_memory() {
    const NAME: &str = "exhausting_address_space_returns_out_of_memory";
    if common::is_child(NAME) {
        exhaust_address_space();
        return;
    }
    expect_child_ok(NAME);
}

fn exhaust_address_space() {
    const STACK: usize = 1024 * 1024;
    run_to_completion(&mut small_generator(MIN_STACK_SIZE, 1).unwrap(), 1);
    let mut gens = Vec::with_capacity(1000);
    let headroom = AllocatorHeadroom::new();

    let old = limit_address_space((proc_status_kib("VmSize") as u64 + 64 * 1024) * 1024);

    let mut failure = None;
    for i in 0..1000 {
        match small_generator(STACK, i) {
            Ok(mut g) => {
                assert_eq!(g.resume(), Yielded(i)); // touch the stack
                gens.push(g);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // Still at the limit: the existing generators resume fine.
    for (i, g) in gens.iter_mut().enumerate() {
        assert_eq!(g.resume(), Complete(2 * i as u32));
    }
    restore_address_space(old);
    drop(headroom);

    let err = failure.expect("no generator creation failed within 64 MiB of address space");
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
    assert!(err.to_string().contains("stack"), "unclear error: {err}");
    assert!(
        (32..=64).contains(&gens.len()),
        "{} stacks of 1 MiB fit in 64 MiB",
        gens.len()
    );
    eprintln!(
        "child: {} generators with 1 MiB stacks fit in 64 MiB of address space, then: {err}",
        gens.len()
    );
    drop(gens);

    // With the limit lifted, generators work again.
    run_to_completion(&mut small_generator(STACK, 5).expect("after the limit"), 5);
    eprintln!("CHILD-OK");
}

#[test]
// The address-space limit leaves room for 4 more stacks only, and under
// AddressSanitizer its allocator (whose quarantine keeps freed memory) maps more than
// that meanwhile: the spawns then fail at random.
#[cfg_attr(
    stackweave_asan,
    ignore = "RLIMIT_AS leaves no room for ASan's allocator"
)]
fn big_stacks_finished_on_workers_serve_spawns_from_another_thread() {
    const NAME: &str = "big_stacks_finished_on_workers_serve_spawns_from_another_thread";
    if common::is_child(NAME) {
        reuse_big_stacks_from_another_thread();
        return;
    }
    expect_child_ok(NAME);
}

/// 31 coroutines with 64 MiB stacks, spawned from the main thread, finish on the
/// workers; then, with room for only 4 more such stacks in the address space, the
/// main thread spawns 31 again: the stacks the workers gave back must serve them.
fn reuse_big_stacks_from_another_thread() {
    use stackweave::{Builder, Runtime};
    use std::time::Duration;
    const BIG: usize = 64 << 20;
    const N: usize = 31;
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let round = |label: &str| -> io::Result<()> {
        let mut joins = Vec::new();
        for i in 0..N {
            let b = Builder::new().stack_size(BIG);
            joins.push(handle.try_spawn(b, move || {
                // Touch the stack, and stay alive while the others start.
                let buf = std::hint::black_box([i as u8; 4096]);
                stackweave::time::sleep(Duration::from_millis(50));
                buf[17] as usize
            })?);
        }
        for (i, j) in joins.into_iter().enumerate() {
            assert_eq!(j.join().unwrap(), i, "{label}");
        }
        Ok(())
    };
    round("first round").expect("unlimited first round");
    let headroom = AllocatorHeadroom::new();
    let old = limit_address_space((proc_status_kib("VmSize") as u64 * 1024) + 4 * BIG as u64);
    let second = round("second round");
    restore_address_space(old);
    drop(headroom);
    second.expect("the stacks the workers gave back serve the main thread's spawns");
    drop(rt);
    eprintln!(
        "CHILD-OK: {N} spawns of 64 MiB stacks from the main thread reused the workers' stacks"
    );
}

#[test]
fn pooled_stacks_of_other_sizes_make_room_when_memory_runs_out() {
    const NAME: &str = "pooled_stacks_of_other_sizes_make_room_when_memory_runs_out";
    if common::is_child(NAME) {
        unmap_pooled_stacks_under_pressure();
        return;
    }
    expect_child_ok(NAME);
}

/// 48 MiB of 1 MiB stacks wait in the pools; with 2 MiB of address space left, an
/// 8 MiB stack is still had: the pooled ones of another size are unmapped for it.
fn unmap_pooled_stacks_under_pressure() {
    const POOLED: usize = 1 << 20;
    const WANTED: usize = 8 << 20;
    let mut gens: Vec<_> = (0..48)
        .map(|i| small_generator(POOLED, i).expect("unlimited"))
        .collect();
    for (i, g) in gens.iter_mut().enumerate() {
        run_to_completion(g, i as u32);
    }
    drop(gens);
    let headroom = AllocatorHeadroom::new();
    let old = limit_address_space((proc_status_kib("VmSize") as u64 + 2 * 1024) * 1024);
    let big = small_generator(WANTED, 7);
    restore_address_space(old);
    drop(headroom);
    run_to_completion(
        &mut big.expect("pooled stacks of another size made room"),
        7,
    );
    eprintln!("CHILD-OK: an 8 MiB stack fit after the pooled 1 MiB stacks were unmapped");
}

/// 20,000 coroutines spawned before any of them runs, then joined on one worker:
/// each run takes the stack the previous one gave back, so the stacks their
/// spawns reserved stay untouched and the process's memory grows by far less than
/// a page per coroutine.
#[test]
fn a_burst_of_spawns_does_not_fault_in_a_stack_per_coroutine() {
    const NAME: &str = "a_burst_of_spawns_does_not_fault_in_a_stack_per_coroutine";
    if common::is_child(NAME) {
        const N: usize = 20_000;
        let rt = stackweave::Runtime::builder().workers(1).build().unwrap();
        let grown_kib = rt.block_on(|| {
            let before = proc_status_kib("VmRSS");
            let handles: Vec<_> = (0..N).map(|i| stackweave::spawn(move || i)).collect();
            for (i, h) in handles.into_iter().enumerate() {
                assert_eq!(h.join().unwrap(), i);
            }
            proc_status_kib("VmRSS").saturating_sub(before)
        });
        let page_kib = page_size() / 1024;
        // A page per coroutine would be 80 MB; the tasks themselves take a few.
        assert!(
            grown_kib < N * page_kib / 4,
            "resident memory grew by {grown_kib} KiB for {N} coroutines"
        );
        eprintln!("CHILD-OK grew {grown_kib} KiB for {N} coroutines");
        return;
    }
    expect_child_ok(NAME);
}
