//! What the fleet tests share: an upstream to put images in, sites onboarded on a tower,
//! and what a site node received and runs.

use super::grpc;
use super::node::status;
use super::oci::{upload, Image};
use super::tools::require;
use super::tower::Towerd;
use super::upstream::ReferenceRegistry;
use super::Node;
use serde_json::Value;

/// Onboards a site (201); its id.
pub fn onboard(tower: &Towerd, body: Value) -> String {
    let site = tower.expect("POST", "/sites", Some(&body), 201);
    for key in ["name", "nodes", "labels"] {
        assert_eq!(site[key], body[key], "{key} as given");
    }
    site["id"].as_str().expect("an id").to_owned()
}

/// Debian's `docker-registry` as the upstream, and a directory for the layouts skopeo
/// puts there (`None` where the tools are missing and `CI` is not set).
pub struct Upstream {
    pub registry: ReferenceRegistry,
    /// Its `HOST:PORT`.
    pub addr: String,
    work: tempfile::TempDir,
}

impl Upstream {
    pub fn start() -> Option<Upstream> {
        let binary = require("docker-registry")?;
        require("skopeo")?;
        let registry = ReferenceRegistry::start(&binary);
        Some(Upstream {
            addr: registry.addr.to_string(),
            registry,
            work: tempfile::tempdir().unwrap(),
        })
    }

    /// Puts `image` at `name` (`repo:tag`).
    pub fn put(&self, image: &Image, name: &str) {
        upload(
            self.work.path(),
            image,
            &format!("{}/{name}", self.addr),
            None,
        );
    }
}

/// Bytes a node received by PutBlob since it started.
pub fn received(node: &Node) -> u64 {
    status(node).map_or(0, |s| s.blob_bytes_received)
}

/// The applications a node holds, as `name -> images`.
pub fn apps(node: &Node) -> Vec<(String, Vec<String>)> {
    grpc::rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        c.list_applications(site_api::pb::ListApplicationsRequest {})
            .await
            .unwrap()
            .into_inner()
            .applications
            .into_iter()
            .map(|a| (a.name, a.images))
            .collect()
    })
}

/// Where a node stands with a blob.
pub fn blob_status(node: &Node, digest: &str) -> site_api::pb::BlobStatusResponse {
    grpc::rt().block_on(async {
        let mut c = grpc::connect(node.api).await;
        c.blob_status(site_api::pb::BlobStatusRequest {
            digest: digest.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
    })
}
