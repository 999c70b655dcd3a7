//! Membership of the site's group: nodes added and removed at run time through Raft
//! configuration changes. The change travels in the log (a `ConfChangeV2` whose context
//! is the [`MemberChange`]); applying it, on every node in log order, updates the
//! group's voters, the addresses the state records, this node's transport, and tells the
//! watchers. A node that joins is sent a snapshot (taken when the change is applied, so
//! that its configuration includes the new node), then fetches every live blob.

use crate::{Result, Store, StoreError};
use serde::{Deserialize, Serialize};
use site_state::Event;

/// A change of the site's voters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MemberChange {
    /// Node `id`, reachable by its peers at `address` (its `[cluster] listen`), joins.
    Add {
        /// Its node id.
        id: u64,
        /// `HOST:PORT` of its cluster listener.
        address: String,
    },
    /// Node `id` leaves.
    Remove {
        /// Its node id.
        id: u64,
    },
}

impl MemberChange {
    /// The node it is about.
    pub fn id(&self) -> u64 {
        match self {
            MemberChange::Add { id, .. } | MemberChange::Remove { id } => *id,
        }
    }
}

impl Store {
    /// Orders a membership change through the log (on the leader, wherever it is asked);
    /// returns the voters once it is applied here.
    pub async fn change_members(&self, change: MemberChange) -> Result<Vec<u64>> {
        if change.id() == 0 {
            return Err(StoreError::Refused(site_state::StateError::Invalid(
                "node ids are > 0".into(),
            )));
        }
        if let MemberChange::Add { address, .. } = &change {
            if address.parse::<std::net::SocketAddr>().is_err()
                && !address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(StoreError::Refused(site_state::StateError::Invalid(
                    format!("node address {address:?} is not HOST:PORT"),
                )));
            }
        }
        if self.inner.cluster.get().is_some_and(|c| c.alone) {
            return Err(StoreError::Refused(site_state::StateError::Invalid(
                "this node runs alone (no [cluster] peers, no cluster listener): a site that grows is started with [cluster] peers".into(),
            )));
        }
        let _writer = self.inner.writer.lock().await;
        self.ask(crate::raft_driver::Ask::Members(change)).await?;
        Ok(self.raft_status().voters)
    }

    /// Applies a committed membership change to what this node keeps beside the raft
    /// configuration: the recorded addresses, the transport, the watchers.
    pub(crate) fn apply_member_change(&self, change: &MemberChange) {
        let me = self.inner.cluster.get().map(|c| c.id);
        let (id, address) = match change {
            MemberChange::Add { id, address } => (*id, Some(address.as_str())),
            MemberChange::Remove { id } => (*id, None),
        };
        self.inner
            .state
            .write()
            .expect("state lock")
            .record_node(id, address);
        if let Some(c) = self.inner.cluster.get() {
            if me != Some(id) {
                c.transport.set_peer(id, address);
            }
        }
        self.publish(match address {
            Some(a) => Event::NodeJoined {
                node: id,
                address: a.to_owned(),
            },
            None => Event::NodeLeft { node: id },
        });
    }

    /// Gives the transport the address of every node the state records (after a restart
    /// or a snapshot).
    pub(crate) fn sync_peers(&self) {
        let Some(c) = self.inner.cluster.get() else {
            return;
        };
        let nodes: Vec<(u64, String)> =
            self.read(|s| s.nodes().map(|(id, a)| (id, a.to_owned())).collect());
        for (id, address) in nodes {
            if id != c.id {
                c.transport.set_peer(id, Some(&address));
            }
        }
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

impl Store {
    /// Where this node stands.
    pub fn local_report(&self) -> crate::transport::NodeReport {
        let raft = self.raft_status();
        crate::transport::NodeReport {
            leader: raft.leader,
            term: raft.term,
            commit: raft.commit,
            applied: raft.applied,
            blobs_missing: self.blobs_missing() as u64,
        }
    }

    /// Every voter of the site, asked where it stands (at most [`REPORT_TIMEOUT`] each,
    /// all at once).
    pub async fn site_nodes(&self) -> Vec<NodeView> {
        let voters = self.raft_status().voters;
        let Some(cluster) = self.inner.cluster.get() else {
            return Vec::new();
        };
        let addresses: std::collections::HashMap<u64, String> =
            cluster.transport.peers().into_iter().collect();
        let asks = voters.iter().map(|&id| {
            let address = addresses.get(&id).cloned().unwrap_or_default();
            let call = (id != cluster.id).then(|| cluster.transport.report(id));
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
