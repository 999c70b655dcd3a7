//! Where this node's Raft stands, as the driver last published it (leader, term, voters,
//! the peers a leader has not heard from), and what follows for the rest of the node:
//! whether it can take writes ([`Leadership::writable`]), when it is cut off
//! ([`Leadership::cut_off`]), when a peer goes silent ([`Leadership::silent`]), and
//! whom to fetch a blob from ([`Leadership::fetch_order`]).

use crate::failure::Failure;
use crate::{NodeError, Result};
use site_core::metrics::Counter;
use std::sync::Arc;
use tokio::sync::watch;

/// Where this node's Raft stands.
pub type RaftStatus = site_replica::Status;

/// This node's view of its group. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Leadership {
    /// This node's id.
    id: u64,
    /// A site of one node: it needs no leader to write.
    alone: bool,
    status: Arc<watch::Sender<RaftStatus>>,
    failure: Failure,
    /// Times this node saw the leader change.
    changes: Arc<Counter>,
}

impl Leadership {
    /// Node `id`'s view (`alone`: the site's only node), knowing nothing yet.
    pub fn new(id: u64, alone: bool, failure: Failure) -> Leadership {
        Leadership {
            id,
            alone,
            status: Arc::new(watch::channel(Default::default()).0),
            failure,
            changes: Arc::default(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where this node's Raft stands.
    pub fn get(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// Wakes whoever waits on where this node's Raft stands, when it changes.
    pub fn subscribe(&self) -> watch::Receiver<RaftStatus> {
        self.status.subscribe()
    }

    /// Times this node saw its site's leader change.
    pub fn leader_changes(&self) -> u64 {
        self.changes.get()
    }

    /// Whether this node leads the site's group now.
    pub fn is_leader(&self) -> bool {
        let leader = self.status.borrow().leader;
        leader != 0 && leader == self.id
    }

    /// The driver's part: `now` is where this node's Raft stands.
    pub(crate) fn publish(&self, now: RaftStatus) {
        self.status.send_if_modified(|status| {
            if status.leader != now.leader {
                tracing::info!(leader = now.leader, term = now.term, "raft leader changed");
                self.changes.inc();
            }
            let changed = *status != now;
            *status = now;
            changed
        });
    }

    /// Whether this node can take writes now: it knows a leader of its site. A node cut
    /// off from its peers loses its leader within an election timeout (1 to 2 s; a
    /// leader steps down when it no longer hears from a majority).
    pub fn writable(&self) -> Result<()> {
        self.failure.intact()?;
        if self.alone || self.status.borrow().leader != 0 {
            return Ok(());
        }
        Err(NodeError::NoQuorum(format!(
            "node {} knows no leader of its site: it cannot reach a majority of its nodes (cut off from its peers?); write through another node",
            self.id
        )))
    }

    /// Resolves once this node has no leader or its storage failed (see
    /// [`Leadership::writable`]); it wakes only when either changes.
    pub async fn cut_off(&self) -> NodeError {
        let mut status = self.status.subscribe();
        let mut failure = self.failure.subscribe();
        loop {
            if let Err(e) = self.writable() {
                return e;
            }
            tokio::select! {
                biased;
                changed = status.changed() => if changed.is_err() { std::future::pending::<()>().await },
                changed = failure.changed() => if changed.is_err() { std::future::pending::<()>().await },
            }
        }
    }

    /// Resolves once `peer` is silent: this node, as leader, has not heard from it lately,
    /// or (as a follower) its leader's last heartbeat said so.
    pub async fn silent(&self, peer: u64) -> NodeError {
        let mut status = self.status.subscribe();
        if status
            .wait_for(|s| s.unreachable.contains(&peer))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
        NodeError::Unavailable(format!("no word from node {peer} lately"))
    }

    /// Peers to fetch a blob from: `first`, then the voters other than the leader, then
    /// the leader (`site_replica::hold::fetch_order`).
    pub fn fetch_order(&self, first: Option<u64>) -> Vec<u64> {
        let status = self.get();
        site_replica::hold::fetch_order(status.leader, &status.voters, self.id, first)
    }
}
