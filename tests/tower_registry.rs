//! The tower's own OCI registry (`towerd --registry`, an embedded site node): users push
//! to it with skopeo as an htpasswd user, pull back what they pushed, and roll it out to
//! a 3-node site with no upstream; a rollout whose upstream is down is `pulling`, touches
//! no site, and completes once the upstream is back; the registry answers the OCI
//! conformance suite with push and pull-through both on.

mod kit;

use kit::oci;
use kit::proxy::CuttingProxy;
use kit::tools::{require, run};
use kit::tower::Towerd;
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const USER: &str = "ci-bot";
const PASSWORD: &str = "tower-push-pw";

/// Onboards a site of `nodes` and creates a rollout of `image` as `app` to every site;
/// returns the site's id and the rollout's path and first answer.
fn roll_out(tower: &Towerd, nodes: &[&Node], app: &str, image: &str) -> (String, String, Value) {
    let addresses: Vec<String> = nodes.iter().map(|n| n.api.to_string()).collect();
    let site = tower.expect(
        "POST",
        "/sites",
        Some(&json!({"name": "shop", "nodes": addresses})),
        201,
    );
    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": app, "images": [image], "selector": {}})),
        201,
    );
    let path = format!("/rollouts/{}", created["id"].as_str().unwrap());
    (site["id"].as_str().unwrap().to_owned(), path, created)
}

#[test]
fn users_push_to_the_towers_registry_and_a_rollout_sends_it_with_no_upstream() {
    let (Some(_), Some(_)) = (require("skopeo"), require("htpasswd")) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let users = work.path().join("htpasswd");
    run(Command::new("htpasswd")
        .args(["-cbB"])
        .arg(&users)
        .args([USER, PASSWORD]));
    let tower = Towerd::start_with(
        &[],
        &format!(
            "[registry.push]\nenabled = true\n[registry.auth]\nhtpasswd = {:?}\n",
            users.display().to_string()
        ),
    );
    let image = oci::image(231, &[300 << 10, 40 << 10], "amd64");
    let dest = format!("{}/team/app:v1", tower.registry);
    // A wrong password is refused, and nothing is kept.
    let refused = std::panic::catch_unwind(|| {
        oci::upload(work.path(), &image, &dest, Some(&format!("{USER}:wrong")))
    });
    assert!(
        refused.is_err(),
        "a push with a wrong password went through"
    );
    let layer = format!("/v2/team/app/blobs/{}", image.layers[0].digest);
    let r = kit::request(tower.registry, "HEAD", &layer, &[], b"");
    assert_eq!(r.status, 404, "a refused push left a blob");
    oci::upload(
        work.path(),
        &image,
        &dest,
        Some(&format!("{USER}:{PASSWORD}")),
    );
    let layout = work.path().join("pulled");
    oci::skopeo_copy(&tower.registry.to_string(), "team/app:v1", &layout);
    assert_eq!(oci::pulled_root(&layout), image.digest);
    oci::assert_pulled(&oci::verified_blobs(&layout), &image);
    // Its content lives under the tower's data directory.
    assert!(
        tower.data_dir().join("registry").is_dir(),
        "no registry data under {}",
        tower.data_dir().display()
    );
    assert!(tower.log().contains("tower registry listening"));

    // A rollout of the pushed image reaches a 3-node site from the tower's registry.
    // Its upstream (docker.io for a name without a host) cannot be reached from here: the
    // rollout needs none.
    let nodes = kit::node::cluster(3, &NodeOptions::default());
    let (site, path, _) = roll_out(
        &tower,
        &nodes.iter().collect::<Vec<_>>(),
        "app",
        "team/app:v1",
    );
    tower.wait_for(&path, Duration::from_secs(60), "scheduled", |r| {
        r["sites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["site_id"] == site && s["state"] == "scheduled")
    });
    for n in &nodes {
        assert_eq!(
            kit::node::served(n, "/v2/team/app/manifests/v1"),
            image.digest,
            "{}",
            n.addr
        );
    }
    assert!(
        !tower.log().contains("fetched from upstream"),
        "the tower's registry asked an upstream:\n{}",
        tower.log()
    );
}

#[test]
fn the_towers_registry_passes_both_conformance_suites_with_push_and_pull_through_on() {
    if kit::conformance::suite("conformance-v1.1.1.test").is_none() {
        return;
    }
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let upstream = ReferenceRegistry::start(&binary);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = {:?}\n[registry]\nlisten = \"127.0.0.1:0\"\ndefault_upstream = \"{up}\"\n[registry.push]\nenabled = true\nusers = [{{ name = \"{USER}\", password = \"{PASSWORD}\" }}]\n[api]\nlisten = \"127.0.0.1:0\"\n[pull]\npolicy = \"IfNotPresent\"\ninsecure_registries = [\"{up}\"]\n",
            dir.path().join("registry").display().to_string(),
            up = upstream.addr
        ),
    )
    .unwrap();
    let tower = Towerd::start(&["--registry", config.to_str().unwrap()]);
    kit::conformance::release(tower.registry, USER, PASSWORD);
    kit::conformance::development(tower.registry, USER, PASSWORD);
    // A name without a host is the registry's `default_upstream`'s, in a rollout too.
    let image = oci::image(235, &[50 << 10], "amd64");
    oci::push_image_as(upstream.addr, "team/short", "v1", &image);
    let node = Node::start(NodeOptions::default());
    let (_, path, _) = roll_out(&tower, &[&node], "short", "team/short:v1");
    let done = tower.wait_for(&path, Duration::from_secs(60), "complete", |r| {
        r["status"] == "complete"
    });
    assert_eq!(
        done["images"],
        json!([format!("{}/team/short@{}", upstream.addr, image.digest)])
    );
}

#[test]
fn a_rollout_pulls_while_the_upstream_is_down_touches_no_site_and_completes_once_it_is_back() {
    let (Some(binary), Some(_)) = (require("docker-registry"), require("skopeo")) else {
        return;
    };
    let upstream = ReferenceRegistry::start(&binary);
    let image = oci::image(232, &[700 << 10, 30 << 10], "amd64");
    oci::push_image_as(upstream.addr, "team/pos", "v1", &image);
    // The link to the upstream is down from the start. The upstream answers as
    // `127.0.0.93` (port 80), a host without a port, so that its images have names OCI
    // clients can write in the tower's registry (`TOWER/127.0.0.93/team/pos`).
    let link = CuttingProxy::start_at("127.0.0.93:80".parse().unwrap(), upstream.addr, 0);
    let up = "127.0.0.93".to_owned();
    let tower = Towerd::start(&["--insecure-registry", &up]);
    let node = Node::start(NodeOptions::default());
    let (site, path, created) = roll_out(&tower, &[&node], "pos", &format!("{up}/team/pos:v1"));
    assert_eq!(created["status"], "pulling", "{created:#}");
    let waiting = tower.wait_for(&path, Duration::from_secs(20), "attempts", |r| {
        r["pulling"]["retries"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(
        waiting["pulling"]["reason"], "UPSTREAM_UNREACHABLE",
        "{waiting:#}"
    );
    assert!(link.refused() > 0, "the upstream was never asked");
    // No site was worked: it holds nothing of the image.
    assert_eq!(waiting["sites"][0]["state"], "waiting", "{waiting:#}");
    let layer = format!("/v2/team/pos/blobs/{}?ns={up}", image.layers[0].digest);
    assert_eq!(kit::get_status(node.addr, &layer), 404);

    link.heal();
    let done = tower.wait_for(&path, Duration::from_secs(60), "complete", |r| {
        r["status"] == "complete"
    });
    assert!(done["pulling"].is_null(), "{done:#}");
    assert_eq!(
        done["images"],
        json!([format!("{up}/team/pos@{}", image.digest)])
    );
    let s = &done["sites"][0];
    assert_eq!(
        (s["site_id"].as_str(), s["state"].as_str()),
        (Some(site.as_str()), Some("scheduled"))
    );
    // The image is in the tower's registry: served from it, every blob verified.
    let manifest = format!("/v2/{up}/team/pos/manifests/v1");
    assert_eq!(
        kit::node::served_at(tower.registry, &manifest),
        image.digest
    );
    oci::assert_blobs_served(tower.registry, &format!("{up}/team/pos"), &image);
    // And skopeo pulls it from there.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("pulled");
    oci::skopeo_copy(
        &tower.registry.to_string(),
        &format!("{up}/team/pos:v1"),
        &layout,
    );
    assert_eq!(oci::pulled_root(&layout), image.digest);
    oci::assert_pulled(&oci::verified_blobs(&layout), &image);
}

#[test]
fn the_towers_registry_keeps_a_rollouts_images_through_its_gc() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let upstream = ReferenceRegistry::start(&binary);
    let (pos, other) = (
        oci::image(233, &[200 << 10], "amd64"),
        oci::image(234, &[150 << 10], "amd64"),
    );
    oci::push_image_as(upstream.addr, "team/pos", "v1", &pos);
    oci::push_image_as(upstream.addr, "team/other", "v1", &other);
    let up = upstream.addr.to_string();
    // Cached images of the tower's registry go one second after their last pull.
    let tower = Towerd::start_with(
        &["--insecure-registry", &up],
        "[gc]\ninterval = \"1h\"\ngrace_period = \"1s\"\ncache_ttl = \"1s\"\n",
    );
    let node = Node::start(NodeOptions::default());
    let (_, path, _) = roll_out(&tower, &[&node], "pos", &format!("{up}/team/pos:v1"));
    tower.wait_for(&path, Duration::from_secs(60), "complete", |r| {
        r["status"] == "complete"
    });
    // Another image pulled through the tower's registry afterwards: cached, used later
    // than the rollout's.
    let other_repo = format!("{up}/team/other");
    let m = format!("/v2/{other_repo}/manifests/v1");
    assert_eq!(kit::node::served_at(tower.registry, &m), other.digest);
    oci::assert_blobs_served(tower.registry, &other_repo, &other);
    let head = |repo: &str, image: &oci::Image| {
        let path = format!("/v2/{repo}/blobs/{}", image.layers[0].digest);
        kit::request(tower.registry, "HEAD", &path, &[], b"").status
    };
    let (rt, mut c) = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let c = rt.block_on(kit::grpc::connect(tower.registry_api));
        (rt, c)
    };
    // The registry's GC, until the cached image is gone (a HEAD never fetches it again).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while head(&other_repo, &other) != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cached image outlived its TTL"
        );
        rt.block_on(c.run_gc(site_api::pb::RunGcRequest { dry_run: false }))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    // The rollout's image, older in the cache, stays: live as its application.
    assert_eq!(head(&format!("{up}/team/pos"), &pos), 200);
    let images = rt
        .block_on(c.list_images(site_api::pb::ListImagesRequest {
            application: "pos".into(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
        .images;
    assert!(
        images.iter().any(|i| i.digest == pos.digest && i.live),
        "{images:?}"
    );
}
