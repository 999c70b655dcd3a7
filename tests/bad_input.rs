//! Bad input gets the spec's error code and status, a log line, and leaves the store
//! exactly as it was.

mod kit;

use kit::http::{basic, read_response};
use kit::oci::{self, auth, push_blob, push_manifest, OCI_INDEX, OCI_MANIFEST};
use kit::{bytes, digest, request, Node, NodeOptions};
use std::io::Write;
use std::net::{Shutdown, TcpStream};

const REPO: &str = "base/app";

/// Everything a client could observe of the store, plus the files on disk.
fn snapshot(node: &Node) -> String {
    let mut out = String::new();
    let catalog = request(node.addr, "GET", "/v2/_catalog", &[], b"").json();
    out.push_str(&catalog.to_string());
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags = request(node.addr, "GET", &format!("/v2/{repo}/tags/list"), &[], b"").json();
        out.push_str(&tags.to_string());
        for tag in tags["tags"].as_array().unwrap() {
            let m = request(
                node.addr,
                "GET",
                &format!("/v2/{repo}/manifests/{}", tag.as_str().unwrap()),
                &[],
                b"",
            );
            out.push_str(&format!("{tag}={}\n", digest(&m.body)));
        }
    }
    out.push_str(&format!("{:?}", node.blob_files()));
    out
}

struct Case<'a> {
    what: &'a str,
    method: &'a str,
    path: String,
    headers: Vec<(&'a str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'a str,
}

fn case<'a>(
    what: &'a str,
    method: &'a str,
    path: impl Into<String>,
    status: u16,
    code: &'a str,
) -> Case<'a> {
    Case {
        what,
        method,
        path: path.into(),
        headers: vec![("Authorization", auth())],
        body: Vec::new(),
        status,
        code,
    }
}

impl<'a> Case<'a> {
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
    fn header(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn no_auth(mut self) -> Self {
        self.headers.retain(|(k, _)| *k != "Authorization");
        self
    }
}

fn check(node: &Node, c: &Case) {
    let before = snapshot(node);
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = request(node.addr, c.method, &c.path, &headers, &c.body);
    assert_eq!(
        r.status,
        c.status,
        "{}: status; body {}",
        c.what,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.error_code(), c.code, "{}: error code", c.what);
    assert_eq!(snapshot(node), before, "{}: store changed", c.what);
}

fn open_session(node: &Node) -> String {
    let a = auth();
    let r = request(
        node.addr,
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/"),
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(r.status, 202);
    r.header("location").unwrap().to_owned()
}

fn offset(node: &Node, location: &str) -> String {
    let a = auth();
    let r = request(
        node.addr,
        "GET",
        location,
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(r.status, 204);
    r.header("range").unwrap().to_owned()
}

#[test]
fn bad_requests_get_spec_errors_and_change_nothing() {
    let node = Node::start(NodeOptions {
        max_manifest_size: Some(64 * 1024),
        max_blob_size: Some(1 << 20),
        ..NodeOptions::push()
    });
    let image = oci::image(7, &[4096, 20_000], "amd64");
    oci::push_image(node.addr, REPO, "v1", &image);
    let layer = &image.layers[0];
    let missing = digest(b"never uploaded");
    // Not an algorithm of the image specification's registry (sha256 and sha512 are).
    let sha384 = format!("sha384:{}", "ab".repeat(48));
    let long_name = format!("a/{}", "b".repeat(300));
    let other = oci::image(8, &[100], "amd64");
    let mut index_missing_child = oci::index(&[&other]).0;
    index_missing_child.push(b' ');
    let wrong_schema = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#.to_vec();
    let big_manifest = format!(
        r#"{{"schemaVersion":2,"annotations":{{"x":"{}"}}}}"#,
        "y".repeat(70_000)
    );

    let cases = vec![
        case(
            "wrong digest on monolithic upload",
            "POST",
            format!("/v2/{REPO}/blobs/uploads/?digest={missing}"),
            400,
            "DIGEST_INVALID",
        )
        .body(b"other bytes".to_vec()),
        case(
            "upload finished without digest",
            "PUT",
            format!("/v2/{REPO}/blobs/uploads/00000000000000000000000000000000"),
            400,
            "DIGEST_INVALID",
        ),
        case(
            "unknown blob",
            "GET",
            format!("/v2/{REPO}/blobs/{missing}"),
            404,
            "BLOB_UNKNOWN",
        ),
        case(
            "blob of another repository",
            "GET",
            format!("/v2/other/app/blobs/{}", layer.digest),
            404,
            "BLOB_UNKNOWN",
        ),
        case(
            "unknown manifest tag",
            "GET",
            format!("/v2/{REPO}/manifests/nope"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        case(
            "manifest tag no push could have stored",
            "GET",
            format!("/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        case(
            "unknown manifest digest",
            "GET",
            format!("/v2/{REPO}/manifests/{missing}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        case(
            "invalid digest",
            "GET",
            format!("/v2/{REPO}/blobs/sha256:xyz"),
            400,
            "DIGEST_INVALID",
        ),
        case(
            "upper-case hex digest",
            "GET",
            format!(
                "/v2/{REPO}/blobs/{}",
                layer.digest.to_uppercase().replace("SHA256", "sha256")
            ),
            400,
            "DIGEST_INVALID",
        ),
        case(
            "unsupported digest algorithm",
            "GET",
            format!("/v2/{REPO}/blobs/{sha384}"),
            400,
            "DIGEST_INVALID",
        ),
        case(
            "upper-case name",
            "GET",
            "/v2/Base/App/manifests/v1",
            400,
            "NAME_INVALID",
        ),
        case(
            "over-long name",
            "GET",
            format!("/v2/{long_name}/manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        case(
            "dot-dot in path",
            "GET",
            "/v2/base/../etc/manifests/v1",
            400,
            "NAME_INVALID",
        ),
        case(
            "percent-encoded dot-dot",
            "GET",
            "/v2/base/%2e%2e/%2e%2e/manifests/v1",
            400,
            "NAME_INVALID",
        ),
        case(
            "dot-dot upload into a name",
            "POST",
            "/v2/../../tmp/blobs/uploads/",
            400,
            "NAME_INVALID",
        ),
        case(
            "manifest referencing a missing blob",
            "PUT",
            format!("/v2/{REPO}/manifests/v2"),
            400,
            "MANIFEST_BLOB_UNKNOWN",
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(other.manifest.clone()),
        case(
            "index referencing a missing manifest",
            "PUT",
            format!("/v2/{REPO}/manifests/v3"),
            400,
            "MANIFEST_BLOB_UNKNOWN",
        )
        .header("Content-Type", OCI_INDEX)
        .body(index_missing_child),
        case(
            "non-JSON manifest",
            "PUT",
            format!("/v2/{REPO}/manifests/v2"),
            400,
            "MANIFEST_INVALID",
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(b"hello, not json".to_vec()),
        case(
            "wrong-schema manifest",
            "PUT",
            format!("/v2/{REPO}/manifests/v2"),
            400,
            "MANIFEST_INVALID",
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(wrong_schema),
        case(
            "schema 1 manifest",
            "PUT",
            format!("/v2/{REPO}/manifests/v2"),
            400,
            "MANIFEST_INVALID",
        )
        .body(br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec()),
        case(
            "media type disagrees with body",
            "PUT",
            format!("/v2/{REPO}/manifests/v2"),
            400,
            "MANIFEST_INVALID",
        )
        .header("Content-Type", OCI_INDEX)
        .body(image.manifest.clone()),
        case(
            "manifest digest does not match body",
            "PUT",
            format!("/v2/{REPO}/manifests/{missing}"),
            400,
            "DIGEST_INVALID",
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(image.manifest.clone()),
        case(
            "invalid tag",
            "PUT",
            format!("/v2/{REPO}/manifests/-bad"),
            400,
            "MANIFEST_INVALID",
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(image.manifest.clone()),
        case(
            "manifest over the limit",
            "PUT",
            format!("/v2/{REPO}/manifests/big"),
            413,
            "SIZE_INVALID",
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(big_manifest),
        case(
            "blob over the limit",
            "POST",
            format!(
                "/v2/{REPO}/blobs/uploads/?digest={}",
                digest(&bytes(1, 2 << 20))
            ),
            413,
            "SIZE_INVALID",
        )
        .body(bytes(1, 2 << 20)),
        case(
            "range past the end",
            "GET",
            format!("/v2/{REPO}/blobs/{}", layer.digest),
            416,
            "SIZE_INVALID",
        )
        .header("Range", "bytes=999999-"),
        case(
            "malformed range",
            "GET",
            format!("/v2/{REPO}/blobs/{}", layer.digest),
            416,
            "SIZE_INVALID",
        )
        .header("Range", "bytes=9-3"),
        case(
            "push without credentials",
            "POST",
            format!("/v2/{REPO}/blobs/uploads/"),
            401,
            "UNAUTHORIZED",
        )
        .no_auth(),
        case(
            "push with wrong credentials",
            "PUT",
            format!("/v2/{REPO}/manifests/v9"),
            401,
            "UNAUTHORIZED",
        )
        .no_auth()
        .header("Authorization", basic("ci", "wrong"))
        .body(image.manifest.clone()),
        case(
            "delete without credentials",
            "DELETE",
            format!("/v2/{REPO}/manifests/{}", image.digest),
            401,
            "UNAUTHORIZED",
        )
        .no_auth(),
        case(
            "unknown upload session",
            "PATCH",
            format!("/v2/{REPO}/blobs/uploads/0123456789abcdef0123456789abcdef"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .body(b"x".to_vec()),
        case(
            "upload id path trick",
            "PATCH",
            format!("/v2/{REPO}/blobs/uploads/..%2f..%2fmeta"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .body(b"x".to_vec()),
        case(
            "tags of an unknown repository",
            "GET",
            "/v2/nobody/here/tags/list",
            404,
            "NAME_UNKNOWN",
        ),
        case(
            "method not allowed",
            "POST",
            format!("/v2/{REPO}/manifests/v1"),
            405,
            "UNSUPPORTED",
        ),
        case(
            "referrers with a bad digest",
            "GET",
            format!("/v2/{REPO}/referrers/sha256:1"),
            400,
            "DIGEST_INVALID",
        ),
    ];
    for c in &cases {
        check(&node, c);
    }
    let r = request(
        node.addr,
        "HEAD",
        &format!("/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "HEAD of a tag no push could have stored");

    // Upload sessions: an out-of-order chunk, a length that disagrees with its range, a
    // wrong final digest, a body cut off half way. Each leaves the session where it was.
    let location = open_session(&node);
    let a = auth();
    let r = request(
        node.addr,
        "PATCH",
        &location,
        &[("Authorization", a.as_str()), ("Content-Range", "0-9")],
        &bytes(2, 10),
    );
    assert_eq!(r.status, 202);
    assert_eq!(offset(&node, &location), "0-9");
    let mut session_cases = vec![
        case(
            "chunk out of order",
            "PATCH",
            location.clone(),
            416,
            "BLOB_UPLOAD_INVALID",
        )
        .header("Content-Range", "20-29")
        .body(bytes(3, 10)),
        case(
            "chunk overlapping",
            "PATCH",
            location.clone(),
            416,
            "BLOB_UPLOAD_INVALID",
        )
        .header("Content-Range", "5-14")
        .body(bytes(3, 10)),
        case(
            "range disagrees with length",
            "PATCH",
            location.clone(),
            416,
            "BLOB_UPLOAD_INVALID",
        )
        .header("Content-Range", "10-29")
        .body(bytes(3, 10)),
        case(
            "malformed content range",
            "PATCH",
            location.clone(),
            416,
            "BLOB_UPLOAD_INVALID",
        )
        .header("Content-Range", "ten-twenty")
        .body(bytes(3, 10)),
    ];
    for c in session_cases.drain(..) {
        check(&node, &c);
        assert_eq!(offset(&node, &location), "0-9", "{}: session moved", c.what);
    }
    let r = request(
        node.addr,
        "PATCH",
        &location,
        &[("Authorization", a.as_str())],
        &bytes(4, 10),
    );
    assert!(
        r.header("range") == Some("0-19"),
        "416 must not have broken the session"
    );

    // A body cut off half way: the session keeps only what it had.
    let mut s = TcpStream::connect(node.addr).unwrap();
    write!(s, "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: {a}\r\nContent-Length: 100000\r\n\r\n").unwrap();
    s.write_all(&bytes(5, 5000)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = read_response(&mut s, false);
    assert_eq!(
        offset(&node, &location),
        "0-19",
        "a cut-off chunk must be rolled back"
    );

    // A wrong final digest discards the session and stores nothing.
    let before = snapshot(&node);
    let r = request(
        node.addr,
        "PUT",
        &format!("{location}?digest={missing}"),
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    assert_eq!(snapshot(&node), before);
    let r = request(
        node.addr,
        "GET",
        &location,
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );

    // Push while push is disabled.
    let read_only = Node::start(NodeOptions::default());
    let r = push_blob(read_only.addr, REPO, b"data");
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    let r = push_manifest(read_only.addr, REPO, "v1", OCI_MANIFEST, &image.manifest);
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    assert!(read_only.blob_files().is_empty());

    // The store still serves the baseline whole, and every refusal was logged.
    let m = request(
        node.addr,
        "GET",
        &format!("/v2/{REPO}/manifests/v1"),
        &[],
        b"",
    );
    assert_eq!(digest(&m.body), image.digest);
    let refused = cases.len() + 4 + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logged = node
            .log()
            .lines()
            .filter(|l| l.contains("request refused"))
            .count();
        if logged >= refused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {logged} of {refused} refusals logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !node.log().contains(kit::node::PASSWORD),
        "a password reached the log"
    );
}
