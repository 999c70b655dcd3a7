//! Serving benchmark: `site-agent` and Debian's `docker-registry` side by side, same
//! content, same load generator, one run. Prints requests/s and MB/s for GETs of a 1 MiB
//! blob, a 100 MiB blob and a manifest, with the ratio site-agent / docker-registry, and
//! the peak memory of each while it serves a 1 GiB blob to several clients at once.
//!
//! Run: `cargo bench --bench serve` (needs `docker-registry`; `apt-get install docker-registry`).
//! Knobs: `BENCH_SECS` (per measurement, default 5), `BENCH_CLIENTS` (default 8).

#[path = "../tests/kit/mod.rs"]
mod kit;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kit::oci::{self, push_blob_two_step};
use kit::upstream::ReferenceRegistry;
use kit::{bytes, Node, NodeOptions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPO: &str = "bench/app";
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

struct Result {
    requests: u64,
    bytes: u64,
    secs: f64,
}

impl Result {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

/// `clients` keep-alive connections GET `path` in a loop for `secs`.
async fn load(addr: SocketAddr, path: &str, clients: usize, secs: f64) -> Result {
    let stop = Arc::new(AtomicBool::new(false));
    let (requests, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (stop, requests, total, path) = (
            stop.clone(),
            requests.clone(),
            total.clone(),
            path.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let req = hyper::Request::get(path.as_str())
                    .header("host", "bench")
                    // The reference registry hides OCI manifests from clients that do not accept them.
                    .header("accept", ACCEPT)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let res = sender.send_request(req).await.unwrap();
                assert_eq!(res.status(), 200, "GET {path}");
                let mut body = res.into_body();
                let mut n = 0u64;
                while let Some(frame) = body.frame().await {
                    if let Some(d) = frame.unwrap().data_ref() {
                        n += d.len() as u64;
                    }
                }
                requests.fetch_add(1, Ordering::Relaxed);
                total.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    Result {
        requests: requests.load(Ordering::Relaxed),
        bytes: total.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Peak RSS of `pid` while `clients` clients each GET `path` once, and the time it took.
async fn peak_memory(addr: SocketAddr, pid: u32, path: &str, clients: usize) -> (u64, f64) {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = rss(pid);
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let start = Instant::now();
    let gets: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_owned();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let req = hyper::Request::get(path.as_str())
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let mut body = sender.send_request(req).await.unwrap().into_body();
                while let Some(f) = body.frame().await {
                    f.unwrap();
                }
            })
        })
        .collect();
    for g in gets {
        g.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    (sampler.await.unwrap(), secs)
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(reference) = kit::tools::require("docker-registry") else {
        return;
    };
    let secs: f64 = env_or("BENCH_SECS", 5.0);
    let clients: usize = env_or("BENCH_CLIENTS", 8);

    let node = Node::start(NodeOptions::push());
    let upstream = ReferenceRegistry::start(&reference);
    let auth = oci::auth();

    let small = bytes(1, 1 << 20);
    let large = bytes(2, 100 << 20);
    let huge = bytes(3, 1 << 30);
    let image = oci::image(4, &[1 << 20], "amd64");
    eprintln!("loading the same content into both registries...");
    for (addr, a) in [(node.addr, Some(auth.as_str())), (upstream.addr, None)] {
        for data in [&small, &large, &huge] {
            assert_eq!(push_blob_two_step(addr, REPO, data, a).status, 201);
        }
        for b in image.blobs() {
            assert_eq!(push_blob_two_step(addr, REPO, &b.data, a).status, 201);
        }
        let headers: Vec<(&str, &str)> = a
            .map(|a| ("Authorization", a))
            .into_iter()
            .chain([("Content-Type", oci::OCI_MANIFEST)])
            .collect();
        let r = kit::request(
            addr,
            "PUT",
            &format!("/v2/{REPO}/manifests/v1"),
            &headers,
            &image.manifest,
        );
        assert_eq!(r.status, 201);
    }
    drop(huge);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases = [
        (
            "manifest (by tag)",
            format!("/v2/{REPO}/manifests/v1"),
            clients,
        ),
        (
            "blob 1 MiB",
            format!("/v2/{REPO}/blobs/{}", kit::digest(&small)),
            clients,
        ),
        (
            "blob 100 MiB",
            format!("/v2/{REPO}/blobs/{}", kit::digest(&large)),
            4,
        ),
    ];
    println!("\nGET throughput, {secs} s per cell, loopback, keep-alive connections\n");
    println!("| request | clients | site-agent req/s | site-agent MB/s | docker-registry req/s | docker-registry MB/s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (what, path, c) in &cases {
        let ours = rt.block_on(load(node.addr, path, *c, secs));
        let theirs = rt.block_on(load(upstream.addr, path, *c, secs));
        println!(
            "| {what} | {c} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x |",
            ours.rps(),
            ours.mbps(),
            theirs.rps(),
            theirs.mbps(),
            ours.rps() / theirs.rps()
        );
    }
    let huge_path = format!("/v2/{REPO}/blobs/{}", kit::digest(&bytes(3, 1 << 30)));
    let readers = 4;
    let (ours, ours_secs) = rt.block_on(peak_memory(node.addr, node.pid(), &huge_path, readers));
    let (theirs, theirs_secs) = rt.block_on(peak_memory(
        upstream.addr,
        upstream.pid(),
        &huge_path,
        readers,
    ));
    println!("\nPeak resident memory while serving a 1 GiB blob to {readers} clients at once\n");
    println!("| server | peak RSS | time for {readers} x 1 GiB | aggregate MB/s |");
    println!("|---|---|---|---|");
    for (who, peak, s) in [
        ("site-agent", ours, ours_secs),
        ("docker-registry", theirs, theirs_secs),
    ] {
        println!(
            "| {who} | {:.1} MiB | {s:.2} s | {:.0} |",
            peak as f64 / (1 << 20) as f64,
            readers as f64 * (1u64 << 30) as f64 / s / 1e6
        );
    }
}
