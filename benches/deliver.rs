//! Delivery benchmark: how fast the tower's bytes become durable, verified blobs at a site,
//! beside what this machine can do with the same bytes at best, in one run.
//!
//! - machine limit: sha256 + write + fsync of the same 1 GiB, in 1 MiB pieces, one thread,
//!   on the file system of the node's data directory (what the site must at least do);
//! - gRPC `PutBlob` of a 1 GiB blob from this process's memory straight into `site-agent`
//!   (the site's receive path alone);
//! - `towerctl deliver` of a 1 GiB image (4 layers of 256 MiB) from Debian's
//!   `docker-registry` on loopback to `site-agent` (the whole path: upstream pull, digest
//!   checks, gRPC stream, site install);
//! - dedup: a second image sharing three of those layers; bytes the site received for it.
//!
//! Run: `cargo bench --bench deliver` (needs `docker-registry`).

#[path = "../tests/kit/mod.rs"]
mod kit;

use kit::oci;
use kit::tools::timed_deliver;
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};
use sha2::{Digest as _, Sha256};
use site_api::pb::{PutBlobHeader, PutBlobRequest};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

const MIB: usize = 1 << 20;
const LAYER: usize = 256 * MIB;
/// Chunk size of one gRPC message, as towerctl sends.
const CHUNK: usize = MIB;

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// sha256 + write + fsync of `data` into a new file in `dir`, then fsync of `dir`.
fn machine_limit(dir: &Path, data: &[u8]) -> f64 {
    let path = dir.join("limit.bin");
    let start = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    let mut hasher = Sha256::new();
    for piece in data.chunks(CHUNK) {
        hasher.update(piece);
        file.write_all(piece).unwrap();
    }
    file.sync_all().unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
    let _digest = hasher.finalize();
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    secs
}

/// Streams `data` to the site as one blob, in [`CHUNK`] messages produced as the stream
/// is polled (nothing copied ahead of the transfer).
async fn put_blob(api: SocketAddr, repo: &str, data: &'static [u8]) -> f64 {
    let mut client = kit::grpc::connect(api).await;
    let header = PutBlobRequest {
        header: Some(PutBlobHeader {
            repository: repo.into(),
            digest: kit::digest(data),
            size: data.len() as u64,
            offset: 0,
        }),
        data: Default::default(),
    };
    let chunks = data.chunks(CHUNK).map(|c| PutBlobRequest {
        header: None,
        data: bytes::Bytes::from_static(c),
    });
    let start = Instant::now();
    let r = client
        .put_blob(futures_util::stream::iter(
            std::iter::once(header).chain(chunks),
        ))
        .await
        .expect("blob delivered")
        .into_inner();
    assert!(r.complete);
    start.elapsed().as_secs_f64()
}

fn received(api: SocketAddr, rt: &tokio::runtime::Runtime) -> u64 {
    rt.block_on(async {
        kit::grpc::status(&mut kit::grpc::connect(api).await)
            .await
            .blob_bytes_received
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(reference) = kit::tools::require("docker-registry") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let node = Node::start(NodeOptions::default());
    let upstream = ReferenceRegistry::start(&reference);
    let up = upstream.addr.to_string();

    eprintln!("preparing a 1 GiB image in docker-registry...");
    let first = oci::image(51, &[LAYER; 4], "amd64");
    let mut second = oci::image(52, &[16 * MIB], "amd64");
    second
        .layers
        .splice(0..0, first.layers[..3].iter().cloned());
    let second = oci::rebuild(second);
    oci::push_image_two_step(upstream.addr, "bench/big", &first);
    oci::push_image_two_step(upstream.addr, "bench/next", &second);
    let image_bytes: u64 = first.blobs().map(|b| b.data.len() as u64).sum();
    let second_bytes: u64 = second.blobs().map(|b| b.data.len() as u64).sum();
    let second_own: u64 = second
        .blobs()
        .filter(|b| !first.layers.iter().any(|l| l.digest == b.digest))
        .map(|b| b.data.len() as u64)
        .sum();

    let blob: &'static [u8] = Box::leak(kit::bytes(53, 1 << 30).into_boxed_slice());
    let limit = machine_limit(&node.data_dir(), blob);
    let grpc = rt.block_on(put_blob(node.api, "bench/raw", blob));

    let before = received(node.api, &rt);
    let tower = timed_deliver(&[node.api], &up, "bench/big:v1");
    let sent_first = received(node.api, &rt) - before;
    assert_eq!(sent_first, image_bytes, "the first image travels whole");
    let before = received(node.api, &rt);
    let tower_second = timed_deliver(&[node.api], &up, "bench/next:v1");
    let sent_second = received(node.api, &rt) - before;

    let gib = (1u64 << 30) as f64;
    println!("\nDelivery of 1 GiB on loopback, beside sha256 + write + fsync of the same bytes\n");
    println!("| path | bytes | seconds | MB/s | of machine limit |");
    println!("|---|---|---|---|---|");
    let limit_mbps = mbps(1 << 30, limit);
    for (what, bytes, secs) in [
        (
            "machine limit: sha256 + write + fsync, one thread",
            1u64 << 30,
            limit,
        ),
        ("gRPC PutBlob, 1 GiB blob, 1 MiB messages", 1 << 30, grpc),
        (
            "towerctl deliver, 1 GiB image from docker-registry",
            image_bytes,
            tower,
        ),
    ] {
        let rate = mbps(bytes, secs);
        println!(
            "| {what} | {:.2} GiB | {secs:.2} | {rate:.0} | {:.2}x |",
            bytes as f64 / gib,
            rate / limit_mbps
        );
    }
    println!("\nDedup: a second image sharing 3 of the 4 layers\n");
    println!("| image | size | bytes sent to the site | share of its size | towerctl seconds |");
    println!("|---|---|---|---|---|");
    println!(
        "| first (4 x 256 MiB layers) | {image_bytes} | {sent_first} | {:.1}% | {tower:.2} |",
        100.0 * sent_first as f64 / image_bytes as f64
    );
    println!(
        "| second (3 shared layers + 16 MiB) | {second_bytes} | {sent_second} | {:.1}% | {tower_second:.2} |",
        100.0 * sent_second as f64 / second_bytes as f64
    );
    assert_eq!(sent_second, second_own, "only the missing blobs travel");
}
