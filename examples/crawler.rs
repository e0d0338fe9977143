//! A web crawler, the classic demonstration of why coroutines exist: hundreds of
//! fetches in flight at once, each written as plain blocking code (connect, write
//! the request, read the response, scan it for links), with no `async`, no
//! callbacks and no thread per fetch.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example crawler -- [--pages N] [--concurrency M]
//!                                          [--latency-ms L] [--workers W]
//! ```
//!
//! * `--pages N` — pages in the local web site (default 2,000).
//! * `--concurrency M` — fetches in flight at once (default 200).
//! * `--latency-ms L` — artificial latency of every response, to model a real site
//!   (default 2; 0 for none).
//! * `--workers W` — worker threads of the stackweave runtime (default: one per CPU).
//!
//! What it does:
//!
//! 1. **A local web site.** A small HTTP/1.1 server on a free port of 127.0.0.1, in
//!    this process, on the stackweave runtime: one coroutine per connection,
//!    keep-alive, requests parsed with `httparse`. Page `/p/K` is an HTML page that
//!    links to page `K+1` (so every page is reachable from `/p/0`) and to four
//!    pseudo-random other pages (deterministic: the same site every run). Each
//!    response waits `L` ms first, with `stackweave::time::sleep`, which suspends only
//!    that connection's coroutine.
//! 2. **The coroutine crawl.** `M` fetcher coroutines take page numbers from an
//!    `mpmc` channel; each keeps one keep-alive connection to the site, sends `GET
//!    /p/K`, parses the response head with `httparse`, reads the `Content-Length`
//!    body and scans it for `href="/p/NUM"`. The links go back through an `mpsc`
//!    channel to one coordinator coroutine, which de-duplicates them (a `HashSet`)
//!    and enqueues the new ones. When nothing is in flight and nothing is queued, the
//!    crawl is complete: the coordinator closes the queue and the fetchers end.
//! 3. **The thread-per-fetch crawl**, for contrast: the same crawl with one OS
//!    thread per fetch (`std::thread::spawn` per URL, `std::net::TcpStream`, a fresh
//!    connection per fetch, as such code usually is), at most `M` at once — a
//!    counting semaphore built from a std `Mutex` and `Condvar` — coordinated by the
//!    main thread.
//!
//! For each it prints pages/s and the fetch latency p50/p99/max (`hdrhistogram`;
//! a fetch is measured from taking the URL to having its links, retries included,
//! so with a fresh connection per fetch it includes the connect).
//!
//! With 2 ms of latency per response, the crawl cannot go faster than `M` pages
//! per 2 ms no matter how fast the CPU is: throughput comes from having many
//! fetches waiting at once, which costs a coroutine a few KiB of stack and a
//! thread much more.

use hdrhistogram::Histogram;
use stackweave::net::{ListenOptions, TcpStream};
use stackweave::sync::{mpmc, mpsc};
use stackweave::Runtime;
use std::collections::{HashSet, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Links on every page besides the one to the next page.
pub const RANDOM_LINKS: usize = 4;
/// The listen backlog: room for every fetcher connecting at once (`bind` asks the
/// kernel for 128; an overflowing accept queue costs a client a 1 s SYN retry).
const BACKLOG: u32 = 1024;
/// The longest response (or request) head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// A read that waits longer than this fails: a stalled crawl reports instead of
/// hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per fetch, each on a fresh connection after the first fails.
const ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------
// The site
// ---------------------------------------------------------------------------

/// A deterministic pseudo-random number (SplitMix64).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The pages page `k` of a `pages`-page site links to: `k + 1` (wrapping), which
/// makes every page reachable from page 0, then [`RANDOM_LINKS`] pseudo-random ones.
pub fn links_of(k: usize, pages: usize) -> Vec<usize> {
    let mut links = vec![(k + 1) % pages];
    links.extend(
        (0..RANDOM_LINKS)
            .map(|i| (splitmix64((k * RANDOM_LINKS + i) as u64) % pages as u64) as usize),
    );
    links
}

/// The HTML of page `k`.
pub fn page_html(k: usize, pages: usize) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><title>Page {k}</title></head><body>\n\
         <h1>Page {k} of {pages}</h1>\n<p>A page of the stackweave crawler's test site. \
         It links to:</p>\n<ul>\n"
    );
    for link in links_of(k, pages) {
        html.push_str(&format!("<li><a href=\"/p/{link}\">page {link}</a></li>\n"));
    }
    html.push_str("</ul>\n<p><a href=\"https://example.com/\">elsewhere</a></p>\n</body></html>\n");
    html
}

/// `/p/K` → `K`.
pub fn parse_page_path(path: &str) -> Option<usize> {
    let num = path.strip_prefix("/p/")?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse().ok()
}

/// What the site counts.
#[derive(Default)]
pub struct SiteStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Pages served (`200 OK`).
    pub pages_served: AtomicU64,
    /// Requests answered with `404` or `400`.
    pub bad_requests: AtomicU64,
}

/// A running site: where it listens and what it has served.
pub struct Site {
    /// Its address on 127.0.0.1.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<SiteStats>,
    /// Its number of pages.
    pub pages: usize,
}

/// Starts a site of `pages` pages on a free port of 127.0.0.1, served by coroutines
/// of `rt`, each response delayed by `latency`. It runs until `rt` shuts down.
pub fn start_site(rt: &Runtime, pages: usize, latency: Duration) -> io::Result<Site> {
    assert!(pages > 0, "a site needs at least one page");
    let listener = ListenOptions::new().backlog(BACKLOG).bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(SiteStats::default());
    let s = stats.clone();
    rt.spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    s.connections.fetch_add(1, Ordering::Relaxed);
                    let s = s.clone();
                    stackweave::spawn(move || {
                        // Errors only mean the client went away mid-request.
                        let _ = serve_connection(&stream, pages, latency, &s);
                    });
                }
                Err(e) => {
                    eprintln!("site: accept: {e}");
                    stackweave::time::sleep(Duration::from_millis(10));
                }
            }
        }
    });
    Ok(Site { addr, stats, pages })
}

/// One connection of the site: answer requests until the client closes or asks to.
fn serve_connection(
    mut stream: &TcpStream,
    pages: usize,
    latency: Duration,
    stats: &SiteStats,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Answer every complete request in the buffer, in order.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let (len, page, close) = match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let close = req.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("connection")
                            && h.value.eq_ignore_ascii_case(b"close")
                    });
                    let page = match (req.method, req.path) {
                        (Some("GET"), Some(path)) => parse_page_path(path).filter(|&k| k < pages),
                        _ => None,
                    };
                    (len, page, close)
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => {
                    stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                    stream.write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\
                          Connection: close\r\n\r\n",
                    )?;
                    return Ok(());
                }
            };
            buf.drain(..len);
            let (status, body) = match page {
                Some(k) => ("200 OK", page_html(k, pages)),
                None => ("404 Not Found", "no such page\n".to_string()),
            };
            let mut response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{}\r\n",
                body.len(),
                if close { "Connection: close\r\n" } else { "" },
            )
            .into_bytes();
            response.extend_from_slice(body.as_bytes());
            if !latency.is_zero() {
                // The "remote site" thinks: only this connection's coroutine waits.
                stackweave::time::sleep(latency);
            }
            // Counted before the write: once a client has its response, the count
            // includes it.
            match page {
                Some(_) => stats.pages_served.fetch_add(1, Ordering::SeqCst),
                None => stats.bad_requests.fetch_add(1, Ordering::SeqCst),
            };
            stream.write_all(&response)?;
            if close {
                return Ok(());
            }
        }
        if buf.len() > MAX_HEAD {
            return Ok(()); // an absurd request head
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------
// Fetching: shared by both crawlers (generic over the stream type)
// ---------------------------------------------------------------------------

/// The page numbers of the `href="/p/NUM"` links in `html`, in order.
pub fn extract_links(html: &[u8]) -> Vec<usize> {
    const PAT: &[u8] = b"href=\"/p/";
    let mut links = Vec::new();
    let mut i = 0;
    while let Some(pos) = html[i..].windows(PAT.len()).position(|w| w == PAT) {
        let start = i + pos + PAT.len();
        let digits = html[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 && html.get(start + digits) == Some(&b'"') {
            // At most a few digits of ASCII: parses unless absurdly long.
            if let Ok(k) = std::str::from_utf8(&html[start..start + digits])
                .unwrap()
                .parse()
            {
                links.push(k);
            }
        }
        i = start + digits;
    }
    links
}

/// Fetches `/p/{page}` over `stream` (`buf` holds bytes read but not yet used,
/// kept across requests of a keep-alive connection) and returns its links.
/// `close` asks the server to close the connection after the response.
pub fn fetch<S: Read + Write>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    page: usize,
    close: bool,
) -> io::Result<Vec<usize>> {
    let request = format!(
        "GET /p/{page} HTTP/1.1\r\nHost: crawler.test\r\nUser-Agent: stackweave-crawler\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    stream.write_all(request.as_bytes())?;
    let bad = |msg: String| io::Error::new(ErrorKind::InvalidData, msg);
    let mut chunk = [0u8; 4096];
    // Read until the head is complete.
    let (head_len, status, body_len) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                let content_length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| bad("no valid Content-Length".into()))?;
                break (len, status, content_length);
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(bad("response head too long".into()))
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(bad(format!("bad response: {e}"))),
        }
        read_more(stream, buf, &mut chunk)?;
    };
    // Then the body.
    while buf.len() < head_len + body_len {
        read_more(stream, buf, &mut chunk)?;
    }
    let links = extract_links(&buf[head_len..head_len + body_len]);
    buf.drain(..head_len + body_len);
    if status != 200 {
        return Err(bad(format!("status {status}")));
    }
    Ok(links)
}

/// One read into `buf`; end of file mid-response is an error.
fn read_more<S: Read>(stream: &mut S, buf: &mut Vec<u8>, chunk: &mut [u8]) -> io::Result<()> {
    loop {
        match stream.read(chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the server closed mid-response",
                ))
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Fetches `page` on the connection in `conn`, connecting first if there is none,
/// up to [`ATTEMPTS`] times; a failed attempt drops its connection.
fn fetch_with_retries<S: Read + Write>(
    conn: &mut Option<(S, Vec<u8>)>,
    mut connect: impl FnMut() -> io::Result<S>,
    page: usize,
    close: bool,
) -> Result<Vec<usize>, String> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        if conn.is_none() {
            match connect() {
                Ok(s) => *conn = Some((s, Vec::with_capacity(4096))),
                Err(e) => {
                    last = format!("connect: {e}");
                    continue;
                }
            }
        }
        let (stream, buf) = conn.as_mut().expect("connected above");
        match fetch(stream, buf, page, close) {
            Ok(links) => return Ok(links),
            Err(e) => {
                *conn = None;
                last = e.to_string();
            }
        }
    }
    Err(format!("/p/{page}: {last}"))
}

// ---------------------------------------------------------------------------
// Crawling
// ---------------------------------------------------------------------------

/// What a fetcher reports about one page.
struct Fetched {
    page: usize,
    latency: Duration,
    /// Its links, or why it could not be fetched.
    links: Result<Vec<usize>, String>,
}

/// The outcome of a crawl.
pub struct Crawl {
    /// The pages fetched successfully.
    pub visited: HashSet<usize>,
    /// Successful fetches (more than `visited.len()` if a page were fetched twice).
    pub fetches: u64,
    /// Fetches that failed, after retries.
    pub errors: Vec<String>,
    /// Wall-clock time of the whole crawl.
    pub elapsed: Duration,
    /// Latency of every fetch, in nanoseconds.
    pub latency: Histogram<u64>,
}

/// The coordinator's state: the URLs seen so far and the fetches in flight.
struct Frontier {
    seen: HashSet<usize>,
    in_flight: usize,
    crawl: Crawl,
}

impl Frontier {
    fn new() -> Frontier {
        Frontier {
            seen: HashSet::new(),
            in_flight: 0,
            crawl: Crawl {
                visited: HashSet::new(),
                fetches: 0,
                errors: Vec::new(),
                elapsed: Duration::ZERO,
                latency: Histogram::new(2).expect("histogram"),
            },
        }
    }

    /// Hands `page` to `enqueue` if it was never seen before.
    fn discover(&mut self, page: usize, enqueue: &mut impl FnMut(usize)) {
        if self.seen.insert(page) {
            self.in_flight += 1;
            enqueue(page);
        }
    }

    /// Takes in one fetcher's report; new links go to `enqueue`.
    fn absorb(&mut self, fetched: Fetched, enqueue: &mut impl FnMut(usize)) {
        self.in_flight -= 1;
        self.crawl
            .latency
            .record(fetched.latency.as_nanos() as u64)
            .expect("an auto-resizing histogram records any value");
        match fetched.links {
            Ok(links) => {
                self.crawl.fetches += 1;
                self.crawl.visited.insert(fetched.page);
                for link in links {
                    self.discover(link, enqueue);
                }
            }
            Err(e) => self.crawl.errors.push(e),
        }
    }
}

/// Crawls the site at `addr` from `/p/0` with `concurrency` fetcher coroutines on
/// `rt`, each with its own keep-alive connection.
pub fn crawl_coroutines(rt: &Runtime, addr: SocketAddr, concurrency: usize) -> Crawl {
    assert!(concurrency > 0);
    rt.block_on(move || {
        let start = Instant::now();
        let (url_tx, url_rx) = mpmc::unbounded::<usize>();
        let (result_tx, result_rx) = mpsc::channel::<Fetched>();
        let fetchers: Vec<_> = (0..concurrency)
            .map(|_| {
                let urls = url_rx.clone();
                let results = result_tx.clone();
                stackweave::spawn(move || fetcher(addr, urls, results))
            })
            .collect();
        drop((url_rx, result_tx));

        // This coroutine is the coordinator.
        let mut enqueue = |page| url_tx.send(page).expect("the fetchers outlive the crawl");
        let mut frontier = Frontier::new();
        frontier.discover(0, &mut enqueue);
        while frontier.in_flight > 0 {
            let fetched = result_rx.recv().expect("a fetcher holds a sender");
            frontier.absorb(fetched, &mut enqueue);
        }
        // Nothing queued, nothing in flight: done. Closing the queue ends the fetchers.
        drop(url_tx);
        for f in fetchers {
            f.join().expect("a fetcher panicked");
        }
        frontier.crawl.elapsed = start.elapsed();
        frontier.crawl
    })
}

/// One fetcher coroutine: pages from `urls` until the queue closes, on one
/// keep-alive connection (reopened if it fails).
fn fetcher(addr: SocketAddr, urls: mpmc::Receiver<usize>, results: mpsc::Sender<Fetched>) {
    let connect = || {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(s)
    };
    let mut conn = None;
    for page in urls.iter() {
        let start = Instant::now();
        let links = fetch_with_retries(&mut conn, connect, page, false);
        let fetched = Fetched {
            page,
            latency: start.elapsed(),
            links,
        };
        if results.send(fetched).is_err() {
            return;
        }
    }
}

/// A counting semaphore from a std `Mutex` and `Condvar`.
struct Semaphore {
    permits: Mutex<usize>,
    freed: Condvar,
}

/// A permit; dropping it returns it.
struct Permit(Arc<Semaphore>);

impl Semaphore {
    fn acquire(self: &Arc<Self>) -> Permit {
        let mut permits = self.permits.lock().unwrap();
        while *permits == 0 {
            permits = self.freed.wait(permits).unwrap();
        }
        *permits -= 1;
        Permit(self.clone())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        *self.0.permits.lock().unwrap() += 1;
        self.0.freed.notify_one();
    }
}

/// The same crawl with one OS thread per fetch (`std::thread::spawn` per URL, a
/// fresh `std::net::TcpStream` per fetch), at most `concurrency` at once; the
/// calling thread coordinates.
pub fn crawl_threads(addr: SocketAddr, concurrency: usize) -> Crawl {
    assert!(concurrency > 0);
    let start = Instant::now();
    let semaphore = Arc::new(Semaphore {
        permits: Mutex::new(concurrency),
        freed: Condvar::new(),
    });
    let (result_tx, result_rx) = std::sync::mpsc::channel::<Fetched>();
    let mut queue = VecDeque::new();
    let mut frontier = Frontier::new();
    frontier.discover(0, &mut |page| queue.push_back(page));
    loop {
        // Take in what finished, without waiting.
        while let Ok(fetched) = result_rx.try_recv() {
            frontier.absorb(fetched, &mut |page| queue.push_back(page));
        }
        if let Some(page) = queue.pop_front() {
            // Waits while `concurrency` fetches run; their results queue up meanwhile.
            let permit = semaphore.acquire();
            let results = result_tx.clone();
            std::thread::Builder::new()
                .name(format!("fetch /p/{page}"))
                .spawn(move || {
                    let _permit = permit; // returned after the result is sent
                    let start = Instant::now();
                    let connect = || {
                        let s = std::net::TcpStream::connect(addr)?;
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(READ_TIMEOUT))?;
                        Ok(s)
                    };
                    let links = fetch_with_retries(&mut None, connect, page, true);
                    let _ = results.send(Fetched {
                        page,
                        latency: start.elapsed(),
                        links,
                    });
                })
                .expect("spawn a fetch thread");
        } else if frontier.in_flight > 0 {
            let fetched = result_rx.recv().expect("the coordinator holds a sender");
            frontier.absorb(fetched, &mut |page| queue.push_back(page));
        } else {
            break;
        }
    }
    frontier.crawl.elapsed = start.elapsed();
    frontier.crawl
}

/// Prints one crawl's figures; `false` if it had errors.
pub fn report(name: &str, crawl: &Crawl, pages: usize) -> bool {
    let secs = crawl.elapsed.as_secs_f64();
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "{name}: {} of {pages} pages in {:.3} s: {:.0} pages/s",
        crawl.visited.len(),
        secs,
        crawl.fetches as f64 / secs,
    );
    if !crawl.latency.is_empty() {
        println!(
            "  fetch latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(crawl.latency.value_at_quantile(0.50)),
            ms(crawl.latency.value_at_quantile(0.99)),
            ms(crawl.latency.max()),
        );
    }
    if crawl.errors.is_empty() {
        return true;
    }
    println!("  errors: {} fetches failed", crawl.errors.len());
    for e in crawl.errors.iter().take(5) {
        println!("    {e}");
    }
    false
}

struct Args {
    pages: usize,
    concurrency: usize,
    latency: Duration,
    workers: Option<usize>,
}

const USAGE: &str = "usage: crawler [--pages N] [--concurrency M] [--latency-ms L] [--workers W]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pages: 2000,
        concurrency: 200,
        latency: Duration::from_millis(2),
        workers: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("bad {name} {v:?}"))
        }
        match a.as_str() {
            "--pages" | "-n" => args.pages = num("--pages", value("--pages")?)?,
            "--concurrency" | "-c" => {
                args.concurrency = num("--concurrency", value("--concurrency")?)?
            }
            "--latency-ms" | "-l" => {
                args.latency = Duration::from_millis(num("--latency-ms", value("--latency-ms")?)?)
            }
            "--workers" | "-w" => args.workers = Some(num("--workers", value("--workers")?)?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    if args.pages == 0 || args.concurrency == 0 {
        return Err("--pages and --concurrency must be at least 1".into());
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
    let site = start_site(&rt, args.pages, args.latency)?;
    println!(
        "site: {} pages at http://{}/p/0, {} links each, {:?} per response",
        site.pages,
        site.addr,
        RANDOM_LINKS + 1,
        args.latency,
    );
    println!("crawling with {} concurrent fetches", args.concurrency);

    let crawl = crawl_coroutines(&rt, site.addr, args.concurrency);
    let mut ok = report(
        &format!(
            "coroutines ({} fetcher coroutines, keep-alive)",
            args.concurrency
        ),
        &crawl,
        site.pages,
    );
    let crawl = crawl_threads(site.addr, args.concurrency);
    ok &= report(
        &format!(
            "threads (a thread per fetch, at most {} at once)",
            args.concurrency
        ),
        &crawl,
        site.pages,
    );
    println!(
        "site: {} connections, {} pages served",
        site.stats.connections.load(Ordering::Relaxed),
        site.stats.pages_served.load(Ordering::Relaxed),
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
