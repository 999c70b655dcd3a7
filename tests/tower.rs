//! `towerctl` end to end: Debian's `docker-registry` as the upstream, images put there
//! with skopeo, `towerctl` delivering to a real `site-agent`, skopeo pulling from the site.

mod kit;

use kit::grpc;
use kit::node::served;
use kit::oci::{self, upload, Image, OCI_INDEX};
use kit::proxy::CuttingProxy;
use kit::tools::{ok, require, run, towerctl};
use kit::upstream::{ReferenceRegistry, AUTH_PASSWORD};
use kit::{digest, request, Node, NodeOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Tools {
    registry: PathBuf,
}

fn tools() -> Option<Tools> {
    let registry = require("docker-registry")?;
    require("skopeo")?;
    Some(Tools { registry })
}

/// Puts the index `ix` over `images` at `dest` on the upstream with `skopeo copy --all`.
fn upload_index(work: &Path, images: &[&Image], ix: &[u8], dest: &str) {
    let layout = work.join(format!("layout-{}", &digest(ix)[7..19]));
    oci::write_layout(&layout, images, Some(ix), &[("img", ix, OCI_INDEX)]);
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--preserve-digests"])
        .args(["--dest-tls-verify=false", "--dest-no-creds"])
        .arg(format!("oci:{}:img", layout.display()))
        .arg(format!("docker://{dest}")));
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Pulls `reference` from the site with skopeo into a layout; returns the blob digests,
/// each checked against its bytes.
fn pull(work: &Path, site: &str, reference: &str) -> Vec<String> {
    let out = work.join(format!(
        "pull-{}",
        digest(reference.as_bytes())[7..19].to_owned()
    ));
    let _ = std::fs::remove_dir_all(&out);
    oci::skopeo_copy(site, reference, &out);
    oci::verified_blobs(&out)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn received(node: &Node) -> u64 {
    rt().block_on(async {
        grpc::status(&mut grpc::connect(node.api).await)
            .await
            .blob_bytes_received
    })
}

#[test]
fn deliver_schedule_pull_unschedule_gc() {
    let Some(t) = tools() else { return };
    let up = ReferenceRegistry::start(&t.registry);
    let upstream = up.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let a = oci::image(31, &[300 << 10, 200 << 10], "amd64");
    let mut b = oci::image(32, &[100 << 10], "amd64");
    b.layers.insert(0, a.layers[0].clone());
    let b = oci::rebuild(b);
    upload(work.path(), &a, &format!("{upstream}/team/a:v1"), None);
    upload(work.path(), &b, &format!("{upstream}/team/b:v1"), None);
    let node = Node::start(NodeOptions {
        default_upstream: Some(upstream.clone()),
        grace: Some("300ms".into()),
        ..Default::default()
    });
    let site = node.api.to_string();
    let deliver = |img: &str| {
        ok(towerctl(&[
            "deliver",
            "--site",
            &site,
            "--insecure-registry",
            &upstream,
            img,
        ]))
    };
    let out = deliver(&format!("{upstream}/team/a:v1"));
    assert!(
        out.contains(&a.digest),
        "deliver prints the digest it pinned: {out}"
    );
    let after_a = received(&node);
    assert_eq!(after_a, a.blobs().map(|x| x.data.len() as u64).sum::<u64>());
    deliver(&format!("{upstream}/team/b:v1"));
    // Dedup: only b's own blobs travelled.
    let b_own: u64 = b
        .blobs()
        .filter(|x| x.digest != a.layers[0].digest)
        .map(|x| x.data.len() as u64)
        .sum();
    assert_eq!(received(&node) - after_a, b_own);
    let a_ref = format!("{upstream}/team/a@{}", a.digest);
    let b_ref = format!("{upstream}/team/b@{}", b.digest);
    ok(towerctl(&["schedule", "--site", &site, "app-a", &a_ref]));
    ok(towerctl(&["schedule", "--site", &site, "app-b", &b_ref]));
    let site_http = node.addr.to_string();
    for (img, reference) in [(&a, "team/a:v1"), (&b, "team/b:v1")] {
        let blobs = pull(work.path(), &site_http, reference);
        for x in img.blobs() {
            assert!(
                blobs.contains(&x.digest),
                "{reference}: {} pulled",
                x.digest
            );
        }
    }
    let images = ok(towerctl(&["images", "--site", &site]));
    assert!(
        images.contains(&a.digest) && images.contains(&b.digest),
        "{images}"
    );
    ok(towerctl(&["unschedule", "--site", &site, "app-a"]));
    // Once its grace period has passed, a sweep would delete it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let dry = loop {
        let dry = ok(towerctl(&["gc", "--site", &site, "--dry-run"]));
        if dry.contains(&a.digest) || std::time::Instant::now() > deadline {
            break dry;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(dry.contains(&a.digest), "{dry}");
    assert_eq!(
        kit::get_status(node.addr, &format!("/v2/team/a/manifests/{}", a.digest)),
        200
    );
    ok(towerctl(&["gc", "--site", &site]));
    assert_eq!(
        kit::get_status(node.addr, &format!("/v2/team/a/manifests/{}", a.digest)),
        404
    );
    let blobs = pull(work.path(), &site_http, "team/b:v1");
    for x in b.blobs() {
        assert!(
            blobs.contains(&x.digest),
            "b still pulls whole: {}",
            x.digest
        );
    }
}

#[test]
fn a_broken_link_resumes_and_sends_only_the_remainder() {
    let Some(t) = tools() else { return };
    let up = ReferenceRegistry::start(&t.registry);
    let upstream = up.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let img = oci::image(41, &[6 << 20], "amd64");
    upload(work.path(), &img, &format!("{upstream}/team/big:v1"), None);
    let node = Node::start(NodeOptions::default());
    let total: u64 = img.blobs().map(|x| x.data.len() as u64).sum();
    // The link to the site breaks after 2 MiB and stays down.
    let proxy = CuttingProxy::start(node.api, 2 << 20);
    let out = towerctl(&[
        "deliver",
        "--site",
        &proxy.addr.to_string(),
        "--insecure-registry",
        &upstream,
        &format!("{upstream}/team/big:v1"),
    ]);
    assert_eq!(
        code(&out),
        8,
        "site unreachable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = received(&node);
    assert!(
        first > 0 && first < total,
        "part of the blob arrived: {first} of {total}"
    );
    ok(towerctl(&[
        "deliver",
        "--site",
        &node.api.to_string(),
        "--insecure-registry",
        &upstream,
        &format!("{upstream}/team/big:v1"),
    ]));
    assert_eq!(
        received(&node),
        total,
        "the second delivery sent only the remainder"
    );
    let got = request(
        node.addr,
        "GET",
        &format!("/v2/{upstream}/team/big/manifests/v1"),
        &[],
        b"",
    );
    assert_eq!((got.status, digest(&got.body)), (200, img.digest.clone()));
}

#[test]
fn credentials_come_from_config_json_and_failures_have_distinct_exit_codes() {
    let Some(t) = tools() else { return };
    let up = ReferenceRegistry::start_with_auth(&t.registry, "tower");
    let upstream = up.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let img = oci::image(51, &[50 << 10], "amd64");
    upload(
        work.path(),
        &img,
        &format!("{upstream}/team/private:v1"),
        Some(&format!("tower:{AUTH_PASSWORD}")),
    );
    let node = Node::start(NodeOptions {
        capacity: Some(10 << 10),
        ..Default::default()
    });
    let site = node.api.to_string();
    let image = format!("{upstream}/team/private:v1");
    let auth_file = |user: &str, pw: &str| {
        let path = work.path().join(format!("config-{pw}.json"));
        let auth = kit::http::basic(user, pw);
        let auth = auth.trim_start_matches("Basic ");
        std::fs::write(&path, format!(r#"{{"auths":{{"{upstream}":{{"auth":"{auth}"}},"other.example":{{"auth":"eDp5"}}}}}}"#)).unwrap();
        path.display().to_string()
    };
    let good = auth_file("tower", AUTH_PASSWORD);
    let bad = auth_file("tower", "wrong-pw");
    let deliver = |extra: &[&str], site: &str, image: &str| {
        let mut args = vec!["deliver", "--site", site, "--insecure-registry", &upstream];
        args.extend_from_slice(extra);
        args.push(image);
        towerctl(&args)
    };
    assert_eq!(code(&deliver(&[], &site, &image)), 4, "no credentials");
    assert_eq!(
        code(&deliver(&["--auth-file", &bad], &site, &image)),
        4,
        "wrong password"
    );
    let missing = format!("{upstream}/team/nothing:v1");
    assert_eq!(
        code(&deliver(&["--auth-file", &good], &site, &missing)),
        3,
        "not found"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("{closed}/team/x:v1");
    let out = towerctl(&[
        "deliver",
        "--site",
        &site,
        "--insecure-registry",
        &closed.to_string(),
        &unreachable,
    ]);
    assert_eq!(code(&out), 5, "upstream unreachable");
    assert_eq!(
        code(&deliver(
            &["--auth-file", &good],
            &closed.to_string(),
            &image
        )),
        8,
        "site unreachable"
    );
    // The site holds at most 10 KiB: the 50 KiB image is refused up front.
    let out = deliver(&["--auth-file", &good], &site, &image);
    assert_eq!(
        code(&out),
        7,
        "site out of space: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bytes free"));
    assert_eq!(received(&node), 0);
    assert!(
        !node.log().contains(AUTH_PASSWORD),
        "credentials never reach the site"
    );
}

#[test]
fn an_index_brings_every_platform_or_only_the_one_asked_for() {
    let Some(t) = tools() else { return };
    let up = ReferenceRegistry::start(&t.registry);
    let upstream = up.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let amd = oci::image(61, &[20 << 10], "amd64");
    let arm = oci::image(62, &[30 << 10], "arm64");
    let (ix, ix_digest) = oci::index(&[&amd, &arm]);
    upload_index(
        work.path(),
        &[&amd, &arm],
        &ix,
        &format!("{upstream}/team/multi:v2"),
    );
    let options = NodeOptions {
        default_upstream: Some(upstream.clone()),
        ..Default::default()
    };
    let manifest = |node: &Node, reference: &str| {
        let r = request(
            node.addr,
            "GET",
            &format!("/v2/team/multi/manifests/{reference}"),
            &[],
            b"",
        );
        (r.status, digest(&r.body))
    };
    let image = format!("{upstream}/team/multi:v2");

    let all = Node::start(options.clone());
    let out = ok(towerctl(&[
        "deliver",
        "--site",
        &all.api.to_string(),
        "--insecure-registry",
        &upstream,
        &image,
    ]));
    assert!(
        out.contains(&ix_digest),
        "the index digest is pinned: {out}"
    );
    assert_eq!(manifest(&all, "v2"), (200, ix_digest.clone()));
    for child in [&amd, &arm] {
        assert_eq!(manifest(&all, &child.digest), (200, child.digest.clone()));
        let blobs = pull(
            work.path(),
            &all.addr.to_string(),
            &format!("team/multi@{}", child.digest),
        );
        for b in child.blobs() {
            assert!(blobs.contains(&b.digest), "{} pulled whole", child.arch);
        }
    }

    let one = Node::start(options);
    ok(towerctl(&[
        "deliver",
        "--site",
        &one.api.to_string(),
        "--insecure-registry",
        &upstream,
        "--platform",
        "linux/arm64",
        &image,
    ]));
    assert_eq!(
        manifest(&one, "v2"),
        (200, arm.digest.clone()),
        "the tag names the platform's image"
    );
    assert_eq!(manifest(&one, &amd.digest).0, 404);
    let out = towerctl(&[
        "deliver",
        "--site",
        &one.api.to_string(),
        "--insecure-registry",
        &upstream,
        "--platform",
        "linux/s390x",
        &image,
    ]);
    assert_eq!(code(&out), 3, "no such platform: not found");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("linux/arm64"),
        "the message lists what there is: {err}"
    );
    assert_eq!(manifest(&one, &ix_digest).0, 404);
    let arm_bytes: u64 = arm.blobs().map(|b| b.data.len() as u64).sum();
    assert_eq!(received(&one), arm_bytes, "only the arm64 image travelled");
}

#[test]
fn deliver_goes_on_with_another_node_when_the_leader_is_killed_mid_delivery() {
    let Some(t) = tools() else { return };
    let up = ReferenceRegistry::start(&t.registry);
    let upstream = up.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let img = oci::image(45, &[16 << 20; 6], "amd64");
    let reference = format!("{upstream}/team/big:v1");
    upload(work.path(), &img, &reference, None);
    let mut nodes = kit::node::cluster(
        3,
        &NodeOptions {
            default_upstream: Some(upstream.clone()),
            ..Default::default()
        },
    );
    let l = kit::node::leader(&nodes.iter().collect::<Vec<_>>());
    // The leader first: that is where towerctl starts.
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|i| *i != l);
    let sites: Vec<String> = order.iter().map(|i| nodes[*i].api.to_string()).collect();
    let child = std::process::Command::new(kit::tools::towerctl_bin())
        .args(["deliver", "--site", &sites.join(",")])
        .args(["--insecure-registry", &upstream, &reference])
        .env("HOME", "/nonexistent")
        .env_remove("DOCKER_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once a first blob has reached it, with the others on their way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while kit::node::status(&nodes[l]).map_or(0, |s| s.blob_bytes_received) < 16 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "no bytes reached the leader"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    nodes[l].kill9();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "towerctl failed: {stderr}");
    assert!(
        stderr.contains("going on with another node"),
        "the delivery ended before the kill: {stderr}"
    );
    // Everything it was told was stored is on both survivors.
    for (i, n) in nodes.iter().enumerate() {
        if i == l {
            continue;
        }
        // Committed on a majority: each survivor serves it once it has applied the entry.
        assert_eq!(served(n, "/v2/team/big/manifests/v1"), img.digest);
        for b in img.blobs() {
            let path = format!("/v2/team/big/blobs/{}", b.digest);
            assert_eq!(served(n, &path), b.digest, "{path} on {}", n.addr);
        }
    }
}

/// `towerctl deliver` to one node of a 3-node site the moment its nodes listen (before
/// their first election, when every node answers that it knows no leader) succeeds.
#[test]
fn deliver_right_after_a_three_node_site_starts_succeeds() {
    let Some(t) = tools() else { return };
    let up = ReferenceRegistry::start(&t.registry);
    let upstream = up.addr.to_string();
    let img = oci::image(36, &[64 << 10], "amd64");
    oci::push_image_as(up.addr, "team/early", "v1", &img);
    // `cluster` returns once the nodes listen, without waiting for a leader.
    let nodes = kit::node::cluster(3, &NodeOptions::default());
    let site = nodes[0].api.to_string();
    let out = ok(towerctl(&[
        "deliver",
        "--site",
        &site,
        "--insecure-registry",
        &upstream,
        &format!("{upstream}/team/early:v1"),
    ]));
    assert!(out.contains(&img.digest), "{out}");
    let manifest = format!("/v2/{upstream}/team/early/manifests/v1");
    for n in &nodes {
        assert_eq!(kit::node::served(n, &manifest), img.digest);
    }
}
