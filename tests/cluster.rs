//! A site of three real `site-agent` processes on loopback forming one Raft group.

mod kit;

use kit::grpc;
use kit::grpc::deliver_image_to as deliver;
use kit::grpc::watch_events;
use kit::node::{leader, metric, served, status};
use kit::oci::{self, OCI_MANIFEST};
use kit::tools::{ok, require, towerctl};
use kit::{digest, request, Node, NodeOptions};
use site_api::pb;
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every node of `nodes` but the `i`-th.
fn others(nodes: &[Node], i: usize) -> Vec<&Node> {
    nodes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, n)| n)
        .collect()
}

/// How many of `nodes` hold a file of blob `d`.
fn holders(nodes: &[Node], d: &str) -> usize {
    let hex = &d["sha256:".len()..];
    nodes
        .iter()
        .filter(|n| n.blob_files().iter().any(|(p, _)| p.ends_with(hex)))
        .count()
}

/// Waits (bounded) until every node holds a file of each of `blobs`.
fn replicated_everywhere(nodes: &[Node], blobs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for d in blobs {
        while holders(nodes, d) < nodes.len() {
            assert!(
                Instant::now() < deadline,
                "blob {d} on {} of {} nodes after 30 s",
                holders(nodes, d),
                nodes.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits (bounded) until every node holds every blob of `img`; returns their digests.
fn image_everywhere(nodes: &[Node], img: &oci::Image) -> Vec<String> {
    let blobs: Vec<String> = img.blobs().map(|b| b.digest.clone()).collect();
    replicated_everywhere(nodes, &blobs);
    blobs
}

/// Pulls `reference` (`repo:tag`) from `node` with skopeo into a fresh OCI layout;
/// returns the pulled root digest and the verified blob digests.
fn skopeo_pull(node: &Node, reference: &str) -> (String, Vec<String>) {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("pulled");
    oci::skopeo_copy(&node.addr.to_string(), reference, &layout);
    (oci::pulled_root(&layout), oci::verified_blobs(&layout))
}

#[test]
fn three_nodes_elect_a_leader_replicate_writes_from_any_node_and_survive_its_loss() {
    let mut nodes = kit::node::cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let a = oci::image(71, &[10 << 10], "amd64");
    rt().block_on(deliver(nodes[l].api, "team/a", &a, "v1"));
    for n in &nodes {
        assert_eq!(
            served(n, "/v2/team/a/manifests/v1"),
            a.digest,
            "on {}",
            n.addr
        );
    }
    // Every node applies the leader's whole log.
    let commit = status(&nodes[l]).unwrap().commit_index;
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while status(n).unwrap().applied_index < commit {
            assert!(Instant::now() < deadline, "{} lags behind {commit}", n.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // A write through a follower is forwarded to the leader and visible everywhere,
    // on the follower itself as soon as it is acknowledged.
    let f = (l + 1) % nodes.len();
    let c = oci::image(73, &[11 << 10], "amd64");
    rt().block_on(deliver(nodes[f].api, "team/c", &c, "v1"));
    let r = request(nodes[f].addr, "GET", "/v2/team/c/manifests/v1", &[], b"");
    assert_eq!((r.status, digest(&r.body)), (200, c.digest.clone()));
    for n in &nodes {
        assert_eq!(served(n, "/v2/team/c/manifests/v1"), c.digest);
    }

    // The leader dies: the other two elect one of themselves and go on.
    nodes[l].kill9();
    let rest = others(&nodes, l);
    let l2 = leader(&rest);
    let gone = l as u64 + 1;
    let degraded = watch_events(rest[l2], move |seen| {
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::ReplicationDegraded(d) if d.node_id == gone))
    });
    let b = oci::image(72, &[12 << 10], "amd64");
    rt().block_on(async {
        deliver(rest[l2].api, "team/b", &b, "v1").await;
        let mut c = grpc::connect(rest[l2].api).await;
        c.schedule(pb::ScheduleRequest {
            application: "app-b".into(),
            images: vec![format!("team/b@{}", b.digest)],
        })
        .await
        .unwrap();
    });
    for n in &rest {
        assert_eq!(served(n, "/v2/team/b/manifests/v1"), b.digest);
    }
    // The new leader reports the silent node once it has been silent a while, and that
    // it is back once it answers again.
    let seen = degraded.join().unwrap();
    assert!(
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::ReplicationDegraded(_))),
        "{seen:?}"
    );
    let restored = watch_events(rest[l2], move |seen| {
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::ReplicationRestored(r) if r.node_id == gone))
    });

    // The old leader comes back, catches up from the log and fetches the blobs it missed.
    nodes[l].restart();
    assert_eq!(served(&nodes[l], "/v2/team/b/manifests/v1"), b.digest);
    assert_eq!(served(&nodes[l], "/v2/team/a/manifests/v1"), a.digest);
    let apps = rt().block_on(async {
        let mut c = grpc::connect(nodes[l].api).await;
        c.list_applications(pb::ListApplicationsRequest {})
            .await
            .unwrap()
            .into_inner()
            .applications
    });
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].name, "app-b");
    let blobs: Vec<String> = [&a, &b, &c]
        .iter()
        .flat_map(|i| i.blobs().map(|b| b.digest.clone()))
        .collect();
    replicated_everywhere(&nodes, &blobs);
    let seen = restored.join().unwrap();
    assert!(
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::ReplicationRestored(_))),
        "{seen:?}"
    );
}

#[test]
fn a_node_left_alone_refuses_writes_and_serves_what_it_holds() {
    let mut nodes = kit::node::cluster(
        3,
        &NodeOptions {
            push: true,
            ..Default::default()
        },
    );
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let s = (l + 1) % nodes.len();
    let a = oci::image(74, &[20 << 10, 5 << 10], "amd64");
    // Delivered through the node that will survive: its bytes are there.
    rt().block_on(deliver(nodes[s].api, "team/a", &a, "v1"));
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != s {
            n.kill9();
        }
    }
    let survivor = &nodes[s];
    // Without a quorum it stops naming a leader (check-quorum, pre-vote).
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(survivor).unwrap().leader_id != 0 {
        assert!(
            Instant::now() < deadline,
            "the survivor still names a leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = rt()
        .block_on(async {
            let mut c = grpc::connect(survivor.api).await;
            grpc::put_manifest(&mut c, "team/a", &a.manifest, OCI_MANIFEST, "v2").await
        })
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("no leader"), "{err:?}");
    let r = request(
        survivor.addr,
        "PUT",
        "/v2/team/a/manifests/v3",
        &[
            ("Authorization", &oci::auth()),
            ("Content-Type", OCI_MANIFEST),
        ],
        &a.manifest,
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(r.header("Retry-After").is_some());
    // Reads go on from its own state and files.
    assert_eq!(served(survivor, "/v2/team/a/manifests/v1"), a.digest);
    for b in a.blobs() {
        assert_eq!(
            served(survivor, &format!("/v2/team/a/blobs/{}", b.digest)),
            b.digest
        );
    }
    assert_eq!(
        kit::get_status(survivor.addr, "/v2/team/a/manifests/v2"),
        404,
        "the refused tag is not there"
    );
}

#[test]
fn a_blob_is_acknowledged_once_a_majority_holds_it_then_reaches_every_node() {
    let Some(_) = require("skopeo") else { return };
    let nodes = kit::node::cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    // Delivered through a follower: the bytes start there, not on the leader.
    let f = (l + 1) % nodes.len();
    let img = oci::image(81, &[3 << 20, 200 << 10, 40 << 10], "amd64");
    rt().block_on(async {
        let mut c = grpc::connect(nodes[f].api).await;
        for b in img.blobs() {
            grpc::deliver_blob(&mut c, "team/r", &b.data).await;
            let n = holders(&nodes, &b.digest);
            assert!(
                n >= 2,
                "blob {} acknowledged while on {n} of 3 nodes",
                b.digest
            );
        }
        grpc::put_manifest(&mut c, "team/r", &img.manifest, OCI_MANIFEST, "v1")
            .await
            .unwrap();
    });
    image_everywhere(&nodes, &img);
    // Without TLS the copies leave the receiving node's page cache with sendfile: it
    // sent every byte of the image at least once (the holds), none over gRPC.
    let sent = |n: &Node, way| metric(n, "site_peer_blob_bytes_sent_total", &[("way", way)]);
    let bytes: usize = img.blobs().map(|b| b.data.len()).sum();
    let by_sendfile = sent(&nodes[f], "sendfile").unwrap_or(0.0);
    assert!(
        by_sendfile >= bytes as f64,
        "the receiving node sent {by_sendfile} bytes by sendfile, the image has {bytes}"
    );
    for n in &nodes {
        assert_eq!(
            sent(n, "grpc"),
            None,
            "{} sent blob bytes over gRPC",
            n.addr
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        if i != f {
            served(n, "/v2/team/r/manifests/v1");
            let (root, pulled) = skopeo_pull(n, "team/r:v1");
            assert_eq!(root, img.digest, "pulled from {}", n.addr);
            oci::assert_pulled(&pulled, &img);
        }
    }
}

#[test]
fn the_cluster_listener_answers_blob_fetches_over_plain_http() {
    let nodes = kit::node::cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let data = kit::bytes(84, 300 << 10);
    let d = digest(&data);
    rt().block_on(async {
        let mut c = grpc::connect(nodes[l].api).await;
        grpc::deliver_blob(&mut c, "team/raw", &data).await;
    });
    let n = &nodes[l];
    let cluster = n.cluster.expect("a cluster listener");
    let r = request(
        cluster,
        "GET",
        &format!("/peer/v1/blobs/{d}?offset=1000"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, &data[1000..], "the bytes from the offset on");
    let unknown = digest(b"not here");
    let r = request(
        cluster,
        "GET",
        &format!("/peer/v1/blobs/{unknown}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    let r = request(
        cluster,
        "GET",
        &format!("/peer/v1/blobs/{d}?offset=999999999"),
        &[],
        b"",
    );
    assert_eq!(r.status, 416, "{}", String::from_utf8_lossy(&r.body));
    let r = request(cluster, "GET", "/v2/", &[], b"");
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // The gRPC service on the same listener is unaffected: the site still takes writes.
    rt().block_on(async {
        let mut c = grpc::connect(nodes[(l + 1) % 3].api).await;
        grpc::deliver_blob(&mut c, "team/raw", &kit::bytes(85, 1 << 20)).await;
    });
}

/// The largest copy of blob `d` that the peers of node `i` are writing (0 if none).
fn peer_copy_in_progress(nodes: &[Node], i: usize, d: &str) -> u64 {
    let name = format!("replica-{}-", &d["sha256:".len()..]);
    others(nodes, i)
        .iter()
        .flat_map(|n| n.upload_files())
        .filter(|(p, _)| p.contains(&name))
        .map(|(_, len)| len)
        .max()
        .unwrap_or(0)
}

/// Waits (bounded, without blocking the runtime) until `done()`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "not within 15 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn peers_copy_a_blob_while_it_arrives_and_drop_the_copy_if_the_stream_breaks_off() {
    let nodes = kit::node::cluster(3, &NodeOptions::default());
    let f = (leader(&nodes.iter().collect::<Vec<_>>()) + 1) % nodes.len();
    let data = kit::bytes(83, 16 << 20);
    let (d, size, half) = (digest(&data), data.len() as u64, 8 << 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = grpc::connect(nodes[f].api).await;
        // Half the blob, then the stream ends: a peer was copying it meanwhile, and drops
        // its copy when the stream breaks off.
        let (tx, call) = grpc::put_blob_by_hand(&c, "team/grow", &d, size, 0);
        for part in data[..half].chunks(256 << 10) {
            tx.send(part.to_vec()).await.unwrap();
        }
        until(
            "a peer copies the first half while the rest is still to come",
            || peer_copy_in_progress(&nodes, f, &d) == half as u64,
        )
        .await;
        assert_eq!(holders(&nodes, &d), 0, "no node holds a part as the blob");
        drop(tx);
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
        until("the peers drop their partial copies", || {
            peer_copy_in_progress(&nodes, f, &d) == 0
        })
        .await;
        assert_eq!(holders(&nodes, &d), 0);

        // The rest: the peers copy the whole blob from the growing file again, and it is
        // acknowledged once a majority holds it.
        let (tx, call) = grpc::put_blob_by_hand(&c, "team/grow", &d, size, half as u64);
        for part in data[half..].chunks(256 << 10) {
            tx.send(part.to_vec()).await.unwrap();
        }
        drop(tx);
        let r = call.await.unwrap().unwrap();
        assert!(r.complete, "{r:?}");
        assert_eq!(r.received, size - half as u64);
        let n = holders(&nodes, &d);
        assert!(n >= 2, "blob acknowledged while on {n} of 3 nodes");
    });
    replicated_everywhere(&nodes, std::slice::from_ref(&d));
    let logs: String = others(&nodes, f).iter().map(|n| n.log()).collect();
    assert!(
        logs.contains("broke off"),
        "a peer's log tells why its copy stopped"
    );
}

#[test]
fn a_wiped_node_serves_at_once_and_refetches_every_live_blob() {
    let mut nodes = kit::node::cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let img = oci::image(82, &[24 << 20, 300 << 10], "amd64");
    rt().block_on(deliver(nodes[l].api, "team/w", &img, "v1"));
    let blobs = image_everywhere(&nodes, &img);

    let w = (l + 1) % nodes.len();
    nodes[w].terminate();
    std::fs::remove_dir_all(nodes[w].data_dir()).unwrap();
    nodes[w].restart();
    // As soon as it knows the image again it serves all of it: from a peer while its own
    // copy is not there yet.
    assert_eq!(served(&nodes[w], "/v2/team/w/manifests/v1"), img.digest);
    for b in img.blobs() {
        let path = format!("/v2/team/w/blobs/{}", b.digest);
        let r = request(nodes[w].addr, "GET", &path, &[], b"");
        assert_eq!(
            (r.status, digest(&r.body)),
            (200, b.digest.clone()),
            "{path}"
        );
    }
    eprintln!(
        "reads served from a peer while the wiped node fetched: {}",
        nodes[w].log().matches("serving it from a peer").count()
    );
    replicated_everywhere(&nodes, &blobs);
}

#[test]
fn a_wiped_nodes_vote_cannot_elect_a_node_lacking_a_committed_image() {
    let mut nodes = kit::node::cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let (w, behind) = ((l + 1) % 3, (l + 2) % 3);
    // One node is down while an image is committed on the other two.
    nodes[behind].terminate();
    let img = oci::image(84, &[40 << 10, 3 << 10], "amd64");
    rt().block_on(deliver(nodes[l].api, "team/v", &img, "v1"));
    assert_eq!(served(&nodes[w], "/v2/team/v/manifests/v1"), img.digest);
    // The leader dies and the other holder of the image loses its disk; the node that
    // lacks the image comes back. Only the wiped node's vote could make it leader.
    nodes[l].kill9();
    nodes[w].terminate();
    std::fs::remove_dir_all(nodes[w].data_dir()).unwrap();
    nodes[w].restart();
    nodes[behind].restart();
    // The node lacking the image asks for votes; the wiped node grants its own (its log
    // is empty), and the candidate holds it back: it alone proves nothing.
    nodes[behind].wait_log("a vote from a node catching up");
    assert_eq!(
        status(&nodes[behind]).map(|s| s.leader_id),
        Some(0),
        "a leader without the committed image"
    );
    // The old leader comes back: a leader holding the image is elected, and every node
    // serves the image.
    nodes[l].restart();
    leader(&nodes.iter().collect::<Vec<_>>());
    for n in &nodes {
        assert_eq!(served(n, "/v2/team/v/manifests/v1"), img.digest);
    }
    image_everywhere(&nodes, &img);
    nodes[w].wait_log("caught up with the group's log");
}

#[test]
fn a_bad_blob_copy_is_found_removed_and_fetched_again_from_a_peer() {
    let nodes = kit::node::cluster(
        3,
        &NodeOptions {
            scrub: Some("1s".into()),
            ..Default::default()
        },
    );
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let img = oci::image(86, &[2 << 20, 10 << 10], "amd64");
    rt().block_on(deliver(nodes[l].api, "team/s", &img, "v1"));
    image_everywhere(&nodes, &img);

    let v = (l + 1) % nodes.len();
    let (id, layer) = (v as u64 + 1, img.layers[0].digest.clone());
    let watched = layer.clone();
    let events = watch_events(&nodes[v], move |seen| {
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::BlobRepaired(b) if b.digest == watched))
    });
    // One byte of node v's copy of the layer flips on disk.
    let path = nodes[v]
        .blob_files()
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.ends_with(&layer[7..]))
        .expect("the layer's file");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut byte = [0u8; 1];
        std::fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut byte, 4096)
            .unwrap();
        f.write_at(&[!byte[0]], 4096).unwrap();
    }
    let seen = events.join().unwrap();
    assert!(
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::BlobCorrupt(b)
            if b.digest == layer && b.node_id == id && b.actual != layer)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::BlobRepaired(b)
            if b.digest == layer && b.node_id == id && b.from_node_id != id)),
        "{seen:?}"
    );
    assert!(nodes[v].log().contains("no longer matches its digest"));
    // The copy on disk is whole again, and the node serves the right bytes.
    assert_eq!(digest(&std::fs::read(&path).unwrap()), layer);
    let path = format!("/v2/team/s/blobs/{layer}");
    assert_eq!(served(&nodes[v], &path), layer);
}

#[test]
fn gc_on_a_three_node_site_deletes_the_same_set_on_every_node() {
    let nodes = kit::node::cluster(
        3,
        &NodeOptions {
            grace: Some("300ms".into()),
            ..Default::default()
        },
    );
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let a = oci::image(91, &[30 << 10, 20 << 10], "amd64");
    let mut b = oci::image(92, &[25 << 10], "amd64");
    // b shares a's first layer.
    b.layers.insert(0, a.layers[0].clone());
    let b = oci::rebuild(b);
    rt().block_on(async {
        deliver(nodes[l].api, "team/a", &a, "v1").await;
        deliver(nodes[l].api, "team/b", &b, "v1").await;
        let mut c = grpc::connect(nodes[l].api).await;
        c.schedule(pb::ScheduleRequest {
            application: "app".into(),
            images: vec![format!("team/a@{}", a.digest)],
        })
        .await
        .unwrap();
    });
    let all: Vec<String> = a
        .blobs()
        .chain(b.blobs())
        .map(|x| x.digest.clone())
        .collect();
    replicated_everywhere(&nodes, &all);
    // Until b's grace period has passed.
    rt().block_on(async {
        let mut c = grpc::connect(nodes[l].api).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while grpc::run_gc(&mut c, true).await.manifests != [b.digest.clone()] {
            assert!(tokio::time::Instant::now() < deadline, "b never due");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Asked of a follower: the sweep is ordered once, by the leader, for every node.
    let f = (l + 1) % nodes.len();
    let report = rt().block_on(async {
        let mut c = grpc::connect(nodes[f].api).await;
        grpc::run_gc(&mut c, false).await
    });
    assert_eq!(report.manifests, vec![b.digest.clone()]);
    let b_only: Vec<String> = b
        .blobs()
        .filter(|x| x.digest != a.layers[0].digest)
        .map(|x| x.digest.clone())
        .collect();
    let mut deleted = report.blobs.clone();
    deleted.sort();
    let mut expected = b_only.clone();
    expected.sort();
    assert_eq!(deleted, expected, "b's own blobs, not the shared layer");

    let names = |n: &Node| -> Vec<String> {
        n.blob_files()
            .into_iter()
            .map(|(p, _)| p.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    let mut kept: Vec<String> = a.blobs().map(|x| x.digest[7..].to_owned()).collect();
    kept.sort();
    for n in &nodes {
        // The sweep is applied on each node as it reaches that entry.
        let deadline = Instant::now() + Duration::from_secs(10);
        while names(n) != kept {
            assert!(
                Instant::now() < deadline,
                "{} holds {:?}, expected {kept:?}",
                n.addr,
                names(n)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(kit::get_status(n.addr, "/v2/team/b/manifests/v1"), 404);
        assert_eq!(served(n, "/v2/team/a/manifests/v1"), a.digest);
    }
}

#[test]
fn a_fourth_node_joins_at_run_time_fetches_every_live_blob_and_leaves_again() {
    let nodes = kit::node::cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let img = oci::image(95, &[2 << 20, 100 << 10], "amd64");
    rt().block_on(deliver(nodes[l].api, "team/j", &img, "v1"));
    // towerctl first (built on first use when its sources changed): the watch below
    // must not spend its 30 s waiting for a build.
    kit::tools::towerctl_bin();
    let events = watch_events(&nodes[l], |seen| {
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::NodeLeft(j) if j.node_id == 4))
    });

    let listen = kit::node::free_addr();
    let peers: Vec<(u64, std::net::SocketAddr)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u64 + 1, n.cluster.unwrap()))
        .collect();
    let fourth = Node::start(NodeOptions {
        id: Some(4),
        cluster: Some((listen, peers)),
        join: true,
        ..Default::default()
    });
    // Asked of a follower, like any write.
    let f = (l + 1) % nodes.len();
    let site = nodes[f].api.to_string();
    // An address that is not HOST:PORT is refused, and the voters stay as they were.
    rt().block_on(async {
        let mut c = grpc::connect(nodes[f].api).await;
        for bad in ["h :1", "http://h:1", "[::1", "h\0:1"] {
            let err = c
                .add_node(pb::AddNodeRequest {
                    node_id: 4,
                    address: bad.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
            assert!(err.message().contains("is not HOST:PORT"), "{err:?}");
        }
    });
    let ids: Vec<u64> = status(&nodes[f])
        .expect("status")
        .nodes
        .iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let out = ok(towerctl(&[
        "node",
        "add",
        "--site",
        &site,
        "4",
        &listen.to_string(),
    ]));
    assert!(out.contains("node 4 added; nodes: 1, 2, 3, 4"), "{out}");

    // It is sent the state and fetches every live blob.
    assert_eq!(served(&fourth, "/v2/team/j/manifests/v1"), img.digest);
    let mut all = nodes.iter().collect::<Vec<_>>();
    all.push(&fourth);
    let blobs: Vec<String> = img.blobs().map(|b| b.digest.clone()).collect();
    for d in &blobs {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fourth
            .blob_files()
            .iter()
            .any(|(p, _)| p.ends_with(&d[7..]))
        {
            assert!(Instant::now() < deadline, "node 4 lacks {d} after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A site of four takes writes, the new node among the majority.
    let b = oci::image(96, &[150 << 10], "amd64");
    rt().block_on(deliver(nodes[l].api, "team/k", &b, "v1"));
    assert_eq!(served(&fourth, "/v2/team/k/manifests/v1"), b.digest);
    let shown = ok(towerctl(&["status", "--site", &fourth.api.to_string()]));
    for id in 1..=4 {
        assert!(shown.contains(&format!("node {id}: ")), "{shown}");
    }
    assert!(!shown.contains("unreachable"), "{shown}");

    let out = ok(towerctl(&["node", "remove", "--site", &site, "4"]));
    assert!(out.contains("node 4 removed; nodes: 1, 2, 3"), "{out}");
    let s = status(&nodes[l]).unwrap();
    assert_eq!(
        s.nodes.iter().map(|n| n.node_id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(s.nodes.iter().all(|n| n.reachable), "{s:?}");

    let seen = events.join().unwrap();
    assert!(
        seen.iter().any(|k| matches!(k, pb::event::Kind::NodeJoined(j) if j.node_id == 4 && j.address == listen.to_string())),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|k| matches!(k, pb::event::Kind::NodeLeft(j) if j.node_id == 4)),
        "{seen:?}"
    );
}

#[test]
fn pulls_from_the_other_nodes_never_fail_while_the_leader_is_killed() {
    use kit::proxy::CountingProxy;
    use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::SeqCst};
    use std::sync::Arc;
    // Where the site stands, as the pullers see it when a pull starts and ends.
    const BEFORE: u8 = 0;
    const KILLING: u8 = 1;
    const KILLED: u8 = 2;
    const ELECTED: u8 = 3;
    const STOP: u8 = 4;
    let mut nodes = kit::node::cluster(3, &NodeOptions::default());
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let img = oci::image(97, &[1 << 20, 64 << 10], "amd64");
    rt().block_on(deliver(nodes[l].api, "team/p", &img, "v1"));
    image_everywhere(&nodes, &img);
    for n in &nodes {
        assert_eq!(served(n, "/v2/team/p/manifests/v1"), img.digest);
    }

    // Each of the other nodes is pulled from through a link of 1 MiB/s: a pull of the
    // image takes about a second, so that the kill lands in the middle of one.
    let links: Vec<CountingProxy> = others(&nodes, l)
        .into_iter()
        .map(|n| CountingProxy::start_throttled(n.addr, Some(1 << 20)))
        .collect();
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let pullers: Vec<_> = links
        .iter()
        .map(|link| {
            let (addr, phase, img) = (link.addr, phase.clone(), img.clone());
            // Pulls begun once the new leader was known, and finished.
            let after = Arc::new(AtomicU32::new(0));
            let counted = after.clone();
            let puller = std::thread::spawn(move || {
                let (mut pulls, mut across, mut failures) = (0u32, 0u32, Vec::new());
                loop {
                    let began = phase.load(SeqCst);
                    if began == STOP {
                        break;
                    }
                    let failed = failures.len();
                    let m = request(addr, "GET", "/v2/team/p/manifests/v1", &[], b"");
                    if (m.status, digest(&m.body)) != (200, img.digest.clone()) {
                        failures.push(format!("manifest: {}", m.status));
                    }
                    for b in img.blobs() {
                        let path = format!("/v2/team/p/blobs/{}", b.digest);
                        let r = request(addr, "GET", &path, &[], b"");
                        if (r.status, digest(&r.body)) != (200, b.digest.clone()) {
                            failures.push(format!("{path}: {}", r.status));
                        }
                    }
                    pulls += 1;
                    let ended = phase.load(SeqCst);
                    // Begun before the kill began and ended after the leader was dead:
                    // the kill came in the middle of this pull.
                    if began == BEFORE && ended >= KILLED && failures.len() == failed {
                        across += 1;
                    }
                    if began == ELECTED {
                        counted.fetch_add(1, SeqCst);
                    }
                }
                (pulls, across, failures)
            });
            (after, puller)
        })
        .collect();
    // Bytes of the first pulls are crossing both links: now kill the leader.
    for link in &links {
        link.wait_received(256 << 10);
    }
    phase.store(KILLING, SeqCst);
    nodes[l].kill9();
    phase.store(KILLED, SeqCst);
    let rest = others(&nodes, l);
    // Pull through the whole election, and until each puller has pulled the whole image
    // once more under the new leader.
    leader(&rest);
    phase.store(ELECTED, SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    // (A puller that panicked has finished: its panic is reported when it is joined.)
    while pullers
        .iter()
        .any(|(after, p)| after.load(SeqCst) == 0 && !p.is_finished())
    {
        assert!(
            Instant::now() < deadline,
            "no whole pull under the new leader within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    phase.store(STOP, SeqCst);
    for (_, p) in pullers {
        let (pulls, across, failures) = p.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed pulls: {failures:?}",
            failures.len()
        );
        assert!(
            across > 0,
            "none of {pulls} pulls was in flight when the leader was killed"
        );
        eprintln!("{pulls} pulls, {across} across the kill, none failed");
    }
}

#[test]
fn a_node_far_behind_is_brought_up_by_the_leaders_snapshot() {
    let mut nodes = kit::node::cluster(
        3,
        &NodeOptions {
            snapshot_entries: Some(4),
            ..Default::default()
        },
    );
    let l = leader(&nodes.iter().collect::<Vec<_>>());
    let behind = (l + 1) % nodes.len();
    nodes[behind].terminate();
    // Enough entries that the others compact their logs past all it has.
    let images: Vec<oci::Image> = (0..3)
        .map(|i| oci::image(111 + i, &[(40 + i as usize) << 10], "amd64"))
        .collect();
    for (i, img) in images.iter().enumerate() {
        rt().block_on(deliver(nodes[l].api, &format!("team/s{i}"), img, "v1"));
    }
    nodes[behind].restart();
    for (i, img) in images.iter().enumerate() {
        assert_eq!(
            served(&nodes[behind], &format!("/v2/team/s{i}/manifests/v1")),
            img.digest
        );
    }
    let blobs: Vec<String> = images
        .iter()
        .flat_map(|i| i.blobs().map(|b| b.digest.clone()))
        .collect();
    replicated_everywhere(&nodes, &blobs);
    assert!(
        nodes[behind]
            .log()
            .contains("state installed from the leader's snapshot"),
        "caught up without a snapshot"
    );
}

#[test]
fn a_node_whose_cluster_port_is_taken_says_so_at_once() {
    // What the test kit starts a site again on: the node exits with this message.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let log = match Node::try_start(NodeOptions {
        id: Some(1),
        cluster: Some((
            taken.local_addr().unwrap(),
            vec![(2, kit::node::free_addr())],
        )),
        ..Default::default()
    }) {
        Ok(_) => panic!("a node started on a taken cluster port"),
        Err(log) => log,
    };
    assert!(log.contains("Address already in use"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
