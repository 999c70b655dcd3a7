//! sha512 digests end to end, as the OCI distribution-spec conformance suite exercises
//! them: blobs pushed by POST+PUT, chunked, streamed and mounted, `Range` reads,
//! HEAD/GET/DELETE of blobs and manifests by sha512 digest, an index and a manifest whose
//! descriptors use sha512, a restart that keeps them, and a tower delivery of such an
//! image replicated on a three-node site. Unknown algorithms stay `DIGEST_INVALID`.

mod kit;

use kit::node::cluster;
use kit::oci::{auth, tar_layer, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST};
use kit::tools::{ok, require, towerctl};
use kit::upstream::ReferenceRegistry;
use kit::{request, Node, NodeOptions};
use serde_json::json;
use sha2::{Digest as _, Sha512};
use std::net::SocketAddr;

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// A blob known by its sha512 digest.
struct Blob {
    media_type: &'static str,
    data: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha512(&data),
            data,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.data.len() })
    }
}

/// An image whose config and layers are named by sha512 digests.
struct Image {
    blobs: Vec<Blob>,
    manifest: Vec<u8>,
}

fn image(seed: u64, sizes: &[usize]) -> Image {
    let layers: Vec<Blob> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| Blob::new(OCI_LAYER, tar_layer(seed * 100 + i as u64, *s)))
        .collect();
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        }))
        .unwrap(),
    );
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    }))
    .unwrap();
    let mut blobs = vec![config];
    blobs.extend(layers);
    Image { blobs, manifest }
}

fn headers<'a>(
    authorization: &'a Option<String>,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h: Vec<(&str, &str)> = authorization
        .iter()
        .map(|a| ("Authorization", a.as_str()))
        .collect();
    h.extend_from_slice(more);
    h
}

/// Starts an upload; returns its path (absolute URLs cut to the path).
fn start(addr: SocketAddr, repo: &str, authorization: &Option<String>) -> String {
    let r = request(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &headers(authorization, &[]),
        b"",
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").unwrap();
    location[location.find("/v2/").unwrap()..].to_owned()
}

/// One PATCH of `data` to the upload at `path` (with `Content-Range` when given); returns
/// the upload's next location.
fn patch(
    addr: SocketAddr,
    path: &str,
    range: Option<&str>,
    data: &[u8],
    authorization: &Option<String>,
) -> String {
    let mut more = vec![("Content-Type", "application/octet-stream")];
    more.extend(range.map(|r| ("Content-Range", r)));
    let r = request(addr, "PATCH", path, &headers(authorization, &more), data);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.header("location").unwrap().to_owned()
}

fn with_digest(path: &str, digest: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}digest={digest}")
}

/// POST, then PUT of the whole blob with its sha512 digest (what every registry takes),
/// and the blob read back by it.
fn put_two_step(addr: SocketAddr, repo: &str, blob: &Blob, authorization: &Option<String>) {
    let path = start(addr, repo, authorization);
    let r = request(
        addr,
        "PUT",
        &with_digest(&path, &blob.digest),
        &headers(authorization, &[]),
        &blob.data,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // The reference registry answers with its sha256 name, and serves it by sha512 too.
    let path = format!("/v2/{repo}/blobs/{}", blob.digest);
    let r = request(addr, "GET", &path, &headers(authorization, &[]), b"");
    assert_eq!(r.status, 200);
    assert_eq!(sha512(&r.body), blob.digest);
}

fn put_manifest(
    addr: SocketAddr,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
    authorization: &Option<String>,
) -> kit::http::Response {
    request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &headers(authorization, &[("Content-Type", media_type)]),
        body,
    )
}

#[test]
fn blobs_and_manifests_by_sha512_over_the_distribution_api() {
    let mut node = Node::start(NodeOptions::push());
    let addr = node.addr;
    let a = Some(auth());
    let img = image(1, &[300 << 10, 70 << 10]);
    let (config, big, small) = (&img.blobs[0], &img.blobs[1], &img.blobs[2]);

    // Monolithic: POST ?digest=, the whole blob in the POST.
    let r = request(
        addr,
        "POST",
        &format!("/v2/team/a/blobs/uploads/?digest={}", config.digest),
        &headers(&a, &[]),
        &config.data,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(config.digest.as_str())
    );

    // Chunked: two PATCHes with Content-Range, then the PUT.
    let path = start(addr, "team/a", &a);
    let half = big.data.len() / 2;
    let range = format!("0-{}", half - 1);
    let path = patch(addr, &path, Some(&range), &big.data[..half], &a);
    let range = format!("{half}-{}", big.data.len() - 1);
    let path = patch(addr, &path, Some(&range), &big.data[half..], &a);
    let r = request(
        addr,
        "PUT",
        &with_digest(&path, &big.digest),
        &headers(&a, &[]),
        b"",
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // Streamed: one PATCH without Content-Range, then the PUT.
    let path = start(addr, "team/a", &a);
    let path = patch(addr, &path, None, &small.data, &a);
    let r = request(
        addr,
        "PUT",
        &with_digest(&path, &small.digest),
        &headers(&a, &[]),
        b"",
    );
    assert_eq!(r.status, 201);

    // A wrong sha512 digest stores nothing.
    let wrong = sha512(b"something else");
    let path = start(addr, "team/a", &a);
    let r = request(
        addr,
        "PUT",
        &with_digest(&path, &wrong),
        &headers(&a, &[]),
        b"not it",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        request(addr, "HEAD", &format!("/v2/team/a/blobs/{wrong}"), &[], b"").status,
        404
    );

    // Reads by sha512: HEAD, GET, a Range.
    for b in &img.blobs {
        let r = request(
            addr,
            "HEAD",
            &format!("/v2/team/a/blobs/{}", b.digest),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some(b.data.len().to_string().as_str())
        );
        assert_eq!(r.header("docker-content-digest"), Some(b.digest.as_str()));
        let r = request(
            addr,
            "GET",
            &format!("/v2/team/a/blobs/{}", b.digest),
            &[],
            b"",
        );
        assert_eq!(sha512(&r.body), b.digest);
    }
    let r = request(
        addr,
        "GET",
        &format!("/v2/team/a/blobs/{}", big.digest),
        &[("Range", "bytes=10-19")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &big.data[10..20]);

    // Mounted into another repository.
    let r = request(
        addr,
        "POST",
        &format!(
            "/v2/team/b/blobs/uploads/?mount={}&from=team/a",
            small.digest
        ),
        &headers(&a, &[]),
        b"",
    );
    assert_eq!(r.status, 201);
    let r = request(
        addr,
        "GET",
        &format!("/v2/team/b/blobs/{}", small.digest),
        &[],
        b"",
    );
    assert_eq!(sha512(&r.body), small.digest);

    // The manifest (descriptors in sha512), by tag and by its own sha512 digest.
    let r = put_manifest(addr, "team/a", "v1", OCI_MANIFEST, &img.manifest, &a);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let m512 = sha512(&img.manifest);
    let r = put_manifest(addr, "team/a", &m512, OCI_MANIFEST, &img.manifest, &a);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("docker-content-digest"), Some(m512.as_str()));
    for method in ["HEAD", "GET"] {
        let r = request(
            addr,
            method,
            &format!("/v2/team/a/manifests/{m512}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("docker-content-digest"), Some(m512.as_str()));
        if method == "GET" {
            assert_eq!(r.body, img.manifest);
        }
    }
    // A sha512 digest that is not the body's is refused.
    let r = put_manifest(addr, "team/a", &wrong, OCI_MANIFEST, &img.manifest, &a);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");

    // An index naming its manifest by sha512.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": m512, "size": img.manifest.len(),
                        "platform": { "os": "linux", "architecture": "amd64" } }],
    }))
    .unwrap();
    let r = put_manifest(addr, "team/a", "multi", OCI_INDEX, &index, &a);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        request(addr, "GET", "/v2/team/a/manifests/multi", &[], b"").body,
        index
    );

    // Another algorithm is refused as DIGEST_INVALID.
    let r = request(
        addr,
        "GET",
        &format!("/v2/team/a/blobs/sha384:{}", "a".repeat(96)),
        &[],
        b"",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");

    // After a restart every sha512 blob file is found and served.
    node.terminate();
    node.restart();
    for b in &img.blobs {
        let r = request(
            node.addr,
            "GET",
            &format!("/v2/team/a/blobs/{}", b.digest),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(sha512(&r.body), b.digest);
    }
    let addr = node.addr;

    // Deletes by sha512: the blob from one repository, then the manifest.
    let r = request(
        addr,
        "DELETE",
        &format!("/v2/team/b/blobs/{}", small.digest),
        &headers(&a, &[]),
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        request(
            addr,
            "HEAD",
            &format!("/v2/team/b/blobs/{}", small.digest),
            &[],
            b""
        )
        .status,
        404
    );
    let r = request(
        addr,
        "DELETE",
        &format!("/v2/team/a/manifests/{m512}"),
        &headers(&a, &[]),
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        request(
            addr,
            "GET",
            &format!("/v2/team/a/manifests/{m512}"),
            &[],
            b""
        )
        .status,
        404
    );
}

#[test]
fn a_tower_delivery_of_a_sha512_image_is_replicated_on_three_nodes() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start(&binary);
    let img = image(2, &[1 << 20, 40 << 10]);
    for b in &img.blobs {
        put_two_step(registry.addr, "team/five", b, &None);
    }
    let r = put_manifest(
        registry.addr,
        "team/five",
        "v1",
        OCI_MANIFEST,
        &img.manifest,
        &None,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    let nodes = cluster(3, &NodeOptions::default());
    let sites: Vec<String> = nodes.iter().map(|n| n.api.to_string()).collect();
    let reference = format!("{}/team/five:v1", registry.addr);
    let out = ok(towerctl(&[
        "deliver",
        "--site",
        &sites.join(","),
        "--insecure-registry",
        &registry.addr.to_string(),
        &reference,
    ]));
    assert!(!out.is_empty());
    let repo = format!("{}/team/five", registry.addr);
    for n in &nodes {
        assert_eq!(
            request(n.addr, "GET", &format!("/v2/{repo}/manifests/v1"), &[], b"").body,
            img.manifest
        );
        // Every node holds every blob (fetched from its peers, verified by sha512).
        for b in &img.blobs {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let file = format!("/sha512/{}/{}", &b.digest[7..9], &b.digest[7..]);
            while !n.blob_files().iter().any(|(p, _)| p.ends_with(&file)) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} lacks {}",
                    n.addr,
                    b.digest
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let r = request(
                n.addr,
                "GET",
                &format!("/v2/{repo}/blobs/{}", b.digest),
                &[],
                b"",
            );
            assert_eq!(sha512(&r.body), b.digest);
        }
    }
}

#[test]
fn a_manifest_pushed_by_its_sha512_digest_with_tag_parameters_is_tagged_by_that_digest() {
    let node = Node::start(NodeOptions::push());
    let a = Some(auth());
    let img = image(9, &[40 << 10]);
    for b in &img.blobs {
        put_two_step(node.addr, "team/t", b, &a);
    }
    let d = sha512(&img.manifest);
    // What the conformance suite sends: the digest, and the tags as query parameters.
    let r = put_manifest(
        node.addr,
        "team/t",
        &format!("{d}?tag=v2&tag=latest&tag=v2"),
        OCI_MANIFEST,
        &img.manifest,
        &a,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(r.header("oci-tag"), Some("v2, latest"));
    for tag in ["v2", "latest"] {
        for method in ["GET", "HEAD"] {
            let path = format!("/v2/team/t/manifests/{tag}");
            let r = request(node.addr, method, &path, &[("Accept", OCI_MANIFEST)], b"");
            assert_eq!(r.status, 200, "{method} {tag}");
            assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        }
    }
    // A bad tag refuses the whole push: nothing stored.
    let r = put_manifest(
        node.addr,
        "team/t",
        &format!("{d}?tag=ok&tag=-bad"),
        OCI_MANIFEST,
        &img.manifest,
        &a,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    let path = "/v2/team/t/manifests/ok";
    assert_eq!(request(node.addr, "GET", path, &[], b"").status, 404);
}
