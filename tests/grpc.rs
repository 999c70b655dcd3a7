//! The tower's gRPC API on a real node: bad input gets a clear status and changes
//! nothing; a broken blob stream resumes from the node's offset; GC deletes what no
//! application needs and keeps what one does; eviction follows pulls (least recently used
//! first); upload sessions left idle expire.

mod kit;

use kit::grpc::deliver_image as deliver;
use kit::grpc::{self, rt, Client};
use kit::oci::{self, OCI_MANIFEST};
use kit::{digest, request, Node, NodeOptions};
use site_api::pb;
use tonic::Code;

/// Everything the tower can observe of the site, plus the files on disk.
async fn snapshot(c: &mut Client, node: &Node) -> String {
    let images = c
        .list_images(pb::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let apps = c
        .list_applications(pb::ListApplicationsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut st = grpc::status(c).await;
    st.disk_free_bytes = 0;
    st.blob_bytes_received = 0;
    // A refused command still takes its place in the log (refused alike on every node).
    (st.raft_term, st.commit_index, st.applied_index) = (0, 0, 0);
    for n in &mut st.nodes {
        (n.commit_index, n.applied_index) = (0, 0);
    }
    format!(
        "{images:?}\n{apps:?}\n{st:?}\n{:?}\n{:?}",
        node.blob_files(),
        node.upload_files()
    )
}

/// Delivers `image` into `repo` (blobs, then the manifest tagged `tag`).

#[test]
fn bad_input_is_refused_with_a_clear_status_and_changes_nothing() {
    let node = Node::start(NodeOptions::default());
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let image = oci::image(7, &[2000, 3000], "amd64");
        deliver(&mut c, "team/app", &image, "v1").await;
        let pinned = format!("team/app@{}", image.digest);
        c.schedule(pb::ScheduleRequest {
            application: "web".into(),
            images: vec![pinned.clone()],
        })
        .await
        .unwrap();
        let before = snapshot(&mut c, &node).await;
        let absent = digest(b"absent");
        let long = "a/".repeat(150) + "x";
        let data = b"some blob bytes".to_vec();
        let d = digest(&data);

        // Each refusal: the right code, a message naming the problem, nothing changed.
        macro_rules! check {
            ($what:expr, $code:expr, $needle:expr, $call:expr) => {{
                let status = $call.map(drop).expect_err($what);
                let needle: &str = &$needle;
                assert_eq!(status.code(), $code, "{}: {status:?}", $what);
                assert!(
                    status.message().contains(needle),
                    "{}: message {:?} should mention {:?}",
                    $what,
                    status.message(),
                    needle
                );
                assert_eq!(
                    snapshot(&mut c, &node).await,
                    before,
                    "{}: state changed",
                    $what
                );
            }};
        }
        let sched = |app: &str, imgs: Vec<String>| pb::ScheduleRequest {
            application: app.into(),
            images: imgs,
        };
        check!(
            "tag-only reference",
            Code::InvalidArgument,
            "not pinned",
            c.schedule(sched("web", vec!["team/app:v1".into()])).await
        );
        check!(
            "unknown digest",
            Code::FailedPrecondition,
            &absent,
            c.schedule(sched("web", vec![format!("team/app@{absent}")]))
                .await
        );
        check!(
            "empty application name",
            Code::InvalidArgument,
            "application name",
            c.schedule(sched("", vec![pinned.clone()])).await
        );
        check!(
            "very long application name",
            Code::InvalidArgument,
            "application name",
            c.schedule(sched(&"a".repeat(300), vec![pinned.clone()]))
                .await
        );
        check!(
            "no images",
            Code::InvalidArgument,
            "no images",
            c.schedule(sched("web", vec![])).await
        );
        check!(
            "very long image name",
            Code::InvalidArgument,
            "image",
            c.schedule(sched("web", vec![format!("{long}@{}", image.digest)]))
                .await
        );
        let other = oci::image(8, &[100], "amd64");
        check!(
            "manifest missing blobs",
            Code::FailedPrecondition,
            &other.layers[0].digest,
            grpc::put_manifest(&mut c, "team/app", &other.manifest, OCI_MANIFEST, "v2").await
        );
        check!(
            "empty repository",
            Code::InvalidArgument,
            "repository",
            grpc::put_manifest(&mut c, "", &image.manifest, OCI_MANIFEST, "").await
        );
        check!(
            "very long repository",
            Code::InvalidArgument,
            "repository",
            grpc::put_manifest(&mut c, &long, &image.manifest, OCI_MANIFEST, "").await
        );
        check!(
            "manifest not JSON",
            Code::InvalidArgument,
            "JSON",
            grpc::put_manifest(&mut c, "team/app", b"{not json", OCI_MANIFEST, "").await
        );
        check!(
            "bytes that do not match the digest",
            Code::DataLoss,
            &absent,
            grpc::put_blob(&mut c, "team/app", &absent, data.len() as u64, 0, &data, 4).await
        );
        check!(
            "stream longer than its declared size",
            Code::InvalidArgument,
            "declared",
            grpc::put_blob(&mut c, "team/app", &d, 5, 0, &data, 4).await
        );
        check!(
            "malformed digest",
            Code::InvalidArgument,
            "digest",
            grpc::put_blob(&mut c, "team/app", "sha256:xyz", 3, 0, b"abc", 4).await
        );
        check!(
            "stream from the wrong offset",
            Code::FailedPrecondition,
            "upload stands at 0",
            grpc::put_blob(&mut c, "team/app", &d, data.len() as u64, 7, &data, 4).await
        );
        check!(
            "pin of an absent image",
            Code::FailedPrecondition,
            &absent,
            c.pin(pb::PinRequest {
                image: format!("team/app@{absent}")
            })
            .await
        );
        check!(
            "unpin of what is not pinned",
            Code::NotFound,
            "pin",
            c.unpin(pb::PinRequest {
                image: pinned.clone()
            })
            .await
        );
        check!(
            "unschedule of an unknown application",
            Code::NotFound,
            "nope",
            c.unschedule(pb::UnscheduleRequest {
                application: "nope".into()
            })
            .await
        );
        check!(
            "invalid tag",
            Code::InvalidArgument,
            "tag",
            c.tag(pb::TagRequest {
                repository: "team/app".into(),
                tag: "bad tag!".into(),
                digest: image.digest.clone(),
            })
            .await
        );
        // A name of 20,000 characters: the answer says so without copying it whole, so
        // that the client can read it (clients refuse metadata over 16 KiB).
        let long = "n".repeat(20_000);
        let err = c
            .unschedule(pb::UnscheduleRequest { application: long })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{}", err.message());
        assert!(err.message().len() < 4096, "{}", err.message().len());
        assert!(err.message().ends_with("more bytes)"), "{}", err.message());
        // A manifest naming 200 blobs the site lacks: the list is cut and counted.
        let missing = oci::image(13, &[100; 200], "amd64");
        let err = c
            .put_manifest(pb::PutManifestRequest {
                repository: "team/many".into(),
                tag: "v1".into(),
                media_type: OCI_MANIFEST.into(),
                body: missing.manifest.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(err.message().contains(" more"), "{}", err.message());
        assert!(err.message().len() < 4096, "{}", err.message().len());
    });
    let log = node.log();
    assert!(log.contains("blob stream refused"), "refusals are logged");
}

#[test]
fn a_broken_blob_stream_resumes_from_the_nodes_offset() {
    let node = Node::start(NodeOptions::default());
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let data = kit::bytes(3, 3 << 20);
        let d = digest(&data);
        let size = data.len() as u64;
        // The client stops after 1 MiB: the node keeps it and says where to resume.
        let err = grpc::put_blob(&mut c, "team/big", &d, size, 0, &data[..1 << 20], 256 << 10)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Aborted, "{err:?}");
        assert!(
            err.message().contains("resume from offset 1048576"),
            "{err:?}"
        );
        let st = c
            .blob_status(pb::BlobStatusRequest { digest: d.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((st.present, st.offset), (false, 1 << 20));
        // A restart keeps the partial copy.
        drop(c);
        let mut node = node;
        node.terminate();
        node.restart();
        let mut c = grpc::connect(node.api).await;
        let r = grpc::put_blob(
            &mut c,
            "team/big",
            &d,
            size,
            1 << 20,
            &data[1 << 20..],
            256 << 10,
        )
        .await
        .unwrap();
        assert!(r.complete);
        assert_eq!(r.received, size - (1 << 20), "only the remainder was sent");
        // The blob serves whole over the OCI API once a manifest references it.
        let found = c
            .find_missing_blobs(pb::FindMissingBlobsRequest {
                blobs: vec![pb::BlobRef {
                    digest: d.clone(),
                    size,
                }],
                lease_seconds: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(found.missing.is_empty());
        let got = request(
            node.addr,
            "GET",
            &format!("/v2/team/big/blobs/{d}"),
            &[],
            b"",
        );
        assert_eq!(got.status, 200);
        assert_eq!(digest(&got.body), d);
    });
}

#[test]
fn gc_deletes_what_no_application_needs_and_keeps_shared_layers() {
    let node = Node::start(NodeOptions {
        grace: Some("300ms".into()),
        ..Default::default()
    });
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let a = oci::image(11, &[5000, 6000], "amd64");
        let mut b = oci::image(12, &[7000], "amd64");
        // b shares a's first layer.
        b.layers.insert(0, a.layers[0].clone());
        b = oci::rebuild(b);
        deliver(&mut c, "team/a", &a, "v1").await;
        let before = grpc::status(&mut c).await.blob_bytes_received;
        deliver(&mut c, "team/b", &b, "v1").await;
        let sent = grpc::status(&mut c).await.blob_bytes_received - before;
        let missing = c
            .find_missing_blobs(pb::FindMissingBlobsRequest {
                blobs: a
                    .blobs()
                    .map(|x| pb::BlobRef {
                        digest: x.digest.clone(),
                        size: x.data.len() as u64,
                    })
                    .collect(),
                lease_seconds: 1,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(missing.missing.is_empty());
        let b_only: u64 = b
            .blobs()
            .filter(|x| x.digest != a.layers[0].digest)
            .map(|x| x.data.len() as u64)
            .sum();
        assert!(sent <= b_only + a.layers[0].data.len() as u64);
        for (app, img, repo) in [("a", &a, "team/a"), ("b", &b, "team/b")] {
            c.schedule(pb::ScheduleRequest {
                application: app.into(),
                images: vec![format!("{repo}@{}", img.digest)],
            })
            .await
            .unwrap();
        }
        let dry = grpc::run_gc(&mut c, true).await;
        assert!(
            dry.manifests.is_empty(),
            "live images are never planned for deletion"
        );
        c.unschedule(pb::UnscheduleRequest {
            application: "a".into(),
        })
        .await
        .unwrap();
        // Once its grace period (and the lease on its blobs) has passed, a sweep would
        // delete it and its own blobs.
        let own = a.blobs().filter(|x| x.digest != a.layers[0].digest).count();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let dry = loop {
            let dry = grpc::run_gc(&mut c, true).await;
            let due = !dry.manifests.is_empty() && dry.blobs.len() >= own;
            if due || tokio::time::Instant::now() > deadline {
                break dry;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(dry.manifests, vec![a.digest.clone()]);
        assert_eq!(
            kit::get_status(node.addr, &format!("/v2/team/a/manifests/{}", a.digest)),
            200,
            "a dry run deletes nothing"
        );
        let report = grpc::run_gc(&mut c, false).await;
        assert_eq!(report.manifests, vec![a.digest.clone()]);
        assert!(
            !report.blobs.contains(&a.layers[0].digest),
            "the shared layer stays"
        );
        assert_eq!(
            kit::get_status(node.addr, &format!("/v2/team/a/manifests/{}", a.digest)),
            404
        );
        for x in b.blobs() {
            let got = request(
                node.addr,
                "GET",
                &format!("/v2/team/b/blobs/{}", x.digest),
                &[],
                b"",
            );
            assert_eq!((got.status, digest(&got.body)), (200, x.digest.clone()));
        }
        let files: Vec<String> = node.blob_files().into_iter().map(|(p, _)| p).collect();
        for x in a.blobs().filter(|x| x.digest != a.layers[0].digest) {
            assert!(
                !files.iter().any(|p| p.ends_with(&x.digest[7..])),
                "file of {} removed",
                x.digest
            );
        }
        let st = grpc::status(&mut c).await;
        assert_eq!((st.images, st.live_images, st.applications), (1, 1, 1));
        assert_eq!(st.last_gc.unwrap().bytes_freed, report.bytes_freed);
    });
}

#[test]
fn a_delivery_that_cannot_fit_is_refused_up_front() {
    let node = Node::start(NodeOptions {
        capacity: Some(1 << 20),
        ..Default::default()
    });
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let mut events = c.watch_events(pb::WatchEventsRequest {}).await.unwrap().into_inner();
        let big = oci::image(21, &[2 << 20], "amd64");
        let err = c
            .find_missing_blobs(pb::FindMissingBlobsRequest {
                blobs: big
                    .blobs()
                    .map(|x| pb::BlobRef { digest: x.digest.clone(), size: x.data.len() as u64 })
                    .collect(),
                lease_seconds: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        let needed: u64 = big.blobs().map(|x| x.data.len() as u64).sum();
        assert!(err.message().contains(&format!("needs {needed} bytes")), "{err:?}");
        assert!(err.message().contains("1048576 bytes free"), "{err:?}");
        let ev = tokio::time::timeout(std::time::Duration::from_secs(10), events.message())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        assert!(matches!(ev.kind, Some(pb::event::Kind::DeliveryRefused(ref r)) if r.bytes_needed == needed), "{ev:?}");
        assert_eq!(grpc::status(&mut c).await.blobs, 0);
    });
}

#[test]
fn eviction_under_pressure_takes_the_least_recently_pulled_image() {
    // Two unreferenced images of 450 KiB under a capacity of 1000 KiB: above the high
    // watermark (85%), so a sweep evicts down to the low one (70%): one image goes.
    let node = Node::start(NodeOptions {
        capacity: Some(1000 << 10),
        ..Default::default()
    });
    let (a, b) = (
        oci::image(41, &[450 << 10], "amd64"),
        oci::image(42, &[450 << 10], "amd64"),
    );
    let get = |repo: &str| kit::get_status(node.addr, &format!("/v2/{repo}/manifests/v1"));
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        // Times in the log are milliseconds: each step (its blobs fsynced) has its own.
        deliver(&mut c, "team/a", &a, "v1").await;
        deliver(&mut c, "team/b", &b, "v1").await;
    });
    // a was delivered first, but pulled last.
    assert_eq!(get("team/a"), 200);
    let report = rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        grpc::run_gc(&mut c, false).await
    });
    assert_eq!(report.manifests, vec![b.digest.clone()], "{report:?}");
    assert_eq!(get("team/b"), 404);
    assert_eq!(get("team/a"), 200, "the recently pulled image stays");
}

#[test]
fn upload_sessions_left_idle_expire() {
    let node = Node::start(NodeOptions {
        push: true,
        upload_ttl: Some("2s".into()),
        ..Default::default()
    });
    let ttl = std::time::Duration::from_secs(2);
    let auth = oci::auth();
    let start = |node: &Node| {
        let r = request(
            node.addr,
            "POST",
            "/v2/team/up/blobs/uploads/",
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(r.status, 202);
        r.header("Location").unwrap().to_owned()
    };
    let idle = start(&node);
    let patch = |loc: &str| {
        request(
            node.addr,
            "PATCH",
            loc,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/octet-stream"),
            ],
            &[7u8; 1000],
        )
    };
    assert_eq!(patch(&idle).status, 202);
    // A delivery stream the tower abandoned half way.
    let tower = kit::bytes(43, 4000);
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        let e = grpc::put_blob(
            &mut c,
            "team/up",
            &digest(&tower),
            4000,
            0,
            &tower[..1500],
            500,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::Aborted);
    });
    assert_eq!(node.upload_files().len(), 2, "{:?}", node.upload_files());
    // Past the TTL, counted as the node counts it: from each session file's last write
    // (a margin for the file clock's coarseness). Waited for, not slept.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let idle_for = |path: &str| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default()
    };
    while node
        .upload_files()
        .iter()
        .any(|(p, _)| idle_for(p.as_str()) <= ttl + std::time::Duration::from_millis(100))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sessions' files were never idle past the TTL: {:?}",
            node.upload_files()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A session still in use is kept: this one is written to just before the sweep (a
    // whole TTL of margin for the sweep to come).
    let busy = start(&node);
    assert_eq!(patch(&busy).status, 202);
    rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        grpc::run_gc(&mut c, false).await;
    });
    let r = request(node.addr, "GET", &idle, &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        request(node.addr, "GET", &busy, &[("Authorization", &auth)], b"").status,
        204
    );
    let files = node.upload_files();
    assert_eq!(
        files.len(),
        1,
        "only the busy session's file is left: {files:?}"
    );
    let busy_id = busy.rsplit('/').next().unwrap();
    assert!(files[0].0.ends_with(busy_id), "{busy} {files:?}");
    assert!(node
        .log()
        .contains("dropping upload idle past the upload TTL"));
}
