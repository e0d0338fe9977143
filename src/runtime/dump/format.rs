//! Symbolizing a dump's stacks and printing it.
//!
//! Invariant: each return address is symbolized at most once per dump (the
//! resolver's cache), and trimming only drops frames from the two ends of a stack,
//! so a printed trace is a contiguous part of the real one.

use super::{CoroutineDump, CoroutineState, Dump, Frame, WaitingFor, GROUP_AT};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Symbolizes stacks, each address once.
#[derive(Default)]
pub(super) struct Resolver {
    cache: HashMap<usize, Vec<Frame>>,
}

impl Resolver {
    /// The frames of the stack whose return addresses are `ips` (innermost first),
    /// trimmed of the runtime's own frames at both ends.
    pub(super) fn resolve(&mut self, ips: &[usize]) -> Arc<[Frame]> {
        let mut frames = Vec::with_capacity(ips.len());
        for (i, &ip) in ips.iter().enumerate() {
            // A return address points after its call: look up the call itself.
            let addr = if i == 0 { ip } else { ip.wrapping_sub(1) };
            let resolved = self.cache.entry(addr).or_insert_with(|| resolve_one(addr));
            frames.extend(resolved.iter().cloned());
        }
        trim(frames).into()
    }
}

fn resolve_one(addr: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |symbol| {
        out.push(Frame {
            name: symbol
                .name()
                .map_or_else(|| format!("{addr:#x}"), |n| format!("{n:#}")),
            file: symbol.filename().map(|p| p.display().to_string()),
            line: symbol.lineno(),
        });
    });
    if out.is_empty() {
        out.push(Frame {
            name: format!("{addr:#x}"),
            file: None,
            line: None,
        });
    }
    out
}

/// The runtime's own code.
fn is_runtime(name: &str) -> bool {
    name.starts_with("stackweave")
        || name.starts_with("<stackweave")
        || name.contains(" as stackweave::")
}

/// Code that is neither the runtime's nor the user's: the unwinder, std's and
/// core's generic plumbing (closures' `call_once`, `catch_unwind`).
fn is_plumbing(name: &str) -> bool {
    const PREFIXES: [&str; 10] = [
        "backtrace::",
        "<backtrace::",
        "std::",
        "<std::",
        "core::",
        "<core::",
        "alloc::",
        "<alloc::",
        "__rust",
        "_Unwind",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || name.starts_with("0x")
}

/// The runtime's frames that start every coroutine: where a trace ends.
fn is_entry(name: &str) -> bool {
    name.contains("coroutine::body::CoroutineBody")
        || name.contains("scheduler::task::TaskEntry")
        || name.starts_with("stackweave::rt::context::")
        || name.starts_with("stackweave_trampoline")
}

/// Drops the capture's and the runtime's frames from the top, keeping the last
/// runtime frame before the user's code (the blocking call the user made, e.g.
/// `TcpStream::read`), and the coroutine's entry (the runtime's and std's frames
/// below the user's outermost one).
fn trim(mut frames: Vec<Frame>) -> Vec<Frame> {
    if let Some(entry) = frames.iter().position(|f| is_entry(&f.name)) {
        frames.truncate(entry);
    }
    let user = |f: &Frame| !is_runtime(&f.name) && !is_plumbing(&f.name);
    let Some(first_user) = frames.iter().position(user) else {
        // No frame of the user's own: the closure was inlined into the entry.
        // Keep the blocking call it made.
        let start = frames
            .iter()
            .rposition(|f| is_runtime(&f.name))
            .unwrap_or(0);
        return frames.split_off(start);
    };
    let start = frames[..first_user]
        .iter()
        .rposition(|f| is_runtime(&f.name))
        .unwrap_or(first_user);
    let last_user = frames.iter().rposition(user).unwrap_or(first_user);
    frames.truncate(last_user + 1);
    frames.split_off(start)
}

/// Writes `dump` like Go's goroutine dump: a header per coroutine with its state,
/// its frames, where it was spawned; coroutines sharing a stack with many others
/// are printed once per stack.
pub(super) fn write_dump(dump: &Dump, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "stackweave: coroutine dump: {} coroutines on {} workers, {} distinct stacks, took {}",
        dump.coroutines.len(),
        dump.workers.len(),
        dump.distinct_stacks,
        duration(dump.took)
    )?;
    let mut shared: HashMap<*const Frame, Vec<&CoroutineDump>> = HashMap::new();
    for c in &dump.coroutines {
        if let Ok(frames) = &c.backtrace {
            shared.entry(frames.as_ptr()).or_default().push(c);
        }
    }
    let now = Instant::now();
    let mut printed_groups: HashMap<*const Frame, ()> = HashMap::new();
    for c in &dump.coroutines {
        let group = c
            .backtrace
            .as_ref()
            .ok()
            .and_then(|frames| shared.get(&frames.as_ptr()))
            .filter(|members| members.len() >= GROUP_AT);
        match group {
            Some(members) => {
                let key = members[0]
                    .backtrace
                    .as_ref()
                    .map_or(std::ptr::null(), |b| b.as_ptr());
                if printed_groups.insert(key, ()).is_some() {
                    continue;
                }
                writeln!(f)?;
                write_group(f, members)?;
            }
            None => {
                writeln!(f)?;
                writeln!(f, "{}:", header(c, now))?;
                write_frames(f, c)?;
                if let Some(at) = c.spawned_at {
                    writeln!(f, "spawned at {at}")?;
                }
            }
        }
    }
    for w in dump.workers.iter().filter(|w| w.busy) {
        writeln!(f)?;
        writeln!(
            f,
            "worker {} busy: a coroutine runs on it without suspending; its {} coroutine(s) \
             are not captured (worker busy)",
            w.index, w.homed
        )?;
    }
    Ok(())
}

fn write_group(f: &mut fmt::Formatter<'_>, members: &[&CoroutineDump]) -> fmt::Result {
    const LISTED: usize = 8;
    let first = members[0];
    let mut ids: Vec<String> = members
        .iter()
        .take(LISTED)
        .map(|c| c.id.as_u64().to_string())
        .collect();
    if members.len() > LISTED {
        ids.push(format!("... ({} more)", members.len() - LISTED));
    }
    let same_state = members.iter().all(|c| state_kind(c) == state_kind(first));
    let state = if same_state {
        state_kind(first)
    } else {
        "various states"
    };
    let longest = members.iter().filter_map(|c| c.waited).max();
    let longest = longest.map_or(String::new(), |d| format!(", longest {}", duration(d)));
    writeln!(
        f,
        "{} coroutines with this stack [{state}{longest}]: {}",
        members.len(),
        ids.join(", ")
    )?;
    write_frames(f, first)?;
    if let Some(at) = first.spawned_at {
        writeln!(f, "spawned at {at} (the first of them)")?;
    }
    Ok(())
}

/// `coroutine 7 "name" [read on fd 9 (peer 127.0.0.1:80), 1.2 s, worker 0]`
fn header(c: &CoroutineDump, now: Instant) -> String {
    let mut text = format!("coroutine {}", c.id.as_u64());
    if let Some(name) = &c.name {
        text.push_str(&format!(" \"{name}\""));
    }
    text.push_str(&format!(" [{}", state_word(c)));
    if let Some(deadline) = c.deadline {
        let left = deadline.saturating_duration_since(now);
        text.push_str(&format!(", {} left", duration(left)));
    }
    if let Some(waited) = c.waited {
        text.push_str(&format!(", {}", duration(waited)));
    }
    text.push_str(&format!(", worker {}]", c.worker));
    text
}

/// What the header says of a coroutine's state.
fn state_word(c: &CoroutineDump) -> String {
    match c.state {
        CoroutineState::Running => "running".into(),
        CoroutineState::Ready => "ready".into(),
        CoroutineState::Waiting => match c.waiting_for {
            None => "waiting".into(),
            Some(w) => waiting_word(w),
        },
    }
}

/// What a group's header says of its members' states (no descriptors, no ids).
fn state_kind(c: &CoroutineDump) -> &'static str {
    match (c.state, c.waiting_for) {
        (CoroutineState::Running, _) => "running",
        (CoroutineState::Ready, _) => "ready",
        (CoroutineState::Waiting, None) => "waiting",
        (CoroutineState::Waiting, Some(w)) => match w {
            WaitingFor::Read { .. } => "read",
            WaitingFor::Write { .. } => "write",
            WaitingFor::Accept { .. } => "accept",
            WaitingFor::Join(_) => "join",
            _ => kind_word(w),
        },
    }
}

/// The fixed words of the waits that carry no detail.
fn kind_word(w: WaitingFor) -> &'static str {
    match w {
        WaitingFor::Sleep => "sleep",
        WaitingFor::Channel => "channel",
        WaitingFor::Mutex => "mutex",
        WaitingFor::RwLock => "rwlock",
        WaitingFor::Condvar => "condvar",
        WaitingFor::Barrier => "barrier",
        WaitingFor::WaitGroup => "wait group",
        WaitingFor::Semaphore => "semaphore",
        WaitingFor::Park => "park",
        WaitingFor::Future => "future",
        WaitingFor::BlockingPool => "blocking pool",
        WaitingFor::HookedCall => "hooked libc call",
        WaitingFor::Dump => "coroutine dump",
        WaitingFor::Read { .. }
        | WaitingFor::Write { .. }
        | WaitingFor::Accept { .. }
        | WaitingFor::Join(_) => "waiting",
    }
}

fn waiting_word(w: WaitingFor) -> String {
    let io = |what: &str, fd: i32, peer: Option<std::net::SocketAddr>| match peer {
        Some(peer) => format!("{what} on fd {fd} (peer {peer})"),
        None => format!("{what} on fd {fd}"),
    };
    match w {
        WaitingFor::Read { fd, peer } => io("read", fd, peer),
        WaitingFor::Write { fd, peer } => io("write", fd, peer),
        WaitingFor::Accept { fd } => format!("accept on fd {fd}"),
        WaitingFor::Join(id) => format!("join coroutine {}", id.as_u64()),
        _ => kind_word(w).into(),
    }
}

fn write_frames(f: &mut fmt::Formatter<'_>, c: &CoroutineDump) -> fmt::Result {
    match &c.backtrace {
        Err(why) => writeln!(f, "    (backtrace not captured: {why})"),
        Ok(frames) => {
            for frame in frames.iter() {
                writeln!(f, "    {}", frame.name)?;
                if let Some(file) = &frame.file {
                    match frame.line {
                        Some(line) => writeln!(f, "        at {file}:{line}")?,
                        None => writeln!(f, "        at {file}")?,
                    }
                }
            }
            Ok(())
        }
    }
}

/// `850 ms`, `12.3 s`, `4 min`.
fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(120) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min", d.as_secs() / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Frame {
        Frame {
            name: name.into(),
            file: None,
            line: None,
        }
    }

    #[test]
    fn trim_keeps_the_blocking_call_and_the_user_frames() {
        let frames = [
            "backtrace::backtrace::trace",
            "stackweave::rt::scheduler::dump::capture",
            "stackweave::rt::reactor::scheduled_io::ScheduledIo::wait",
            "<stackweave::net::tcp::TcpStream as std::io::Read>::read",
            "std::io::default_read_exact",
            "server::handle",
            "server::main::{{closure}}",
            "core::ops::function::FnOnce::call_once",
            "std::panicking::try",
            "<stackweave::coroutine::body::CoroutineBody<F,T> as stackweave::rt::scheduler::task::Body>::run",
            "stackweave_trampoline",
        ];
        let trimmed = trim(frames.iter().map(|n| frame(n)).collect());
        let names: Vec<&str> = trimmed.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "<stackweave::net::tcp::TcpStream as std::io::Read>::read",
                "std::io::default_read_exact",
                "server::handle",
                "server::main::{{closure}}",
            ]
        );
    }

    #[test]
    fn a_closure_inlined_into_the_entry_keeps_its_blocking_call() {
        let frames = [
            "stackweave::rt::scheduler::dump::capture",
            "stackweave::rt::waiter::Waiter::block",
            "stackweave::sync::channel::Chan<T>::recv",
            "<stackweave::coroutine::body::CoroutineBody<F,T> as stackweave::rt::scheduler::task::Body>::run",
            "stackweave::rt::context::backend::shim",
        ];
        let trimmed = trim(frames.iter().map(|n| frame(n)).collect());
        let names: Vec<&str> = trimmed.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["stackweave::sync::channel::Chan<T>::recv"]);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(duration(Duration::from_secs(600)), "10 min");
    }
}
