//! A hooked call inside a drain scope (`runtime::until_drain`): the drain ends its
//! wait with `ECANCELED` (std reports it as an `Other`-kind error), never an abort,
//! and the scope then unwinds at the coroutine's next stackweave wait.

use crate::support::serial;
use stackweave::runtime::until_drain;
use stackweave::Runtime;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_drain_ends_a_hooked_read_in_a_drain_scope_with_ecanceled() {
    let _g = serial();
    let rt = Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let waiting = Arc::new(AtomicBool::new(false));
    let idle = rt.spawn({
        let waiting = waiting.clone();
        move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let (_peer, _) = listener.accept().unwrap();
            // An idle keep-alive connection read with std::net: the unwind cannot
            // cross libc's frame, so the hooked read returns ECANCELED.
            let read = until_drain(|| {
                waiting.store(true, Ordering::Release);
                s.read(&mut [0u8; 4]).map_err(|e| e.raw_os_error())
            });
            // A scope that reaches a stackweave wait after the hooked call unwinds.
            let after = until_drain(|| {
                let _ = s.read(&mut [0u8; 4]);
                stackweave::time::sleep(Duration::from_secs(60));
            });
            (read, after.is_err())
        }
    });
    while !waiting.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let drained = rt.shutdown_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!((drained.finished, drained.cancelled), (1, 0), "{drained:?}");
    let (read, after_ended) = idle.join().unwrap();
    assert_eq!(read, Ok(Err(Some(libc::ECANCELED))));
    assert!(after_ended);
}
