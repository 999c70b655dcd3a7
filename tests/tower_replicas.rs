//! Towers sharing one PostgreSQL database (a server the test binary starts): each answers
//! the whole API, rollout work is shared site by site under leases, and a replica killed
//! with SIGKILL mid-delivery has its sites taken up by another.

mod kit;

use kit::fleet::{apps, blob_status, onboard, received, Upstream};
use kit::node::cluster;
use kit::oci;
use kit::postgres;
use kit::tower::Towerd;
use kit::{Node, NodeOptions};
use serde_json::json;
use std::time::{Duration, Instant};

/// The sites whose lease `holder` has now.
fn leased_by(url: &str, holder: &str) -> Vec<String> {
    postgres::psql(
        url,
        &format!("SELECT key FROM leases WHERE holder = '{holder}' AND expires_at >= now() AND key NOT LIKE 'pull:%' AND key NOT LIKE 'tower:%'"),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn a_replica_killed_mid_delivery_has_its_sites_finished_by_another() {
    let Some(up) = Upstream::start() else {
        return;
    };
    let Some(url) = postgres::database() else {
        return;
    };
    let upstream = up.addr.clone();
    let img = oci::image(81, &[6 << 20, 32 << 10], "amd64");
    up.put(&img, "team/till:v2");
    let total: u64 = img.blobs().map(|b| b.data.len() as u64).sum();
    let args = ["--insecure-registry", upstream.as_str()];
    let mut a = Towerd::start_in(Some(url.clone()), &args, "");
    let b = Towerd::start_in(Some(url.clone()), &args, "");
    assert_ne!(a.holder, b.holder);

    // Six sites, one of three nodes, onboarded through both replicas.
    let singles: Vec<Node> = (0..5)
        .map(|_| Node::start(NodeOptions::default()))
        .collect();
    let trio = cluster(3, &NodeOptions::default());
    let mut ids = Vec::new();
    for (i, node) in singles.iter().enumerate() {
        let via = if i % 2 == 0 { &a } else { &b };
        ids.push(onboard(
            via,
            json!({"name": format!("till-{i}"), "nodes": [node.api.to_string()], "labels": {"kind": "till"}}),
        ));
    }
    let trio_nodes: Vec<String> = trio.iter().map(|n| n.api.to_string()).collect();
    ids.push(onboard(
        &b,
        json!({"name": "till-trio", "nodes": trio_nodes, "labels": {"kind": "till"}}),
    ));
    // Each replica answers the whole inventory.
    for tower in [&a, &b] {
        let listing = tower.expect("GET", "/sites", None, 200);
        assert_eq!(listing["total"], 6, "{listing}");
    }

    // 1 MiB/s to each site: about 6 s each, long enough to kill a replica mid-way.
    let created = a.expect(
        "POST",
        "/rollouts",
        Some(&json!({
            "application": "till",
            "images": [format!("{upstream}/team/till:v2")],
            "selector": {"labels.kind": "till"},
            "max_parallel": 6,
            "bandwidth_bytes_per_second": 1 << 20
        })),
        201,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/rollouts/{id}");
    // B answers for a rollout A created.
    assert_eq!(b.expect("GET", &path, None, 200)["id"], id.as_str());

    // A works some sites, and a MiB of the big layer of one of them has arrived: then A
    // dies, in the middle of that layer.
    let all: Vec<&Node> = singles.iter().chain(trio.iter()).collect();
    let node_of = |site: &str| -> Vec<&Node> {
        match ids.iter().position(|s| s == site) {
            Some(5) => trio.iter().collect(),
            Some(i) => vec![&singles[i]],
            None => panic!("unknown site {site}"),
        }
    };
    let layer = &img.layers[0];
    let held = |site: &str| -> u64 {
        node_of(site)
            .iter()
            .map(|n| {
                let s = blob_status(n, &layer.digest);
                if s.present {
                    layer.data.len() as u64
                } else {
                    s.offset
                }
            })
            .max()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let mine = leased_by(&url, &a.holder);
        let started = mine.iter().find(|site| {
            let got = held(site);
            got >= 1 << 20 && got < layer.data.len() as u64 - (1 << 20)
        });
        if let Some(site) = started {
            break site.clone();
        }
        assert!(
            Instant::now() < deadline,
            "replica A delivered no MiB to a site it leased"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    a.kill9();
    let at_kill = held(&victim);
    assert!(
        at_kill < layer.data.len() as u64,
        "killed mid-layer: {at_kill} of {}",
        layer.data.len()
    );
    let killed = Instant::now();

    // B takes the dead replica's sites up (their leases expire) and completes it.
    let done = b.wait_for(
        &path,
        Duration::from_secs(60),
        "the rollout complete",
        |r| r["status"] == "complete",
    );
    let done_after = killed.elapsed();
    assert_eq!(done["totals"]["scheduled"], 6, "{done:#}");
    assert!(
        leased_by(&url, &a.holder).is_empty(),
        "the dead replica's leases expired"
    );
    let pinned = format!("{upstream}/team/till@{}", img.digest);
    for node in &singles {
        assert_eq!(apps(node), vec![("till".to_owned(), vec![pinned.clone()])]);
    }
    // Every node holds the image: its manifest is served by each, single or of the trio.
    let manifest = format!("/v2/team/till/manifests/{}?ns={upstream}", img.digest);
    for node in &all {
        assert_eq!(
            kit::node::served(node, &manifest),
            img.digest,
            "{}",
            node.addr
        );
    }
    let leader = &trio[kit::node::leader(&trio.iter().collect::<Vec<_>>())];
    assert_eq!(
        apps(leader),
        vec![("till".to_owned(), vec![pinned.clone()])]
    );
    // Each site lacked the whole image; what was sent stays within 1.1x of it, the
    // interrupted site resumed from what it held.
    let sent: u64 = all.iter().map(|n| received(n)).sum();
    let lacked = 6 * total;
    assert!(
        sent as f64 <= 1.1 * lacked as f64,
        "sent {sent} bytes for {lacked} lacked"
    );
    assert!(b.log().contains("site scheduled"), "B worked sites");
    eprintln!(
        "killed A with {at_kill} of the layer's {} bytes at site {victim}; complete {:?} later; sent {sent} bytes for {lacked} lacked ({:.3}x)",
        layer.data.len(),
        done_after,
        sent as f64 / lacked as f64
    );
}

#[test]
fn one_name_onboarded_through_two_replicas_at_once_is_taken_once() {
    let Some(url) = postgres::database() else {
        return;
    };
    let a = Towerd::start_in(Some(url.clone()), &[], "");
    let b = Towerd::start_in(Some(url.clone()), &[], "");
    for round in 0..10 {
        let body = json!({"name": format!("twin-{round}"), "nodes": ["127.0.0.1:9"]});
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let calls: Vec<_> = [&a, &b]
                .into_iter()
                .map(|t| {
                    let body = &body;
                    s.spawn(move || t.call("POST", "/sites", Some(body)).status)
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, [201, 409], "round {round}: {statuses:?}");
    }
    for tower in [&a, &b] {
        assert_eq!(tower.expect("GET", "/sites", None, 200)["total"], 10);
        // The status page too.
        let page = kit::request(tower.addr, "GET", "/", &[], b"");
        assert_eq!(page.status, 200);
    }
}

/// Three replicas whose registries form one site: an image pushed to one replica's
/// registry is held by all, so a rollout created through another sends it to a site
/// with no upstream, whichever replica works the site.
#[test]
fn replicas_whose_registries_form_one_site_roll_out_what_was_pushed_to_any() {
    use kit::tools::{require, run};
    let (Some(_), Some(_)) = (require("skopeo"), require("htpasswd")) else {
        return;
    };
    let Some(url) = postgres::database() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let users = work.path().join("htpasswd");
    run(std::process::Command::new("htpasswd")
        .args(["-cbB"])
        .arg(&users)
        .args(["ci-bot", "replica-push-pw"]));
    let more = format!(
        "[registry.push]\nenabled = true\n[registry.auth]\nhtpasswd = {:?}\n",
        users.display().to_string()
    );
    let towers = Towerd::replicas(3, &url, &[], &more);
    // Pushed once the registries' site has elected its leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leaders: Vec<u64> = towers
            .iter()
            .map(|t| {
                kit::grpc::rt().block_on(async {
                    let mut c = kit::grpc::connect(t.registry_api).await;
                    kit::grpc::status(&mut c).await.leader_id
                })
            })
            .collect();
        if leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "no leader: {leaders:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let image = oci::image(91, &[700 << 10, 20 << 10], "amd64");
    let dest = format!("{}/team/kiosk:v5", towers[0].registry);
    oci::upload(work.path(), &image, &dest, Some("ci-bot:replica-push-pw"));
    // Held by every replica's registry node.
    for t in &towers {
        assert_eq!(
            kit::node::served_at(t.registry, "/v2/team/kiosk/manifests/v5"),
            image.digest
        );
    }
    let sites: Vec<Node> = (0..3)
        .map(|_| Node::start(NodeOptions::default()))
        .collect();
    for (i, node) in sites.iter().enumerate() {
        onboard(
            &towers[i],
            json!({"name": format!("kiosk-{i}"), "nodes": [node.api.to_string()], "labels": {}}),
        );
    }
    let created = towers[1].expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": "kiosk", "images": ["team/kiosk:v5"], "selector": {}})),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    let done = towers[2].wait_for(&path, Duration::from_secs(60), "complete", |r| {
        r["status"] == "complete"
    });
    assert_eq!(done["totals"]["scheduled"], 3);
    for node in &sites {
        assert_eq!(
            kit::node::served(node, "/v2/team/kiosk/manifests/v5"),
            image.digest
        );
    }
    for t in &towers {
        assert!(
            !t.log().contains("fetched from upstream"),
            "a replica's registry asked an upstream:\n{}",
            t.log()
        );
    }
}

/// A rollout cancelled through one replica while another works its sites: that one stops
/// its workers and puts its sites back to waiting, and the cancel stands on both.
#[test]
fn a_cancel_through_one_replica_stops_the_work_of_another() {
    let Some(up) = Upstream::start() else {
        return;
    };
    let Some(url) = postgres::database() else {
        return;
    };
    let img = oci::image(83, &[4 << 20], "amd64");
    up.put(&img, "team/slow:v1");
    let args = ["--insecure-registry", up.addr.as_str()];
    let a = Towerd::start_in(Some(url.clone()), &args, "");
    let b = Towerd::start_in(Some(url.clone()), &args, "");
    let sites: Vec<Node> = (0..4)
        .map(|_| Node::start(NodeOptions::default()))
        .collect();
    for (i, node) in sites.iter().enumerate() {
        onboard(
            &a,
            json!({"name": format!("slow-{i}"), "nodes": [node.api.to_string()], "labels": {}}),
        );
    }
    let created = a.expect(
        "POST",
        "/rollouts",
        Some(
            &json!({"application": "slow", "images": [format!("{}/team/slow:v1", up.addr)],
                     "selector": {}, "max_parallel": 4, "bandwidth_bytes_per_second": 256 << 10}),
        ),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    // Both replicas work sites (each takes its share: 2 of the 4 at once).
    let deadline = Instant::now() + Duration::from_secs(30);
    while leased_by(&url, &a.holder).is_empty() || leased_by(&url, &b.holder).is_empty() {
        assert!(
            Instant::now() < deadline,
            "both replicas never worked at once"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cancelled = b.expect("DELETE", &path, None, 200);
    assert_eq!(cancelled["status"], "cancelled");
    // A reads the cancel, stops, and writes its sites back to waiting; nothing is in
    // flight, as either replica shows it.
    for tower in [&a, &b] {
        let r = tower.wait_for(&path, Duration::from_secs(20), "no site in flight", |r| {
            r["totals"]["delivering"] == 0 && r["totals"]["present"] == 0
        });
        assert_eq!(r["status"], "cancelled", "{r:#}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(leased_by(&url, &a.holder).is_empty() && leased_by(&url, &b.holder).is_empty()) {
        assert!(Instant::now() < deadline, "leases kept after the cancel");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        a.log().contains("rollout cancelled by another tower"),
        "{}",
        a.log()
    );
}
