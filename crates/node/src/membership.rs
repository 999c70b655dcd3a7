//! Membership of the site's group: nodes added and removed at run time through Raft
//! configuration changes, decided in the replication core (`site-replica`'s
//! `members.rs`). Here: asking for a change, giving the transport the recorded
//! addresses, and the report of every node's standing. A node that joins is sent a
//! snapshot, then fetches every live blob.

use crate::leadership::Leadership;
use crate::missing_blobs::MissingBlobs;
use crate::ordering::Orderer;
use crate::transport::Transport;
use crate::{NodeError, Result};
use site_state::MemberChange;
use std::sync::Arc;

/// The site's members as this node sees and changes them. Cheap to clone; clones share
/// it.
#[derive(Clone)]
pub struct Membership {
    orderer: Orderer,
    leadership: Leadership,
    missing: MissingBlobs,
    /// The way to the other nodes.
    transport: Arc<dyn Transport>,
    /// A site of one without a cluster listener: it cannot take members.
    alone: bool,
    /// One membership change at a time from this node.
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl Membership {
    /// The members of this node's site (`alone`: a node without peers or a cluster
    /// listener).
    pub(crate) fn new(
        orderer: Orderer,
        leadership: Leadership,
        missing: MissingBlobs,
        transport: Arc<dyn Transport>,
        alone: bool,
    ) -> Membership {
        Membership {
            orderer,
            leadership,
            missing,
            transport,
            alone,
            one_at_a_time: Arc::default(),
        }
    }

    /// Orders a membership change through the log (on the leader, wherever it is asked);
    /// returns the voters once it is applied here.
    pub async fn change_members(&self, change: MemberChange) -> Result<Vec<u64>> {
        if change.id() == 0 {
            return Err(NodeError::Refused(site_state::StateError::Invalid(
                "node ids are > 0".into(),
            )));
        }
        if let MemberChange::Add { address, .. } = &change {
            if address.parse::<std::net::SocketAddr>().is_err()
                && !address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(NodeError::Refused(site_state::StateError::Invalid(
                    format!("node address {address:?} is not HOST:PORT"),
                )));
            }
        }
        if self.alone {
            return Err(NodeError::Refused(site_state::StateError::Invalid(
                "this node runs alone (no [cluster] peers, no cluster listener): a site that grows is started with [cluster] peers".into(),
            )));
        }
        let _one_at_a_time = self.one_at_a_time.lock().await;
        self.orderer.ask(site_replica::Ask::Members(change)).await?;
        Ok(self.leadership.get().voters)
    }
}

/// A node of the site as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Its id.
    pub id: u64,
    /// Its cluster address (empty for the node looking).
    pub address: String,
    /// Whether it answered just now.
    pub reachable: bool,
    /// What it reported (zeroes when it did not answer).
    pub report: crate::transport::NodeReport,
}

/// How long a status waits for each peer's report.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl Membership {
    /// Where this node stands.
    pub fn local_report(&self) -> crate::transport::NodeReport {
        let raft = self.leadership.get();
        crate::transport::NodeReport {
            leader: raft.leader,
            term: raft.term,
            commit: raft.commit,
            applied: raft.applied,
            blobs_missing: self.missing.count() as u64,
        }
    }

    /// Every voter of the site, asked where it stands (at most [`REPORT_TIMEOUT`] each,
    /// all at once).
    pub async fn site_nodes(&self) -> Vec<NodeView> {
        let voters = self.leadership.get().voters;
        let me = self.leadership.id();
        let addresses: std::collections::HashMap<u64, String> =
            self.transport.peers().into_iter().collect();
        let asks = voters.iter().map(|&id| {
            let address = addresses.get(&id).cloned().unwrap_or_default();
            let call = (id != me).then(|| self.transport.report(id));
            async move {
                let Some(call) = call else {
                    return NodeView {
                        id,
                        address: String::new(),
                        reachable: true,
                        report: self.local_report(),
                    };
                };
                match tokio::time::timeout(REPORT_TIMEOUT, call).await {
                    Ok(Ok(report)) => NodeView {
                        id,
                        address,
                        reachable: true,
                        report,
                    },
                    _ => NodeView {
                        id,
                        address,
                        reachable: false,
                        report: Default::default(),
                    },
                }
            }
        });
        futures_util::future::join_all(asks).await
    }
}
