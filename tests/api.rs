//! The OCI Distribution API workflows against a real node: chunked uploads, mounts,
//! ranges, tags and catalog paging, referrers, mirror naming, deletes, and shutdown.

mod kit;

use kit::oci::{self, auth, push_blob, push_image, push_manifest, OCI_INDEX, OCI_MANIFEST};
use kit::{bytes, digest, request, Node, NodeOptions};

#[test]
fn version_check_and_credentials() {
    let read_only = Node::start(NodeOptions::default());
    let r = request(read_only.addr, "GET", "/v2/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let push = Node::start(NodeOptions::push());
    let r = request(push.addr, "GET", "/v2/", &[], b"");
    assert_eq!(r.status, 401, "clients learn the auth scheme from /v2/");
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let a = auth();
    assert_eq!(
        request(
            push.addr,
            "GET",
            "/v2/",
            &[("Authorization", a.as_str())],
            b""
        )
        .status,
        200
    );
    assert_eq!(kit::get_status(push.addr, "/healthz"), 200);
    let m = request(push.addr, "GET", "/metrics", &[], b"");
    assert!(String::from_utf8_lossy(&m.body).contains("site_http_requests_total"));
}

#[test]
fn chunked_upload_status_and_ranges() {
    let node = Node::start(NodeOptions::push());
    let a = auth();
    let h = [("Authorization", a.as_str())];
    let data = bytes(21, 300_000);
    let r = request(node.addr, "POST", "/v2/up/app/blobs/uploads/", &h, b"");
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range"), Some("0-0"));
    assert!(r.header("docker-upload-uuid").is_some());
    let mut location = r.header("location").unwrap().to_owned();
    // First chunk with a Content-Range, second without, last one in the closing PUT.
    let r = request(
        node.addr,
        "PATCH",
        &location,
        &[h[0], ("Content-Range", "0-99999")],
        &data[..100_000],
    );
    assert_eq!((r.status, r.header("range")), (202, Some("0-99999")));
    location = r.header("location").unwrap().to_owned();
    let r = request(node.addr, "PATCH", &location, &h, &data[100_000..250_000]);
    assert_eq!((r.status, r.header("range")), (202, Some("0-249999")));
    let r = request(node.addr, "GET", &location, &h, b"");
    assert_eq!((r.status, r.header("range")), (204, Some("0-249999")));
    let d = digest(&data);
    let r = request(
        node.addr,
        "PUT",
        &format!("{location}?digest={d}"),
        &h,
        &data[250_000..],
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let blob_path = r.header("location").unwrap().to_owned();
    assert_eq!(blob_path, format!("/v2/up/app/blobs/{d}"));

    let r = request(node.addr, "HEAD", &blob_path, &[], b"");
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("300000"))
    );
    assert!(r.body.is_empty());
    let r = request(
        node.addr,
        "GET",
        &blob_path,
        &[("Range", "bytes=10-19")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/300000"));
    assert_eq!(r.body, &data[10..20]);
    let r = request(node.addr, "GET", &blob_path, &[("Range", "bytes=-5")], b"");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[299_995..]));
    let r = request(
        node.addr,
        "GET",
        &blob_path,
        &[("Range", "bytes=299990-")],
        b"",
    );
    assert_eq!(r.body, &data[299_990..]);

    // Cancel: the session is gone.
    let r = request(node.addr, "POST", "/v2/up/app/blobs/uploads/", &h, b"");
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(request(node.addr, "DELETE", &location, &h, b"").status, 204);
    assert_eq!(request(node.addr, "GET", &location, &h, b"").status, 404);
    assert!(node.upload_files().is_empty());
}

#[test]
fn cross_repository_mount() {
    let node = Node::start(NodeOptions::push());
    let a = auth();
    let data = bytes(22, 5000);
    let d = digest(&data);
    assert_eq!(push_blob(node.addr, "src/app", &data).status, 201);
    let r = request(
        node.addr,
        "POST",
        &format!("/v2/dst/app/blobs/uploads/?mount={d}&from=src/app"),
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/dst/app/blobs/{d}").as_str())
    );
    assert_eq!(
        digest(
            &request(
                node.addr,
                "GET",
                &format!("/v2/dst/app/blobs/{d}"),
                &[],
                b""
            )
            .body
        ),
        d
    );
    // A mount from a repository that lacks the blob falls back to an upload session.
    let r = request(
        node.addr,
        "POST",
        &format!("/v2/third/app/blobs/uploads/?mount={d}&from=nowhere/app"),
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        kit::get_status(node.addr, &format!("/v2/third/app/blobs/{d}")),
        404
    );
}

#[test]
fn tags_and_catalog_paging() {
    let node = Node::start(NodeOptions::push());
    let image = oci::image(23, &[100], "amd64");
    for tag in ["t0", "t1", "t2", "t3", "t4"] {
        push_image(node.addr, "page/app", tag, &image);
    }
    push_image(node.addr, "another", "latest", &image);
    push_image(node.addr, "zeta/app", "latest", &image);
    let tags = |q: &str| {
        request(
            node.addr,
            "GET",
            &format!("/v2/page/app/tags/list{q}"),
            &[],
            b"",
        )
    };
    let r = tags("");
    assert_eq!(
        r.json()["tags"],
        serde_json::json!(["t0", "t1", "t2", "t3", "t4"])
    );
    assert_eq!(r.json()["name"], "page/app");
    let r = tags("?n=2");
    assert_eq!(r.json()["tags"], serde_json::json!(["t0", "t1"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/page/app/tags/list?n=2&last=t1>; rel=\"next\"")
    );
    let r = tags("?n=2&last=t1");
    assert_eq!(r.json()["tags"], serde_json::json!(["t2", "t3"]));
    let r = tags("?n=2&last=t3");
    assert_eq!(r.json()["tags"], serde_json::json!(["t4"]));
    assert_eq!(r.header("link"), None);
    assert_eq!(tags("?n=0").json()["tags"], serde_json::json!([]));
    let catalog = |q: &str| {
        request(node.addr, "GET", &format!("/v2/_catalog{q}"), &[], b"").json()["repositories"]
            .clone()
    };
    assert_eq!(
        catalog(""),
        serde_json::json!(["library/another", "page/app", "zeta/app"])
    );
    assert_eq!(
        catalog("?n=1&last=library/another"),
        serde_json::json!(["page/app"])
    );
}

#[test]
fn referrers_with_artifact_type_filter() {
    let node = Node::start(NodeOptions::push());
    let image = oci::image(24, &[100], "amd64");
    push_image(node.addr, "ref/app", "v1", &image);
    let empty = oci::Blob::new("application/vnd.oci.empty.v1+json", b"{}".to_vec());
    assert_eq!(push_blob(node.addr, "ref/app", &empty.data).status, 201);
    let sig = oci::Blob::new("application/x.signature", bytes(25, 64));
    assert_eq!(push_blob(node.addr, "ref/app", &sig.data).status, 201);
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sig",
        "config": empty.descriptor(), "layers": [sig.descriptor()],
        "subject": { "mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len() },
        "annotations": { "org.example.signed-by": "tower" },
    }))
    .unwrap();
    let artifact_digest = digest(&artifact);
    let r = push_manifest(
        node.addr,
        "ref/app",
        &artifact_digest,
        OCI_MANIFEST,
        &artifact,
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("oci-subject"), Some(image.digest.as_str()));

    let r = request(
        node.addr,
        "GET",
        &format!("/v2/ref/app/referrers/{}", image.digest),
        &[],
        b"",
    );
    assert_eq!((r.status, r.header("content-type")), (200, Some(OCI_INDEX)));
    let list = r.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1);
    let d = &list["manifests"][0];
    assert_eq!(d["digest"], artifact_digest);
    assert_eq!(d["artifactType"], "application/x.sig");
    assert_eq!(d["size"], artifact.len());
    assert_eq!(d["annotations"]["org.example.signed-by"], "tower");
    let r = request(
        node.addr,
        "GET",
        &format!(
            "/v2/ref/app/referrers/{}?artifactType=application/x.sig",
            image.digest
        ),
        &[],
        b"",
    );
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let r = request(
        node.addr,
        "GET",
        &format!(
            "/v2/ref/app/referrers/{}?artifactType=application/other",
            image.digest
        ),
        &[],
        b"",
    );
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/ref/app/referrers/{}", digest(b"nothing")),
        &[],
        b"",
    );
    assert_eq!(
        (r.status, r.json()["manifests"].clone()),
        (200, serde_json::json!([]))
    );
    // Deleting the artifact removes it from the referrers.
    let a = auth();
    assert_eq!(
        request(
            node.addr,
            "DELETE",
            &format!("/v2/ref/app/manifests/{artifact_digest}"),
            &[("Authorization", a.as_str())],
            b""
        )
        .status,
        202
    );
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/ref/app/referrers/{}", image.digest),
        &[],
        b"",
    );
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
}

#[test]
fn mirror_names_and_deletes() {
    let node = Node::start(NodeOptions::push());
    let image = oci::image(26, &[100], "amd64");
    // containerd's mirror form names the upstream registry with ?ns=.
    let a = auth();
    for b in image.blobs() {
        let r = request(
            node.addr,
            "POST",
            &format!(
                "/v2/team/app/blobs/uploads/?ns=registry.example.com:4433&digest={}",
                b.digest
            ),
            &[("Authorization", a.as_str())],
            &b.data,
        );
        assert_eq!(r.status, 201);
    }
    let r = request(
        node.addr,
        "PUT",
        "/v2/team/app/manifests/v1?ns=registry.example.com:4433",
        &[
            ("Authorization", a.as_str()),
            ("Content-Type", OCI_MANIFEST),
        ],
        &image.manifest,
    );
    assert_eq!(r.status, 201);
    let r = request(
        node.addr,
        "HEAD",
        "/v2/registry.example.com:4433/team/app/manifests/v1",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(image.digest.as_str())
    );
    assert_eq!(
        r.header("content-length"),
        Some(image.manifest.len().to_string().as_str())
    );
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    // Without ns the same path means Docker Hub: another repository.
    assert_eq!(kit::get_status(node.addr, "/v2/team/app/manifests/v1"), 404);

    // Deleting a tag keeps the manifest by digest; deleting the digest removes it.
    let base = "/v2/registry.example.com:4433/team/app/manifests";
    assert_eq!(
        request(
            node.addr,
            "DELETE",
            &format!("{base}/v1"),
            &[("Authorization", a.as_str())],
            b""
        )
        .status,
        202
    );
    assert_eq!(kit::get_status(node.addr, &format!("{base}/v1")), 404);
    assert_eq!(
        kit::get_status(node.addr, &format!("{base}/{}", image.digest)),
        200
    );
    assert_eq!(
        request(
            node.addr,
            "DELETE",
            &format!("{base}/{}", image.digest),
            &[("Authorization", a.as_str())],
            b""
        )
        .status,
        202
    );
    assert_eq!(
        kit::get_status(node.addr, &format!("{base}/{}", image.digest)),
        404
    );
    let layer = &image.layers[0].digest;
    let blob = format!("/v2/registry.example.com:4433/team/app/blobs/{layer}");
    assert_eq!(
        request(
            node.addr,
            "DELETE",
            &blob,
            &[("Authorization", a.as_str())],
            b""
        )
        .status,
        202
    );
    assert_eq!(kit::get_status(node.addr, &blob), 404);
}

/// Reads one response with a `Content-Length` from a connection that stays open; its
/// head (lower-cased) and body.
fn read_one(s: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a whole response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the whole body");
    (head, body)
}

/// SIGTERM while a large blob's response is being written (its reader slow) and another
/// connection is idle: the node stops accepting, closes the idle connection, writes the
/// response to its end, then exits 0; what it held is there after a restart.
#[test]
fn sigterm_stops_gracefully_and_data_survives() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let mut node = Node::start(NodeOptions::push());
    let image = oci::image(27, &[10_000, 20_000], "amd64");
    push_image(node.addr, "keep/app", "v1", &image);
    // More than the loopback sockets' buffers hold (a reader that stopped leaves a few
    // MiB in flight; the usual ceilings are 6 to 32 MiB received, 4 MiB sent): much of
    // its response is still to be written when the signal comes.
    let big = bytes(28, 64 << 20);
    let (big_len, big_digest) = (big.len(), digest(&big));
    assert_eq!(push_blob(node.addr, "keep/app", &big).status, 201);
    drop(big);

    // A kept-alive connection, idle after one answer.
    let mut idle = TcpStream::connect(node.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        idle,
        "GET /v2/keep/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let (head, body) = read_one(&mut idle);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(digest(&body), image.digest);

    // A pull of the big blob whose reader has taken its first MiB, then stops reading.
    let mut pull = TcpStream::connect(node.addr).unwrap();
    pull.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        pull,
        "GET /v2/keep/app/blobs/{big_digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while raw.len() < 1 << 20 {
        let n = pull.read(&mut buf).unwrap();
        assert!(n > 0, "the response ended after {} bytes", raw.len());
        raw.extend_from_slice(&buf[..n]);
    }

    // SIGTERM, with the pull in flight.
    let pid = node.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    node.wait_log_line(&["shutting down", "SIGTERM"]);
    // It stops accepting...
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(node.addr) {
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                break;
            }
            Ok(_) => assert!(
                Instant::now() < deadline,
                "new connections still accepted 20 s after SIGTERM"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...closes the idle connection...
    assert_eq!(
        idle.read(&mut [0u8; 1])
            .expect("the idle connection closed"),
        0
    );
    // ...and has not stopped while the pull is unfinished...
    assert!(!node.log().contains("registry stopped"));
    // ...which gets the whole blob.
    pull.read_to_end(&mut raw).unwrap();
    let r = kit::http::parse(&raw, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big_len, "the pull was cut short");
    assert_eq!(digest(&r.body), big_digest);
    drop(pull);

    // Then it exits 0 (the kit sends SIGTERM again, which the stopping node ignores).
    let status = node.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(node.log().contains("registry stopped"));
    node.restart();
    let r = request(node.addr, "GET", "/v2/keep/app/manifests/v1", &[], b"");
    assert_eq!(digest(&r.body), image.digest);
    for b in image.blobs() {
        let r = request(
            node.addr,
            "GET",
            &format!("/v2/keep/app/blobs/{}", b.digest),
            &[],
            b"",
        );
        assert_eq!(digest(&r.body), b.digest);
    }
    assert_eq!(
        kit::get_status(node.addr, &format!("/v2/keep/app/blobs/{big_digest}")),
        200
    );
}
