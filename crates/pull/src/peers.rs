//! One upstream transfer per digest for the whole site: a node that is not the leader
//! asks the leader to fill a blob its client missed, and streams the leader's growing
//! copy meanwhile (the copy peers already read while a delivery arrives). The leader
//! fetches it once, whichever nodes ask; the blob then replicates like any other.
//!
//! A node falls back to fetching itself only when no leader answers; a fill asked by a
//! peer is never passed on again (a leadership change cannot make it go round).

use crate::blobs::Fetch;
use crate::error::PullError;
use crate::Puller;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use site_core::{Digest, Repository};
use site_node::ByteStream;
use tokio::sync::watch;

/// How a fill on another node goes.
#[derive(Debug, Clone)]
pub enum FillUpdate {
    /// Its bytes flow: the blob's size.
    Started(u64),
    /// Every byte has come and matches the digest; it is being made durable.
    Verified(u64),
    /// It ended: verified and recorded (its size), or failed.
    Done(Result<u64, PullError>),
}

/// The other nodes of the site, as the pull-through cache needs them.
pub trait Peers: Send + Sync + 'static {
    /// Asks node `to` to fill blob `digest` of `repo` (`size` when a manifest gave it).
    fn fill(
        &self,
        to: u64,
        repo: &Repository,
        digest: &Digest,
        size: Option<u64>,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Result<FillUpdate, String>>, String>>;

    /// Streams node `to`'s copy of blob `digest` from `offset`, as it grows.
    fn fetch(
        &self,
        to: u64,
        digest: &Digest,
        offset: u64,
    ) -> BoxFuture<'static, Result<ByteStream, String>>;
}

/// A fetch this node runs (for a peer, or for an image it completes), as its waiters
/// see it.
pub struct FillWatch(pub(crate) watch::Receiver<Fetch>);

impl FillWatch {
    /// Waits until the blob's bytes flow (or the fill ended); returns its size.
    pub async fn started(&mut self) -> Result<u64, PullError> {
        let f = self
            .0
            .wait_for(|f| !matches!(f, Fetch::Opening))
            .await
            .map_err(|_| PullError::Unavailable("the fill was dropped".into()))?;
        match &*f {
            Fetch::Streaming { size, .. } | Fetch::Verified { size, .. } => Ok(*size),
            Fetch::Done(r) => r.clone(),
            Fetch::Opening => unreachable!("waited for it to open"),
        }
    }

    /// Waits until every byte has come and matches the digest (or the fill ended);
    /// returns its size.
    pub async fn verified(&mut self) -> Result<u64, PullError> {
        let f = self
            .0
            .wait_for(|f| matches!(f, Fetch::Verified { .. } | Fetch::Done(_)))
            .await
            .map_err(|_| PullError::Unavailable("the fill was dropped".into()))?;
        match &*f {
            Fetch::Verified { size, .. } => Ok(*size),
            Fetch::Done(r) => r.clone(),
            _ => unreachable!("waited for the check"),
        }
    }

    /// Waits until the fill ended.
    pub async fn done(&mut self) -> Result<u64, PullError> {
        let f = self
            .0
            .wait_for(|f| matches!(f, Fetch::Done(_)))
            .await
            .map_err(|_| PullError::Unavailable("the fill was dropped".into()))?;
        match &*f {
            Fetch::Done(r) => r.clone(),
            _ => unreachable!("waited for the end"),
        }
    }
}

impl Puller {
    /// Fills blob `d` of `repo` for a peer's client: at once when the site holds it,
    /// else with this node's fetch (started now or under way).
    pub async fn fill_for_peer(
        &self,
        repo: &Repository,
        d: &Digest,
        expected: Option<u64>,
    ) -> Result<FillWatch, PullError> {
        if let Some(size) = self.link_held(repo, d).await? {
            return Ok(FillWatch(watch::channel(Fetch::Done(Ok(size))).1));
        }
        Ok(FillWatch(self.start_fetch(repo, d, expected, true)))
    }

    /// The leader, when it is another node that can be asked.
    pub(crate) fn remote_leader(&self) -> Option<(u64, &dyn Peers)> {
        let peers = self.inner.node.peers.as_deref()?;
        let leader = self.inner.store.leadership.get().leader;
        (leader != 0 && leader != self.inner.node.node).then_some((leader, peers))
    }

    /// Has `leader` fill blob `d`, relaying its progress to this node's waiters. `Err(None)`:
    /// the leader could not be asked (fetch here instead).
    pub(crate) async fn fill_through(
        &self,
        leader: u64,
        peers: &dyn Peers,
        repo: &Repository,
        d: &Digest,
        expected: Option<u64>,
        tx: &watch::Sender<Fetch>,
    ) -> Result<u64, Option<PullError>> {
        let mut updates = match peers.fill(leader, repo, d, expected).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(%repo, blob = %d, leader, error = %e, "the leader cannot fill the blob: fetching it here");
                return Err(None);
            }
        };
        let lost = |e: String| {
            Some(PullError::Unavailable(format!(
                "the leader (node {leader}) stopped filling blob {d}: {e}"
            )))
        };
        loop {
            match updates.next().await {
                Some(Ok(FillUpdate::Started(size))) => {
                    tx.send_replace(Fetch::Streaming {
                        size,
                        from: Some(leader),
                    });
                }
                Some(Ok(FillUpdate::Verified(size))) => {
                    tx.send_replace(Fetch::Verified {
                        size,
                        from: Some(leader),
                    });
                }
                Some(Ok(FillUpdate::Done(r))) => return r.map_err(Some),
                Some(Err(e)) => return Err(lost(e)),
                None => return Err(lost("no answer".into())),
            }
        }
    }

    /// Bytes of blob `d` from `offset` on node `from`'s copy, as it grows.
    pub(crate) async fn fetch_from_peer(
        &self,
        from: u64,
        d: &Digest,
        offset: u64,
    ) -> Result<ByteStream, PullError> {
        let peers = self
            .inner
            .node
            .peers
            .as_deref()
            .ok_or_else(|| PullError::Unavailable("this node has no peers".into()))?;
        peers
            .fetch(from, d, offset)
            .await
            .map_err(|e| PullError::Unavailable(format!("node {from}'s copy of {d}: {e}")))
    }
}
