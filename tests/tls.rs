//! mTLS of the site's gRPC (`[tls]`): the tower's api and the nodes' cluster listener
//! take only clients with a certificate of the site CA; nodes verify each other.

mod kit;

use kit::node::{metric, served};
use kit::oci::{self, OCI_MANIFEST};
use kit::tls::Certs;
use kit::tools::{ok, towerctl};
use kit::{grpc, Node, NodeOptions};
use site_api::pb;
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn with_tls(certs: &Certs) -> NodeOptions {
    NodeOptions {
        tls: Some((certs.node.clone(), certs.ca.clone())),
        ..Default::default()
    }
}

/// Certificates made in `dir`, and a 3-node site using them (`None` where openssl is
/// missing and `CI` is not set).
fn tls_site(dir: &std::path::Path) -> Option<(Certs, Vec<Node>)> {
    let certs = Certs::generate(dir)?;
    let nodes = kit::node::cluster_with(3, |_| with_tls(&certs));
    Some((certs, nodes))
}

#[test]
fn the_api_takes_only_clients_with_a_certificate_of_the_site_ca() {
    let dir = tempfile::tempdir().unwrap();
    let Some(certs) = Certs::generate(dir.path()) else {
        return;
    };
    let node = Node::start(with_tls(&certs));
    rt().block_on(async {
        let mut c = certs.connect(node.api, Some(&certs.tower)).await.unwrap();
        let s = c.status(pb::StatusRequest {}).await.unwrap().into_inner();
        assert_eq!(s.node_id, 1);
        // No client certificate, a certificate of another CA, or no TLS at all: refused.
        for client in [None, Some(&certs.stranger)] {
            let refused = match certs.connect(node.api, client).await {
                Err(_) => true,
                Ok(mut c) => c.status(pb::StatusRequest {}).await.is_err(),
            };
            assert!(refused, "client {client:?} was served");
        }
        let plain = match pb::site_client::SiteClient::connect(format!("http://{}", node.api)).await
        {
            Err(_) => true,
            Ok(mut c) => c.status(pb::StatusRequest {}).await.is_err(),
        };
        assert!(plain, "plain HTTP/2 was served");
    });

    let api = node.api.to_string();
    let (ca, cert, key) = (
        certs.ca.display().to_string(),
        certs.tower.cert.display().to_string(),
        certs.tower.key.display().to_string(),
    );
    let shown = ok(towerctl(&[
        "status",
        "--site",
        &api,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]));
    assert!(shown.contains("node: 1"), "{shown}");
    let refused = towerctl(&["status", "--site", &api]);
    assert_eq!(
        refused.status.code(),
        Some(8),
        "site unreachable without TLS"
    );
    let log = node.log();
    assert!(!log.contains("PRIVATE KEY"), "key material in the log");
}

#[test]
fn a_three_node_site_replicates_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let Some((certs, nodes)) = tls_site(dir.path()) else {
        return;
    };
    let img = oci::image(101, &[300 << 10, 20 << 10], "amd64");
    rt().block_on(async {
        let mut c = certs
            .connect(nodes[0].api, Some(&certs.tower))
            .await
            .unwrap();
        // The nodes find each other over mTLS and elect a leader.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = c.status(pb::StatusRequest {}).await.unwrap().into_inner();
            if s.leader_id != 0 && s.nodes.len() == 3 && s.nodes.iter().all(|n| n.reachable) {
                break;
            }
            assert!(Instant::now() < deadline, "no leader over mTLS: {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for b in img.blobs() {
            grpc::deliver_blob(&mut c, "team/t", &b.data).await;
        }
        grpc::put_manifest(&mut c, "team/t", &img.manifest, OCI_MANIFEST, "v1")
            .await
            .unwrap();
    });
    // Every node holds and serves all of it (blobs copied between nodes over mTLS).
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        for b in img.blobs() {
            while !n
                .blob_files()
                .iter()
                .any(|(p, _)| p.ends_with(&b.digest[7..]))
            {
                assert!(Instant::now() < deadline, "{} lacks {}", n.addr, b.digest);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // A follower serves the manifest once it has applied the committed entry.
        assert_eq!(served(n, "/v2/team/t/manifests/v1"), img.digest);
    }
    // Over mTLS the copies went as gRPC messages (sendfile cannot encrypt).
    let sent = |n: &Node, way| metric(n, "site_peer_blob_bytes_sent_total", &[("way", way)]);
    let bytes: usize = img.blobs().map(|b| b.data.len()).sum();
    let by_grpc: f64 = nodes.iter().filter_map(|n| sent(n, "grpc")).sum();
    assert!(by_grpc >= bytes as f64, "{by_grpc} bytes sent over gRPC");
    for n in &nodes {
        assert_eq!(
            sent(n, "sendfile"),
            None,
            "{} used sendfile under TLS",
            n.addr
        );
    }
}

#[test]
fn the_cluster_listener_serves_only_the_sites_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let Some((certs, nodes)) = tls_site(dir.path()) else {
        return;
    };
    let cluster = nodes[0].cluster.expect("a cluster listener");
    rt().block_on(async {
        use site_api::peer_pb::peer_client::PeerClient;
        use site_api::peer_pb::{ProposeRequest, ReportRequest};
        // A certificate of the site CA that is not a node's: the tower's.
        let tower = certs.channel(cluster, Some(&certs.tower)).await.unwrap();
        let mut c = PeerClient::new(tower);
        let err = c.report(ReportRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("node certificate"), "{err:?}");
        let err = c.propose(ProposeRequest { ask: None }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        // A node's certificate, for the host of one of the node's peers.
        let node = certs.channel(cluster, Some(&certs.node)).await.unwrap();
        let report = PeerClient::new(node)
            .report(ReportRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(report.commit_index > 0, "{report:?}");
    });
    assert!(
        nodes[0]
            .log()
            .contains("refused a call to the cluster listener"),
        "the refusal is logged"
    );
}
