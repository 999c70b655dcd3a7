//! The tower's fleet service end to end: a real `towerd`, real `site-agent` sites (single
//! nodes and a 3-node site) on loopback, Debian's `docker-registry` as the upstream.
//! Every test runs twice: on the embedded store, and on PostgreSQL (a server the test
//! binary starts, a database per test).

mod kit;

use kit::fleet::{apps, blob_status, onboard, received, Upstream};
use kit::node::{cluster, leader, status};
use kit::oci::{self, Image};
use kit::proxy::{CountingProxy, CuttingProxy};
use kit::tower::{Backend, Towerd};
use kit::{request, Node, NodeOptions};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn ids(listing: &Value) -> BTreeSet<String> {
    let sites = listing["sites"].as_array().expect("sites");
    assert_eq!(listing["total"], sites.len(), "{listing}");
    sites
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn query(tower: &Towerd, filter: Value) -> BTreeSet<String> {
    ids(&tower.expect(
        "POST",
        "/sites/query",
        Some(&json!({ "filter": filter })),
        200,
    ))
}

/// The JSON error of a refused call: its code, with a message.
fn refused(tower: &Towerd, method: &str, path: &str, body: &[u8], status: u16) -> String {
    let r = request(
        tower.addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(
        r.status,
        status,
        "{method} {path} {}: {}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let e = r.json();
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{e}"
    );
    e["error"]["code"].as_str().unwrap().to_owned()
}

fn health(tower: &Towerd, id: &str) -> Value {
    tower.expect("GET", &format!("/sites/{id}/health"), None, 200)
}

fn inventory_queries_health_and_refusals(backend: Backend) {
    let Some(tower) = Towerd::start_on(backend, &[]) else {
        return;
    };
    let mut a = Node::start(NodeOptions::default());
    let c = Node::start(NodeOptions::default());
    let mut d = cluster(3, &NodeOptions::default());
    let d_nodes: Vec<String> = d.iter().map(|n| n.api.to_string()).collect();

    let sa = onboard(
        &tower,
        json!({"name": "shop-a", "nodes": [a.api.to_string()], "labels": {"region": "eu"}, "metadata": {"owner": "ops"}}),
    );
    assert!(sa.starts_with("s-"), "a generated id: {sa}");
    let sc = onboard(
        &tower,
        json!({"id": "shop-c", "name": "shop-c", "nodes": [c.api.to_string()], "labels": {"region": "us"}}),
    );
    assert_eq!(sc, "shop-c", "the id given is kept");
    let sd = onboard(
        &tower,
        json!({"name": "ship-d", "nodes": d_nodes, "labels": {"region": "eu", "tier": "gold"}}),
    );
    let got = tower.expect("GET", &format!("/sites/{sa}"), None, 200);
    assert_eq!(got["metadata"]["owner"], "ops");

    // Queries.
    assert_eq!(
        query(&tower, json!({"labels.region": {"$in": ["eu"]}})),
        set(&[&sa, &sd])
    );
    assert_eq!(
        query(
            &tower,
            json!({"$or": [{"labels.tier": "gold"}, {"name": "shop-c"}]})
        ),
        set(&[&sc, &sd])
    );
    assert_eq!(
        query(&tower, json!({"metadata.owner": {"$exists": true}})),
        set(&[&sa])
    );
    assert_eq!(
        query(&tower, json!({"nodes": d_nodes[1].clone()})),
        set(&[&sd])
    );
    assert_eq!(ids(&tower.expect("GET", "/sites", None, 200)).len(), 3);
    // A partial update: a label moves, the rest stays.
    let moved = tower.expect(
        "PUT",
        "/sites/shop-c",
        Some(&json!({"labels": {"region": "eu"}})),
        200,
    );
    assert_eq!(moved["nodes"], json!([c.api.to_string()]));
    assert_eq!(query(&tower, json!({"labels.region": "eu"})).len(), 3);
    tower.expect(
        "PUT",
        "/sites/shop-c",
        Some(&json!({"labels": {"region": "us"}})),
        200,
    );

    // Health: every node of the 3-node site, then one killed.
    let h = tower.wait_for(
        &format!("/sites/{sd}/health"),
        Duration::from_secs(30),
        "the 3-node site healthy, every node caught up",
        |h| {
            h["verdict"] == "healthy"
                && h["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().all(|n| n["apply_lag"] == 0))
        },
    );
    let nodes = h["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes.iter().filter(|n| n["leader"] == true).count(), 1);
    for n in nodes {
        assert_eq!(n["reachable"], true);
        assert!(n["disk_free_bytes"].as_u64().unwrap() > 0, "{n}");
        assert_eq!(n["apply_lag"], 0);
        assert_eq!(n["blobs_missing"], 0);
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
    }
    let refs: Vec<&Node> = d.iter().collect();
    let victim = (leader(&refs) + 1) % 3;
    d[victim].kill9();
    let h = health(&tower, &sd);
    assert_eq!(h["verdict"], "degraded", "{h:#}");
    for (i, n) in h["nodes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(n["address"], d_nodes[i]);
        assert_eq!(n["reachable"], i != victim, "{n}");
    }
    a.kill9();
    assert_eq!(health(&tower, &sa)["verdict"], "down");

    // Refusals change nothing.
    let sites_before = tower.expect("GET", "/sites", None, 200);
    let rollouts_before = tower.expect("GET", "/rollouts", None, 200);
    assert_eq!(rollouts_before["total"], 0);
    for (method, path, body, status, code) in [
        ("POST", "/sites", &b"{\"name\": "[..], 400, "BAD_REQUEST"),
        ("POST", "/sites", b"[1, 2]", 400, "BAD_REQUEST"),
        (
            "POST",
            "/sites",
            br#"{"name": "x", "nodes": ["no-port"]}"#,
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/sites",
            br#"{"name": "x", "nodes": ["h:1"], "colour": "red"}"#,
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/sites",
            br#"{"name": "shop-a", "nodes": ["h:1"]}"#,
            409,
            "CONFLICT",
        ),
        (
            "POST",
            "/sites",
            br#"{"id": "shop-c", "name": "other", "nodes": ["h:1"]}"#,
            409,
            "CONFLICT",
        ),
        ("POST", "/sites/query", b"{\"filter\"", 400, "BAD_REQUEST"),
        (
            "POST",
            "/sites/query",
            br#"{"filter": {"labels.region": {"$regex": "e.*"}}}"#,
            400,
            "BAD_FILTER",
        ),
        (
            "POST",
            "/sites/query",
            br#"{"filter": {"$where": "1"}}"#,
            400,
            "BAD_FILTER",
        ),
        (
            "POST",
            "/sites/query",
            br#"{"filter": {"colour": "red"}}"#,
            400,
            "BAD_FILTER",
        ),
        ("GET", "/sites/nope", b"", 404, "NOT_FOUND"),
        ("PUT", "/sites/nope", b"{}", 404, "NOT_FOUND"),
        ("DELETE", "/sites/nope", b"", 404, "NOT_FOUND"),
        ("GET", "/sites/nope/health", b"", 404, "NOT_FOUND"),
        ("PUT", "/sites/shop-c", br#"{"nodes": []}"#, 400, "BAD_REQUEST"),
        ("PUT", "/sites/shop-c", br#"{"id": "x"}"#, 400, "BAD_REQUEST"),
        ("PUT", "/sites/shop-c", br#"{"name": "shop-a"}"#, 409, "CONFLICT"),
        ("GET", "/rollouts/nope", b"", 404, "NOT_FOUND"),
        ("DELETE", "/rollouts/nope", b"", 404, "NOT_FOUND"),
        ("POST", "/rollouts", b"{", 400, "BAD_REQUEST"),
        (
            "POST",
            "/rollouts",
            br#"{"application": "pos", "images": ["127.0.0.1:1/x:v1"], "selector": {"labels.region": "mars"}}"#,
            400,
            "NO_SITES",
        ),
        (
            "POST",
            "/rollouts",
            br#"{"application": "pos", "images": ["127.0.0.1:1/x:v1"], "selector": {"labels.region": {"$near": 1}}}"#,
            400,
            "BAD_FILTER",
        ),
        (
            "POST",
            "/rollouts",
            br#"{"application": "pos", "images": ["127.0.0.1:1/x:v1"], "selector": {}, "speed": 1}"#,
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/rollouts",
            br#"{"application": "-pos", "images": ["127.0.0.1:1/x:v1"], "selector": {}}"#,
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/rollouts",
            br#"{"application": "pos", "images": ["Not An Image"], "selector": {}}"#,
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/rollouts",
            br#"{"application": "pos", "images": [], "selector": {}}"#,
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/rollouts",
            br#"{"application": "pos", "images": ["127.0.0.1:1/x:v1"]}"#,
            400,
            "BAD_REQUEST",
        ),
        ("GET", "/no/such/route", b"", 404, "NOT_FOUND"),
    ] {
        assert_eq!(
            refused(&tower, method, path, body, status),
            code,
            "{method} {path}"
        );
    }
    // Writes a web page could forge: a body that is not JSON, another site's Origin.
    let plain = request(
        tower.addr,
        "POST",
        "/sites",
        &[("Content-Type", "text/plain")],
        br#"{"name": "forged", "nodes": ["h:1"]}"#,
    );
    assert_eq!(plain.status, 415);
    assert_eq!(plain.json()["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
    let forged = request(
        tower.addr,
        "DELETE",
        &format!("/sites/{sa}"),
        &[("Origin", "http://pages.example")],
        b"",
    );
    assert_eq!(forged.status, 403);
    assert_eq!(forged.json()["error"]["code"], "FORBIDDEN");
    let big = vec![b' '; 3 << 20];
    let too_big = request(
        tower.addr,
        "POST",
        "/sites",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.json()["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(tower.expect("GET", "/sites", None, 200), sites_before);
    assert_eq!(tower.expect("GET", "/rollouts", None, 200), rollouts_before);
    // Sites match, the upstream cannot be reached: accepted, `pulling` with the reason,
    // and no site is worked while its images are not in the tower's registry.
    let pulling = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": "pos", "images": ["127.0.0.1:1/x:v1"], "selector": {"labels.region": "eu"}})),
        201,
    );
    assert_eq!(pulling["status"], "pulling", "{pulling:#}");
    assert_eq!(
        pulling["pulling"]["reason"], "UPSTREAM_UNREACHABLE",
        "{pulling:#}"
    );
    assert_eq!(pulling["requested"], json!(["127.0.0.1:1/x:v1"]));
    let path = format!("/rollouts/{}", pulling["id"].as_str().unwrap());
    let again = tower.wait_for(&path, Duration::from_secs(20), "a second attempt", |r| {
        r["pulling"]["retries"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(again["status"], "pulling");
    for site in again["sites"].as_array().unwrap() {
        assert_eq!(site["state"], "waiting", "a site was worked: {again:#}");
    }
    tower.expect("DELETE", &path, None, 200);

    // Removal, and the inventory survives a restart.
    tower.expect("DELETE", "/sites/shop-c", None, 200);
    refused(&tower, "GET", "/sites/shop-c", b"", 404);
    let before = tower.expect("GET", "/sites", None, 200);
    let mut tower = tower;
    assert!(tower.terminate().success());
    tower.restart();
    assert_eq!(tower.expect("GET", "/sites", None, 200), before);
    assert_eq!(ids(&before), set(&[&sa, &sd]));
}

fn site_state<'a>(rollout: &'a Value, site: &str) -> &'a Value {
    rollout["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site_id"] == site)
        .unwrap_or_else(|| panic!("site {site} in the rollout: {rollout:#}"))
}

/// Blob GETs the upstream saw, per digest.
fn blob_gets(proxy: &CountingProxy, digest: &str) -> usize {
    proxy
        .requests()
        .lines()
        .filter(|l| l.starts_with("GET ") && l.contains(&format!("/blobs/{digest}")))
        .count()
}

/// The two images of the application: `pos` and an agent that shares its big layer.
fn application() -> (Image, Image) {
    let pos = oci::image(61, &[3 << 20, 40 << 10], "amd64");
    let mut agent = oci::image(62, &[24 << 10], "amd64");
    agent.layers.insert(0, pos.layers[0].clone());
    (pos, oci::rebuild(agent))
}

fn a_rollout_reaches_exactly_the_matching_sites_through_outages_and_cuts(backend: Backend) {
    let Some(up) = Upstream::start() else {
        return;
    };
    let (pos, agent) = application();
    up.put(&pos, "team/pos:v3");
    up.put(&agent, "team/agent:v1");
    // The tower reaches the upstream through a proxy that sees every request.
    let counting = CountingProxy::start(up.registry.addr);
    let upstream = counting.addr.to_string();
    let Some(tower) = Towerd::start_on(backend, &["--insecure-registry", &upstream]) else {
        return;
    };

    let a = Node::start(NodeOptions::default());
    // A's link breaks after 2.5 MiB, mid-way through the 3 MiB layer (sent in messages
    // of 1 MiB, so that the site holds some of it).
    let cut = CuttingProxy::start(a.api, 5 << 19);
    let mut b = Node::start(NodeOptions::default());
    let c = Node::start(NodeOptions::default());
    let d = cluster(3, &NodeOptions::default());
    let sa = onboard(
        &tower,
        json!({"name": "a", "nodes": [cut.addr.to_string()], "labels": {"region": "eu"}}),
    );
    let sb = onboard(
        &tower,
        json!({"name": "b", "nodes": [b.api.to_string()], "labels": {"region": "eu"}}),
    );
    let sc = onboard(
        &tower,
        json!({"name": "c", "nodes": [c.api.to_string()], "labels": {"region": "us"}}),
    );
    let d_nodes: Vec<String> = d.iter().map(|n| n.api.to_string()).collect();
    let sd = onboard(
        &tower,
        json!({"name": "d", "nodes": d_nodes, "labels": {"region": "eu"}}),
    );
    // B is down when the rollout starts.
    assert!(b.terminate().success());

    let images = [
        format!("{upstream}/team/pos:v3"),
        format!("{upstream}/team/agent:v1"),
    ];
    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({
            "application": "pos",
            "images": images,
            "selector": {"labels.region": {"$eq": "eu"}},
            "max_parallel": 3
        })),
        201,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let pinned = [
        format!("{upstream}/team/pos@{}", pos.digest),
        format!("{upstream}/team/agent@{}", agent.digest),
    ];
    assert_eq!(created["images"], json!(pinned), "tags resolved once");
    let selected: BTreeSet<String> = created["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(selected, set(&[&sa, &sb, &sd]), "exactly the eu sites");
    let path = format!("/rollouts/{id}");

    // B fails while down; A's link breaks mid-blob.
    let r = tower.wait_for(&path, Duration::from_secs(60), "B and A failed", |r| {
        site_state(r, &sb)["state"] == "failed" && site_state(r, &sa)["state"] == "failed"
    });
    for s in [&sa, &sb] {
        let s = site_state(&r, s);
        assert_eq!(s["reason"], "SITE_UNREACHABLE", "{s}");
        assert!(s["retries"].as_u64().unwrap() >= 1, "{s}");
    }
    let total: u64 = pos.blobs().map(|b| b.data.len() as u64).sum::<u64>()
        + agent.config.data.len() as u64
        + agent.layers[1].data.len() as u64;
    let partial = received(&a);
    assert!(
        partial > 0 && partial < total,
        "the cut came mid-way: {partial} of {total} bytes at A"
    );
    let big = &pos.layers[0];
    let held = blob_status(&a, &big.digest);
    assert!(
        !held.present && held.offset > 0 && held.offset < big.data.len() as u64,
        "the cut came mid-blob: A holds {} of {} bytes of the big layer",
        held.offset,
        big.data.len()
    );
    assert!(
        cut.refused() > 0,
        "the tower tried A again while the link was down"
    );

    // E is onboarded in eu, B comes back, A's link heals: all are served.
    let e = Node::start(NodeOptions::default());
    let se = onboard(
        &tower,
        json!({"name": "e", "nodes": [e.api.to_string()], "labels": {"region": "eu"}}),
    );
    b.restart_same_ports();
    cut.heal();
    let done = tower.wait_for(
        &path,
        Duration::from_secs(120),
        "every eu site scheduled, E included",
        |r| r["status"] == "complete" && r["totals"]["selected"] == 4,
    );
    assert_eq!(done["totals"]["scheduled"], 4, "{done:#}");
    assert_eq!(done["totals"]["failed"], 0);
    assert!(done["sites"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["site_id"] != sc));
    assert!(site_state(&done, &se)["state"] == "scheduled");

    // A got only the rest after the cut; every eu site runs the application.
    assert_eq!(
        received(&a),
        total,
        "A was sent the remainder, not the whole"
    );
    let mut sorted = pinned.to_vec();
    sorted.sort();
    let expected = vec![("pos".to_owned(), sorted)];
    for node in [&a, &b, &e] {
        assert_eq!(apps(node), expected, "{}", node.api);
        assert!(received(node) > 0);
        let got = request(
            node.addr,
            "GET",
            &format!("/v2/{upstream}/team/pos/manifests/v3"),
            &[],
            b"",
        );
        assert_eq!(got.status, 200, "the tag is served at {}", node.addr);
        assert_eq!(kit::digest(&got.body), pos.digest);
    }
    for node in &d {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while apps(node) != expected {
            assert!(std::time::Instant::now() < deadline, "{} applied", node.api);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // C (us) was left alone.
    assert!(apps(&c).is_empty());
    assert_eq!(received(&c), 0);
    // The upstream was asked for each blob once, for all five sites.
    let blobs: BTreeSet<&str> = pos
        .blobs()
        .chain(agent.blobs())
        .map(|b| b.digest.as_str())
        .collect();
    assert_eq!(blobs.len(), 5, "the agent shares pos's big layer");
    for digest in blobs {
        assert_eq!(blob_gets(&counting, digest), 1, "GETs of {digest}");
    }

    // Cancelling keeps what the sites hold.
    let cancelled = tower.expect("DELETE", &path, None, 200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(apps(&a), expected);
}

fn the_tower_finishes_a_rollout_after_kill_9(backend: Backend) {
    let Some(up) = Upstream::start() else {
        return;
    };
    let upstream = up.addr.clone();
    let img = oci::image(71, &[4 << 20], "amd64");
    up.put(&img, "team/till:v1");
    let total: u64 = img.blobs().map(|b| b.data.len() as u64).sum();
    let Some(mut tower) = Towerd::start_on(backend, &["--insecure-registry", &upstream]) else {
        return;
    };
    let sites = [
        Node::start(NodeOptions::default()),
        Node::start(NodeOptions::default()),
    ];
    for (i, node) in sites.iter().enumerate() {
        onboard(
            &tower,
            json!({"name": format!("till-{i}"), "nodes": [node.api.to_string()], "labels": {"kind": "till"}}),
        );
    }
    // 1 MiB/s to each site: about 4 s per site.
    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({
            "application": "till",
            "images": [format!("{upstream}/team/till:v1")],
            "selector": {"labels.kind": "till"},
            "bandwidth_bytes_per_second": 1 << 20
        })),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    // Killed once half a MiB of the layer reached a site (the counter of received bytes
    // moves only when a stream ends; the upload's offset moves as bytes arrive).
    let layer = &img.layers[0].digest;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sites
        .iter()
        .all(|n| blob_status(n, layer).offset < 512 << 10)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "half a MiB of the layer reached no site"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    tower.kill9();
    // What each site holds, once it has seen its stream break: its counter of received
    // bytes then matches the blobs and offsets it reports.
    let holds = |n: &Node| -> u64 {
        img.blobs()
            .map(|b| {
                let s = blob_status(n, &b.digest);
                if s.present {
                    b.data.len() as u64
                } else {
                    s.offset
                }
            })
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sites.iter().any(|n| received(n) != holds(n)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sites did not record the broken streams"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let held: Vec<u64> = sites.iter().map(received).collect();
    assert!(
        held.iter().all(|h| *h < total),
        "killed mid-rollout: {held:?} of {total}"
    );
    tower.restart();
    let restarted = std::time::Instant::now();
    let done = tower.wait_for(
        &path,
        Duration::from_secs(60),
        "the rollout complete",
        |r| r["status"] == "complete",
    );
    assert_eq!(done["totals"]["scheduled"], 2);
    // The cap held: the rest of the blob reached each site at 1 MiB/s at most.
    let rest = total - held.iter().max().unwrap();
    let least = Duration::from_secs_f64(rest as f64 / f64::from(1 << 20) * 0.9);
    assert!(
        restarted.elapsed() >= least,
        "{rest} bytes in {:?}, faster than the cap",
        restarted.elapsed()
    );
    for node in &sites {
        assert_eq!(
            received(node),
            total,
            "each site was sent the rest of what it held, nothing twice"
        );
        assert_eq!(
            apps(node),
            vec![(
                "till".to_owned(),
                vec![format!("{upstream}/team/till@{}", img.digest)]
            )]
        );
    }
}

fn towerctl_is_the_fleet_apis_client(backend: Backend) {
    use kit::tools::{ok, towerctl};
    let Some(up) = Upstream::start() else {
        return;
    };
    let upstream = up.addr.clone();
    let img = oci::image(81, &[256 << 10], "amd64");
    up.put(&img, "team/kiosk:v2");
    let Some(tower) = Towerd::start_on(backend, &["--insecure-registry", &upstream]) else {
        return;
    };
    let url = format!("http://{}", tower.addr);
    let node = Node::start(NodeOptions::default());
    let api = node.api.to_string();
    let ctl = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--tower", url.as_str()]);
        towerctl(&all)
    };
    let code = |out: &std::process::Output| out.status.code().unwrap_or(-1);

    let added = ok(ctl(&[
        "sites",
        "add",
        "kiosk-1",
        "--node",
        &api,
        "--label",
        "region=eu",
        "--meta",
        "owner=ops",
    ]));
    assert!(added.lines().next().unwrap().starts_with("ID "), "{added}");
    assert!(
        added.contains("kiosk-1") && added.contains("region=eu"),
        "{added}"
    );
    let again = ctl(&["sites", "add", "kiosk-1", "--node", &api]);
    assert_eq!(code(&again), 11, "the tower refused it");
    assert!(String::from_utf8_lossy(&again.stderr).contains("CONFLICT"));

    let listed: Value = serde_json::from_str(&ok(ctl(&["sites", "list", "--json"]))).unwrap();
    assert_eq!(listed["total"], 1);
    let id = listed["sites"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["sites"][0]["metadata"]["owner"], "ops");
    let found: Value = serde_json::from_str(&ok(ctl(&[
        "sites",
        "query",
        r#"{"labels.region": {"$in": ["eu"]}}"#,
        "--json",
    ])))
    .unwrap();
    assert_eq!(found["total"], 1);
    let bad = ctl(&["sites", "query", r#"{"labels.region": {"$regex": "e"}}"#]);
    assert_eq!(code(&bad), 11);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("BAD_FILTER"));
    let health = ok(ctl(&["sites", "health", &id]));
    assert!(
        health.lines().next().unwrap().ends_with(": healthy"),
        "{health}"
    );
    assert!(health.contains(&api), "{health}");

    // A rollout followed to its end.
    let watched = ok(ctl(&[
        "rollout",
        "create",
        "kiosk",
        &format!("{upstream}/team/kiosk:v2"),
        "--selector",
        r#"{"labels.region": "eu"}"#,
        "--watch",
    ]));
    let last = watched.lines().last().unwrap();
    assert!(last.starts_with("complete: 1/1 scheduled;"), "{watched}");
    assert_eq!(apps(&node).len(), 1);
    let listed = ok(ctl(&["rollout", "list"]));
    assert!(
        listed.contains("complete") && listed.contains("1/1"),
        "{listed}"
    );
    let rollouts: Value = serde_json::from_str(&ok(ctl(&["rollout", "list", "--json"]))).unwrap();
    let rid = rollouts["rollouts"][0]["id"].as_str().unwrap().to_owned();
    let status = ok(ctl(&["rollout", "status", &rid]));
    assert!(
        status.contains(&id) && status.contains("scheduled"),
        "{status}"
    );
    let json: Value =
        serde_json::from_str(&ok(ctl(&["rollout", "status", &rid, "--json"]))).unwrap();
    assert_eq!(
        json["images"][0],
        format!("{upstream}/team/kiosk@{}", img.digest)
    );
    // A newer rollout whose images cannot be fetched stops nothing: it is `pulling`, and
    // the running one goes on until a newer one has its images.
    let stuck = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": "kiosk", "images": ["127.0.0.1:1/kiosk:v9"], "selector": {}})),
        201,
    );
    let stuck_path = format!("/rollouts/{}", stuck["id"].as_str().unwrap());
    tower.wait_for(
        &stuck_path,
        Duration::from_secs(20),
        "a failed attempt",
        |r| r["pulling"]["retries"].as_u64().unwrap_or(0) >= 1,
    );
    let still = tower.expect("GET", &format!("/rollouts/{rid}"), None, 200);
    assert_eq!(still["status"], "complete", "{still:#}");
    tower.expect("DELETE", &stuck_path, None, 200);
    // A newer rollout of the application supersedes it; cancelling that one stops it.
    let newer: Value = serde_json::from_str(&ok(ctl(&[
        "rollout",
        "create",
        "kiosk",
        &format!("{upstream}/team/kiosk@{}", img.digest),
        "--selector",
        "{}",
        "--json",
    ])))
    .unwrap();
    // Once its images are in the tower's registry (at once: held there already).
    let older = tower.wait_for(
        &format!("/rollouts/{rid}"),
        Duration::from_secs(20),
        "superseded",
        |r| r["status"] == "superseded",
    );
    assert_eq!(older["superseded_by"], newer["id"]);
    let nid = newer["id"].as_str().unwrap().to_owned();
    ok(ctl(&["rollout", "cancel", &nid]));
    let cancelled = ctl(&["rollout", "status", &nid, "--watch"]);
    assert_eq!(code(&cancelled), 1, "watching a cancelled rollout fails");
    assert!(String::from_utf8_lossy(&cancelled.stderr).contains("cancelled"));
    ok(ctl(&["sites", "remove", &id]));
    assert_eq!(code(&ctl(&["sites", "health", &id])), 11);
    let nowhere = towerctl(&["sites", "list", "--tower", "http://127.0.0.1:1"]);
    assert_eq!(code(&nowhere), 10, "tower unreachable");
}

fn a_site_that_speaks_mtls_is_reached_with_the_tls_material_it_was_onboarded_with(
    backend: Backend,
) {
    use kit::tls::Certs;
    let dir = tempfile::tempdir().unwrap();
    let (Some(certs), Some(up)) = (Certs::generate(dir.path()), Upstream::start()) else {
        return;
    };
    let upstream = up.addr.clone();
    let img = oci::image(95, &[64 << 10], "amd64");
    up.put(&img, "team/vault:v1");
    let node = Node::start(NodeOptions {
        tls: Some((certs.node.clone(), certs.ca.clone())),
        ..Default::default()
    });
    let Some(tower) = Towerd::start_on(backend, &["--insecure-registry", &upstream]) else {
        return;
    };
    let pem = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let key = pem(&certs.tower.key);
    onboard(
        &tower,
        json!({"id": "vault", "name": "vault", "nodes": [node.api.to_string()], "labels": {"tls": "yes"},
               "tls": {"ca_pem": pem(&certs.ca), "cert_pem": pem(&certs.tower.cert), "key_pem": key}}),
    );
    // The same node, with a certificate of another CA: refused by the site.
    onboard(
        &tower,
        json!({"id": "stranger", "name": "stranger", "nodes": [node.api.to_string()], "labels": {},
               "tls": {"ca_pem": pem(&certs.ca), "cert_pem": pem(&certs.stranger.cert), "key_pem": pem(&certs.stranger.key)}}),
    );
    let shown = tower.expect("GET", "/sites/vault", None, 200);
    assert_eq!(shown["tls"]["client_key"], true);
    assert!(!shown.to_string().contains("PRIVATE KEY"), "{shown}");

    let h = tower.wait_for(
        "/sites/vault/health",
        Duration::from_secs(30),
        "the mTLS site healthy",
        |h| h["verdict"] == "healthy",
    );
    assert_eq!(h["nodes"][0]["reachable"], true);
    let h = health(&tower, "stranger");
    assert_eq!(h["verdict"], "down", "{h:#}");
    assert!(h["nodes"][0]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));

    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": "vault", "images": [format!("{upstream}/team/vault:v1")], "selector": {"labels.tls": "yes"}})),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    tower.wait_for(
        &path,
        Duration::from_secs(60),
        "the mTLS site scheduled",
        |r| r["status"] == "complete",
    );
    // The keys stay in the tower's own directory, never in its log.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tower.data_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "the data directory is the tower's alone"
    );
    assert!(!tower.log().contains("PRIVATE KEY"));
}

/// A site whose nodes know no leader (its other two nodes down) is waited out by the
/// worker (`--leader-wait`) rather than failed: once a leader is elected the rollout
/// goes through with no retry counted.
fn a_rollout_waits_out_a_site_that_knows_no_leader(backend: Backend) {
    let Some(up) = Upstream::start() else {
        return;
    };
    let (pos, _) = application();
    up.put(&pos, "team/pos:v3");
    let Some(tower) = Towerd::start_on(
        backend,
        &["--insecure-registry", &up.addr, "--leader-wait", "60s"],
    ) else {
        return;
    };
    let mut nodes = cluster(3, &NodeOptions::default());
    leader(&nodes.iter().collect::<Vec<_>>());
    nodes[1].kill9();
    nodes[2].kill9();
    // Alone, the first node stops naming a leader (check-quorum, pre-vote).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status(&nodes[0]).is_none_or(|s| s.leader_id != 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 still names a leader"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let site = onboard(
        &tower,
        json!({"name": "lone", "nodes": [nodes[0].api.to_string()], "labels": {}}),
    );
    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({
            "application": "pos",
            "images": [format!("{}/team/pos:v3", up.addr)],
            "selector": {"name": {"$eq": "lone"}}
        })),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    // The worker says it waits for a leader...
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !tower.log().contains("no node knows a leader of the site") {
        assert!(
            std::time::Instant::now() < deadline,
            "towerd never waited for a leader:\n{}",
            tower.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...and the site is not failed meanwhile; with its peers back it goes through.
    let r = tower.expect("GET", &path, None, 200);
    assert_ne!(site_state(&r, &site)["state"], "failed", "{r:#}");
    nodes[1].restart();
    nodes[2].restart();
    let done = tower.wait_for(&path, Duration::from_secs(60), "scheduled", |r| {
        site_state(r, &site)["state"] == "scheduled"
    });
    assert_eq!(site_state(&done, &site)["retries"], 0, "{done:#}");
}

#[test]
fn a_towers_state_moves_to_postgresql_and_the_tower_carries_on_from_it() {
    use kit::tools::towerd_bin;
    let Some(up) = Upstream::start() else {
        return;
    };
    let Some(url) = kit::postgres::database() else {
        return;
    };
    let upstream = up.addr.clone();
    let img = oci::image(73, &[64 << 10], "amd64");
    up.put(&img, "team/kiosk:v1");
    let mut tower = Towerd::start(&["--insecure-registry", &upstream]);
    let site = Node::start(NodeOptions::default());
    onboard(
        &tower,
        json!({"name": "kiosk-1", "nodes": [site.api.to_string()], "labels": {"kind": "kiosk"}, "metadata": {"floor": 2}}),
    );
    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": "kiosk", "images": [format!("{upstream}/team/kiosk:v1")], "selector": {"labels.kind": "kiosk"}})),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    let done = tower.wait_for(&path, Duration::from_secs(60), "complete", |r| {
        r["status"] == "complete"
    });
    let sites = tower.expect("GET", "/sites", None, 200);
    assert!(tower.terminate().success());

    let migrate = |to: &str| {
        std::process::Command::new(towerd_bin())
            .args(["migrate", "--from"])
            .arg(tower.data_dir())
            .args(["--to", to])
            .output()
            .unwrap()
    };
    let out = migrate(&url);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "moved 1 sites, 1 rollouts, 1 manifests, 0 tokens from {} to PostgreSQL",
        tower.data_dir().display()
    );
    assert_eq!(said.lines().last(), Some(expected.as_str()), "{said}");
    // Into a database that holds a tower already: refused, nothing written.
    let again = migrate(&url);
    assert_eq!(again.status.code(), Some(1));
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("a move goes into an empty database"), "{why}");

    // The tower on PostgreSQL: the same sites and rollout, and it carries on.
    tower.database = Some(url);
    tower.restart();
    assert_eq!(tower.expect("GET", "/sites", None, 200), sites);
    assert_eq!(tower.expect("GET", &path, None, 200), done);
    assert_eq!(
        ids(&tower.expect(
            "POST",
            "/sites/query",
            Some(&json!({"filter": {"metadata.floor": 2}})),
            200
        )),
        set(&[sites["sites"][0]["id"].as_str().unwrap()])
    );
    onboard(
        &tower,
        json!({"name": "kiosk-2", "nodes": ["127.0.0.1:9"], "labels": {}}),
    );
    refused(
        &tower,
        "POST",
        "/sites",
        br#"{"name": "kiosk-1", "nodes": ["127.0.0.1:9"]}"#,
        409,
    );
}

#[test]
fn a_database_towerd_cannot_use_stops_it_with_a_clear_message() {
    use kit::tools::towerd_bin;
    let dir = tempfile::tempdir().unwrap();
    let start = |database: &str| {
        std::process::Command::new(towerd_bin())
            .arg("--data")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--database", database])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap()
    };
    // Nothing listens on port 9 of loopback; the password is never printed.
    let out = start("postgres://tower:s3cret-pw@127.0.0.1:9/fleet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the database tower@127.0.0.1:9/fleet"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    let out = start("mysql://nope");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--database is not a PostgreSQL URL"), "{err}");
}

/// Each test of this file on both stores.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Embedded)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Postgres)
            })*
        }
    };
}

on_both_stores!(
    inventory_queries_health_and_refusals,
    a_rollout_reaches_exactly_the_matching_sites_through_outages_and_cuts,
    the_tower_finishes_a_rollout_after_kill_9,
    towerctl_is_the_fleet_apis_client,
    a_site_that_speaks_mtls_is_reached_with_the_tls_material_it_was_onboarded_with,
    a_rollout_waits_out_a_site_that_knows_no_leader
);

#[test]
fn towerd_reaches_its_database_over_tls_with_database_ca() {
    let Some(url) = kit::postgres::database() else {
        return;
    };
    let ca = kit::postgres::ca().expect("openssl makes the test database's certificate");
    let tower = Towerd::start_in(
        Some(url.clone()),
        &["--database-ca", ca.to_str().unwrap()],
        "",
    );
    onboard(
        &tower,
        json!({"name": "tls-1", "nodes": ["127.0.0.1:9"], "labels": {}}),
    );
    let encrypted = kit::postgres::psql(
        &url,
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
    );
    assert_eq!(encrypted.trim(), "t", "every connection of towerd is TLS");
}
