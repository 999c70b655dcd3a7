//! A disk that fails under a running follower: the node stops taking writes and voting,
//! says so (`NodeFailed`, its status, `/readyz` 503), serves what it holds intact, and
//! the site stays writable through the majority.

mod kit;

use kit::grpc::deliver_image_to as deliver;
use kit::node::{cluster_with, leader, served, status};
use kit::oci::{self, OCI_MANIFEST};
use kit::{get_status, grpc, NodeOptions};
use std::io::Write;

/// Fills the file system under `dir` until a write fails for lack of space.
fn fill(dir: &std::path::Path) {
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    // Down to the last page: tmpfs hands out pages of 4 KiB.
    for size in [1 << 20, 4 << 10] {
        let chunk = vec![0u8; size];
        while f.write_all(&chunk).is_ok() {}
    }
    let _ = f.sync_all();
}

#[test]
fn a_follower_whose_disk_fails_says_so_stops_writing_and_the_site_goes_on() {
    let Some(disk) = kit::tools::Tmpfs::mount(96 << 20) else {
        return;
    };
    let mut nodes = cluster_with(3, |id| NodeOptions {
        push: true,
        dir_in: (id == 3).then(|| disk.dir.path().to_owned()),
        ..Default::default()
    });
    // Node 3 (on the small disk) must be a follower: killed, it hands leadership to one of
    // the others, and it comes back only once they have elected (a node back sooner could
    // win the election again).
    let mut l = leader(&nodes.iter().collect::<Vec<_>>());
    if l == 2 {
        nodes[2].kill9();
        leader(&[&nodes[0], &nodes[1]]);
        nodes[2].restart();
        l = leader(&nodes.iter().collect::<Vec<_>>());
    }
    assert_ne!(l, 2, "node 3 kept the leadership");
    let rt = grpc::rt();
    let a = oci::image(61, &[200 << 10], "amd64");
    rt.block_on(deliver(nodes[l].api, "team/a", &a, "v1"));
    assert_eq!(served(&nodes[2], "/v2/team/a/manifests/v1"), a.digest);
    let mut events = rt.block_on(async {
        let mut c = grpc::connect(nodes[2].api).await;
        grpc::watch(&mut c).await
    });
    // The follower's disk fills: its next log write fails.
    fill(disk.dir.path());
    let b = oci::image(62, &[300 << 10], "amd64");
    rt.block_on(deliver(nodes[l].api, "team/b", &b, "v1"));
    // Entries until the follower's log needs new pages on its full disk and fails to
    // write them (bounded: a disk that never fails fails the test).
    let (leader_api, b_digest) = (nodes[l].api, b.digest.clone());
    let failed = rt.block_on(async move {
        let waiter = tokio::spawn(async move {
            loop {
                let ev =
                    tokio::time::timeout(std::time::Duration::from_secs(120), events.message())
                        .await
                        .expect("node 3 failed within 120 s")
                        .unwrap()
                        .expect("the event stream ended");
                if let Some(site_api::pb::event::Kind::NodeFailed(f)) = ev.kind {
                    return f;
                }
            }
        });
        let mut c = grpc::connect(leader_api).await;
        let mut i = 0;
        while !waiter.is_finished() {
            assert!(
                i < 20_000,
                "node 3's log never failed to grow on its full disk"
            );
            c.tag(site_api::pb::TagRequest {
                repository: "team/b".into(),
                tag: format!("t{i}-{}", "x".repeat(100)),
                digest: b_digest.clone(),
            })
            .await
            .unwrap();
            i += 1;
        }
        waiter.await.unwrap()
    });
    eprintln!("node {} failed: {}", failed.node_id, failed.reason);
    assert_eq!(failed.node_id, 3);
    assert!(!failed.reason.is_empty());
    let s = status(&nodes[2]).expect("a failed node still answers");
    assert!(!s.failure.is_empty(), "its status says what failed");
    assert_eq!(get_status(nodes[2].addr, "/readyz"), 503);
    assert_eq!(get_status(nodes[2].addr, "/healthz"), 200);
    // It takes no writes, and says why.
    let err = rt
        .block_on(async {
            let mut c = grpc::connect(nodes[2].api).await;
            grpc::put_manifest(&mut c, "team/a", &a.manifest, OCI_MANIFEST, "v2").await
        })
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().starts_with("NODE_FAILED"), "{err:?}");
    // What it holds intact it still serves.
    assert_eq!(served(&nodes[2], "/v2/team/a/manifests/v1"), a.digest);
    for blob in a.blobs() {
        assert_eq!(
            served(&nodes[2], &format!("/v2/team/a/blobs/{}", blob.digest)),
            blob.digest
        );
    }
    // The site goes on with the majority.
    let c = oci::image(63, &[100 << 10], "amd64");
    let others = (0..3).find(|i| *i != 2 && *i != l).unwrap();
    rt.block_on(deliver(nodes[others].api, "team/c", &c, "v1"));
    for i in [l, others] {
        assert_eq!(served(&nodes[i], "/v2/team/c/manifests/v1"), c.digest);
        assert_eq!(get_status(nodes[i].addr, "/readyz"), 200);
    }
    // Stopped, the failed node ends with the library's distinct error (exit status 74,
    // EX_IOERR).
    let exit = nodes[2].terminate();
    assert_eq!(exit.code(), Some(74), "{exit:?}");
}
