//! The pull-through cache against upstreams that misbehave (a stand-in, since the
//! reference registry never does): rate limits, bytes that do not match their digest,
//! manifests over the limit, bodies that never end. Each gets a clear answer, nothing is
//! stored, and the node goes on.

mod kit;

use kit::grpc::{self, rt};
use kit::oci::{self, Image, OCI_MANIFEST};
use kit::standin::{Reply, StandIn};
use kit::{request, Node, NodeOptions};
use site_api::pb;
use tonic::Code;
use tonic_types::StatusExt;

/// A node filling itself from `upstream`, with `max_manifest_size` when given.
fn node_for(upstream: &StandIn, max_manifest_size: Option<u64>) -> Node {
    Node::start(NodeOptions {
        max_manifest_size,
        ..NodeOptions::pulling(upstream.addr, "IfNotPresent", "")
    })
}

/// `EnsureImage` of `image`: its failure's code and reason.
fn ensure_fails(node: &Node, image: &str) -> (Code, String) {
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let e = c
            .ensure_image(pb::EnsureImageRequest {
                image: image.into(),
                policy: String::new(),
                platform: String::new(),
            })
            .await
            .unwrap_err();
        let info = e.get_details_error_info().expect("ErrorInfo");
        (e.code(), info.reason)
    })
}

/// `team/app:v1`'s manifest is refused as over the limit, over HTTP (502) and to
/// `EnsureImage` (`INVALID`), and nothing is stored.
fn manifest_refused_over_the_limit(node: &Node) {
    let r = request(node.addr, "GET", "/v2/team/app/manifests/v1", &[], b"");
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("over the limit"));
    assert_eq!(
        ensure_fails(node, "team/app:v1"),
        (Code::InvalidArgument, "INVALID".into())
    );
    nothing_stored(node);
}

/// Nothing of the image is on the node: no manifests, no blobs, no blob files.
fn nothing_stored(node: &Node) {
    let st = rt().block_on(async { grpc::status(&mut grpc::connect(node.api).await).await });
    assert_eq!((st.images, st.blobs), (0, 0), "something was stored");
    assert!(node.blob_files().is_empty(), "{:?}", node.blob_files());
    assert_eq!(request(node.addr, "GET", "/healthz", &[], b"").status, 200);
}

/// Serves `image` as `team/app:v1` (`/v2/` answered), with `layer` in place of the
/// first layer's bytes.
fn serving(image: &Image, layer: impl Fn() -> Reply + Send + Sync + 'static) -> StandIn {
    let manifest = image.manifest.clone();
    let digest = image.digest.clone();
    let config = (image.config.digest.clone(), image.config.data.clone());
    let layer_path = format!("/v2/team/app/blobs/{}", image.layers[0].digest);
    StandIn::start(move |_method, path| {
        if path == "/v2/" {
            return Reply::Full(200, vec![], b"{}".to_vec());
        }
        if path == "/v2/team/app/manifests/v1" || path == format!("/v2/team/app/manifests/{digest}")
        {
            return Reply::Full(
                200,
                vec![
                    ("Content-Type", OCI_MANIFEST.into()),
                    ("Docker-Content-Digest", digest.clone()),
                ],
                manifest.clone(),
            );
        }
        if path == format!("/v2/team/app/blobs/{}", config.0) {
            return Reply::Full(200, vec![], config.1.clone());
        }
        if path == layer_path {
            return layer();
        }
        Reply::Full(
            404,
            vec![],
            br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}"#.to_vec(),
        )
    })
}

#[test]
fn a_rate_limited_upstream_is_429_with_retry_after_and_rate_limited() {
    let upstream = StandIn::start(|_, path| {
        if path == "/v2/" {
            return Reply::Full(200, vec![], b"{}".to_vec());
        }
        Reply::Full(
            429,
            vec![
                ("Retry-After", "120".into()),
                ("Content-Type", "application/json".into()),
            ],
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.to_vec(),
        )
    });
    let node = node_for(&upstream, None);
    let r = request(node.addr, "GET", "/v2/team/app/manifests/v1", &[], b"");
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after"), Some("120"), "the upstream's own");
    assert_eq!(
        ensure_fails(&node, "team/app:v1"),
        (Code::ResourceExhausted, "RATE_LIMITED".into())
    );
    nothing_stored(&node);
}

#[test]
fn bytes_that_do_not_match_their_digest_break_the_client_and_are_not_kept() {
    let image = oci::image(31, &[256 * 1024], "amd64");
    let mut wrong = image.layers[0].data.clone();
    wrong[1000] ^= 0xff;
    let sent = wrong.clone();
    let upstream = serving(&image, move || Reply::Full(200, vec![], sent.clone()));
    let node = node_for(&upstream, None);
    let layer = &image.layers[0];
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/team/app/blobs/{}", layer.digest),
        &[],
        b"",
    );
    assert!(
        r.status != 200 || (r.body.len() as u64) < layer.data.len() as u64,
        "a whole bad body was served: status {}, {} bytes",
        r.status,
        r.body.len()
    );
    assert_ne!(
        kit::digest(&r.body),
        kit::digest(&wrong),
        "the bad body was served whole"
    );
    eprintln!(
        "bad bytes: status {}, {} of {} bytes",
        r.status,
        r.body.len(),
        layer.data.len()
    );
    node.wait_log("blob fetch from upstream failed");
    nothing_stored(&node);
}

#[test]
fn an_image_whose_layer_is_wrong_is_invalid_and_nothing_of_it_is_kept() {
    let image = oci::image(32, &[64 * 1024], "amd64");
    let mut wrong = image.layers[0].data.clone();
    wrong[10] ^= 0xff;
    let upstream = serving(&image, move || Reply::Full(200, vec![], wrong.clone()));
    let node = node_for(&upstream, None);
    assert_eq!(
        ensure_fails(&node, "team/app:v1"),
        (Code::InvalidArgument, "INVALID".into())
    );
    // The config blob came whole and is recorded; the image is not.
    let st = rt().block_on(async { grpc::status(&mut grpc::connect(node.api).await).await });
    assert_eq!(st.images, 0);
    assert!(!node
        .blob_files()
        .iter()
        .any(|(d, _)| *d == image.layers[0].digest));
}

#[test]
fn a_manifest_over_the_limit_is_refused() {
    let image = oci::image(33, &[1024], "amd64");
    let upstream = serving(&image, || Reply::Full(404, vec![], vec![]));
    // Smaller than the manifest.
    let node = node_for(&upstream, Some(image.manifest.len() as u64 - 1));
    manifest_refused_over_the_limit(&node);
}

#[test]
fn a_blob_body_that_never_ends_is_cut_at_its_size() {
    let image = oci::image(34, &[64 * 1024], "amd64");
    let upstream = serving(&image, || Reply::Endless(vec![]));
    let node = node_for(&upstream, None);
    // Without a length the node refuses it; with the manifest's, it stops at the size.
    let layer = &image.layers[0];
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/team/app/blobs/{}", layer.digest),
        &[],
        b"",
    );
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    let (code, reason) = ensure_fails(&node, "team/app:v1");
    assert_eq!((code, reason.as_str()), (Code::InvalidArgument, "INVALID"));
    assert!(!node.blob_files().iter().any(|(d, _)| *d == layer.digest));
    assert_eq!(request(node.addr, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn a_manifest_body_that_never_ends_is_cut_at_the_limit() {
    let upstream = StandIn::start(|_, path| {
        if path == "/v2/" {
            return Reply::Full(200, vec![], b"{}".to_vec());
        }
        Reply::Endless(vec![("Content-Type", OCI_MANIFEST.into())])
    });
    let node = node_for(&upstream, None);
    manifest_refused_over_the_limit(&node);
}

#[test]
fn a_registry_with_bearer_tokens_is_pulled_through_with_the_nodes_credentials() {
    // A registry that hands out tokens as Docker Hub and GHCR do: a 401 challenge naming
    // the token realm, a token for basic credentials, then Bearer on every request.
    let image = oci::image(35, &[32 * 1024], "amd64");
    let (manifest, digest) = (image.manifest.clone(), image.digest.clone());
    let blobs: Vec<(String, Vec<u8>)> = image
        .blobs()
        .map(|b| (b.digest.clone(), b.data.clone()))
        .collect();
    let granted = kit::http::basic("robot", "token-pw");
    let realm = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let realm2 = realm.clone();
    let upstream = StandIn::start_with_headers(move |r| {
        if r.path.starts_with("/token") {
            return if r.header("authorization") == Some(granted.as_str()) {
                Reply::Full(
                    200,
                    vec![],
                    br#"{"token":"t0k3n","expires_in":300}"#.to_vec(),
                )
            } else {
                Reply::Full(401, vec![], b"{}".to_vec())
            };
        }
        if r.header("authorization") != Some("Bearer t0k3n") {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="standin",scope="repository:team/app:pull""#,
                realm2.get().unwrap()
            );
            return Reply::Full(
                401,
                vec![("WWW-Authenticate", challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#.to_vec(),
            );
        }
        if r.path == "/v2/" {
            return Reply::Full(200, vec![], b"{}".to_vec());
        }
        if r.path == "/v2/team/app/manifests/v1"
            || r.path == format!("/v2/team/app/manifests/{digest}")
        {
            return Reply::Full(
                200,
                vec![
                    ("Content-Type", OCI_MANIFEST.into()),
                    ("Docker-Content-Digest", digest.clone()),
                ],
                manifest.clone(),
            );
        }
        for (d, data) in &blobs {
            if r.path == format!("/v2/team/app/blobs/{d}") {
                return Reply::Full(200, vec![], data.clone());
            }
        }
        Reply::Full(404, vec![], b"{}".to_vec())
    });
    realm.set(upstream.addr.to_string()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let auth_file = work.path().join("config.json");
    let auth = kit::http::basic("robot", "token-pw");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            upstream.addr,
            auth.trim_start_matches("Basic ")
        ),
    )
    .unwrap();
    let node = Node::start(NodeOptions::pulling(
        upstream.addr,
        "IfNotPresent",
        &format!("auth_file = \"{}\"\n", auth_file.display()),
    ));
    let r = request(node.addr, "GET", "/v2/team/app/manifests/v1", &[], b"");
    assert_eq!(
        (r.status, kit::digest(&r.body)),
        (200, image.digest.clone())
    );
    oci::assert_blobs_served(node.addr, "team/app", &image);
}
