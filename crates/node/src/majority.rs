//! The majority hold (`site-replica`'s `hold.rs` decides whom to ask): before a new blob
//! is recorded, the node that received it has a majority of the voters (itself
//! included) hold a verified, durable copy. Peers the leader has not heard from lately
//! are asked last, and a peer that goes silent while asked is given up on (its answer,
//! if it comes, is ignored) and the next one asked; a node that loses its leader stops
//! at once (`leadership.rs`).

use crate::leadership::Leadership;
use crate::transport::Transport;
use crate::{NodeError, Result};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use site_core::Digest;
use site_replica::hold::{Hold, Next};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The majority hold of this node's new blobs. Cheap to clone.
#[derive(Clone)]
pub struct MajorityHold {
    id: u64,
    leadership: Leadership,
    transport: Arc<dyn Transport>,
}

/// A hold of a blob started while it arrives; aborted if dropped.
pub(crate) struct EarlyHold(JoinHandle<Result<()>>);

impl EarlyHold {
    /// Whether a majority holds the blob: waits for the peers' answers.
    pub(crate) async fn held(mut self) -> Result<()> {
        (&mut self.0)
            .await
            .map_err(|e| NodeError::Unavailable(format!("the hold was dropped: {e}")))?
    }
}

impl Drop for EarlyHold {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl MajorityHold {
    /// The hold of node `id`'s blobs, asking peers through `transport`.
    pub fn new(id: u64, leadership: Leadership, transport: Arc<dyn Transport>) -> MajorityHold {
        MajorityHold {
            id,
            leadership,
            transport,
        }
    }

    /// Starts having a majority of the voters hold blob `d` while it is still arriving.
    pub(crate) fn start(&self, d: &Digest, size: u64) -> EarlyHold {
        let (this, d) = (self.clone(), d.clone());
        EarlyHold(tokio::spawn(async move { this.hold(&d, size).await }))
    }

    /// Has a majority of the voters (this node, which holds the file, included) hold blob
    /// `d`: returns once enough peers have a verified, durable copy. Only as many peers as
    /// a majority needs are asked at once (another is asked when one fails); the others
    /// fetch the blob in the background once it is recorded, so they do not slow down the
    /// acknowledgement.
    pub async fn hold(&self, d: &Digest, size: u64) -> Result<()> {
        let status = self.leadership.get();
        let mut hold = Hold::new(self.id, &status.voters, status.leader, &status.unreachable);
        let ask = |p: u64| {
            let call = self.transport.hold(p, d.clone(), size, self.id);
            async move { (p, call.await) }
        };
        let mut calls = FuturesUnordered::new();
        let mut asked = BTreeSet::new();
        let mut next = hold.start();
        let cut_off = self.leadership.cut_off();
        tokio::pin!(cut_off);
        let mut status = self.leadership.subscribe();
        loop {
            match next {
                Next::Held => return Ok(()),
                Next::Failed(why) => {
                    return Err(NodeError::Unavailable(format!("blob {d} is {why}")))
                }
                Next::Ask(peers) => {
                    asked.extend(peers.iter().copied());
                    calls.extend(peers.into_iter().map(ask));
                }
                Next::Wait => {}
            }
            let silent = {
                let s = status.borrow_and_update();
                asked.iter().copied().find(|p| s.unreachable.contains(p))
            };
            if let Some(peer) = silent {
                asked.remove(&peer);
                tracing::warn!(blob = %d, peer, "no word from the peer asked to hold the blob: asking another");
                next = hold.failed(peer, "no word from it lately");
                continue;
            }
            // In a fixed order, so that a simulated run replays exactly.
            next = tokio::select! {
                biased;
                answer = calls.next(), if !calls.is_empty() => {
                    let (peer, answer) = answer.expect("not empty");
                    if !asked.remove(&peer) {
                        Next::Wait // given up on already
                    } else {
                        match answer {
                            Ok(()) => hold.held(peer),
                            Err(_) if cfg!(feature = "bug-node-hold-counts-refusals") => hold.held(peer),
                            Err(e) => {
                                tracing::warn!(blob = %d, peer, error = %e, "peer could not hold the blob");
                                hold.failed(peer, &e)
                            }
                        }
                    }
                }
                // A peer may have gone silent: looked at above.
                _ = status.changed() => Next::Wait,
                // No use waiting on peers this node cannot reach.
                e = &mut cut_off => return Err(e),
            };
        }
    }
}
