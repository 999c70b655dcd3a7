//! The tower's API at fleet scale, on both stores side by side, one run: 10,000 sites
//! onboarded (ten regions, so a region is about 1,000 sites), a rollout to all of them,
//! then
//!
//! - `POST /sites/query` with a label filter selecting one region (about 1,000 sites):
//!   p50 and p99 (aim on PostgreSQL: p99 under 100 ms);
//! - `GET /rollouts/{id}` of the rollout to all 10,000: p50 and p99 (aim on PostgreSQL:
//!   p99 under 300 ms);
//! - the onboarding itself (sites per second, 4 clients).
//!
//! The sites' nodes do not answer (127.0.0.1:9), so the rollout's workers fail and
//! retry while the reads are measured, as a tower with offline sites does. PostgreSQL
//! is Debian's 15, started by the benchmark as the tests start it.
//!
//! Run: `cargo bench --bench fleet_api` (needs `docker-registry`, `skopeo`, PostgreSQL
//! 15). Knobs: `BENCH_SITES` (default 10000), `BENCH_READS` (default 200).

#[path = "../tests/kit/mod.rs"]
mod kit;

use kit::fleet::Upstream;
use kit::tower::Towerd;
use serde_json::json;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The p-th percentile (0..=100) of some durations, in milliseconds.
fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p / 100.0).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

struct Figures {
    onboard_per_s: f64,
    query: (f64, f64, usize),
    rollout: (f64, f64, usize),
}

fn measure(tower: &Towerd, sites: usize, reads: usize, image: &str) -> Figures {
    // Onboarding, 4 clients at once.
    let started = Instant::now();
    std::thread::scope(|s| {
        for client in 0..4 {
            s.spawn(move || {
                for i in (client..sites).step_by(4) {
                    let body = json!({
                        "name": format!("site-{i:05}"),
                        "nodes": ["127.0.0.1:9"],
                        "labels": {"region": format!("r{}", i % 10), "tier": if i % 3 == 0 { "gold" } else { "basic" }},
                        "metadata": {"rack": i % 50},
                    });
                    let r = tower.call("POST", "/sites", Some(&body));
                    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
                }
            });
        }
    });
    let onboard_per_s = sites as f64 / started.elapsed().as_secs_f64();

    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(
            &json!({"application": "bench", "images": [image], "selector": {}, "max_parallel": 10}),
        ),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    let first = tower.expect("GET", &path, None, 200);
    assert_eq!(first["totals"]["selected"], sites);

    let filter = json!({"filter": {"labels.region": "r3"}});
    let mut times = Vec::with_capacity(reads);
    let mut matched = 0;
    for _ in 0..reads {
        let t = Instant::now();
        let r = tower.call("POST", "/sites/query", Some(&filter));
        times.push(t.elapsed());
        assert_eq!(r.status, 200);
        matched = r.json()["total"].as_u64().unwrap() as usize;
    }
    let query = (
        percentile(&mut times, 50.0),
        percentile(&mut times, 99.0),
        matched,
    );

    let mut times = Vec::with_capacity(reads);
    let mut size = 0;
    for _ in 0..reads {
        let t = Instant::now();
        let r = tower.call("GET", &path, None);
        times.push(t.elapsed());
        assert_eq!(r.status, 200);
        size = r.body.len();
    }
    let rollout = (
        percentile(&mut times, 50.0),
        percentile(&mut times, 99.0),
        size,
    );
    Figures {
        onboard_per_s,
        query,
        rollout,
    }
}

fn main() {
    let sites = env("BENCH_SITES", 10_000);
    let reads = env("BENCH_READS", 200);
    let up = Upstream::start().expect("docker-registry and skopeo");
    let img = kit::oci::image(7, &[4 << 10], "amd64");
    up.put(&img, "bench/app:v1");
    let image = format!("{}/bench/app:v1", up.addr);
    let url = kit::postgres::database().expect("PostgreSQL 15");

    let mut rows = Vec::new();
    for (name, database) in [("embedded (sled)", None), ("PostgreSQL 15", Some(url))] {
        let tower = Towerd::start_in(
            database,
            &[
                "--insecure-registry",
                &up.addr,
                "--retry-first",
                "30s",
                "--retry-max",
                "5m",
            ],
            "",
        );
        eprintln!("{name}: onboarding {sites} sites...");
        let f = measure(&tower, sites, reads, &image);
        rows.push((name, f));
    }
    println!("\ntower API, {sites} sites, {reads} reads each (ms; one client at a time)\n");
    println!(
        "| store | onboarding | query: 1 region (p50 / p99) | GET rollout to all (p50 / p99) |"
    );
    println!("|---|---|---|---|");
    for (name, f) in &rows {
        println!(
            "| {name} | {:.0} sites/s | {:.1} / {:.1} ({} sites) | {:.1} / {:.1} ({} KiB) |",
            f.onboard_per_s,
            f.query.0,
            f.query.1,
            f.query.2,
            f.rollout.0,
            f.rollout.1,
            f.rollout.2 >> 10
        );
    }
    let pg = &rows[1].1;
    println!(
        "\nPostgreSQL: query p99 {:.1} ms (aim < 100), rollout p99 {:.1} ms (aim < 300); embedded / PostgreSQL p99: query {:.2}x, rollout {:.2}x",
        pg.query.1,
        pg.rollout.1,
        rows[0].1.query.1 / pg.query.1,
        rows[0].1.rollout.1 / pg.rollout.1
    );
}
