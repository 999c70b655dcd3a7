//! skopeo, a real OCI client, pushes images built as OCI layouts to a real node and pulls
//! them back: every digest must survive the round trip.

mod kit;

use kit::node::{PASSWORD, USER};
use kit::oci::{self, OCI_INDEX, OCI_MANIFEST};
use kit::tools::{require, run};
use kit::{digest, request, Node, NodeOptions};
use std::process::Command;

fn skopeo() -> Option<Command> {
    require("skopeo").map(Command::new)
}

fn creds() -> String {
    format!("{USER}:{PASSWORD}")
}

#[test]
fn skopeo_pushes_and_pulls_a_multi_layer_image() {
    let Some(_) = skopeo() else { return };
    let node = Node::start(NodeOptions::push());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let image = oci::image(1, &[1024, 300 * 1024, 3 << 20, 10], "amd64");
    oci::write_layout(
        &src,
        &[&image],
        None,
        &[("single", &image.manifest, OCI_MANIFEST)],
    );
    let dest = format!("docker://{}/team/app:v1", node.addr);

    run(skopeo()
        .unwrap()
        .args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds(),
        ])
        .arg(format!("oci:{}:single", src.display()))
        .arg(&dest));

    let raw = run(skopeo().unwrap().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--no-creds",
        &dest,
    ]));
    assert_eq!(
        digest(raw.strip_suffix('\n').unwrap_or(&raw).as_bytes()),
        image.digest
    );

    let out = work.path().join("out");
    oci::skopeo_copy(&node.addr.to_string(), "team/app:v1", &out);
    assert_eq!(oci::pulled_root(&out), image.digest);
    oci::assert_pulled(&oci::verified_blobs(&out), &image);

    // The same content over plain HTTP, under the Docker-normalised name too.
    for b in image.blobs() {
        let r = request(
            node.addr,
            "GET",
            &format!("/v2/docker.io/team/app/blobs/{}", b.digest),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(digest(&r.body), b.digest);
        assert_eq!(r.header("docker-content-digest"), Some(b.digest.as_str()));
    }
}

#[test]
fn skopeo_pushes_and_pulls_a_multi_platform_index() {
    let Some(_) = skopeo() else { return };
    let node = Node::start(NodeOptions::push());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let amd64 = oci::image(2, &[200 * 1024, 2 << 20], "amd64");
    let arm64 = oci::image(3, &[150 * 1024, 1 << 20, 5000], "arm64");
    let (index, index_digest) = oci::index(&[&amd64, &arm64]);
    oci::write_layout(
        &src,
        &[&amd64, &arm64],
        Some(&index),
        &[("multi", &index, OCI_INDEX)],
    );
    let dest = format!("docker://{}/library/multi:v2", node.addr);

    run(skopeo()
        .unwrap()
        .args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds(),
        ])
        .arg(format!("oci:{}:multi", src.display()))
        .arg(&dest));

    let raw = run(skopeo().unwrap().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--no-creds",
        &dest,
    ]));
    assert_eq!(
        digest(raw.strip_suffix('\n').unwrap_or(&raw).as_bytes()),
        index_digest
    );

    let out = work.path().join("out");
    run(skopeo()
        .unwrap()
        .args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-no-creds",
            &dest,
        ])
        .arg(format!("oci:{}:pulled", out.display())));
    assert_eq!(oci::pulled_root(&out), index_digest);
    let blobs = oci::verified_blobs(&out);
    assert!(blobs.contains(&index_digest));
    oci::assert_pulled(&blobs, &amd64);
    oci::assert_pulled(&blobs, &arm64);

    // `multi` is a one-component Docker Hub name: every spelling reaches it.
    for path in [
        "/v2/multi/manifests/v2",
        "/v2/library/multi/manifests/v2?ns=docker.io",
        "/v2/docker.io/library/multi/manifests/v2",
    ] {
        let r = request(node.addr, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(digest(&r.body), index_digest, "{path}");
        assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    }

    // One platform, as a runtime on an arm64 node would pull it.
    let one = work.path().join("one");
    run(skopeo()
        .unwrap()
        .args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-no-creds",
            "--override-arch",
            "arm64",
            &dest,
        ])
        .arg(format!("oci:{}:arm", one.display())));
    assert_eq!(oci::pulled_root(&one), arm64.digest);
    oci::assert_pulled(&oci::verified_blobs(&one), &arm64);
}
