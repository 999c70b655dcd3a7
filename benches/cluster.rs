//! Cluster benchmark, in one run:
//!
//! - `towerctl deliver` of a 256 MiB image (4 layers of 64 MiB) and of a 1 GiB image (4
//!   layers of 256 MiB) from Debian's `docker-registry` to a fresh 1-node site and to a
//!   fresh 3-node site (acknowledged: each blob durable on a majority, each entry
//!   committed), `BENCH_RUNS` runs each (default 3), the ratio of the two, and the time
//!   until the third node holds every blob too;
//! - `kill -9` of a 3-node site's leader: time until a write (a tag) sent to one of the
//!   survivors is accepted, three rounds (the killed node restarts and catches up between
//!   rounds).
//!
//! Every site node runs in a cgroup of its own (the cgroup v1 `cpu` controller) with the
//! same quota, 40 % of one core: three nodes no longer compete for this machine's two
//! cores, as three small machines would not. The upstream and towerctl run unbounded.
//! The bench prints the CPU seconds each node spent per delivered GiB (from
//! `/proc/<pid>/stat`) and how long the quota held each back. The nodes still share one
//! disk.
//!
//! Run as root: `cargo bench --bench cluster` (needs `docker-registry`).

#[path = "../tests/kit/mod.rs"]
mod kit;

use kit::node::{leader, status};
use kit::oci;
use kit::tools::{timed_deliver, CpuQuota};
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};
use site_api::pb;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const LAYER: usize = 256 * MIB;
/// Each node's share of one core.
const QUOTA_PERCENT: u64 = 40;

/// One cgroup per node, each with the same quota.
fn capped(nodes: &[&Node], name: &str) -> Vec<CpuQuota> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let q = CpuQuota::new(&format!("{name}-{i}"), QUOTA_PERCENT);
            q.add(n.pid());
            q
        })
        .collect()
}

/// Waits (bounded) until no node of `nodes` lacks a committed blob.
fn all_replicated(nodes: &[&Node]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while nodes
        .iter()
        .any(|n| status(n).is_none_or(|s| s.blobs_missing > 0 || s.blobs == 0))
    {
        assert!(Instant::now() < deadline, "replication did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU seconds (user and system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses; utime and stime are the
    // 14th and 15th fields, in clock ticks of 1/100 s.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// CPU seconds each of `nodes` used while `work` ran, and what `work` returned.
fn cpu_of<T>(nodes: &[&Node], work: impl FnOnce() -> T) -> (Vec<f64>, T) {
    let before: Vec<f64> = nodes.iter().map(|n| cpu_seconds(n.pid())).collect();
    let out = work();
    let used = nodes
        .iter()
        .zip(before)
        .map(|(n, b)| cpu_seconds(n.pid()) - b)
        .collect();
    (used, out)
}

/// Sends a tag to `api` until the site accepts it; returns when it did.
fn first_accepted_write(api: SocketAddr, repo: &str, digest: &str, tag: &str) -> Instant {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        let mut c = kit::grpc::connect(api).await;
        loop {
            let r = c
                .tag(pb::TagRequest {
                    repository: repo.into(),
                    digest: digest.into(),
                    tag: tag.into(),
                })
                .await;
            match r {
                Ok(_) => return Instant::now(),
                Err(s) if s.code() == tonic::Code::Unavailable => {}
                Err(s) => panic!("tag refused: {s:?}"),
            }
            assert!(Instant::now() < deadline, "no write accepted within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Writes back and drops the page cache (as root), so that every delivery starts on the
/// same memory: otherwise the earlier runs' gigabytes are reclaimed during the later
/// ones, on their CPU time.
fn settle_page_cache() {
    let _ = std::process::Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
        eprintln!("cannot drop the page cache (not root): runs may differ more");
    }
}

/// One delivery to a fresh site: seconds to acknowledged, CPU seconds of each node (the
/// receiving node first) and seconds the quota held each back.
struct Delivery {
    secs: f64,
    cpu: Vec<f64>,
    held: Vec<f64>,
}

/// Starts a fresh site of `n` nodes, each in its own capped cgroup, waits for its leader,
/// and delivers `image` to it, the leader first in towerctl's list.
/// The site stays in its cgroups while the returned quotas live.
fn deliver_fresh(
    n: u64,
    opts: &NodeOptions,
    up: &str,
    image: &str,
    name: &str,
) -> (Vec<Node>, Vec<CpuQuota>, Delivery) {
    settle_page_cache();
    let nodes = if n == 1 {
        vec![Node::start(opts.clone())]
    } else {
        kit::node::cluster(n, opts)
    };
    let quotas = capped(&nodes.iter().collect::<Vec<_>>(), name);
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|i| *i != l);
    let apis: Vec<SocketAddr> = order.iter().map(|i| nodes[*i].api).collect();
    let by_order: Vec<&Node> = order.iter().map(|i| &nodes[*i]).collect();
    let (cpu, secs) = cpu_of(&by_order, || timed_deliver(&apis, up, image));
    let held = order
        .iter()
        .map(|i| quotas[*i].throttled_seconds())
        .collect();
    (nodes, quotas, Delivery { secs, cpu, held })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(reference) = kit::tools::require("docker-registry") else {
        return;
    };
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let upstream = ReferenceRegistry::start(&reference);
    let up = upstream.addr.to_string();
    let opts = NodeOptions {
        default_upstream: Some(up.clone()),
        ..Default::default()
    };

    let sizes = [
        ("256 MiB (4 x 64 MiB)", 64 * MIB, 62),
        ("1 GiB (4 x 256 MiB)", LAYER, 61),
    ];
    let mut table = Vec::new();
    let mut last_site = None;
    let mut big_digest = String::new();
    for (what, layer, seed) in sizes {
        eprintln!("preparing a {what} image in docker-registry...");
        let image = oci::image(seed, &[layer; 4], "amd64");
        let repo = format!("bench/size{seed}");
        oci::push_image_two_step(upstream.addr, &repo, &image);
        let bytes: u64 = image.blobs().map(|b| b.data.len() as u64).sum();
        let gib = bytes as f64 / (1u64 << 30) as f64;
        big_digest = image.digest.clone();
        drop(image);
        let reference = format!("{repo}:v1");
        for run in 1..=runs {
            eprintln!("{what}, run {run}: a fresh 1-node site, then a fresh 3-node site...");
            // The previous run's site stops first: nothing else runs beside a delivery.
            drop(last_site.take());
            let (one_site, one_quota, one) =
                deliver_fresh(1, &opts, &up, &reference, &format!("one-{seed}-{run}"));
            drop(one_site);
            drop(one_quota);
            let (three_site, three_quotas, three) =
                deliver_fresh(3, &opts, &up, &reference, &format!("three-{seed}-{run}"));
            let started = Instant::now();
            all_replicated(&three_site.iter().collect::<Vec<_>>());
            let rest = started.elapsed().as_secs_f64();
            table.push((what, run, gib, one, three, rest));
            last_site = Some((three_site, three_quotas, repo.clone()));
        }
    }

    println!(
        "\nDelivery with towerctl from docker-registry to a fresh site (leader elected, nothing held), every node capped at {QUOTA_PERCENT} % of one core\n"
    );
    println!("| image | run | 1 node, s | 3 nodes, s | vs 1 node | CPU s/GiB, 1 node | CPU s/GiB, 3 nodes (receiving + others) | held back by the quota, s (1 node; 3 nodes) | third copy after, s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let each = |v: &[f64], per: f64| {
        v.iter()
            .map(|s| format!("{:.2}", s / per))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    for (what, run, gib, one, three, rest) in &table {
        println!(
            "| {what} | {run} | {:.2} | {:.2} | {:.2}x | {} | {} | {}; {} | {rest:.2} |",
            one.secs,
            three.secs,
            three.secs / one.secs,
            each(&one.cpu, *gib),
            each(&three.cpu, *gib),
            each(&one.held, 1.0),
            each(&three.held, 1.0),
        );
    }

    eprintln!("leader kills...");
    let (mut nodes, quotas, repo) = last_site.expect("a 3-node site");
    let mut failovers = Vec::new();
    for round in 0..3 {
        let l = leader(&nodes.iter().collect::<Vec<_>>());
        let survivor = nodes[(l + 1) % nodes.len()].api;
        nodes[l].kill9();
        let killed = Instant::now();
        let accepted =
            first_accepted_write(survivor, &repo, &big_digest, &format!("after-kill-{round}"));
        failovers.push(accepted.duration_since(killed).as_secs_f64());
        nodes[l].restart();
        quotas[l].add(nodes[l].pid());
        all_replicated(&nodes.iter().collect::<Vec<_>>());
    }
    println!("\nLeader killed (kill -9) -> first write accepted by a survivor\n");
    println!("| round | seconds |");
    println!("|---|---|");
    for (i, s) in failovers.iter().enumerate() {
        println!("| {} | {s:.2} |", i + 1);
    }
}
