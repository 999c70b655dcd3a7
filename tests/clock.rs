//! Time that a bad clock cannot bend: a 3-node site whose node 3 keeps a wrong wall clock
//! (Debian's libfaketime, preloaded into that process only) leads the site, and grace
//! periods still count real elapsed time.

mod kit;

use kit::grpc::{self, rt, watch_events};
use kit::node::{cluster_with, leader, metric, served};
use kit::oci;
use kit::{Node, NodeOptions};
use site_api::pb;
use std::time::{SystemTime, UNIX_EPOCH};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const DAY: f64 = 86_400.0;

/// The environment that sets a process's wall clock `offset` from the real one (e.g.
/// `+1d`), or `None` (skip) without libfaketime; under `CI=true` that fails.
fn faketime(offset: &str) -> Option<Vec<(String, String)>> {
    kit::tools::require("faketime")?;
    assert!(
        std::path::Path::new(LIBFAKETIME).is_file(),
        "faketime is installed but {LIBFAKETIME} is not"
    );
    Some(vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        ("FAKETIME".into(), offset.into()),
        // Only the wall clock is wrong: a monotonic clock has no date to be wrong about.
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

/// A site of three nodes with a 15 minute grace period (and room: no disk pressure
/// evicts), node 3 running under `env`.
fn site(env: Vec<(String, String)>) -> Vec<Node> {
    cluster_with(3, |id| NodeOptions {
        grace: Some("15m".into()),
        capacity: Some(1 << 30),
        env: if id == 3 { env.clone() } else { Vec::new() },
        ..Default::default()
    })
}

fn signal(node: &Node, sig: &str) {
    let pid = node.pid().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Moves the site's leadership until `wanted` accepts the leader's index: the leader is
/// paused (SIGSTOP) until the others elect one of them, then resumed. Returns the
/// leader's index.
fn lead(nodes: &[Node], wanted: impl Fn(usize) -> bool) -> usize {
    let all: Vec<&Node> = nodes.iter().collect();
    for _ in 0..30 {
        let l = leader(&all);
        if wanted(l) {
            return l;
        }
        signal(&nodes[l], "-STOP");
        let rest: Vec<&Node> = (0..nodes.len())
            .filter(|i| *i != l)
            .map(|i| &nodes[i])
            .collect();
        leader(&rest);
        signal(&nodes[l], "-CONT");
    }
    panic!("the leadership never moved where the test needs it");
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn unschedule(api: std::net::SocketAddr, app: &str) {
    grpc::connect(api)
        .await
        .unschedule(pb::UnscheduleRequest {
            application: app.into(),
        })
        .await
        .unwrap();
}

async fn schedule(api: std::net::SocketAddr, app: &str, image: &str) {
    grpc::connect(api)
        .await
        .schedule(pb::ScheduleRequest {
            application: app.into(),
            images: vec![image.into()],
        })
        .await
        .unwrap();
}

/// A sweep through node `l` (the leader); asserts it stamped the real time, within a
/// minute, whatever that node's wall clock says.
async fn sweep_on(nodes: &[Node], l: usize) -> pb::GcReport {
    let report = grpc::run_gc(&mut grpc::connect(nodes[l].api).await, false).await;
    let at = report.at_unix as f64;
    assert!(
        (at - now_secs()).abs() < 60.0,
        "the sweep was stamped {at}, the real time is {}",
        now_secs()
    );
    report
}

/// Whether `seen` holds node 3's report that its clock disagrees by about `skew` s.
fn reported(seen: &[pb::event::Kind], skew: f64) -> bool {
    seen.iter().any(|k| {
        matches!(k, pb::event::Kind::ClockSkew(c)
            if c.node_id == 3 && c.disagrees && (c.skew_ms as f64 / 1000.0 - skew).abs() < 120.0)
    })
}

/// Node 3's clock as its metrics say, and the others' agreement.
fn assert_metrics(nodes: &[Node], skew: f64) {
    let seen = metric(&nodes[2], "site_clock_skew_seconds", &[]).expect("a skew metric");
    assert!(
        (seen - skew).abs() < 120.0,
        "node 3 says {seen} s, not {skew}"
    );
    assert_eq!(metric(&nodes[2], "site_clock_disagrees", &[]), Some(1.0));
    for n in &nodes[..2] {
        let s = metric(n, "site_clock_skew_seconds", &[]).unwrap();
        assert!(s.abs() < 60.0, "{} is {s} s off", n.addr);
        assert_eq!(metric(n, "site_clock_disagrees", &[]), Some(0.0));
    }
    assert!(
        nodes[2]
            .log()
            .contains("wall clock disagrees with the site's log time"),
        "node 3 logs its disagreement"
    );
}

#[test]
fn a_leader_a_day_ahead_keeps_an_image_unscheduled_seconds_before() {
    let Some(env) = faketime("+1d") else { return };
    let nodes = site(env);
    let events = watch_events(&nodes[2], |seen| reported(seen, DAY));
    let img = oci::image(71, &[40 << 10, 30 << 10], "amd64");
    let pinned = format!("team/app@{}", img.digest);
    // A leader with the right time founds the site's time and orders the unschedule.
    let l = lead(&nodes, |i| i != 2);
    rt().block_on(async {
        grpc::deliver_image_to(nodes[l].api, "team/app", &img, "v1").await;
        schedule(nodes[l].api, "pos", &pinned).await;
        unschedule(nodes[l].api, "pos").await;
    });
    // Node 3, whose wall clock is a day ahead, leads the sweep: the grace period of the
    // image unscheduled seconds before has 15 minutes to run.
    let l = lead(&nodes, |i| i == 2);
    let report = rt().block_on(sweep_on(&nodes, l));
    assert!(
        report.manifests.is_empty() && report.bytes_freed == 0,
        "a day-ahead leader's sweep deleted {report:?}"
    );
    assert_eq!(
        leader(&nodes.iter().collect::<Vec<_>>()),
        2,
        "node 3 led throughout"
    );
    for n in &nodes {
        assert_eq!(served(n, "/v2/team/app/manifests/v1"), img.digest);
    }
    assert_metrics(&nodes, DAY);
    let seen = events.join().unwrap();
    assert!(
        reported(&seen, DAY),
        "no clock-skew event from node 3: {seen:?}"
    );
}

#[test]
fn a_leader_a_year_behind_starts_no_grace_period_a_year_early() {
    let Some(env) = faketime("-365d") else { return };
    let nodes = site(env);
    let events = watch_events(&nodes[2], |seen| reported(seen, -365.0 * DAY));
    let img = oci::image(72, &[35 << 10], "amd64");
    let pinned = format!("team/app@{}", img.digest);
    let l = lead(&nodes, |i| i != 2);
    rt().block_on(async {
        grpc::deliver_image_to(nodes[l].api, "team/app", &img, "v1").await;
        schedule(nodes[l].api, "pos", &pinned).await;
    });
    // Node 3, a year behind, leads the unschedule (and a sweep): its entries carry the
    // log's time, not its clock's.
    let l = lead(&nodes, |i| i == 2);
    rt().block_on(async {
        unschedule(nodes[l].api, "pos").await;
        let report = sweep_on(&nodes, l).await;
        assert!(report.manifests.is_empty(), "{report:?}");
    });
    // Back under a leader with the right time (a clock corrected, in effect): the image
    // became unreferenced seconds ago, not a year ago, and stays.
    let l = lead(&nodes, |i| i != 2);
    let report = rt().block_on(sweep_on(&nodes, l));
    assert!(
        report.manifests.is_empty() && report.bytes_freed == 0,
        "the sweep after a year-behind leader deleted {report:?}"
    );
    for n in &nodes {
        assert_eq!(served(n, "/v2/team/app/manifests/v1"), img.digest);
    }
    assert_metrics(&nodes, -365.0 * DAY);
    let seen = events.join().unwrap();
    assert!(
        reported(&seen, -365.0 * DAY),
        "no clock-skew event from node 3: {seen:?}"
    );
}
