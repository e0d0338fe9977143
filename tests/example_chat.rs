//! The chat example (`examples/chat.rs`), run in-process: clients join, rename
//! themselves, chat, leave; every client must get every other client's lines exactly
//! once, in each sender's order, and never its own.
//!
//! No timing assertions: each step waits for the announcements it depends on, and
//! read timeouts only turn a lost line into a failure instead of a hang.

mod common;

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;

use common::{lock, Watchdog};
use stackweave::net::{Shutdown, TcpListener, TcpStream};
use stackweave::sync::mpsc;
use stackweave::{JoinHandle, Runtime};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

/// Liveness guard on every read.
const READ_GUARD: Duration = Duration::from_secs(20);

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// A test client: a line reader and a writer on the same connection.
struct Client {
    nick: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects, reads the welcome, takes `nick`; returns the client and its guest name.
    fn join(addr: SocketAddr, nick: &str) -> (Client, String) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_GUARD)).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut c = Client {
            nick: nick.to_string(),
            reader: BufReader::new(stream),
            writer,
        };
        let welcome = c.line();
        let guest = welcome
            .strip_prefix("* welcome, you are ")
            .unwrap_or_else(|| panic!("{nick}: unexpected welcome {welcome:?}"))
            .to_string();
        c.send(&format!("/nick {nick}"));
        c.expect(&format!("* you are now {nick}"));
        (c, guest)
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// The next line, without its newline; panics on end-of-file or the guard timeout.
    fn line(&mut self) -> String {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) => panic!("{}: unexpected end-of-file", self.nick),
            Ok(_) => s.trim_end_matches('\n').to_string(),
            Err(e) => panic!("{}: read: {e}", self.nick),
        }
    }

    fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want, "{}: line", self.nick);
    }
}

/// Starts the chat server on a fresh runtime.
fn start() -> (Runtime, SocketAddr) {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(move || chat::serve(listener));
    (rt, addr)
}

/// Joins `nicks` one at a time; after each join, every earlier client reads the join
/// and rename announcements, so all are in the room before anyone chats.
fn join_all(addr: SocketAddr, nicks: &[String]) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for nick in nicks {
        let (c, guest) = Client::join(addr, nick);
        for other in &mut clients {
            other.expect(&format!("* {guest} joined"));
            other.expect(&format!("* {guest} is now {nick}"));
        }
        clients.push(c);
    }
    clients
}

#[test]
fn twenty_clients_chat_and_one_leaves_midway() {
    const STAYERS: usize = 20;
    const MESSAGES: usize = 50;
    const LEAVER_MESSAGES: usize = 25;
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(
        "twenty_clients_chat_and_one_leaves_midway",
        Duration::from_secs(120),
    );
    let (rt, addr) = start();
    let mut nicks: Vec<String> = (0..STAYERS).map(|i| format!("c{i}")).collect();
    nicks.push("quitter".to_string());
    let all_nicks = nicks.clone();

    let mut clients = join(rt.spawn(move || join_all(addr, &nicks)));
    let leaver = clients.pop().unwrap();

    // The leaver: half its messages, then end-of-file; it reads until the server
    // closes, so it never resets the connection with unread data.
    let leaver = rt.spawn(move || {
        let Client {
            mut reader,
            mut writer,
            ..
        } = leaver;
        for k in 0..LEAVER_MESSAGES {
            writer.write_all(format!("m{k}\n").as_bytes()).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut rest).expect("leaver drains");
    });

    // Each stayer: sends half its messages, waits until it has seen the leaver
    // leave, sends the other half; meanwhile reads and checks everything.
    let stayers: Vec<JoinHandle<Client>> = clients
        .into_iter()
        .map(|mut c| {
            let all_nicks = all_nicks.clone();
            rt.spawn(move || {
                let (left_tx, left_rx) = mpsc::channel::<()>();
                let mut writer = c.writer.try_clone().unwrap();
                let sender = stackweave::spawn(move || {
                    for k in 0..MESSAGES {
                        if k == MESSAGES / 2 {
                            left_rx.recv().expect("leave seen");
                        }
                        writer.write_all(format!("m{k}\n").as_bytes()).unwrap();
                    }
                });
                let mut next: HashMap<&str, usize> =
                    all_nicks.iter().map(|n| (n.as_str(), 0)).collect();
                let mut left = false;
                let me = c.nick.clone();
                let done = |next: &HashMap<&str, usize>, left: bool| {
                    left && next.iter().all(|(n, &k)| {
                        *n == me
                            || k == if *n == "quitter" {
                                LEAVER_MESSAGES
                            } else {
                                MESSAGES
                            }
                    })
                };
                while !done(&next, left) {
                    let line = c.line();
                    if line == "* quitter left" {
                        assert!(!left, "{}: leave announced twice", c.nick);
                        assert_eq!(next["quitter"], LEAVER_MESSAGES, "{}: leave", c.nick);
                        left = true;
                        left_tx.send(()).unwrap();
                        continue;
                    }
                    let (from, text) = line
                        .split_once(": ")
                        .unwrap_or_else(|| panic!("{}: unexpected line {line:?}", c.nick));
                    assert_ne!(from, c.nick, "{}: got its own message", c.nick);
                    let k = next
                        .get_mut(from)
                        .unwrap_or_else(|| panic!("{}: unknown sender {line:?}", c.nick));
                    assert_eq!(text, format!("m{k}"), "{}: from {from}", c.nick);
                    *k += 1;
                }
                join(sender);
                c
            })
        })
        .collect();
    join(leaver);
    let mut clients: Vec<Client> = stayers.into_iter().map(join).collect();

    // Exactly once: nothing is queued behind the last expected line. c0 leaves; the
    // very next line everyone else gets is that announcement.
    let first = clients.remove(0);
    drop(first);
    join(rt.spawn(move || {
        for c in &mut clients {
            c.expect("* c0 left");
        }
    }));
    rt.shutdown();
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(
        "a_client_that_stops_reading_is_dropped",
        Duration::from_secs(120),
    );
    let (rt, addr) = start();
    let names: Vec<String> = ["flood", "watcher", "sloth"].map(String::from).into();
    let mut clients = join(rt.spawn(move || join_all(addr, &names)));
    let _sloth = clients.pop().unwrap(); // connected, never reads
    let mut watcher = clients.pop().unwrap();
    let mut flood = clients.pop().unwrap();

    // The flood sends 1 KiB lines until the watcher has seen the sloth dropped, then
    // one last line; the watcher checks every line arrives, in order. The watcher
    // acknowledges what it has read and the flood keeps at most `WINDOW` lines
    // unacknowledged, so the watcher (unlike the sloth) never falls `OUTBOX` lines
    // behind, however the two coroutines are scheduled.
    const WINDOW: u64 = 512;
    // (lines the watcher has read, whether it has seen the sloth dropped)
    let (ack_tx, ack_rx) = mpsc::channel::<(u64, bool)>();
    let flooder = rt.spawn(move || {
        let pad = "x".repeat(1000);
        let (mut k, mut acked, mut dropped) = (0u64, 0u64, false);
        // Guard: 400 MB is far more than socket buffers plus the outbox hold.
        while !dropped && k < 400_000 {
            while let Ok((n, d)) = ack_rx.try_recv() {
                (acked, dropped) = (n, d);
            }
            if k >= acked + WINDOW {
                (acked, dropped) = ack_rx.recv().expect("watcher acks");
                continue;
            }
            flood.send(&format!("{k} {pad}"));
            k += 1;
        }
        flood.send("end");
        flood
    });
    let checked = rt.spawn(move || {
        let mut k = 0u64;
        let mut dropped = false;
        loop {
            let line = watcher.line();
            if line == "* sloth left (too slow)" {
                assert!(!dropped);
                dropped = true;
                let _ = ack_tx.send((k, dropped));
                continue;
            }
            if line == "flood: end" {
                break;
            }
            let text = line.strip_prefix("flood: ").expect("a flood line");
            let (n, _) = text.split_once(' ').unwrap();
            assert_eq!(n.parse::<u64>().unwrap(), k, "watcher: flood order");
            k += 1;
            if k % 64 == 0 {
                let _ = ack_tx.send((k, dropped));
            }
        }
        assert!(dropped, "the sloth was never dropped");
        k
    });
    let _flood = join(flooder);
    let got = join(checked);
    assert!(got > chat::OUTBOX as u64);
    rt.shutdown();
}
