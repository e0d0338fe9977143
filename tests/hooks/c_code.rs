//! C code that calls `read`, `poll` and `usleep` itself: a shared library that the
//! test compiles with `gcc` and loads with `dlopen`. Its calls go through the PLT,
//! which binds them to the hooks the test binary exports; so they suspend only
//! their coroutine, as Rust's do. Skipped, with a message, without `gcc`.

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

/// Compiles and loads the library (`None`, with a message, if `gcc` fails). `-O2
/// -U_FORTIFY_SOURCE`: plain `read`/`poll`, not glibc's fortified `__read_chk`.
fn load() -> Option<CLib> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hooks-c");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("blocking.c");
    let lib = dir.join(format!("libblocking-{}.so", std::process::id()));
    std::fs::write(&src, C_SOURCE).unwrap();
    let status = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-U_FORTIFY_SOURCE", "-o"])
        .arg(&lib)
        .arg(&src)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            println!("skipped: gcc could not build the C library ({other:?})");
            return None;
        }
    }
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; the library has no initialisers.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen failed");
    let _ = std::fs::remove_file(&lib);
    let sym = |name: &str| {
        let name = CString::new(name).unwrap();
        // SAFETY: a valid handle and a NUL-terminated name.
        let f = unsafe { libc::dlsym(handle, name.as_ptr()) };
        assert!(!f.is_null(), "no symbol {name:?}");
        f
    };
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
