//! `/metrics` on real nodes: scraped during a delivery and a pull on a three-node site,
//! every scrape passes `promtool check metrics` (Debian's prometheus package), and the
//! families move as the site works; the pull-through cache counts its fetches and its
//! upstream requests; the alert rules and the systemd unit in `deploy/` check clean.

mod kit;

use kit::grpc::{self, deliver_image_to as deliver};
use kit::node::{cluster, leader, metric_in, served};
use kit::oci;
use kit::tools::require;
use kit::upstream::ReferenceRegistry;
use kit::{request, Node, NodeOptions};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn scrape(node: &Node) -> String {
    let r = request(node.addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    String::from_utf8(r.body).unwrap()
}

fn v(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_in(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

/// `promtool check metrics` finds nothing to say about `text`.
fn promtool_clean(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

/// Waits (bounded, 30 s) until `node`'s metrics satisfy `ok`; returns them.
fn until(node: &Node, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(node);
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never held:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_three_node_sites_metrics_move_with_a_delivery_and_a_pull() {
    let Some(_) = require("promtool") else { return };
    let nodes = cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let f = (l + 1) % 3;
    let before: Vec<String> = nodes.iter().map(scrape).collect();
    for text in &before {
        promtool_clean(text);
    }

    // Scraped all along the delivery.
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (addr, stop) = (nodes[l].addr, stop.clone());
        std::thread::spawn(move || {
            let mut texts = Vec::new();
            while !stop.load(Ordering::Relaxed) && texts.len() < 500 {
                texts.push(
                    String::from_utf8(request(addr, "GET", "/metrics", &[], b"").body).unwrap(),
                );
            }
            texts
        })
    };
    let image = oci::image(31, &[1 << 20, 200 << 10], "amd64");
    let blob_bytes: u64 = image.blobs().map(|b| b.data.len() as u64).sum();
    let blobs = image.blobs().count() as f64;
    grpc::rt().block_on(deliver(nodes[l].api, "team/app", &image, "v1"));
    stop.store(true, Ordering::Relaxed);
    let during = scraper.join().unwrap();
    assert!(!during.is_empty());
    promtool_clean(&during[during.len() / 2]);

    // The pull, from a follower.
    assert_eq!(served(&nodes[f], "/v2/team/app/manifests/v1"), image.digest);
    for b in image.blobs() {
        assert_eq!(
            served(&nodes[f], &format!("/v2/team/app/blobs/{}", b.digest)),
            b.digest
        );
    }

    let at_leader = scrape(&nodes[l]);
    promtool_clean(&at_leader);
    let ok_blobs = [("kind", "blob"), ("outcome", "ok")];
    assert_eq!(
        v(&at_leader, "site_deliveries_total", &ok_blobs)
            - metric_in(&before[l], "site_deliveries_total", &ok_blobs).unwrap_or(0.0),
        blobs
    );
    assert!(
        v(
            &at_leader,
            "site_deliveries_total",
            &[("kind", "manifest"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert_eq!(
        v(&at_leader, "site_delivered_bytes_total", &[])
            - v(&before[l], "site_delivered_bytes_total", &[]),
        blob_bytes as f64
    );
    assert_eq!(v(&at_leader, "site_raft_leader", &[]), 1.0);

    let at_follower = scrape(&nodes[f]);
    promtool_clean(&at_follower);
    let get = |route| [("method", "GET"), ("route", route), ("class", "2xx")];
    assert!(v(&at_follower, "site_http_requests_total", &get("manifest")) >= 1.0);
    assert!(v(&at_follower, "site_http_requests_total", &get("blob")) >= blobs);
    assert!(
        v(
            &at_follower,
            "site_http_request_duration_seconds_count",
            &get("blob")
        ) >= blobs
    );
    let inf = [
        ("method", "GET"),
        ("route", "blob"),
        ("class", "2xx"),
        ("le", "+Inf"),
    ];
    assert!(
        v(
            &at_follower,
            "site_http_request_duration_seconds_bucket",
            &inf
        ) >= blobs
    );
    assert!(
        v(&at_follower, "site_http_blob_bytes_served_total", &[])
            - v(&before[f], "site_http_blob_bytes_served_total", &[])
            >= blob_bytes as f64
    );
    assert_eq!(v(&at_follower, "site_raft_leader", &[]), 0.0);

    // Every node: the same term and leader count, the image held whole, every peer up.
    let mut leaders = 0.0;
    let terms: Vec<f64> = nodes
        .iter()
        .map(|n| {
            let text = until(n, "every blob held", |t| {
                metric_in(t, "site_blobs_held", &[]) == Some(blobs)
                    && metric_in(t, "site_blobs_missing", &[]) == Some(0.0)
            });
            assert_eq!(v(&text, "site_blob_bytes_held", &[]), blob_bytes as f64);
            assert_eq!(v(&text, "site_images", &[("state", "eligible")]), 1.0);
            assert_eq!(v(&text, "site_images", &[("state", "live")]), 0.0);
            assert!(
                v(&text, "site_raft_commit_index", &[]) >= v(&text, "site_raft_applied_index", &[])
            );
            assert!(
                v(&text, "site_disk_capacity_bytes", &[]) >= v(&text, "site_disk_free_bytes", &[])
            );
            assert!(v(&text, "site_disk_free_bytes", &[]) > 0.0);
            for id in 1..=3 {
                assert_eq!(
                    v(&text, "site_peer_up", &[("node", &id.to_string())]),
                    1.0,
                    "{text}"
                );
            }
            leaders += v(&text, "site_raft_leader", &[]);
            v(&text, "site_raft_term", &[])
        })
        .collect();
    assert_eq!(leaders, 1.0);
    assert!(
        terms.iter().all(|t| *t == terms[0] && *t >= 1.0),
        "{terms:?}"
    );

    // Scheduled, the image is live; a GC run counts on every node.
    grpc::rt().block_on(async {
        let mut c = grpc::connect(nodes[f].api).await;
        c.schedule(site_api::pb::ScheduleRequest {
            application: "pos".into(),
            images: vec![format!("team/app@{}", image.digest)],
        })
        .await
        .unwrap();
        grpc::run_gc(&mut c, false).await;
    });
    for n in &nodes {
        let text = until(n, "the image live and a GC run counted", |t| {
            metric_in(t, "site_images", &[("state", "live")]) == Some(1.0)
                && metric_in(t, "site_gc_runs_total", &[]).unwrap_or(0.0) >= 1.0
        });
        promtool_clean(&text);
    }
}

#[test]
fn the_pull_through_cache_counts_its_fetches_and_upstream_requests() {
    let Some(_) = require("promtool") else { return };
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let image = oci::image(32, &[300 << 10], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let node = Node::start(NodeOptions::pulling(registry.addr, "IfNotPresent", ""));
    assert_eq!(served(&node, "/v2/team/app/manifests/v1"), image.digest);
    for b in image.blobs() {
        assert_eq!(
            served(&node, &format!("/v2/team/app/blobs/{}", b.digest)),
            b.digest
        );
    }
    assert_eq!(
        request(node.addr, "GET", "/v2/team/app/manifests/nope", &[], b"").status,
        404
    );
    let upstream = registry.addr.to_string();
    let text = until(&node, "fetches counted", |t| {
        metric_in(
            t,
            "site_pull_fetches_total",
            &[("kind", "blob"), ("outcome", "ok")],
        )
        .unwrap_or(0.0)
            >= image.blobs().count() as f64
    });
    promtool_clean(&text);
    assert!(
        v(
            &text,
            "site_pull_fetches_total",
            &[("kind", "manifest"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(
        v(
            &text,
            "site_pull_fetches_total",
            &[("kind", "manifest"), ("outcome", "NOT_FOUND")]
        ) >= 1.0
    );
    assert!(
        v(
            &text,
            "site_upstream_requests_total",
            &[("registry", &upstream), ("outcome", "ok")]
        ) >= 1.0 + image.blobs().count() as f64
    );
    assert!(
        v(
            &text,
            "site_upstream_requests_total",
            &[("registry", &upstream), ("outcome", "NOT_FOUND")]
        ) >= 1.0
    );
}

#[test]
fn the_alert_rules_and_the_systemd_unit_check_clean() {
    let root = env!("CARGO_MANIFEST_DIR");
    if require("promtool").is_some() {
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(format!("{root}/deploy/site-registry.rules.yml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("SUCCESS: 7 rules found"), "{said}");
    }
    if require("systemd-analyze").is_some() {
        // The unit as installed, its binary where this build put it.
        let unit = std::fs::read_to_string(format!("{root}/deploy/site-agent.service"))
            .unwrap()
            .replace(
                "/usr/local/bin/site-agent",
                env!("CARGO_BIN_EXE_site-agent"),
            );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site-agent.service");
        std::fs::write(&path, unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && said.trim().is_empty(), "{said}");
    }
}

#[test]
fn the_scrub_reports_its_progress_and_a_corrupt_copy() {
    let Some(_) = require("promtool") else { return };
    let nodes = kit::node::cluster(
        3,
        &NodeOptions {
            scrub: Some("1s".into()),
            ..Default::default()
        },
    );
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let image = oci::image(33, &[1 << 20, 30 << 10], "amd64");
    let blobs = image.blobs().count() as f64;
    grpc::rt().block_on(deliver(nodes[l].api, "team/s", &image, "v1"));
    let copy = &nodes[(l + 1) % 3];
    // A whole pass over every blob, each found whole.
    let text = until(copy, "a whole scrub pass", |t| {
        metric_in(t, "site_scrub_pass_blobs", &[]) == Some(blobs)
            && metric_in(t, "site_scrub_pass_done_blobs", &[]) == Some(blobs)
            && metric_in(t, "site_scrub_blobs_checked_total", &[]).unwrap_or(0.0) >= blobs
    });
    promtool_clean(&text);
    assert_eq!(v(&text, "site_scrub_corrupt_copies_total", &[]), 0.0);

    // One byte of the layer's copy flips on disk: found, counted, fetched again.
    let layer = &image.layers[0].digest;
    let path = copy
        .blob_files()
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.ends_with(&layer[7..]))
        .expect("the layer's file");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, 4096).unwrap();
        f.write_at(&[!byte[0]], 4096).unwrap();
    }
    let text = until(copy, "the corrupt copy counted and repaired", |t| {
        metric_in(t, "site_scrub_corrupt_copies_total", &[]).unwrap_or(0.0) >= 1.0
            && metric_in(t, "site_blobs_missing", &[]) == Some(0.0)
            && metric_in(t, "site_blobs_held", &[]) == Some(blobs)
    });
    promtool_clean(&text);
}
