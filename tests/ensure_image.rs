//! `EnsureImage`, the edge enforcer's call, against a real upstream (Debian's
//! `docker-registry`): `DOWNLOADED` then `CACHED`, the pull events on `WatchEvents`, the
//! failure taxonomy in the status and its `ErrorInfo`, an index's platform, and the
//! operator's `site-agent ensure`.

mod kit;

use kit::grpc::{self, rt};
use kit::oci;
use kit::tools::require;
use kit::upstream::ReferenceRegistry;
use kit::{request, Node, NodeOptions};
use site_api::pb;
use tonic::Code;
use tonic_types::StatusExt;

/// A node whose `[pull]` reaches `upstream` over plain HTTP, with `policy` by default.
fn node_for(upstream: std::net::SocketAddr, policy: &str) -> Node {
    Node::start(NodeOptions::pulling(upstream, policy, ""))
}

fn ensure_request(image: &str, policy: &str, platform: &str) -> pb::EnsureImageRequest {
    pb::EnsureImageRequest {
        image: image.into(),
        policy: policy.into(),
        platform: platform.into(),
    }
}

/// The reason of a failed `EnsureImage`: its `ErrorInfo`, checked against its message.
fn reason(status: &tonic::Status) -> String {
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.domain, "site.v1");
    assert!(
        status.message().starts_with(&info.reason),
        "{}",
        status.message()
    );
    info.reason
}

#[test]
fn an_image_is_downloaded_once_then_reported_cached_with_its_events() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let image = oci::image(21, &[200 * 1024, 30 * 1024], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    // The node fetches nothing on its own; the enforcer names the policy.
    let node = node_for(registry.addr, "Never");
    let bytes: u64 =
        image.blobs().map(|b| b.data.len() as u64).sum::<u64>() + image.manifest.len() as u64;
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let mut events = grpc::watch(&mut c).await;
        let r = c
            .ensure_image(ensure_request("team/app:v1", "IfNotPresent", ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.digest.as_str(), r.size, r.source.as_str()),
            (image.digest.as_str(), bytes, "DOWNLOADED")
        );
        let started = next_event!(&mut events, ImagePullStarted);
        assert_eq!(
            (started.image.as_str(), started.node_id),
            ("team/app:v1", 1)
        );
        let cached = next_event!(&mut events, ImageCached);
        assert_eq!(
            (cached.digest.as_str(), cached.bytes),
            (image.digest.as_str(), bytes)
        );
        let done = next_event!(&mut events, ImagePullCompleted);
        assert_eq!(
            (done.digest.as_str(), done.source.as_str(), done.bytes),
            (image.digest.as_str(), "DOWNLOADED", bytes)
        );

        // Held now, by tag and by digest, whatever the node's own policy.
        for image_ref in [
            "team/app:v1".to_owned(),
            format!("team/app@{}", image.digest),
        ] {
            let r = c
                .ensure_image(ensure_request(&image_ref, "", ""))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                (r.digest.as_str(), r.source.as_str()),
                (image.digest.as_str(), "CACHED")
            );
            let done = next_event!(&mut events, ImagePullCompleted);
            assert_eq!(done.source, "CACHED");
        }
    });
    // Served over HTTP with the upstream gone.
    drop(registry);
    let r = request(node.addr, "GET", "/v2/team/app/manifests/v1", &[], b"");
    assert_eq!(
        (r.status, kit::digest(&r.body)),
        (200, image.digest.clone())
    );
    oci::assert_blobs_served(node.addr, "team/app", &image);
}

#[test]
fn each_failure_has_its_reason_status_and_event() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let image = oci::image(22, &[10 * 1024], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let node = node_for(registry.addr, "IfNotPresent");
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let mut events = grpc::watch(&mut c).await;
        let fails = |req: pb::EnsureImageRequest, code: Code, why: &'static str| {
            let mut c = c.clone();
            async move {
                let e = match c.ensure_image(req.clone()).await {
                    Err(e) => e,
                    Ok(r) => panic!("{req:?} succeeded: {r:?}"),
                };
                assert_eq!(
                    (e.code(), reason(&e).as_str()),
                    (code, why),
                    "{req:?}: {e:?}"
                );
            }
        };
        fails(
            ensure_request("team/none:v1", "", ""),
            Code::NotFound,
            "NOT_FOUND",
        )
        .await;
        fails(
            ensure_request("team/app:v1", "Never", ""),
            Code::FailedPrecondition,
            "NOT_PRESENT",
        )
        .await;
        for bad in [
            ensure_request("", "", ""),
            ensure_request("../../etc/passwd", "", ""),
            ensure_request("team/app@sha256:nothex", "", ""),
            ensure_request("Team/App:v1", "", ""),
            ensure_request(&format!("team/{}:v1", "a/".repeat(200)), "", ""),
            ensure_request("team/app:v1", "Sometimes", ""),
            ensure_request("team/app:v1", "", "linux"),
            ensure_request("team/app:v1", "", "linux/../x"),
        ] {
            fails(bad, Code::InvalidArgument, "INVALID").await;
        }
        let failed = next_event!(&mut events, ImagePullFailed);
        assert_eq!(
            (failed.image.as_str(), failed.reason.as_str()),
            ("team/none:v1", "NOT_FOUND")
        );
        assert_eq!(grpc::status(&mut c).await.images, 0, "nothing stored");
    });
    // The upstream gone: unreachable.
    drop(registry);
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let e = c
            .ensure_image(ensure_request("team/app:v1", "", ""))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::Unavailable, "UNREACHABLE")
        );
    });
    let r = request(node.addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200, "node fine");
}

#[test]
fn refused_credentials_are_auth_failed() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start_with_auth(&binary, "tower");
    let node = node_for(registry.addr, "IfNotPresent");
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let e = c
            .ensure_image(ensure_request("team/private:v1", "", ""))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::PermissionDenied, "AUTH_FAILED")
        );
    });
}

#[test]
fn an_index_is_made_present_for_the_asked_platform_only() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let amd = oci::image(23, &[20 * 1024], "amd64");
    let arm = oci::image(24, &[30 * 1024], "arm64");
    for i in [&amd, &arm] {
        oci::push_image_as(registry.addr, "team/multi", &i.digest, i);
    }
    let (index, index_digest) = oci::index(&[&amd, &arm]);
    let r = request(
        registry.addr,
        "PUT",
        "/v2/team/multi/manifests/v1",
        &[("Content-Type", oci::OCI_INDEX)],
        &index,
    );
    assert_eq!(r.status, 201);
    let node = node_for(registry.addr, "IfNotPresent");
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let r = c
            .ensure_image(ensure_request("team/multi:v1", "", "linux/arm64"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.digest.as_str(), r.source.as_str()),
            (index_digest.as_str(), "DOWNLOADED")
        );
        let e = c
            .ensure_image(ensure_request("team/multi:v1", "", "linux/s390x"))
            .await
            .unwrap_err();
        assert_eq!(reason(&e), "NOT_FOUND");
        assert!(e.message().contains("linux/s390x"), "{}", e.message());
        // The asked platform is held, the other not fetched.
        let r = c
            .ensure_image(ensure_request("team/multi:v1", "Never", "linux/arm64"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.source, "CACHED");
        let e = c
            .ensure_image(ensure_request("team/multi:v1", "Never", "linux/amd64"))
            .await
            .unwrap_err();
        assert_eq!(reason(&e), "NOT_PRESENT");
    });
    let path = |d: &str| format!("/v2/team/multi/manifests/{d}");
    drop(registry);
    assert_eq!(request(node.addr, "GET", &path("v1"), &[], b"").status, 200);
    assert_eq!(
        request(node.addr, "GET", &path(&arm.digest), &[], b"").status,
        200
    );
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/team/multi/blobs/{}", arm.layers[0].digest),
        &[],
        b"",
    );
    assert_eq!(
        (r.status, kit::digest(&r.body)),
        (200, arm.layers[0].digest.clone())
    );
}

#[test]
fn the_operator_command_prints_the_image_and_exits_by_reason() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let image = oci::image(25, &[10 * 1024], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let node = node_for(registry.addr, "IfNotPresent");
    let ensure = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_site-agent"))
            .arg("ensure")
            .arg("--config")
            .arg(node.config_path())
            .args(["--api", &node.api.to_string()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = ensure(&["team/app:v1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with(&format!("{} ", image.digest)) && line.trim_end().ends_with(" DOWNLOADED"),
        "{line}"
    );
    let out = ensure(&["--policy", "Never", "team/other:v1"]);
    assert_eq!(
        out.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT_PRESENT"));
    let out = ensure(&["team/none:v1"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a configuration file: the defaults, and the address given.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_site-agent"))
        .args([
            "ensure",
            "--api",
            &node.api.to_string(),
            "--policy",
            "Never",
        ])
        .arg(format!("{}/team/app:v1", registry.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim_end()
        .ends_with(" CACHED"));
    let closed = kit::node::free_addr().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_site-agent"))
        .args(["ensure", "--api", &closed, "team/app:v1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "node unreachable");
}

#[test]
fn a_pull_over_http_that_fetches_raises_the_same_events() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let image = oci::image(26, &[40 * 1024], "amd64");
    oci::push_image_as(registry.addr, "team/app", "v1", &image);
    let node = node_for(registry.addr, "IfNotPresent");
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let mut events = grpc::watch(&mut c).await;
        let addr = node.addr;
        let r = tokio::task::spawn_blocking(move || {
            request(addr, "GET", "/v2/team/app/manifests/v1", &[], b"")
        })
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        let repo = format!("{}/team/app", registry.addr);
        let started = next_event!(&mut events, ImagePullStarted);
        assert_eq!(started.image, format!("{repo}:v1"));
        let cached = next_event!(&mut events, ImageCached);
        assert_eq!(
            (cached.repository.as_str(), cached.digest.as_str()),
            (repo.as_str(), image.digest.as_str())
        );
        let done = next_event!(&mut events, ImagePullCompleted);
        assert_eq!(
            (done.digest.as_str(), done.source.as_str()),
            (image.digest.as_str(), "DOWNLOADED")
        );
        // A miss the upstream cannot fill.
        let r = tokio::task::spawn_blocking(move || {
            request(addr, "GET", "/v2/team/none/manifests/v1", &[], b"")
        })
        .await
        .unwrap();
        assert_eq!(r.status, 404);
        let failed = next_event!(&mut events, ImagePullFailed);
        assert_eq!(
            (failed.image, failed.reason.as_str()),
            (format!("{}/team/none:v1", registry.addr), "NOT_FOUND")
        );
    });
}

#[test]
fn an_image_that_cannot_fit_is_out_of_space_and_nothing_live_is_evicted() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let Some(disk) = kit::tools::Tmpfs::mount(48 << 20) else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let small = oci::image(27, &[1 << 20], "amd64");
    let big = oci::image(28, &[64 << 20], "amd64");
    oci::push_image_as(registry.addr, "team/small", "v1", &small);
    oci::push_image_as(registry.addr, "team/big", "v1", &big);
    let node = Node::start(NodeOptions {
        dir_in: Some(disk.dir.path().to_owned()),
        ..NodeOptions::pulling(registry.addr, "IfNotPresent", "")
    });
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let r = c
            .ensure_image(ensure_request("team/small:v1", "", ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.source, "DOWNLOADED");
        c.pin(pb::PinRequest {
            image: format!("{}/team/small@{}", registry.addr, small.digest),
        })
        .await
        .unwrap();
        let mut events = grpc::watch(&mut c).await;
        let e = c
            .ensure_image(ensure_request("team/big:v1", "", ""))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::ResourceExhausted, "OUT_OF_SPACE")
        );
        let failed = next_event!(&mut events, ImagePullFailed);
        assert_eq!(failed.reason, "OUT_OF_SPACE");
    });
    // Over HTTP: the blob is refused before its first byte.
    let layer = &big.layers[0];
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/team/big/blobs/{}", layer.digest),
        &[],
        b"",
    );
    assert_eq!(r.status, 507, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("out of space"));
    // The pinned image is whole; the node goes on.
    oci::assert_blobs_served(node.addr, "team/small", &small);
    assert!(!node.blob_files().iter().any(|(d, _)| *d == layer.digest));
    assert_eq!(request(node.addr, "GET", "/readyz", &[], b"").status, 200);
}
