//! The pull-through cache against a real upstream (Debian's `docker-registry`, behind a
//! proxy that counts the bytes it sends): a site fills itself on a miss as its pull
//! policy allows, keeps what it fetched as site content, and serves it with the upstream
//! gone.

mod kit;

use kit::node::{cluster_with, served};
use kit::oci::{self, Image};
use kit::proxy::CountingProxy;
use kit::tools::require;
use kit::upstream::ReferenceRegistry;
use kit::{request, Node, NodeOptions};

/// An upstream registry behind a counting proxy; `None` (skip) without docker-registry.
fn upstream() -> Option<(ReferenceRegistry, CountingProxy)> {
    let binary = require("docker-registry")?;
    let registry = ReferenceRegistry::start(&binary);
    let proxy = CountingProxy::start(registry.addr);
    Some((registry, proxy))
}

/// Waits (bounded) until every node holds the image the site cached, as its status says
/// (asked over gRPC: an HTTP miss would fetch it again).
fn held_everywhere(nodes: &[Node]) {
    for n in nodes {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while kit::node::status(n).map_or(0, |s| s.images) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} never held the image",
                n.addr
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn image_bytes(image: &Image) -> u64 {
    image.blobs().map(|b| b.data.len() as u64).sum::<u64>() + image.manifest.len() as u64
}

/// Pulls `reference` from `node` with skopeo and checks that every blob of `image` came
/// whole.
fn pull_whole(node: &Node, reference: &str, image: &Image) {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("pulled");
    oci::skopeo_copy(&node.addr.to_string(), reference, &layout);
    assert_eq!(oci::pulled_root(&layout), image.digest, "{reference}");
    oci::assert_pulled(&oci::verified_blobs(&layout), image);
}

#[test]
fn a_three_node_site_fills_itself_and_serves_the_image_offline_from_every_node() {
    let Some(_) = require("skopeo") else { return };
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let image = oci::image(11, &[2 << 20, 300 * 1024, 5 << 20], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let nodes = cluster_with(3, |_| NodeOptions::pulling(proxy.addr, "IfNotPresent", ""));
    kit::node::leader(&nodes.iter().collect::<Vec<_>>());

    // Never delivered by the tower: the first node fetches it as it is pulled.
    pull_whole(&nodes[0], "team/app:v1", &image);
    held_everywhere(&nodes);
    let fetched = proxy.received();
    assert!(
        fetched >= image_bytes(&image),
        "the upstream sent {fetched} bytes, the image has {}",
        image_bytes(&image)
    );

    // Cached on the site: every node serves it with the upstream gone.
    for n in &nodes[1..] {
        served(n, &format!("/v2/team/app/manifests/{}", image.digest));
    }
    drop(registry);
    for n in &nodes[1..] {
        served(n, "/v2/team/app/manifests/v1");
        pull_whole(n, "team/app:v1", &image);
        pull_whole(n, &format!("team/app@{}", image.digest), &image);
    }
    // The node that fetched serves it too, and nothing more crossed the link.
    pull_whole(&nodes[0], "team/app:v1", &image);
    assert_eq!(proxy.received(), fetched, "nothing more came from upstream");
    // The site holds the image, not a copy per node: one fetch crossed the link.
    assert!(
        fetched < image_bytes(&image) * 105 / 100 + 64 * 1024,
        "{fetched} bytes from upstream for an image of {}",
        image_bytes(&image)
    );
}

#[test]
fn never_fetches_nothing_and_answers_the_specs_404() {
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let image = oci::image(12, &[64 * 1024], "amd64");
    oci::push_image_as(registry.addr, "library/app", "v1", &image);
    // Other registries may be fetched from; docker.io, mirrored by the upstream, not.
    let node = Node::start(NodeOptions {
        extra: Some(format!(
            "[pull]\npolicy = \"IfNotPresent\"\n\n[[pull.registry]]\nhost = \"docker.io\"\nendpoint = \"http://{}\"\npolicy = \"Never\"\n",
            proxy.addr
        )),
        ..NodeOptions::default()
    });
    let r = request(node.addr, "GET", "/v2/library/app/manifests/v1", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/library/app/blobs/{}", image.layers[0].digest),
        &[],
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    node.wait_log_line(&[
        "manifest not on the site and not fetched",
        "docker.io",
        "[[pull.registry]] host = \\\"docker.io\\\"",
    ]);
    node.wait_log_line(&["blob not on the site and not fetched", "docker.io", "Never"]);
    assert_eq!(proxy.received(), 0, "the upstream was asked");
}

#[test]
fn a_miss_under_the_default_policy_never_says_which_setting_refused_it() {
    // The example configuration's default: `[pull] policy = "Never"` for every registry.
    let node = Node::start(NodeOptions::default());
    let r = request(node.addr, "GET", "/v2/library/app/manifests/v1", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    let zero = "0".repeat(64);
    let path = format!("/v2/quay.io/team/app/blobs/sha256:{zero}");
    let r = request(node.addr, "GET", &path, &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    node.wait_log_line(&[
        "manifest not on the site and not fetched: the pull policy of registry docker.io is Never ([pull] policy)",
        "library/app",
    ]);
    node.wait_log_line(&[
        "blob not on the site and not fetched: the pull policy of registry quay.io is Never ([pull] policy)",
    ]);
}

#[test]
fn always_follows_a_moved_tag_and_serves_the_held_image_when_the_upstream_is_gone() {
    let Some(_) = require("skopeo") else { return };
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let first = oci::image(13, &[100 * 1024], "amd64");
    let second = oci::image(14, &[120 * 1024], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &first);
    let node = Node::start(NodeOptions::pulling(proxy.addr, "Always", ""));
    let repo = format!("{}/team/app", proxy.addr);
    pull_whole(&node, "team/app:v1", &first);
    node.wait_log_line(&["image cached", &repo, &first.digest]);
    // Held and asked by digest: served with no upstream request at all, even under Always.
    let asked = proxy.requests().len();
    pull_whole(&node, &format!("team/app@{}", first.digest), &first);
    assert_eq!(proxy.requests().len(), asked, "the upstream was asked");

    // The tag moves at the upstream: the next pull by tag gets the new image.
    oci::push_image_as(registry.addr, "team/app", "v1", &second);
    pull_whole(&node, "team/app:v1", &second);
    node.wait_log_line(&["image cached", &repo, &second.digest]);

    // The upstream is gone: pulls by tag still get the held image, with no error.
    drop(registry);
    pull_whole(&node, "team/app:v1", &second);
    let r = request(node.addr, "HEAD", "/v2/team/app/manifests/v1", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(second.digest.as_str())
    );
    node.wait_log("upstream cannot answer: serving the held image");
}

#[test]
fn misses_the_upstream_cannot_fill_get_the_answer_of_their_failure() {
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let node = Node::start(NodeOptions::pulling(proxy.addr, "IfNotPresent", ""));
    // Unknown upstream: the spec's 404, naming the upstream.
    let r = request(node.addr, "GET", "/v2/team/none/manifests/v1", &[], b"");
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    assert!(
        String::from_utf8_lossy(&r.body).contains(&proxy.addr.to_string()),
        "the message names the upstream: {}",
        String::from_utf8_lossy(&r.body)
    );
    let missing = kit::digest(b"no such blob");
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/team/none/blobs/{missing}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");

    // Upstream gone: 503 with Retry-After, then backed off: the next miss is answered
    // without the upstream being asked again (the node's count of its requests to it,
    // in /metrics, stands still), rather than after another timeout.
    drop(registry);
    let r = request(node.addr, "GET", "/v2/team/other/manifests/v1", &[], b"");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    let upstream_requests = || -> u64 {
        let r = request(node.addr, "GET", "/metrics", &[], b"");
        let label = format!("registry=\"{}\"", proxy.addr);
        String::from_utf8_lossy(&r.body)
            .lines()
            .filter(|l| l.starts_with("site_upstream_requests_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    };
    let asked = upstream_requests();
    assert!(asked >= 1, "the failed request is not counted");
    let backed_off = kit::node::status(&node).unwrap().upstreams_backed_off;
    assert!(
        backed_off.iter().any(|u| u.host == proxy.addr.to_string()),
        "Status names the upstream: {backed_off:?}"
    );
    let r = request(node.addr, "GET", "/v2/team/third/manifests/v1", &[], b"");
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("not asked again"));
    assert_eq!(
        upstream_requests(),
        asked,
        "the backed-off upstream was asked"
    );
}

#[test]
fn refused_credentials_are_403_denied_naming_the_registry() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    // The reference registry checks credentials before it looks for the image.
    let registry = ReferenceRegistry::start_with_auth(&binary, "tower");
    let work = tempfile::tempdir().unwrap();
    let auth_file = work.path().join("config.json");
    let auth = kit::http::basic("tower", "wrong-password");
    let auth = auth.trim_start_matches("Basic ");
    std::fs::write(
        &auth_file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.addr),
    )
    .unwrap();
    let node = Node::start(NodeOptions::pulling(
        registry.addr,
        "IfNotPresent",
        &format!("auth_file = \"{}\"\n", auth_file.display()),
    ));
    let r = request(node.addr, "GET", "/v2/team/private/manifests/v1", &[], b"");
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "DENIED");
    assert!(String::from_utf8_lossy(&r.body).contains(&registry.addr.to_string()));
    assert!(
        !node.log().contains("wrong-password"),
        "a password was logged"
    );
}

#[test]
fn sixteen_clients_over_three_nodes_pull_a_cold_image_with_one_upstream_transfer() {
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let image = oci::image(16, &[24 << 20, 24 << 20, 16 << 20], "amd64");
    oci::push_image_as(registry.addr, "team/big", "v1", &image);
    let nodes = cluster_with(3, |_| NodeOptions::pulling(proxy.addr, "IfNotPresent", ""));
    kit::node::leader(&nodes.iter().collect::<Vec<_>>());
    let before = proxy.received();
    // Every client: the manifest by tag, then each blob, verified.
    std::thread::scope(|s| {
        for c in 0..16 {
            let node = &nodes[c % 3];
            let image = &image;
            s.spawn(move || {
                let r = request(node.addr, "GET", "/v2/team/big/manifests/v1", &[], b"");
                assert_eq!(
                    (r.status, kit::digest(&r.body)),
                    (200, image.digest.clone())
                );
                for b in image.blobs() {
                    let path = format!("/v2/team/big/blobs/{}", b.digest);
                    let r = request(node.addr, "GET", &path, &[], b"");
                    assert_eq!(r.status, 200, "client {c}: {path}");
                    assert_eq!(kit::digest(&r.body), b.digest, "client {c}: bad bytes");
                }
            });
        }
    });
    let fetched = proxy.received() - before;
    let size = image_bytes(&image);
    eprintln!(
        "16 clients on 3 nodes: {fetched} upstream bytes for an image of {size} ({:.3}x)",
        fetched as f64 / size as f64
    );
    assert!(
        fetched <= size * 105 / 100,
        "{fetched} upstream bytes for an image of {size}"
    );
    for n in &nodes {
        served(n, "/v2/team/big/manifests/v1");
    }
}

#[test]
fn layers_the_site_holds_for_another_repository_are_not_fetched_again() {
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let image = oci::image(17, &[4 << 20, 3 << 20], "amd64");
    oci::push_image_as(registry.addr, "team/one", "v1", &image);
    oci::push_image_as(registry.addr, "team/two", "v1", &image);
    let node = Node::start(NodeOptions::pulling(proxy.addr, "IfNotPresent", ""));
    let pull = |repo: &str| {
        let r = request(
            node.addr,
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[],
            b"",
        );
        assert_eq!(
            (r.status, kit::digest(&r.body)),
            (200, image.digest.clone())
        );
        for b in image.blobs() {
            let path = format!("/v2/{repo}/blobs/{}", b.digest);
            let r = request(node.addr, "GET", &path, &[], b"");
            assert_eq!((r.status, kit::digest(&r.body)), (200, b.digest.clone()));
        }
    };
    pull("team/one");
    let before = proxy.received();
    // The same image in another repository: its manifest comes from the upstream, its
    // layers are the ones the site holds (linked, not fetched again).
    pull("team/two");
    let fetched = proxy.received() - before;
    assert!(
        fetched < 1 << 20,
        "{fetched} upstream bytes for an image whose layers the site held"
    );
    // A layer of no image of the repository is not served from the site's copy: the
    // upstream's repository decides (it has no `team/three`).
    let layer = &image.layers[0].digest;
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/team/three/blobs/{layer}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
}

#[test]
fn a_head_of_a_blob_never_starts_a_fetch() {
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let image = oci::image(18, &[2 << 20], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let node = Node::start(NodeOptions::pulling(proxy.addr, "IfNotPresent", ""));
    let path = format!("/v2/team/app/blobs/{}", image.layers[0].digest);
    // What a pusher asks before it uploads: answered from what the site holds.
    let r = request(node.addr, "HEAD", &path, &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(proxy.received(), 0, "the upstream was asked for a HEAD");
    // A GET fetches it; a HEAD then finds it.
    let r = request(node.addr, "GET", &path, &[], b"");
    assert_eq!(
        (r.status, kit::digest(&r.body)),
        (200, image.layers[0].digest.clone())
    );
    let r = request(node.addr, "HEAD", &path, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(image.layers[0].data.len().to_string().as_str())
    );
}

#[test]
fn a_node_killed_mid_fetch_serves_nothing_partial_and_resumes_the_fetch() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    // A thin link, so the kill lands in the middle of the transfer.
    let proxy = CountingProxy::start_throttled(registry.addr, Some(16 << 20));
    let image = oci::image(17, &[32 << 20], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let mut node = Node::start(NodeOptions::pulling(proxy.addr, "IfNotPresent", ""));
    let layer = image.layers[0].clone();
    let path = format!("/v2/team/app/blobs/{}", layer.digest);
    let addr = node.addr;
    let p = path.clone();
    let client = std::thread::spawn(move || request(addr, "GET", &p, &[], b""));
    proxy.wait_received(8 << 20);
    assert!(
        proxy.received() < 32 << 20,
        "the fetch was over before the kill"
    );
    node.kill9();
    let cut = client.join().unwrap();
    assert!(
        (cut.body.len() as u64) < layer.data.len() as u64,
        "the client was served the whole blob before the kill"
    );
    let fetched_before = proxy.received();

    node.restart();
    // Nothing partial is a blob: no file, no record.
    assert!(!node.blob_files().iter().any(|(d, _)| *d == layer.digest));
    let r = request(
        node.addr,
        "HEAD",
        &format!("/v2/team/app/manifests/{}", image.digest),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "the manifest is fetched again");
    let r = request(node.addr, "GET", &path, &[], b"");
    assert_eq!(
        (r.status, kit::digest(&r.body)),
        (200, layer.digest.clone())
    );
    // The fetch resumed after what had arrived before the kill.
    let total = proxy.received();
    eprintln!(
        "kill -9 mid-fetch: {fetched_before} bytes before, {total} in all, for a blob of {}",
        layer.data.len()
    );
    assert!(
        total < fetched_before + layer.data.len() as u64,
        "the fetch started over: {total} bytes in all"
    );
    oci::assert_blobs_served(node.addr, "team/app", &image);
}

#[test]
fn an_https_upstream_is_trusted_through_ca_file_and_refused_without_it() {
    let Some(_) = require("skopeo") else { return };
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let Some(certs) = kit::tls::Certs::generate(work.path()) else {
        return;
    };
    let registry = ReferenceRegistry::start_tls(&binary, &certs.node.cert, &certs.node.key);
    let image = oci::image(18, &[100 * 1024], "amd64");
    let layout = work.path().join("layout");
    oci::write_layout(
        &layout,
        &[&image],
        None,
        &[("v1", &image.manifest, oci::OCI_MANIFEST)],
    );
    kit::tools::run(
        std::process::Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/team/app:v1", registry.addr)),
    );
    let start = |ca: Option<&std::path::Path>| {
        let ca = ca.map_or(String::new(), |p| {
            format!("ca_file = \"{}\"\n", p.display())
        });
        Node::start(NodeOptions {
            default_upstream: Some(registry.addr.to_string()),
            extra: Some(format!("[pull]\npolicy = \"IfNotPresent\"\n{ca}")),
            ..NodeOptions::default()
        })
    };
    // HTTPS by default; the upstream's CA is not a public one.
    let untrusting = start(None);
    let r = request(
        untrusting.addr,
        "GET",
        "/v2/team/app/manifests/v1",
        &[],
        b"",
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let trusting = start(Some(&certs.ca));
    pull_whole(&trusting, "team/app:v1", &image);
}

#[test]
fn containerd_pulls_through_a_site_mirroring_docker_hub_and_again_with_the_link_down() {
    let Some((registry, proxy)) = upstream() else {
        return;
    };
    let image = oci::image(19, &[300 * 1024, 2 << 20], "amd64");
    oci::push_image_as(registry.addr, "library/app", "v1", &image);
    // The site mirrors Docker Hub through the upstream; runtimes name docker.io.
    let nodes = cluster_with(3, |_| {
        NodeOptions {
        extra: Some(format!(
            "[pull]\npolicy = \"IfNotPresent\"\n[[pull.registry]]\nhost = \"docker.io\"\nendpoint = \"http://{}\"\n",
            proxy.addr
        )),
        ..NodeOptions::default()
    }
    });
    kit::node::leader(&nodes.iter().collect::<Vec<_>>());
    let pull = |node: &Node, reference: &str| {
        let runtime = kit::containerd::Containerd::start()?;
        let hosts = runtime.hosts_dir(
            "docker.io",
            "https://registry-1.docker.io",
            &node.addr.to_string(),
        );
        let out = runtime.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            &hosts.display().to_string(),
            reference,
        ]);
        assert!(
            out.status.success(),
            "ctr pull {reference} from {}: {}\n{}",
            node.addr,
            String::from_utf8_lossy(&out.stderr),
            runtime.log()
        );
        let list = runtime.ctr(&["images", "ls"]);
        Some(String::from_utf8_lossy(&list.stdout).into_owned())
    };
    let Some(listed) = pull(&nodes[0], "docker.io/library/app:v1") else {
        return;
    };
    assert!(listed.contains(&image.digest), "{listed}");
    held_everywhere(&nodes);
    drop(registry);
    for n in &nodes[1..] {
        let listed = pull(n, "docker.io/library/app:v1").unwrap();
        assert!(listed.contains(&image.digest), "{listed}");
        let by_digest = format!("docker.io/library/app@{}", image.digest);
        let listed = pull(n, &by_digest).unwrap();
        assert!(listed.contains(&image.digest), "{listed}");
    }
}

#[test]
fn a_cached_image_outlives_the_grace_period_and_goes_once_unpulled_for_the_cache_ttl() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let image = oci::image(20, &[50 * 1024], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let node_with = |ttl: &str| {
        Node::start(NodeOptions {
            grace: Some("1s".into()),
            cache_ttl: Some(ttl.into()),
            // A capacity of its own, so that a full disk of the machine running the
            // test does not evict the cache (this test is about its TTL).
            capacity: Some(1 << 30),
            ..NodeOptions::pulling(registry.addr, "IfNotPresent", "")
        })
    };
    let gc = |node: &Node| {
        kit::grpc::rt().block_on(async {
            kit::grpc::run_gc(&mut kit::grpc::connect(node.api).await, false).await
        })
    };
    let manifest = format!("/v2/team/app/manifests/{}", image.digest);
    // Cache kept an hour: a sweep past the grace period keeps it.
    let keeping = node_with("1h");
    pull_whole_after_fetch(&keeping, &image);
    let cached_at = std::time::Instant::now();
    while cached_at.elapsed() < std::time::Duration::from_millis(2100) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let report = gc(&keeping);
    assert!(
        report.manifests.is_empty(),
        "cache swept after the grace period: {report:?}"
    );
    assert_eq!(
        request(keeping.addr, "HEAD", &manifest, &[], b"").status,
        200
    );

    // Cache kept a second: once that has passed without a pull, a sweep removes it.
    let expiring = node_with("1s");
    pull_whole_after_fetch(&expiring, &image);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let report = gc(&expiring);
        if report.manifests.contains(&image.digest) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cached image never expired"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(registry);
    let r = request(expiring.addr, "GET", &manifest, &[], b"");
    assert_eq!(
        r.status, 503,
        "gone from the site, and the upstream is down"
    );
}

/// Pulls `team/app:v1` through `node` and waits until the site has cached it.
fn pull_whole_after_fetch(node: &Node, image: &Image) {
    let r = request(node.addr, "GET", "/v2/team/app/manifests/v1", &[], b"");
    assert_eq!(
        (r.status, kit::digest(&r.body)),
        (200, image.digest.clone())
    );
    node.wait_log_line(&["image cached", &image.digest]);
    oci::assert_blobs_served(node.addr, "team/app", image);
}
