//! Tests for `examples/http_server.rs`: the example's own code, included as a module,
//! serves real sockets on 127.0.0.1; clients are plain `std::net` streams, or
//! stackweave ones for the many-clients test.

#[allow(dead_code)] // the example's `main` and argument parsing
#[path = "../examples/http_server.rs"]
mod http_server;

use http_server::{Stats, BODY};
use stackweave::Runtime;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The example's server on an ephemeral port, with its own runtime; dropping it
/// shuts the runtime down.
struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    _rt: Runtime,
}

fn start() -> Server {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let listener = http_server::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    rt.spawn(move || http_server::serve(listener, s));
    Server {
        addr,
        stats,
        _rt: rt,
    }
}

impl Server {
    fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }
}

/// One parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn assert_hello(&self) {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.body, BODY, "{self:?}");
        assert_eq!(self.header("content-type"), Some("text/plain"));
        assert_eq!(self.header("content-length"), Some("13"));
    }
}

/// A client that reads responses off a byte stream, however they are split.
struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl Client<std::net::TcpStream> {
    fn connect(addr: SocketAddr) -> Self {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        // A broken server fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client::new(stream)
    }
}

impl<S: Read + Write> Client<S> {
    fn new(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads more into the buffer; `false` at end-of-file.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The next response; `head_only` for the answer to a `HEAD` request (no body
    /// despite its `Content-Length`).
    fn try_response(&mut self, head_only: bool) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf).expect("malformed response") {
                httparse::Status::Complete(head) => {
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| {
                            let v = String::from_utf8(h.value.to_vec()).unwrap();
                            (h.name.to_string(), v)
                        })
                        .collect();
                    let status = resp.code.unwrap();
                    let len: usize = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .expect("no Content-Length")
                        .1
                        .parse()
                        .unwrap();
                    let len = if head_only { 0 } else { len };
                    while self.buf.len() < head + len {
                        if !self.fill()? {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    let body = self.buf[head..head + len].to_vec();
                    self.buf.drain(..head + len);
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
                httparse::Status::Partial => {
                    if !self.fill()? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }

    fn response(&mut self) -> Response {
        self.try_response(false).unwrap()
    }

    /// Asserts that the server sent nothing more and closed the connection.
    fn assert_closed(&mut self) {
        assert!(
            !self.fill().expect("reading for end-of-file"),
            "expected end-of-file"
        );
        assert!(self.buf.is_empty(), "unexpected bytes: {:?}", self.buf);
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

#[test]
fn single_get() {
    let server = start();
    let mut c = Client::connect(server.addr);
    c.send(GET);
    let r = c.response();
    r.assert_hello();
    assert_eq!(
        r.header("connection"),
        None,
        "HTTP/1.1 keeps alive silently"
    );
    assert_eq!(r.header("date"), None);
    assert_eq!(server.requests(), 1);
}

#[test]
fn keep_alive_1000_requests_on_one_connection() {
    let server = start();
    let mut c = Client::connect(server.addr);
    for _ in 0..1000 {
        c.send(GET);
        c.response().assert_hello();
    }
    assert_eq!(server.requests(), 1000);
    assert_eq!(server.stats.connections.load(Ordering::Relaxed), 1);
}

#[test]
fn pipelining_100_requests_in_one_write() {
    let server = start();
    let mut c = Client::connect(server.addr);
    // Every third request is a HEAD, whose answer has no body: reading the answers
    // back with the same pattern only works if they come in order.
    let mut batch = Vec::new();
    for i in 0..100 {
        let method = if i % 3 == 0 { "HEAD" } else { "GET" };
        let close = if i == 99 { "Connection: close\r\n" } else { "" };
        batch.extend_from_slice(
            format!("{method} /{i} HTTP/1.1\r\nHost: t\r\n{close}\r\n").as_bytes(),
        );
    }
    c.send(&batch);
    for i in 0..100 {
        let r = c.try_response(i % 3 == 0).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            if i % 3 == 0 { &b""[..] } else { BODY },
            "response {i}"
        );
    }
    c.assert_closed();
    assert_eq!(server.requests(), 100);
}

#[test]
fn connection_close_closes_after_the_response() {
    let server = start();
    let mut c = Client::connect(server.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.response();
    r.assert_hello();
    assert_eq!(r.header("connection"), Some("close"));
    c.assert_closed();
}

#[test]
fn http10_closes_unless_keep_alive() {
    let server = start();
    let mut c = Client::connect(server.addr);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    c.response().assert_hello();
    c.assert_closed();

    let mut c = Client::connect(server.addr);
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        let r = c.response();
        r.assert_hello();
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    c.response().assert_hello();
    c.assert_closed();
}

#[test]
fn malformed_request_gets_400_and_close() {
    let server = start();
    let mut c = Client::connect(server.addr);
    // A good request pipelined before the bad one is still answered, first.
    let mut batch = GET.to_vec();
    batch.extend_from_slice(b"NOT A REQUEST\r\n\r\n");
    c.send(&batch);
    c.response().assert_hello();
    let r = c.response();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    c.assert_closed();
    assert_eq!(server.stats.bad_requests.load(Ordering::Relaxed), 1);

    // A bad Content-Length too.
    let mut c = Client::connect(server.addr);
    c.send(b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n");
    assert_eq!(c.response().status, 400);
    c.assert_closed();
}

#[test]
fn oversized_head_gets_400_and_chunked_gets_501() {
    let server = start();
    let mut c = Client::connect(server.addr);
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.resize(req.len() + 20_000, b'a');
    c.send(&req); // never finished: the server gives up after 8 KiB
    assert_eq!(c.response().status, 400);
    c.assert_closed();

    let mut c = Client::connect(server.addr);
    c.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(c.response().status, 501);
    c.assert_closed();
}

#[test]
fn partial_reads_and_bodies() {
    let server = start();
    let mut c = Client::connect(server.addr);
    // A head dribbled in one byte at a time.
    for &b in GET {
        c.send(&[b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    c.response().assert_hello();

    // A 100 kB body in uneven pieces, with the next request glued to its end: the
    // body is discarded, both requests answered.
    let body = vec![b'x'; 100_000];
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for piece in body.chunks(7_777) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    c.send(GET);
    c.response().assert_hello();
    c.response().assert_hello();

    // An empty body.
    c.send(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    c.response().assert_hello();
    assert_eq!(server.requests(), 4);
}

#[test]
fn concurrent_keep_alive_clients() {
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 50;
    let server = start();
    let addr = server.addr;
    // The clients are stackweave coroutines too, on their own runtime.
    let clients = Runtime::builder().workers(2).build().unwrap();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            clients.spawn(move || {
                let stream = stackweave::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                let mut c = Client::new(stream);
                for _ in 0..REQUESTS {
                    c.send(GET);
                    c.response().assert_hello();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a client failed");
    }
    assert_eq!(server.requests(), (CLIENTS * REQUESTS) as u64);
    assert_eq!(
        server.stats.connections.load(Ordering::Relaxed),
        CLIENTS as u64
    );
    assert_eq!(server.stats.failed.load(Ordering::Relaxed), 0);
}

#[test]
fn a_drain_closes_idle_keep_alive_connections_at_once() {
    const IDLE: usize = 100;
    let server = start();
    let mut clients: Vec<_> = (0..IDLE)
        .map(|_| {
            let mut c = Client::connect(server.addr);
            c.send(GET);
            c.response().assert_hello();
            c
        })
        .collect();
    // Every connection waits for its next request, in the example's drain scope.
    let drained = server
        ._rt
        .shutdown_timeout(Duration::from_secs(120))
        .unwrap();
    assert_eq!(drained.cancelled, 0, "{drained:?}");
    // The handlers and the accept loop.
    assert_eq!(drained.finished, IDLE as u64 + 1, "{drained:?}");
    assert!(drained.elapsed < Duration::from_secs(120), "{drained:?}");
    for c in &mut clients {
        assert!(!c.fill().unwrap(), "the server closed the idle connection");
    }
    assert_eq!(server.stats.failed.load(Ordering::Relaxed), 0);
}

#[test]
fn curl_gets_the_body() {
    let found = std::process::Command::new("which")
        .arg("curl")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("note: curl not found, skipping curl_gets_the_body");
        return;
    }
    let server = start();
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("http://{}/", server.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
    assert_eq!(out.stdout, BODY);
    assert_eq!(server.requests(), 1);
}

/// `wrk` (when installed: `.ci/run` installs it) loads the server over 20
/// keep-alive connections: every request answered with a 2xx, no socket errors,
/// and the server saw only those 20 connections (plus the one wrk opens and closes
/// at start-up to check the address) for all those requests.
#[test]
fn wrk_keeps_its_connections_alive() {
    let found = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty());
    if !found {
        println!("note: wrk not found, skipping wrk_keeps_its_connections_alive");
        return;
    }
    let server = start();
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c20", "-d1s", "--timeout", "5s"])
        .arg(format!("http://{}/", server.addr))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {out:?}");
    assert!(!report.contains("Non-2xx"), "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    let done: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{report}"));
    assert!(done >= 100, "only {done} requests in 1 s:\n{report}");
    // wrk counts completed responses; the server may have answered a few more
    // that were still in flight when wrk stopped.
    assert!(server.requests() >= done, "{} < {done}", server.requests());
    let connections = server.stats.connections.load(Ordering::Relaxed);
    assert!(
        (20..=21).contains(&connections),
        "{connections} connections"
    );
    assert_eq!(server.stats.failed.load(Ordering::Relaxed), 0);
}
