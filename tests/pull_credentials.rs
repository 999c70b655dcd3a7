//! The node's upstream credentials: a Docker `config.json` read at the start of every
//! pull (rotation without a restart), and Docker credential helpers asked at each pull,
//! against Debian's `docker-registry` behind htpasswd auth. The proxy in front sees what
//! the node sends (plain HTTP), so a password sent after its rotation would show.

mod kit;

use kit::grpc;
use kit::http::basic;
use kit::oci;
use kit::proxy::CountingProxy;
use kit::tools::require;
use kit::upstream::{ReferenceRegistry, AUTH_PASSWORD};
use kit::{request, Node, NodeOptions};
use site_api::pb;
use std::path::Path;
use tonic_types::StatusExt;

fn auth_entry(host: &str, user: &str) -> String {
    let auth = basic(user, AUTH_PASSWORD);
    let auth = auth.trim_start_matches("Basic ");
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

/// Writes `text` to `path` the way a secret manager rotates a file: a new file renamed
/// over the old one.
fn rotate(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn node_with(proxy: &CountingProxy, auth_file: &Path, env: Vec<(String, String)>) -> Node {
    Node::start(NodeOptions {
        env,
        ..NodeOptions::pulling(
            proxy.addr,
            "IfNotPresent",
            &format!("auth_file = \"{}\"\n", auth_file.display()),
        )
    })
}

fn push(registry: &ReferenceRegistry, user: &str, tag: &str, image: &oci::Image) {
    let authorization = basic(user, AUTH_PASSWORD);
    for b in image.blobs() {
        let r = oci::push_blob_two_step(registry.addr, "team/app", &b.data, Some(&authorization));
        assert_eq!(r.status, 201);
    }
    let r = request(
        registry.addr,
        "PUT",
        &format!("/v2/team/app/manifests/{tag}"),
        &[
            ("Content-Type", oci::OCI_MANIFEST),
            ("Authorization", &authorization),
        ],
        &image.manifest,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_rotated_auth_file_is_used_from_the_next_pull_and_the_old_password_is_no_longer_sent() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start_with_users(&binary, &["old-user", "new-user"]);
    // A thin link: the first pull is still in progress when the file changes.
    let proxy = CountingProxy::start_throttled(registry.addr, Some(24 << 20));
    let first = oci::image(41, &[32 << 20], "amd64");
    let second = oci::image(42, &[64 * 1024], "amd64");
    push(&registry, "old-user", "v1", &first);
    push(&registry, "old-user", "v2", &second);
    let work = tempfile::tempdir().unwrap();
    let auth_file = work.path().join("config.json");
    let host = proxy.addr.to_string();
    std::fs::write(&auth_file, auth_entry(&host, "old-user")).unwrap();
    let node = node_with(&proxy, &auth_file, Vec::new());

    let layer = first.layers[0].clone();
    let addr = node.addr;
    let pulling = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            &format!("/v2/team/app/blobs/{}", layer.digest),
            &[],
            b"",
        )
    });
    // Mid-pull: some of the layer has come, not all of it.
    proxy.wait_received(4 << 20);
    assert!(
        proxy.received() < 32 << 20,
        "the pull was over before the rotation"
    );
    let before_rotation = proxy.requests().len();
    rotate(&auth_file, &auth_entry(&host, "new-user"));
    let r = pulling.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        kit::digest(&r.body),
        first.layers[0].digest,
        "the pull in progress completed"
    );

    let r = request(node.addr, "GET", "/v2/team/app/manifests/v2", &[], b"");
    assert_eq!(
        (r.status, kit::digest(&r.body)),
        (200, second.digest.clone())
    );
    let old = basic("old-user", AUTH_PASSWORD);
    let new = basic("new-user", AUTH_PASSWORD);
    let old = old.trim_start_matches("Basic ");
    let new = new.trim_start_matches("Basic ");
    let requests = proxy.requests();
    let (earlier, later) = requests.split_at(before_rotation);
    assert!(
        earlier.contains(old),
        "the first pull used the first password"
    );
    assert!(
        later.contains(new),
        "the next pull did not use the new password"
    );
    assert!(
        !later.contains(old),
        "the old password was sent after the rotation"
    );
    assert!(!node.log().contains(AUTH_PASSWORD), "a password was logged");
}

#[test]
fn credential_helpers_supply_the_password_and_a_failing_one_is_auth_failed() {
    let Some(binary) = require("docker-registry") else {
        return;
    };
    let registry = ReferenceRegistry::start_with_users(&binary, &["helped"]);
    let proxy = CountingProxy::start(registry.addr);
    let image = oci::image(43, &[16 * 1024], "amd64");
    push(&registry, "helped", "v1", &image);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // The helper answers for the server it is asked about, as the protocol has it.
    script(
        "sitetest",
        &format!(
            "read server\n[ \"$server\" = \"{}\" ] || exit 1\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"helped\",\"Secret\":\"{AUTH_PASSWORD}\"}}'",
            proxy.addr
        ),
    );
    script("broken", "echo 'helper exploded' >&2\nexit 3");
    let auth_file = work.path().join("config.json");
    let helper = |name: &str| format!(r#"{{"credHelpers":{{"{}":"{name}"}}}}"#, proxy.addr);
    std::fs::write(&auth_file, helper("sitetest")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let node = node_with(&proxy, &auth_file, vec![("PATH".into(), path)]);
    let ensure = |image: &str| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                grpc::connect(node.api)
                    .await
                    .ensure_image(pb::EnsureImageRequest {
                        image: image.into(),
                        policy: String::new(),
                        platform: String::new(),
                    })
                    .await
            })
    };
    let r = ensure("team/app:v1").unwrap().into_inner();
    assert_eq!(
        (r.digest.as_str(), r.source.as_str()),
        (image.digest.as_str(), "DOWNLOADED")
    );

    // The helper is asked again at the next pull: a broken one fails it, never anonymously.
    rotate(&auth_file, &helper("broken"));
    let e = ensure("team/app:v2").unwrap_err();
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        (e.code(), info.reason.as_str()),
        (tonic::Code::PermissionDenied, "AUTH_FAILED")
    );
    assert!(e.message().contains("helper exploded"), "{}", e.message());
    rotate(&auth_file, &helper("missing"));
    let e = ensure("team/app:v2").unwrap_err();
    assert!(
        e.message().contains("docker-credential-missing"),
        "{}",
        e.message()
    );
    assert!(!node.log().contains(AUTH_PASSWORD), "a password was logged");
}
