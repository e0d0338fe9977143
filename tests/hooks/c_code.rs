//! C code that calls `read`, `poll` and `usleep` itself: a shared library that the
//! test compiles with `gcc` and loads with `dlopen`. Its calls go through the PLT,
//! which binds them to the hooks the test binary exports; so they suspend only
//! their coroutine, as Rust's do. Built with `-D_FORTIFY_SOURCE=2`, the same C
//! calls glibc's checked `__read_chk`, `__recv_chk` and `__poll_chk`, which are
//! hooked too, and whose checks still abort. Skipped, with a message, without
//! `gcc`.

use crate::common::raise_nofile_limit;
use crate::support::{flags, kernel_flags, serial, two_workers, Heartbeat};
use std::ffi::{c_char, c_int, c_uint, CString};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const C_SOURCE: &str = r#"
#include <poll.h>
#include <unistd.h>

/* Waits up to timeout_ms for fd to be readable, then reads: the bytes read, 0 at
   the end, -1 with errno on an error, -2 on a timeout. */
int c_poll_then_read(int fd, char *buf, int len, int timeout_ms) {
    struct pollfd p = { fd, POLLIN, 0 };
    int n = poll(&p, 1, timeout_ms);
    if (n == 0)
        return -2;
    if (n < 0)
        return -1;
    return (int)read(fd, buf, (size_t)len);
}

int c_read(int fd, char *buf, int len) {
    return (int)read(fd, buf, (size_t)len);
}

int c_usleep(unsigned usec) {
    return usleep(usec);
}
"#;

type PollThenRead = unsafe extern "C" fn(c_int, *mut c_char, c_int, c_int) -> c_int;
type ReadFn = unsafe extern "C" fn(c_int, *mut c_char, c_int) -> c_int;
type UsleepFn = unsafe extern "C" fn(c_uint) -> c_int;

/// The library's three functions.
#[derive(Clone, Copy)]
struct CLib {
    poll_then_read: PollThenRead,
    read: ReadFn,
    usleep: UsleepFn,
}

/// Compiles `source` into a shared library named `name` and loads it (`None`, with
/// a message, if `gcc` fails); `fortify` says what `-D_FORTIFY_SOURCE` is. The
/// library's undefined dynamic symbols (`nm -D -u`; empty without `nm`) come too.
fn compile(name: &str, source: &str, fortify: &str) -> Option<(*mut libc::c_void, String)> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hooks-c");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}-{}.c", std::process::id()));
    let lib = dir.join(format!("lib{name}-{}.so", std::process::id()));
    std::fs::write(&src, source).unwrap();
    let status = std::process::Command::new("gcc")
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-U_FORTIFY_SOURCE",
            fortify,
            "-o",
        ])
        .arg(&lib)
        .arg(&src)
        .status();
    let _ = std::fs::remove_file(&src);
    match status {
        Ok(s) if s.success() => {}
        other => {
            println!("skipped: gcc could not build the C library ({other:?})");
            return None;
        }
    }
    let imports = std::process::Command::new("nm")
        .args(["-D", "-u"])
        .arg(&lib)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; the library has no initialisers.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen failed");
    let _ = std::fs::remove_file(&lib);
    Some((handle, imports))
}

/// The address of `name` in the library `handle`.
fn sym(handle: *mut libc::c_void, name: &str) -> *mut libc::c_void {
    let name = CString::new(name).unwrap();
    // SAFETY: a valid handle and a NUL-terminated name.
    let f = unsafe { libc::dlsym(handle, name.as_ptr()) };
    assert!(!f.is_null(), "no symbol {name:?}");
    f
}

/// Compiles and loads the plain library (`-D_FORTIFY_SOURCE=0`: plain `read` and
/// `poll`, not glibc's checked variants).
fn load() -> Option<CLib> {
    let (handle, _) = compile("blocking", C_SOURCE, "-D_FORTIFY_SOURCE=0")?;
    let sym = |name: &str| sym(handle, name);
    // SAFETY: each symbol is the C function of that type above; the handle is
    // never closed, so they stay valid.
    unsafe {
        Some(CLib {
            poll_then_read: std::mem::transmute::<*mut libc::c_void, PollThenRead>(sym(
                "c_poll_then_read",
            )),
            read: std::mem::transmute::<*mut libc::c_void, ReadFn>(sym("c_read")),
            usleep: std::mem::transmute::<*mut libc::c_void, UsleepFn>(sym("c_usleep")),
        })
    }
}

#[test]
fn c_code_calling_read_poll_and_usleep_suspends_only_its_coroutine() {
    let _g = serial();
    let Some(c) = load() else { return };
    let limit = raise_nofile_limit();
    let pairs = if limit >= 2300 {
        1000
    } else {
        (limit as usize).saturating_sub(300) / 2
    };
    let rt = two_workers();
    let beat = Heartbeat::start(&rt);
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..pairs {
        let (a, mut b) = UnixStream::pair().unwrap();
        // The reader: C's read on a blocking socket (half of them after C's poll).
        handles.push(rt.spawn(move || {
            let mut buf = [0 as c_char; 8];
            let fd = a.as_raw_fd();
            // SAFETY: a valid buffer of 8 bytes; `a` stays open.
            let n = unsafe {
                if i % 2 == 0 {
                    (c.read)(fd, buf.as_mut_ptr(), 8)
                } else {
                    (c.poll_then_read)(fd, buf.as_mut_ptr(), 8, 30_000)
                }
            };
            assert_eq!(n, 1, "C read returned {n}");
            assert_eq!(buf[0] as u8, b'c');
            // The hook took the socket: non-blocking underneath, blocking to C.
            assert_ne!(kernel_flags(fd) & libc::O_NONBLOCK, 0);
            assert_eq!(flags(fd) & libc::O_NONBLOCK, 0);
        }));
        // The writer: C's usleep(100 ms) first.
        handles.push(rt.spawn(move || {
            // SAFETY: no pointers.
            assert_eq!(unsafe { (c.usleep)(100_000) }, 0);
            // Dropped after the write: the byte stays readable before the end.
            b.write_all(b"c").unwrap();
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let total = start.elapsed();
    let gap = beat.longest_gap();
    println!("{pairs} C reads and usleep(100 ms)s: {total:?}, heartbeat's longest gap {gap:?}");
    // Serially the sleeps alone are 100 s.
    assert!(total < Duration::from_secs(20), "took {total:?}");
    assert!(gap < Duration::from_secs(2), "heartbeat gap {gap:?}");
}

const FORTIFIED_SOURCE: &str = r#"
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Each reads into an 8-byte buffer of its own, `len` bytes asked for: the compiler
   knows the buffer's size but not `len`, so glibc's checked functions are called.
   The first byte read, or -1000 - what the call returned. */
int f_read(int fd, int len) {
    char buf[8];
    ssize_t n = read(fd, buf, (size_t)len);
    return n > 0 ? buf[0] : -1000 - (int)n;
}

int f_recv(int fd, int len) {
    char buf[8];
    ssize_t n = recv(fd, buf, (size_t)len, 0);
    return n > 0 ? buf[0] : -1000 - (int)n;
}

int f_poll(int fd, int nfds, int timeout_ms) {
    struct pollfd p[1] = { { fd, POLLIN, 0 } };
    return poll(p, (nfds_t)nfds, timeout_ms);
}
"#;

type FRead = unsafe extern "C" fn(c_int, c_int) -> c_int;
type FPoll = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;

/// The fortified library's functions.
#[derive(Clone, Copy)]
struct Fortified {
    read: FRead,
    recv: FRead,
    poll: FPoll,
}

fn load_fortified() -> Option<Fortified> {
    let (handle, imports) = compile("fortified", FORTIFIED_SOURCE, "-D_FORTIFY_SOURCE=2")?;
    if imports.is_empty() {
        println!("no nm: not checking that the library calls the __*_chk functions");
    } else {
        for name in ["__read_chk", "__recv_chk", "__poll_chk"] {
            assert!(imports.contains(name), "{name} not imported:\n{imports}");
        }
    }
    // SAFETY: each symbol is the C function of that type above; the handle is
    // never closed.
    unsafe {
        Some(Fortified {
            read: std::mem::transmute::<*mut libc::c_void, FRead>(sym(handle, "f_read")),
            recv: std::mem::transmute::<*mut libc::c_void, FRead>(sym(handle, "f_recv")),
            poll: std::mem::transmute::<*mut libc::c_void, FPoll>(sym(handle, "f_poll")),
        })
    }
}

#[test]
fn fortified_c_code_read_recv_and_poll_chk_are_hooked() {
    let _g = serial();
    let Some(c) = load_fortified() else { return };
    let rt = two_workers();
    let beat = Heartbeat::start(&rt);
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..200 {
        let (a, mut b) = UnixStream::pair().unwrap();
        handles.push(rt.spawn(move || {
            let fd = a.as_raw_fd();
            // SAFETY: the C functions take a descriptor and small numbers; `a` stays
            // open. 8 bytes asked for, the buffer's size: the checks pass.
            let got = unsafe {
                match i % 3 {
                    0 => (c.read)(fd, 8),
                    1 => (c.recv)(fd, 8),
                    _ => {
                        assert_eq!((c.poll)(fd, 1, 30_000), 1);
                        (c.read)(fd, 8)
                    }
                }
            };
            assert_eq!(got, b'f' as c_int);
            assert_ne!(kernel_flags(fd) & libc::O_NONBLOCK, 0);
            assert_eq!(flags(fd) & libc::O_NONBLOCK, 0);
        }));
        handles.push(rt.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            b.write_all(b"f").unwrap();
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let total = start.elapsed();
    let gap = beat.longest_gap();
    println!("200 fortified C reads: {total:?}, heartbeat's longest gap {gap:?}");
    // Serially the sleeps alone are 20 s.
    assert!(total < Duration::from_secs(10), "took {total:?}");
    assert!(gap < Duration::from_secs(2), "heartbeat gap {gap:?}");
}

const ABORT_TEST: &str = "c_code::a_failed_fortify_check_still_aborts";

#[test]
fn a_failed_fortify_check_still_aborts() {
    if crate::common::is_child(ABORT_TEST) {
        let c = load_fortified().expect("built in the parent");
        let rt = two_workers();
        rt.block_on(move || {
            let (a, mut b) = UnixStream::pair().unwrap();
            b.write_all(b"x").unwrap();
            // SAFETY: deliberately asks for 64 bytes into an 8-byte buffer: glibc's
            // check must stop it before the read.
            unsafe { (c.read)(a.as_raw_fd(), 64) };
        });
        unreachable!("the overflowing read returned");
    }
    let _g = serial();
    if load_fortified().is_none() {
        return;
    }
    let child = crate::common::run_child(ABORT_TEST);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.status.signal(), Some(libc::SIGABRT), "{child}");
    assert!(child.stderr.contains("buffer overflow detected"), "{child}");
}
