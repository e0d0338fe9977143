//! A line-based TCP chat server on stackweave coroutines: every line a client sends
//! goes to every other client.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example chat -- [ADDR] [--workers N] [--for SECS]
//! ```
//!
//! * `ADDR` — where to listen, default `127.0.0.1:7880`.
//! * `--workers N` — worker threads (default: one per CPU).
//! * `--for SECS` — stop after `SECS` seconds (for scripts and tests). Without it
//!   the server runs until SIGINT (Ctrl-C) or SIGTERM, then drains
//!   (`Runtime::shutdown_timeout`, 5 s).
//!
//! Try it with two terminals running `nc 127.0.0.1 7880` (or `telnet`). Type
//! `/nick NAME` to pick a name (1 to 32 letters, digits, `-` or `_`); until then a
//! client is `guest-N`. End-of-file (Ctrl-D) leaves.
//!
//! What the server sends, one line each:
//!
//! * to a client that connects: `* welcome, you are guest-N`; to everyone else:
//!   `* guest-N joined`;
//! * after `/nick NAME`: `* you are now NAME` to that client and `* OLD is now NAME`
//!   to the others (or `* nick NAME ...` explaining why not);
//! * a chat line: `NAME: text` to everyone but its sender;
//! * when a client leaves: `* NAME left`, or `* NAME left (too slow)` when the server
//!   dropped it (below).
//!
//! How it is built — three kinds of coroutine, linked by channels:
//!
//! * **One reader per client** reads lines (a `BufReader` over the connection) and
//!   sends them to the broadcaster as events on one bounded `stackweave::sync::mpsc`
//!   channel (joins and leaves go the same way, so every client sees them in the same
//!   order as the messages). The channel being bounded slows fast talkers down to
//!   the broadcaster's pace instead of queueing without limit.
//! * **One broadcaster** owns the list of clients and their names. It never blocks on
//!   a client: it hands each outgoing line to the client's own bounded outbox with
//!   `try_send`.
//! * **One writer per client** (on a `try_clone` of the connection) empties its outbox
//!   into the socket.
//!
//! **A slow client is dropped, not waited for.** If a client's outbox is full
//! (`OUTBOX` lines, on top of what the kernel's socket buffers already hold) the
//! client has stopped reading; the broadcaster removes it, shuts its connection down
//! — which wakes its writer, blocked in `write`, and its reader — and announces
//! `* NAME left (too slow)`. Everyone else never waits for it.
//!
//! [`serve`] is public so that `tests/example_chat.rs` can include this file and run
//! it.

use stackweave::net::{Shutdown, TcpListener, TcpStream};
use stackweave::signal::{self, SIGINT, SIGTERM};
use stackweave::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use stackweave::Runtime;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// Lines a client may fall behind before it is dropped as too slow.
pub const OUTBOX: usize = 4096;

/// Events waiting for the broadcaster before readers have to wait.
const INBOX: usize = 256;

/// Longest line accepted from a client, in bytes; a longer one ends the connection.
const MAX_LINE: usize = 4096;
/// How long the clients still open get to finish after SIGINT or SIGTERM.
const DRAIN: Duration = Duration::from_secs(5);

/// A line on its way to clients, shared by every outbox it is in.
type Line = Arc<str>;

/// What the readers tell the broadcaster.
enum Event {
    /// A client connected: where its lines go, and a handle to shut it down.
    Join {
        id: u64,
        outbox: SyncSender<Line>,
        conn: TcpStream,
    },
    /// `/nick NAME`.
    Nick { id: u64, name: String },
    /// Any other line.
    Message { id: u64, text: String },
    /// End-of-file or an error on the client's connection.
    Leave { id: u64 },
}

/// The accept loop: one reader coroutine (and its writer) per client, plus the
/// broadcaster, forever.
pub fn serve(listener: TcpListener) {
    let (events, inbox) = mpsc::sync_channel(INBOX);
    stackweave::spawn(move || broadcaster(inbox));
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                next_id += 1;
                let (id, events) = (next_id, events.clone());
                stackweave::spawn(move || {
                    // Errors only end this client's connection.
                    let _ = client(id, stream, events);
                });
            }
            Err(e) => {
                eprintln!("accept: {e}");
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    stackweave::time::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// One client's reader: registers the client, forwards its lines, reports its leave.
fn client(id: u64, stream: TcpStream, events: SyncSender<Event>) -> io::Result<()> {
    let (outbox, lines) = mpsc::sync_channel(OUTBOX);
    let writer = {
        let stream = stream.try_clone()?;
        stackweave::spawn(move || write_lines(stream, lines))
    };
    let conn = stream.try_clone()?;
    if events.send(Event::Join { id, outbox, conn }).is_err() {
        return Ok(()); // the broadcaster is gone: the server is shutting down
    }
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if n == 0 || (buf.len() > MAX_LINE && buf.last() != Some(&b'\n')) {
            break; // end-of-file, or a line too long
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\r', '\n']);
        let event = match text.strip_prefix("/nick ") {
            Some(name) => Event::Nick {
                id,
                name: name.trim().to_string(),
            },
            None if text.is_empty() => continue,
            None => Event::Message {
                id,
                text: text.to_string(),
            },
        };
        if events.send(event).is_err() {
            break;
        }
    }
    let _ = events.send(Event::Leave { id });
    // The writer ends once the broadcaster has dropped this client's outbox (it
    // sends what is still queued first) or once the connection fails.
    let _ = writer.join();
    Ok(())
}

/// One client's writer: sends each line of its outbox, until the outbox is closed
/// (the client left or was dropped) or the connection fails.
fn write_lines(mut stream: TcpStream, lines: Receiver<Line>) {
    for line in lines.iter() {
        if stream.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    // Wakes the reader if it is still waiting (a dropped client).
    let _ = stream.shutdown(Shutdown::Both);
}

/// A client as the broadcaster knows it.
struct Member {
    nick: String,
    outbox: SyncSender<Line>,
    conn: TcpStream,
}

/// The broadcaster: owns the members and sends each event's line to them.
fn broadcaster(inbox: Receiver<Event>) {
    let mut members: BTreeMap<u64, Member> = BTreeMap::new();
    for event in inbox.iter() {
        match event {
            Event::Join { id, outbox, conn } => {
                let nick = format!("guest-{id}");
                let member = Member {
                    nick: nick.clone(),
                    outbox,
                    conn,
                };
                members.insert(id, member);
                send_to(&mut members, id, format!("* welcome, you are {nick}\n"));
                broadcast(&mut members, Some(id), format!("* {nick} joined\n"));
            }
            Event::Nick { id, name } => {
                let Some(old) = members.get(&id).map(|m| m.nick.clone()) else {
                    continue;
                };
                if let Err(why) = valid_nick(&name) {
                    send_to(&mut members, id, format!("* nick {name:?} {why}\n"));
                } else if members.values().any(|m| m.nick == name) {
                    send_to(&mut members, id, format!("* nick {name} is taken\n"));
                } else {
                    members.get_mut(&id).unwrap().nick = name.clone();
                    send_to(&mut members, id, format!("* you are now {name}\n"));
                    broadcast(&mut members, Some(id), format!("* {old} is now {name}\n"));
                }
            }
            Event::Message { id, text } => {
                if let Some(m) = members.get(&id) {
                    let line = format!("{}: {text}\n", m.nick);
                    broadcast(&mut members, Some(id), line);
                }
            }
            Event::Leave { id } => {
                // Dropping the member closes its outbox, which ends its writer.
                if let Some(m) = members.remove(&id) {
                    broadcast(&mut members, None, format!("* {} left\n", m.nick));
                }
            }
        }
    }
}

/// Why `name` cannot be a nick, if it cannot.
fn valid_nick(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 32 {
        return Err("must be 1 to 32 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("may use only letters, digits, '-' and '_'");
    }
    Ok(())
}

/// Sends `line` to one member, dropping it (and announcing that) if it is too slow.
fn send_to(members: &mut BTreeMap<u64, Member>, id: u64, line: String) {
    let slow = offer(members, Some(id), None, line.into());
    drop_slow(members, slow);
}

/// Sends `line` to every member but `except`, dropping the ones that are too slow.
fn broadcast(members: &mut BTreeMap<u64, Member>, except: Option<u64>, line: String) {
    let slow = offer(members, None, except, line.into());
    drop_slow(members, slow);
}

/// Offers `line` to member `only` (or to all but `except`) without waiting; returns
/// the members whose outbox was full.
fn offer(
    members: &BTreeMap<u64, Member>,
    only: Option<u64>,
    except: Option<u64>,
    line: Line,
) -> Vec<u64> {
    let mut slow = Vec::new();
    for (&id, m) in members {
        if only.is_some_and(|o| o != id) || except == Some(id) {
            continue;
        }
        match m.outbox.try_send(line.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => slow.push(id),
            // Its writer has ended (the connection failed); its reader will report
            // the leave.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
    slow
}

/// Removes the members in `slow`, shuts their connections down and announces it
/// (which may find more slow members: repeat until none).
fn drop_slow(members: &mut BTreeMap<u64, Member>, mut slow: Vec<u64>) {
    while let Some(id) = slow.pop() {
        let Some(m) = members.remove(&id) else {
            continue;
        };
        // Wakes its writer (blocked on a full socket) and its reader.
        let _ = m.conn.shutdown(Shutdown::Both);
        let line = format!("* {} left (too slow)\n", m.nick);
        slow.extend(offer(members, None, None, line.into()));
    }
}

struct Args {
    addr: String,
    workers: Option<usize>,
    run_for: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7880".to_string(),
        workers: None,
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--for" => {
                let v = value("--for")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --for {v:?}"))?;
                args.run_for =
                    Some(Duration::try_from_secs_f64(secs).map_err(|e| format!("--for: {e}"))?);
            }
            "--workers" | "-w" => {
                let v = value("--workers")?;
                args.workers = Some(v.parse().map_err(|_| format!("bad --workers {v:?}"))?);
            }
            "-h" | "--help" => return Err("usage: chat [ADDR] [--workers N] [--for SECS]".into()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a:?} (try --help)")),
            _ => args.addr = a,
        }
    }
    Ok(args)
}

fn main() -> io::Result<()> {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let mut builder = Runtime::builder();
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let rt = builder.build()?;
    let listener = TcpListener::bind(&args.addr)?;
    println!(
        "chat server listening on {}{}",
        listener.local_addr()?,
        match args.run_for {
            Some(d) => format!(", for {d:?}"),
            None => String::new(),
        }
    );
    let _server = rt.spawn(move || serve(listener));
    match args.run_for {
        None => {
            // Until SIGINT (Ctrl-C) or SIGTERM; then the accept loop ends and the
            // clients still open get DRAIN to finish (see "Stopping a server" in
            // docs/ARCHITECTURE.md).
            let signal = rt.block_on(|| signal::wait(&[SIGINT, SIGTERM]))?;
            let drained = rt.shutdown_timeout(DRAIN)?;
            println!("signal {signal}: {drained} ({DRAIN:?} deadline)");
        }
        Some(d) => {
            std::thread::sleep(d);
            // Unwinds the accept loop, the broadcaster and every client coroutine.
            rt.shutdown();
        }
    }
    Ok(())
}
