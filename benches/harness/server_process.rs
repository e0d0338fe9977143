//! The parent's side of a benchmark server: starting the child (`--serve …`, see
//! `servers.rs`), reading its port, stopping it. (A module of `servers.rs`; not a
//! bench target.)

use super::{Protocol, Rival, ServerSpec};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The parent's handle on a server child.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The lines the child prints on stdout.
    lines: mpsc::Receiver<String>,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// `protocol` served by `rival` on 2 workers.
    pub fn start(protocol: Protocol, rival: Rival) -> Result<ServerProcess, String> {
        ServerProcess::start_spec(ServerSpec::new(protocol), rival)
    }

    pub fn start_spec(spec: ServerSpec, rival: Rival) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        ServerProcess::start_exe(&exe, spec, rival.name())
    }

    /// The server `server` (a rival's name, or another name `servers.rs` knows)
    /// started from the bench binary `exe` (this one, or another build of it).
    pub fn start_exe(
        exe: &std::path::Path,
        spec: ServerSpec,
        server: &str,
    ) -> Result<ServerProcess, String> {
        let mut child = Command::new(exe)
            .args(["--serve", spec.protocol.name(), server])
            .args(["--workers", &spec.workers.to_string()])
            .args(["--iters", &spec.iters.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        // Read its output on a helper thread, so a child that hangs cannot hang us.
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = server
            .lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the server did not print its port within 10 s".to_string())?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("the server printed {line:?} instead of its port"))?;
        server.addr.set_port(port);
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin and waits for it to exit; an error if it had to be
    /// killed or had already died. Returns what else it printed on stdout.
    pub fn stop(mut self) -> Result<Vec<String>, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!("the server process died during the run: {status}"));
        }
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Its stdout is closed: the reader thread ends the channel.
                let mut rest = Vec::new();
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    rest.push(line);
                }
                return Ok(rest);
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err("the server did not exit within 5 s of its stdin closing; killed".into())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
