//! `GET /sites/{id}/health`: every node of a site asked for its status at once, and a
//! verdict: `healthy` (every node answers, knows the leader, has applied what the site
//! committed and holds every blob), `degraded` (some node does not), `down` (none
//! answers).

use crate::worker::client_tls;
use site_delivery::site;
use site_fleet::Site;
pub use site_fleet_api::NodeHealth;
use site_proto::pb::StatusRequest;
use std::time::Duration;

/// How long a node has to answer.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Apply lag (entries) beyond which a node is behind.
const LAG: u64 = 100;

/// A site's health.
#[derive(Debug, Clone)]
pub struct Health {
    /// `healthy`, `degraded` or `down`.
    pub verdict: &'static str,
    /// Every node, in the inventory's order.
    pub nodes: Vec<NodeHealth>,
}

/// Asks every node of `site`.
pub async fn check(site: &Site) -> Health {
    let tls = client_tls(site);
    let asks = site.nodes.iter().map(|a| node(a, tls.as_ref()));
    let mut nodes = futures_util::future::join_all(asks).await;
    // A node cut off from its site knows only its own commit index: its lag is measured
    // against the furthest one any node knows.
    let committed = nodes.iter().map(|n| n.commit_index).max().unwrap_or(0);
    for n in nodes.iter_mut().filter(|n| n.reachable) {
        n.apply_lag = committed.saturating_sub(n.applied_index);
    }
    Health {
        verdict: verdict(&nodes),
        nodes,
    }
}

fn verdict(nodes: &[NodeHealth]) -> &'static str {
    let reachable = nodes.iter().filter(|n| n.reachable).count();
    let well = |n: &NodeHealth| {
        n.reachable
            && n.failure.is_empty()
            && n.leader_id != 0
            && n.blobs_missing == 0
            && n.apply_lag <= LAG
    };
    if reachable == 0 {
        "down"
    } else if nodes.iter().all(well) {
        "healthy"
    } else {
        "degraded"
    }
}

async fn node(address: &str, tls: Option<&tonic::transport::ClientTlsConfig>) -> NodeHealth {
    let mut out = NodeHealth {
        address: address.to_owned(),
        reachable: false,
        node_id: 0,
        leader: false,
        leader_id: 0,
        disk_free_bytes: 0,
        disk_capacity_bytes: 0,
        apply_lag: 0,
        commit_index: 0,
        applied_index: 0,
        blobs_missing: 0,
        version: String::new(),
        failure: String::new(),
        error: String::new(),
    };
    let ask = async {
        let mut client = site::connect(address, tls).await?;
        client
            .status(StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| site::status_error(&s))
    };
    match tokio::time::timeout(TIMEOUT, ask).await {
        Ok(Ok(s)) => {
            out.reachable = true;
            out.node_id = s.node_id;
            out.leader = s.leader_id != 0 && s.leader_id == s.node_id;
            out.leader_id = s.leader_id;
            out.disk_free_bytes = s.disk_free_bytes;
            out.disk_capacity_bytes = s.disk_capacity_bytes;
            out.commit_index = s.commit_index;
            out.applied_index = s.applied_index;
            out.blobs_missing = s.blobs_missing;
            out.version = s.version;
            out.failure = s.failure;
        }
        Ok(Err(e)) => out.error = e.to_string(),
        Err(_) => out.error = format!("no answer in {} s", TIMEOUT.as_secs()),
    }
    out
}
