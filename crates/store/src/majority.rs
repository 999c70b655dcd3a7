//! The majority hold (`site-replica`'s `hold.rs` decides whom to ask): before a new blob
//! is recorded, the node that received it has a majority of the voters (itself
//! included) hold a verified, durable copy. Peers the leader has not heard from lately
//! are asked last, and a peer that goes silent while asked is given up on (its answer,
//! if it comes, is ignored) and the next one asked; a node that loses its leader stops
//! at once (`leadership.rs`).

use crate::{Result, Store, StoreError};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use site_core::Digest;
use site_replica::hold::{Hold, Next};
use std::collections::BTreeSet;

impl Store {
    /// Has a majority of the voters (this node, which holds the file, included) hold blob
    /// `d`: returns once enough peers have a verified, durable copy. Only as many peers as
    /// a majority needs are asked at once (another is asked when one fails); the others
    /// fetch the blob in the background once it is recorded, so they do not slow down the
    /// acknowledgement.
    pub(crate) async fn hold_on_majority(&self, d: &Digest, size: u64) -> Result<()> {
        let status = self.raft_status();
        let cluster = self.cluster();
        let mut hold = Hold::new(
            cluster.id,
            &status.voters,
            status.leader,
            &status.unreachable,
        );
        let ask = |p: u64| {
            let call = cluster.transport.hold(p, d.clone(), size, cluster.id);
            async move { (p, call.await) }
        };
        let mut calls = FuturesUnordered::new();
        let mut asked = BTreeSet::new();
        let mut next = hold.start();
        let cut_off = self.inner.leadership.cut_off();
        tokio::pin!(cut_off);
        let mut status = self.inner.leadership.subscribe();
        loop {
            match next {
                Next::Held => return Ok(()),
                Next::Failed(why) => {
                    return Err(StoreError::Unavailable(format!("blob {d} is {why}")))
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
            next = tokio::select! {
                answer = calls.next(), if !calls.is_empty() => {
                    let (peer, answer) = answer.expect("not empty");
                    if !asked.remove(&peer) {
                        Next::Wait // given up on already
                    } else {
                        match answer {
                            Ok(()) => hold.held(peer),
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
