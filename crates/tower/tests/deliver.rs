//! towerctl's delivery against an in-process upstream registry (plain HTTP) and site
//! (gRPC) that inject the faults the real parts cannot be made to produce on demand: a
//! link that breaks once mid-blob and comes back, an upstream that cuts a blob and then
//! serves ranges, HTTP 429, a site that misreports an offset or refuses, an Authorization
//! header arriving at the site, and a TLS upstream. Everything the real `docker-registry`
//! and `site-agent` can show is in the workspace's `tests/tower.rs`.

mod common;

use common::registry::{sha256, Registry};
use common::site::FakeSite;
use serde_json::json;
use site_tower::cli::{parse_image, Command, DeliverArgs, SiteArg};
use site_tower::exit::{self, Error};
use std::path::PathBuf;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Image {
    blobs: Vec<String>,
}

/// An image of a config and two layers (one of several MiB) in `repo`.
fn image(reg: &Registry, repo: &str, tag: Option<&str>, arch: &str, big: usize) -> Image {
    let config = reg.put_blob(
        serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {}})).unwrap(),
    );
    let layer1: Vec<u8> = (0..big)
        .map(|i| ((i * 7) as u8) ^ arch.as_bytes()[1])
        .collect();
    let layer2 = format!("small layer of {arch}").into_bytes();
    let sizes = [
        reg.0.lock().unwrap().blobs[&config].len(),
        layer1.len(),
        layer2.len(),
    ];
    let l1 = reg.put_blob(layer1);
    let l2 = reg.put_blob(layer2);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": sizes[0]},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l1, "size": sizes[1]},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l2, "size": sizes[2]},
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
             "digest": sha256(b"foreign"), "size": 7, "urls": ["https://example.com/foreign"]}
        ]
    }))
    .unwrap();
    reg.put_manifest(repo, tag, OCI_MANIFEST, manifest);
    Image {
        blobs: vec![config, l1, l2],
    }
}

fn empty_auth_file() -> PathBuf {
    auth_file(r#"{"auths": {}}"#)
}

fn auth_file(text: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "towerctl-test-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

async fn deliver(
    site: &str,
    upstream: &str,
    images: &[&str],
    platform: Option<&str>,
    auth: PathBuf,
) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = DeliverArgs {
        site: SiteArg::plain(vec![site.to_owned()]),
        auth_file: Some(auth),
        insecure_registries: vec![upstream.to_owned()],
        platform: platform.map(|p| p.parse().unwrap()),
        images: images.iter().map(|i| parse_image(i).unwrap()).collect(),
    };
    site_tower::run(Command::Deliver(args)).await
}

async fn setup(capacity: u64) -> (Registry, String, FakeSite, String) {
    let reg = Registry::default();
    let up = reg.serve().await;
    let site = FakeSite::new(capacity);
    let addr = site.serve().await;
    (reg, up, site, addr)
}

#[tokio::test]
async fn resumes_after_the_site_link_breaks() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    let img = image(&reg, "r", Some("t"), "amd64", 5 << 20);
    let big = img.blobs[1].clone();
    site.0.lock().unwrap().break_after_once = Some((big.clone(), 2 << 20));
    deliver(&addr, &up, &[&format!("{up}/r:t")], None, empty_auth_file())
        .await
        .unwrap();
    let s = site.0.lock().unwrap();
    assert!(s.complete.contains_key(&big));
    assert_eq!(s.received[&big], 5 << 20, "no byte sent twice");
    drop(s);
    let ranges = reg.0.lock().unwrap().ranges.clone();
    assert_eq!(ranges.len(), 1, "resumed once from the site's offset");
    assert!(ranges[0] >= 2 << 20);
}

#[tokio::test]
async fn resumes_after_the_upstream_link_breaks() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    let img = image(&reg, "r", Some("t"), "amd64", 4 << 20);
    let big = img.blobs[1].clone();
    reg.0.lock().unwrap().cut_blob_once = Some((big.clone(), (1 << 20) + 17));
    deliver(&addr, &up, &[&format!("{up}/r:t")], None, empty_auth_file())
        .await
        .unwrap();
    let s = site.0.lock().unwrap();
    assert!(s.complete.contains_key(&big));
    assert_eq!(s.received[&big], 4 << 20, "no byte sent twice");
    assert_eq!(reg.0.lock().unwrap().ranges.len(), 1);
}

#[tokio::test]
async fn upstream_failures_have_their_exit_codes() {
    let (reg, up, _site, addr) = setup(1 << 30).await;
    image(&reg, "limited", Some("t"), "amd64", 10);
    reg.0.lock().unwrap().rate_limited.push("limited".into());
    let err = deliver(
        &addr,
        &up,
        &[&format!("{up}/nope:t")],
        None,
        empty_auth_file(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), exit::IMAGE_NOT_FOUND, "{err}");
    let err = deliver(
        &addr,
        &up,
        &[&format!("{up}/limited:t")],
        None,
        empty_auth_file(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), exit::RATE_LIMITED, "{err}");

    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let err = deliver(
        &addr,
        &closed,
        &[&format!("{closed}/x:t")],
        None,
        empty_auth_file(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), exit::UPSTREAM_UNREACHABLE, "{err}");
}

#[tokio::test]
async fn credentials_go_to_the_upstream_only() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    image(&reg, "private", Some("t"), "amd64", 1000);
    reg.0.lock().unwrap().basic = Some(("ci".into(), "s3cret".into()));
    let name = format!("{up}/private:t");
    let err = deliver(&addr, &up, &[&name], None, empty_auth_file())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::UPSTREAM_AUTH, "{err}");
    let wrong = auth_file(&format!(
        r#"{{"auths": {{"{up}": {{"username": "ci", "password": "badpass"}}}}}}"#
    ));
    let err = deliver(&addr, &up, &[&name], None, wrong)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::UPSTREAM_AUTH, "{err}");
    assert!(!err.to_string().contains("badpass"));
    let good = auth_file(&format!(
        r#"{{"auths": {{"http://{up}/v2/": {{"username": "ci", "password": "s3cret"}}}}}}"#
    ));
    deliver(&addr, &up, &[&name], None, good).await.unwrap();
    assert!(reg.0.lock().unwrap().saw_authorization);
    let s = site.0.lock().unwrap();
    assert!(!s.saw_authorization, "no credentials towards the site");
    assert_eq!(s.manifests.len(), 1);
}

#[tokio::test]
async fn site_refusals_are_exit_9() {
    let (_reg, _up, _site, addr) = setup(1 << 30).await;
    let site = SiteArg::plain(vec![addr]);
    let err = site_tower::run(Command::Unschedule {
        site: site.clone(),
        app: "web".into(),
    })
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), exit::SITE_REFUSED);
    assert!(err.to_string().contains("unknown application"));
    let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    site_tower::run(Command::Schedule {
        site: site.clone(),
        app: "web".into(),
        images: vec![format!("docker.io/library/nginx@{d}")],
    })
    .await
    .unwrap();
    for c in [
        Command::Status { site: site.clone() },
        Command::Apps { site: site.clone() },
        Command::Events { site: site.clone() },
        Command::Gc {
            site: site.clone(),
            dry_run: true,
        },
    ] {
        site_tower::run(c).await.unwrap();
    }
}

#[tokio::test]
#[ignore]
async fn delivers_hello_world_from_docker_hub_over_tls() {
    let site = FakeSite::new(1 << 30);
    let addr = site.serve().await;
    deliver(
        &addr,
        "none",
        &["hello-world:latest"],
        Some("linux/amd64"),
        empty_auth_file(),
    )
    .await
    .unwrap();
    {
        let s = site.0.lock().unwrap();
        assert_eq!(s.manifests.len(), 1);
        assert_eq!(s.manifests[0].0, "docker.io/library/hello-world");
        assert_eq!(s.manifests[0].2, "latest");
    }
    deliver(&addr, "none", &["hello-world"], None, empty_auth_file())
        .await
        .unwrap();
    assert!(
        site.0.lock().unwrap().manifests.len() > 2,
        "every child and the index"
    );
}

#[tokio::test]
async fn https_is_the_default_and_a_failed_handshake_is_unreachable() {
    // A server that reads the ClientHello and hangs up: proof that TLS (ring) is used.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap().to_string();
    let hello = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = hello.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            if let Ok(n) = s.read(&mut buf).await {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    });
    let site = FakeSite::new(1 << 30);
    let addr = site.serve().await;
    let err = deliver(
        &addr,
        "not-this-one",
        &[&format!("{up}/x:t")],
        None,
        empty_auth_file(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), exit::UPSTREAM_UNREACHABLE, "{err}");
    let hello = hello.lock().unwrap();
    assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
}

#[tokio::test]
async fn a_wrong_offset_is_corrected_by_asking_again() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    let img = image(&reg, "r", Some("t"), "amd64", 3 << 20);
    let big = img.blobs[1].clone();
    {
        let mut s = site.0.lock().unwrap();
        s.break_after_once = Some((big.clone(), 1 << 20));
        // The big layer's second status (after the break) lies.
        s.lie_at_status_call = Some((big.clone(), 2));
    }
    deliver(&addr, &up, &[&format!("{up}/r:t")], None, empty_auth_file())
        .await
        .unwrap();
    let s = site.0.lock().unwrap();
    assert!(s.complete.contains_key(&big));
    assert_eq!(s.received[&big], 3 << 20, "resumed at the true offset");
    assert_eq!(
        s.blob_status_calls[&big], 3,
        "one status more after the refusal"
    );
}
