//! End to end in one process: towerctl's delivery against a fake upstream registry (plain
//! HTTP) and a fake site (gRPC), with broken links, missing images and a full disk.

mod common;

use common::registry::{sha256, Registry};
use common::site::FakeSite;
use serde_json::json;
use site_tower::cli::{parse_image, Command, DeliverArgs, SiteArg};
use site_tower::exit::{self, Error};
use std::path::PathBuf;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Image {
    digest: String,
    blobs: Vec<String>,
    size: usize,
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
    let size = manifest.len();
    let digest = reg.put_manifest(repo, tag, OCI_MANIFEST, manifest);
    Image {
        digest,
        blobs: vec![config, l1, l2],
        size,
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
        site: SiteArg {
            site: site.to_owned(),
        },
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
async fn delivers_an_image_by_tag_then_skips_what_the_site_has() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    let img = image(&reg, "team/app", Some("1.0"), "amd64", (3 << 20) + 12345);
    let name = format!("{up}/team/app:1.0");
    deliver(&addr, &up, &[&name], None, empty_auth_file())
        .await
        .unwrap();
    {
        let s = site.0.lock().unwrap();
        for b in &img.blobs {
            assert!(s.complete.contains_key(b), "blob {b} delivered");
        }
        assert_eq!(s.complete.len(), 3, "the foreign layer is not delivered");
        assert_eq!(
            s.manifests,
            [(
                format!("{up}/team/app"),
                img.digest.clone(),
                "1.0".to_owned()
            )]
        );
        assert!(s.largest_chunk <= 1 << 20, "chunks of at most 1 MiB");
        assert!(!s.saw_authorization);
    }
    let calls = site.0.lock().unwrap().put_blob_calls;
    deliver(&addr, &up, &[&name], None, empty_auth_file())
        .await
        .unwrap();
    assert_eq!(
        site.0.lock().unwrap().put_blob_calls,
        calls,
        "nothing re-sent"
    );
    assert!(img.size > 0);
}

#[tokio::test]
async fn delivers_every_child_of_an_index_children_first() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    let amd = image(&reg, "multi", None, "amd64", 100_000);
    let arm = image(&reg, "multi", None, "arm64", 100_000);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.size,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
        ]
    }))
    .unwrap();
    let index_digest = reg.put_manifest("multi", Some("latest"), OCI_INDEX, index);
    deliver(
        &addr,
        &up,
        &[&format!("{up}/multi")],
        None,
        empty_auth_file(),
    )
    .await
    .unwrap();
    let s = site.0.lock().unwrap();
    let order: Vec<&str> = s.manifests.iter().map(|(_, d, _)| d.as_str()).collect();
    assert_eq!(
        order,
        [
            amd.digest.as_str(),
            arm.digest.as_str(),
            index_digest.as_str()
        ]
    );
    assert_eq!(s.manifests[2].2, "latest");
    assert_eq!(s.manifests[0].2, "");
    assert_eq!(s.complete.len(), 6);
}

#[tokio::test]
async fn platform_delivers_one_child_alone() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    let amd = image(&reg, "multi", None, "amd64", 1000);
    let arm = image(&reg, "multi", None, "arm64", 1000);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.size,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
        ]
    }))
    .unwrap();
    reg.put_manifest("multi", Some("2"), OCI_INDEX, index);
    let name = format!("{up}/multi:2");
    deliver(&addr, &up, &[&name], Some("linux/arm64"), empty_auth_file())
        .await
        .unwrap();
    {
        let s = site.0.lock().unwrap();
        assert_eq!(
            s.manifests,
            [(format!("{up}/multi"), arm.digest.clone(), "2".to_owned())]
        );
        assert_eq!(s.complete.len(), 3);
    }
    let err = deliver(&addr, &up, &[&name], Some("linux/s390x"), empty_auth_file())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::IMAGE_NOT_FOUND, "{err}");
    assert!(err.to_string().contains("linux/arm64/v8"), "{err}");
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
async fn site_out_of_space_is_exit_7_with_the_sites_message() {
    let (reg, up, _site, addr) = setup(1000).await;
    image(&reg, "r", Some("t"), "amd64", 5000);
    let err = deliver(&addr, &up, &[&format!("{up}/r:t")], None, empty_auth_file())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::SITE_OUT_OF_SPACE);
    assert!(err.to_string().contains("bytes free"), "{err}");
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
async fn site_unreachable_is_exit_8() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let err = site_tower::run(Command::Status {
        site: SiteArg { site: closed },
    })
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), exit::SITE_UNREACHABLE, "{err}");
}

#[tokio::test]
async fn site_refusals_are_exit_9() {
    let (_reg, _up, _site, addr) = setup(1 << 30).await;
    let site = SiteArg { site: addr };
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
async fn a_link_that_stays_down_is_exit_8_and_the_next_delivery_sends_the_remainder() {
    let (reg, up, site, addr) = setup(1 << 30).await;
    let img = image(&reg, "big", Some("v1"), "amd64", 6 << 20);
    let total: u64 = img
        .blobs
        .iter()
        .map(|b| reg.0.lock().unwrap().blobs[b].len() as u64)
        .sum();
    let proxy = common::proxy::cutting_proxy(addr.clone(), 2 << 20).await;
    let name = format!("{up}/big:v1");
    let err = deliver(&proxy, &up, &[&name], None, empty_auth_file())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::SITE_UNREACHABLE, "{err}");
    let first: u64 = site.0.lock().unwrap().received.values().sum();
    assert!(first > 0 && first < total, "{first} of {total}");
    deliver(&addr, &up, &[&name], None, empty_auth_file())
        .await
        .unwrap();
    let s = site.0.lock().unwrap();
    assert_eq!(
        s.received.values().sum::<u64>(),
        total,
        "only the remainder"
    );
    assert_eq!(s.manifests.len(), 1);
}

/// Needs the Internet: `cargo test -p site-tower --test deliver -- --ignored`.
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
