//! [`serve_per_worker`]: one `SO_REUSEPORT` listener and accept loop per worker, so
//! each connection starts on the worker whose listener the kernel picked.
//!
//! Invariant: accept loop `i` is pinned to worker `i` (`Placement::Worker(i)`) and
//! every connection it accepts is started with `Placement::SameWorker`, so a
//! connection's coroutine lives on the worker that accepted it. An accept error never
//! ends a loop: running out of descriptors backs off and retries; only
//! [`PerWorker::stop`] (or the runtime shutting down) ends them.

use super::listen::ListenOptions;
use super::tcp::{TcpListener, TcpStream};
use super::ToSocketAddrs;
use crate::coroutine::{Builder, JoinHandle, Placement};
use crate::runtime::Handle;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long an accept loop waits before retrying when the process or system is out
/// of file descriptors (`EMFILE`/`ENFILE`) or the kernel out of buffers.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(10);

/// The accept loops started by [`serve_per_worker`].
pub struct PerWorker {
    local_addr: SocketAddr,
    loops: Vec<JoinHandle<()>>,
}

/// Binds one listener per worker of `handle`'s runtime on `addr` (with
/// `SO_REUSEPORT` added to `options`), runs each one's accept loop on its own
/// worker, and calls `handler` for every connection in a new coroutine started on
/// that same worker: the nginx / Seastar pattern, where the kernel spreads the
/// connections and no coroutine ever waits for another worker's accept loop.
///
/// With port 0 the first listener picks a free port and the others join it.
///
/// # Errors
///
/// The first bind error (for example `AddrInUse` when a socket without
/// `SO_REUSEPORT` holds the address), or a spawn error (as
/// [`Builder::spawn`](crate::Builder::spawn): one with a
/// [`RuntimeShutdown`](crate::runtime::RuntimeShutdown) payload on a runtime that is
/// shutting down); listeners already bound
/// are closed again.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use stackweave::net::{serve_per_worker, ListenOptions};
///
/// let rt = stackweave::Runtime::builder().workers(2).build()?;
/// let server = serve_per_worker(&rt.handle(), "127.0.0.1:0", ListenOptions::new(), |mut stream, _peer| {
///     let mut buf = [0; 4];
///     if stream.read_exact(&mut buf).is_ok() {
///         let _ = stream.write_all(&buf);
///     }
/// })?;
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// client.write_all(b"ping")?;
/// let mut reply = [0; 4];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"ping");
/// server.stop();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve_per_worker<A, F>(
    handle: &Handle,
    addr: A,
    options: ListenOptions,
    handler: F,
) -> io::Result<PerWorker>
where
    A: ToSocketAddrs,
    F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let options = options.reuse_port(true);
    let workers = handle.workers();
    let first = options.bind(addr)?;
    let local_addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(options.bind(local_addr)?);
    }
    let handler = Arc::new(handler);
    let mut server = PerWorker {
        local_addr,
        loops: Vec::with_capacity(workers),
    };
    for (worker, listener) in listeners.into_iter().enumerate() {
        let handler = handler.clone();
        let builder = Builder::new()
            .name(format!("accept-{worker}"))
            .placement(Placement::Worker(worker));
        // On error `server` drops here, cancelling the loops already started.
        server
            .loops
            .push(handle.try_spawn(builder, move || accept_loop(&listener, &handler))?);
    }
    Ok(server)
}

/// Accepts forever, starting each connection on this worker.
fn accept_loop<F>(listener: &TcpListener, handler: &Arc<F>)
where
    F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let handler = handler.clone();
                let builder = Builder::new().placement(Placement::SameWorker);
                if builder.spawn(move || handler(stream, peer)).is_err() {
                    // Out of stacks or memory: the connection is dropped (closed),
                    // the loop backs off and goes on.
                    crate::time::sleep(EXHAUSTED_BACKOFF);
                }
            }
            Err(e) if is_exhaustion(&e) => crate::time::sleep(EXHAUSTED_BACKOFF),
            // A peer that reset before we accepted, an interrupted call: next one.
            Err(_) => {}
        }
    }
}

/// Whether an accept error means a resource ran out (retrying at once would spin).
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl PerWorker {
    /// The address every listener is bound to (with the port the OS picked for 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::{serve_per_worker, ListenOptions};
    ///
    /// let rt = stackweave::Runtime::builder().workers(2).build()?;
    /// let server = serve_per_worker(&rt.handle(), "127.0.0.1:0", ListenOptions::new(), |_, _| {})?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many accept loops (one per worker) run.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::{serve_per_worker, ListenOptions};
    ///
    /// let rt = stackweave::Runtime::builder().workers(2).build()?;
    /// let server = serve_per_worker(&rt.handle(), "127.0.0.1:0", ListenOptions::new(), |_, _| {})?;
    /// assert_eq!(server.listeners(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listeners(&self) -> usize {
        self.loops.len()
    }

    /// Stops accepting: cancels every accept loop, waits for them to end and closes
    /// the listeners. Connections already started keep running.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::net::{serve_per_worker, ListenOptions};
    ///
    /// let rt = stackweave::Runtime::builder().workers(2).build()?;
    /// let server = serve_per_worker(&rt.handle(), "127.0.0.1:0", ListenOptions::new(), |_, _| {})?;
    /// let addr = server.local_addr();
    /// server.stop();
    /// assert!(std::net::TcpStream::connect(addr).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(mut self) {
        self.cancel_all();
        for h in self.loops.drain(..) {
            let _ = h.join();
        }
    }

    fn cancel_all(&self) {
        for h in &self.loops {
            h.cancel();
        }
    }
}

impl Drop for PerWorker {
    /// Dropping without [`stop`](PerWorker::stop) cancels the accept loops without
    /// waiting for them.
    fn drop(&mut self) {
        self.cancel_all();
    }
}

impl fmt::Debug for PerWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerWorker")
            .field("local_addr", &self.local_addr)
            .field("listeners", &self.loops.len())
            .finish()
    }
}
