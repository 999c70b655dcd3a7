//! Cluster benchmark, in one run:
//!
//! - `towerctl deliver` of a 1 GiB image (4 layers of 256 MiB) from Debian's
//!   `docker-registry` to a 1-node site and to a 3-node site (acknowledged: each blob
//!   durable on a majority, each entry committed), the ratio of the two, and the time
//!   until the third node holds every blob too;
//! - the same 3-node delivery with the two nodes that copy the blobs keeping their data on
//!   tmpfs: a stand-in for separate machines, where the copies do not share one disk;
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(reference) = kit::tools::require("docker-registry") else {
        return;
    };
    let upstream = ReferenceRegistry::start(&reference);
    let up = upstream.addr.to_string();
    let opts = NodeOptions {
        default_upstream: Some(up.clone()),
        ..Default::default()
    };

    eprintln!("preparing a 1 GiB image in docker-registry...");
    let image = oci::image(61, &[LAYER; 4], "amd64");
    oci::push_image_two_step(upstream.addr, "bench/big", &image);
    let bytes: u64 = image.blobs().map(|b| b.data.len() as u64).sum();

    eprintln!("1-node site...");
    let single = Node::start(opts.clone());
    let quota_one = capped(&[&single], "one");
    let (cpu_one, one) = cpu_of(&[&single], || {
        timed_deliver(&[single.api], &up, "bench/big:v1")
    });
    let held_one: Vec<f64> = quota_one.iter().map(CpuQuota::throttled_seconds).collect();
    drop(single);

    eprintln!("3-node site...");
    let mut nodes = kit::node::cluster(3, &opts);
    let quota_three = capped(&nodes.iter().collect::<Vec<_>>(), "three");
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|i| *i != l);
    let apis: Vec<SocketAddr> = order.iter().map(|i| nodes[*i].api).collect();
    let start = Instant::now();
    let by_order: Vec<&Node> = order.iter().map(|i| &nodes[*i]).collect();
    let (cpu_three, three) = cpu_of(&by_order, || timed_deliver(&apis, &up, "bench/big:v1"));
    all_replicated(&nodes.iter().collect::<Vec<_>>());
    let everywhere = start.elapsed().as_secs_f64();
    let held_three: Vec<f64> = order
        .iter()
        .map(|i| quota_three[*i].throttled_seconds())
        .collect();

    eprintln!("3-node site, the other two nodes' data on tmpfs...");
    let apart = kit::node::cluster_with(3, |id| NodeOptions {
        dir_in: (id != 1).then(|| "/dev/shm".into()),
        ..opts.clone()
    });
    let quota_apart = capped(&apart.iter().collect::<Vec<_>>(), "apart");
    // Its leader first, as for the site above.
    let l = leader(&apart.iter().collect::<Vec<_>>());
    let mut order: Vec<usize> = (0..apart.len()).collect();
    order.sort_by_key(|i| *i != l);
    let apis: Vec<SocketAddr> = order.iter().map(|i| apart[*i].api).collect();
    let start = Instant::now();
    let by_order: Vec<&Node> = order.iter().map(|i| &apart[*i]).collect();
    let (cpu_apart, three_apart) = cpu_of(&by_order, || timed_deliver(&apis, &up, "bench/big:v1"));
    all_replicated(&apart.iter().collect::<Vec<_>>());
    let everywhere_apart = start.elapsed().as_secs_f64();
    let held_apart: Vec<f64> = order
        .iter()
        .map(|i| quota_apart[*i].throttled_seconds())
        .collect();
    drop(apart);

    eprintln!("leader kills...");
    let mut failovers = Vec::new();
    for round in 0..3 {
        let l = leader(&nodes.iter().collect::<Vec<_>>());
        let survivor = nodes[(l + 1) % nodes.len()].api;
        nodes[l].kill9();
        let killed = Instant::now();
        let accepted = first_accepted_write(
            survivor,
            "bench/big",
            &image.digest,
            &format!("after-kill-{round}"),
        );
        failovers.push(accepted.duration_since(killed).as_secs_f64());
        nodes[l].restart();
        quota_three[l].add(nodes[l].pid());
        all_replicated(&nodes.iter().collect::<Vec<_>>());
    }

    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!(
        "\nDelivery of a 1 GiB image (4 x 256 MiB) with towerctl from docker-registry, every node capped at {QUOTA_PERCENT} % of one core\n"
    );
    println!("| site | seconds to acknowledged | MB/s | vs 1 node |");
    println!("|---|---|---|---|");
    for (what, secs) in [
        ("1 node", one),
        ("3 nodes, one shared disk", three),
        (
            "3 nodes, the two that copy on tmpfs (stand-in for disks of their own)",
            three_apart,
        ),
    ] {
        println!(
            "| {what} | {secs:.2} | {:.0} | {:.2}x |",
            bytes as f64 / secs / 1e6,
            secs / one
        );
    }
    let list = |v: &[f64]| {
        let each: Vec<String> = v.iter().map(|s| format!("{:.2}", s / gib)).collect();
        format!(
            "{} (sum {:.2})",
            each.join(" + "),
            v.iter().sum::<f64>() / gib
        )
    };
    let held = |v: &[f64]| {
        let each: Vec<String> = v.iter().map(|s| format!("{s:.1}")).collect();
        each.join(" + ")
    };
    println!(
        "\nCPU seconds each node used per delivered GiB until acknowledged (the receiving node first), and seconds the quota held each back:\n"
    );
    println!("| site | CPU s per GiB | held back by the quota, s |");
    println!("|---|---|---|");
    println!("| 1 node | {} | {} |", list(&cpu_one), held(&held_one));
    println!(
        "| 3 nodes, one shared disk | {} | {} |",
        list(&cpu_three),
        held(&held_three)
    );
    println!(
        "| 3 nodes, two on tmpfs | {} | {} |",
        list(&cpu_apart),
        held(&held_apart)
    );
    println!(
        "\nEvery node holding all {gib:.2} GiB: after {everywhere:.2} s on one shared disk, {everywhere_apart:.2} s with tmpfs."
    );
    println!("\nLeader killed (kill -9) -> first write accepted by a survivor\n");
    println!("| round | seconds |");
    println!("|---|---|");
    for (i, s) in failovers.iter().enumerate() {
        println!("| {} | {s:.2} |", i + 1);
    }
}
