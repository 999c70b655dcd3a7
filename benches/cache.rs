//! Pull-through cache benchmark: a `site-agent` node filling itself from an upstream
//! (Debian's `docker-registry`), side by side with `docker-registry` in proxy mode
//! (`proxy: remoteurl:`) in front of the same upstream, one run. Prints:
//!
//! - a cold pull of a 256 MiB image through each, against pulling it straight from the
//!   upstream (aim: the node within 1.1x of the upstream itself);
//! - a warm pull through each (aim: the node ahead of the reference proxy);
//! - the upstream bytes of 16 concurrent cold pulls through each (aim: at most 1.05x the
//!   image).
//!
//! A pull is what a runtime does: the manifest, then the blobs, three at a time, each
//! hashed and checked against its digest. Upstream bytes are counted by a proxy in front
//! of the upstream (response bytes, headers included).
//!
//! Each is measured twice: over loopback, where the upstream answers at memory speed and
//! the caches' disks (write, fsync) are the limit; and over an emulated WAN link to the
//! upstream (a proxy passing `BENCH_LINK_MBPS` MB/s, default 125: 1 Gbit/s, shared by
//! all connections), as an edge site has it.
//!
//! Run: `cargo bench --bench cache` (needs `docker-registry`). Knobs: `BENCH_IMAGE_MIB`
//! (default 256), `BENCH_LINK_MBPS`.

#[path = "../tests/kit/mod.rs"]
mod kit;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kit::oci::{self, Image};
use kit::proxy::CountingProxy;
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};
use sha2::{Digest as _, Sha256};
use std::net::SocketAddr;
use std::time::Instant;

const REPO: &str = "bench/big";
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// GETs `path`, hashing the body as it streams; returns the status and the digest.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, u64) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", addr.to_string())
        .header("accept", ACCEPT)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let mut body = res.into_body();
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            hasher.update(d);
            n += d.len() as u64;
        }
    }
    (
        status,
        format!("sha256:{}", hex::encode(hasher.finalize())),
        n,
    )
}

/// One pull of `image` from `addr` as `REPO:v1`; returns its seconds.
async fn pull(addr: SocketAddr, image: &Image) -> f64 {
    let started = Instant::now();
    let (status, digest, _) = get(addr, &format!("/v2/{REPO}/manifests/v1")).await;
    assert_eq!(
        (status, digest.as_str()),
        (200, image.digest.as_str()),
        "manifest from {addr}"
    );
    let blobs: Vec<String> = image.blobs().map(|b| b.digest.clone()).collect();
    let mut pending = blobs.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < 3 {
            let Some(d) = pending.next() else { break };
            running.spawn(async move {
                let (status, got, _) = get(addr, &format!("/v2/{REPO}/blobs/{d}")).await;
                assert_eq!(
                    (status, got.as_str()),
                    (200, d.as_str()),
                    "blob from {addr}"
                );
            });
        }
        match running.join_next().await {
            Some(r) => r.unwrap(),
            None => break,
        }
    }
    started.elapsed().as_secs_f64()
}

/// `n` pulls at once; returns the seconds of the slowest.
async fn pulls(addr: SocketAddr, image: &Image, n: usize) -> f64 {
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..n {
        let image = image.clone();
        all.spawn(async move { pull(addr, &image).await });
    }
    let mut slowest: f64 = 0.0;
    while let Some(t) = all.join_next().await {
        slowest = slowest.max(t.unwrap());
    }
    slowest
}

/// A node filling itself from `upstream` (`IfNotPresent`).
fn site(upstream: SocketAddr) -> Node {
    Node::start(NodeOptions {
        default_upstream: Some(upstream.to_string()),
        extra: Some(format!(
            "[pull]\npolicy = \"IfNotPresent\"\ninsecure_registries = [\"{upstream}\"]\n"
        )),
        ..NodeOptions::default()
    })
}

fn main() {
    let Some(binary) = kit::tools::require("docker-registry") else {
        return;
    };
    let mib: usize = std::env::var("BENCH_IMAGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream = ReferenceRegistry::start(&binary);
    // Four layers, as a real image has several.
    let layer = (mib << 20) / 4;
    let image = oci::image(71, &[layer, layer, layer, layer], "amd64");
    oci::push_image_two_step(upstream.addr, REPO, &image);
    let size: u64 =
        image.blobs().map(|b| b.data.len() as u64).sum::<u64>() + image.manifest.len() as u64;
    println!(
        "image: {} bytes ({mib} MiB) in {} blobs",
        size,
        image.blobs().count()
    );

    let link_mbps: u64 = std::env::var("BENCH_LINK_MBPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(125);
    for link in [None, Some(link_mbps * 1_000_000)] {
        match link {
            None => println!("\n== upstream over loopback"),
            Some(r) => println!("\n== upstream over a {} MB/s link", r / 1_000_000),
        }
        let run = Run {
            binary: &binary,
            upstream: upstream.addr,
            link,
            image: &image,
            size,
        };
        rt.block_on(run.measure());
    }
}

/// One set of measurements, all through links of the same kind.
struct Run<'a> {
    binary: &'a std::path::Path,
    upstream: SocketAddr,
    link: Option<u64>,
    image: &'a Image,
    size: u64,
}

impl Run<'_> {
    /// A new link to the upstream, counting what crosses it.
    fn link(&self) -> CountingProxy {
        CountingProxy::start_throttled(self.upstream, self.link)
    }

    async fn measure(&self) {
        let image = self.image;
        // Straight from the upstream, through the same kind of link: the floor.
        let direct_link = self.link();
        pull(direct_link.addr, image).await;
        let direct = pull(direct_link.addr, image).await;

        // One cold and one warm pull through each cache, each with its own link.
        let site_link = self.link();
        let node = site(site_link.addr);
        let site_cold = pull(node.addr, image).await;
        let site_warm = pull(node.addr, image).await;
        let ref_link = self.link();
        let reference = ReferenceRegistry::start_proxy(self.binary, ref_link.addr);
        let ref_cold = pull(reference.addr, image).await;
        let ref_warm = pull(reference.addr, image).await;
        drop((node, reference));

        // 16 concurrent cold pulls through fresh caches.
        let site_link16 = self.link();
        let node16 = site(site_link16.addr);
        let site16 = pulls(node16.addr, image, 16).await;
        let ref_link16 = self.link();
        let reference16 = ReferenceRegistry::start_proxy(self.binary, ref_link16.addr);
        let ref16 = pulls(reference16.addr, image, 16).await;

        let size = self.size;
        let x = |bytes: u64| bytes as f64 / size as f64;
        let mbps = |secs: f64| size as f64 / secs / 1e6;
        println!(
            "{:<44} {:>10} {:>12} {:>10}",
            "", "site-agent", "reference", "ratio"
        );
        println!(
            "{:<44} {:>9.2}s {:>11.2}s {:>9.2}x",
            "cold pull",
            site_cold,
            ref_cold,
            site_cold / ref_cold
        );
        println!(
            "{:<44} {:>9.2}x {:>11.2}x",
            "  cold pull / straight from the upstream",
            site_cold / direct,
            ref_cold / direct
        );
        println!(
            "{:<44} {:>9.2}s {:>11.2}s {:>9.2}x",
            "warm pull",
            site_warm,
            ref_warm,
            site_warm / ref_warm
        );
        println!(
            "{:<44} {:>8.0}MB/s {:>9.0}MB/s",
            "  warm pull throughput",
            mbps(site_warm),
            mbps(ref_warm)
        );
        println!(
            "{:<44} {:>9.3}x {:>11.3}x",
            "upstream bytes, 1 cold pull / image",
            x(site_link.received()),
            x(ref_link.received())
        );
        println!(
            "{:<44} {:>9.3}x {:>11.3}x",
            "upstream bytes, 16 concurrent cold / image",
            x(site_link16.received()),
            x(ref_link16.received())
        );
        println!(
            "{:<44} {:>9.2}s {:>11.2}s",
            "  16 concurrent cold pulls, slowest", site16, ref16
        );
        println!(
            "straight from the upstream: {direct:.2}s ({:.0} MB/s)",
            mbps(direct)
        );
    }
}
