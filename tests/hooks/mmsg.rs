//! `recvmmsg` and `sendmmsg` on blocking UDP sockets in coroutines: the first
//! message is waited for without holding the worker, `MSG_WAITFORONE` returns what
//! came, without it the call waits for all `vlen` as the blocking kernel call does,
//! and `sendmmsg` sends them all.

use crate::support::{serial, two_workers, Heartbeat};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Two UDP sockets connected to each other.
fn udp_pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

/// `recvmmsg` of up to `bufs.len()` datagrams of up to 16 bytes into `bufs`; the
/// count and each message's length.
fn recvmmsg(fd: i32, bufs: &mut [[u8; 16]], flags: i32) -> (i32, Vec<u32>) {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is valid (no name, no control data).
    let mut msgs: Vec<libc::mmsghdr> = (0..bufs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs` describes valid buffers that outlive the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as u32,
            flags,
            std::ptr::null_mut(),
        )
    };
    let lens = msgs
        .iter()
        .take(n.max(0) as usize)
        .map(|m| m.msg_len)
        .collect();
    (n, lens)
}

#[test]
fn recvmmsg_in_200_coroutines_waits_without_holding_the_worker() {
    let _g = serial();
    let rt = two_workers();
    let beat = Heartbeat::start(&rt);
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..200u8 {
        let (a, b) = udp_pair();
        handles.push(rt.spawn(move || {
            let mut bufs = [[0u8; 16]; 4];
            let (n, lens) = recvmmsg(a.as_raw_fd(), &mut bufs, libc::MSG_WAITFORONE);
            assert_eq!((n, lens), (1, vec![1]));
            assert_eq!(bufs[0][0], i);
        }));
        handles.push(rt.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            b.send(&[i]).unwrap();
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let total = start.elapsed();
    let gap = beat.longest_gap();
    println!("200 recvmmsg waits: {total:?}, heartbeat's longest gap {gap:?}");
    assert!(total < Duration::from_secs(10), "took {total:?}");
    assert!(gap < Duration::from_secs(2), "heartbeat gap {gap:?}");
}

#[test]
fn recvmmsg_without_waitforone_waits_for_all_and_sendmmsg_sends_all() {
    let _g = serial();
    let rt = two_workers();
    rt.block_on(|| {
        let (a, b) = udp_pair();
        let sender = stackweave::spawn(move || {
            b.send(b"one").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            // Both in one sendmmsg.
            let mut data = [*b"two", *b"six"];
            let mut iovs: Vec<libc::iovec> = data
                .iter_mut()
                .map(|d| libc::iovec {
                    iov_base: d.as_mut_ptr().cast(),
                    iov_len: d.len(),
                })
                .collect();
            // SAFETY: as in `recvmmsg`.
            let mut msgs: Vec<libc::mmsghdr> =
                (0..2).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs` describes valid buffers that outlive the call.
            let n = unsafe { libc::sendmmsg(b.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) };
            assert_eq!(n, 2);
            b
        });
        let mut bufs = [[0u8; 16]; 3];
        let (n, lens) = recvmmsg(a.as_raw_fd(), &mut bufs, 0);
        assert_eq!((n, lens), (3, vec![3, 3, 3]));
        assert_eq!(&bufs[0][..3], b"one");
        assert_eq!(&bufs[1][..3], b"two");
        assert_eq!(&bufs[2][..3], b"six");
        drop(sender.join().unwrap());
    });
}
