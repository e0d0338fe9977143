//! Tests for `examples/crawler.rs`: the example's own code, included as a module,
//! serves a local site on 127.0.0.1 and crawls it, with coroutines and with a
//! thread per fetch. The site is the same every run (its links are pseudo-random
//! but seeded), so every run crawls the same graph.

#[allow(dead_code)] // the example's `main` and argument parsing
#[path = "../examples/crawler.rs"]
mod crawler;

use stackweave::Runtime;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn all_pages(pages: usize) -> HashSet<usize> {
    (0..pages).collect()
}

#[test]
fn links_are_deterministic_and_extracted() {
    let pages = 1000;
    for k in [0, 1, 500, 999] {
        let links = crawler::links_of(k, pages);
        assert_eq!(links, crawler::links_of(k, pages));
        assert_eq!(links.len(), crawler::RANDOM_LINKS + 1);
        assert_eq!(links[0], (k + 1) % pages);
        assert!(links.iter().all(|&l| l < pages));
        let html = crawler::page_html(k, pages);
        assert_eq!(crawler::extract_links(html.as_bytes()), links);
    }
    assert_eq!(
        crawler::extract_links(b"<a href=\"/p/12\"> href=\"/p/\" href=\"/p/3x\" href=\"/p/7\""),
        vec![12, 7]
    );
    assert_eq!(crawler::parse_page_path("/p/42"), Some(42));
    assert_eq!(crawler::parse_page_path("/p/"), None);
    assert_eq!(crawler::parse_page_path("/p/4a"), None);
    assert_eq!(crawler::parse_page_path("/q/4"), None);
}

#[test]
fn coroutine_crawl_visits_every_page_once() {
    let pages = 1000;
    let rt = Runtime::builder().workers(2).build().unwrap();
    let site = crawler::start_site(&rt, pages, Duration::from_millis(1)).unwrap();
    let crawl = crawler::crawl_coroutines(&rt, site.addr, 100);
    assert!(crawl.errors.is_empty(), "errors: {:?}", crawl.errors);
    assert_eq!(crawl.visited, all_pages(pages));
    assert_eq!(crawl.fetches, pages as u64);
    assert_eq!(crawl.latency.len(), pages as u64);
    assert_eq!(site.stats.pages_served.load(Ordering::SeqCst), pages as u64);
    assert_eq!(site.stats.bad_requests.load(Ordering::Relaxed), 0);
    // Keep-alive: at most one connection per fetcher.
    assert!(site.stats.connections.load(Ordering::Relaxed) <= 100);
}

#[test]
fn thread_per_fetch_crawl_visits_every_page_once() {
    let pages = 200;
    let rt = Runtime::builder().workers(2).build().unwrap();
    let site = crawler::start_site(&rt, pages, Duration::from_millis(1)).unwrap();
    let crawl = crawler::crawl_threads(site.addr, 50);
    assert!(crawl.errors.is_empty(), "errors: {:?}", crawl.errors);
    assert_eq!(crawl.visited, all_pages(pages));
    assert_eq!(crawl.fetches, pages as u64);
    assert_eq!(site.stats.pages_served.load(Ordering::SeqCst), pages as u64);
    // A fresh connection per fetch.
    assert_eq!(site.stats.connections.load(Ordering::Relaxed), pages as u64);
}
