//! The apply side on its own task. The Raft driver hands it, in log order over one
//! channel, the committed entries to apply, the snapshots to install or take (the state
//! at a snapshot's index goes back to the driver, which writes it) and the proposers
//! waiting for an answer; it changes the state machine, carries out what follows on this
//! node ([`Applied`]: a sweep's blob files removed and fsynced, fetches noted, peers
//! set, events published) and answers; and it installs and removes blob files for the rest
//! of the node in their turn (`file_ops.rs`). So file removals never hold up the
//! driver's ticks, heartbeats and votes, and the order of applies, installs and removals
//! is this one queue's.

use crate::channels::{Job, Ordered};
use crate::file_ops::FileOps;
use crate::{Result, Store};
use site_replica::{Applied, Applier};
use site_state::{Outcome, StateError};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot, watch};

/// The apply task's side of the channel.
pub(crate) struct Applying {
    store: Store,
    /// The blob file operations, carried out in their turn.
    file_ops: FileOps,
    applier: Applier,
    /// Proposals of this node not yet applied, by proposal id.
    waiting: HashMap<u64, oneshot::Sender<Result<Ordered>>>,
    /// This node's applied index, for whoever waits for it (replay, forwarded writes).
    applied_tx: watch::Sender<u64>,
}

impl Applying {
    /// The apply side of node `id` over `store`.
    pub(crate) fn new(
        store: Store,
        file_ops: FileOps,
        id: u64,
        applied_tx: watch::Sender<u64>,
    ) -> Applying {
        Applying {
            store,
            file_ops,
            applier: Applier::new(id),
            waiting: HashMap::new(),
            applied_tx,
        }
    }

    /// Does the jobs until the driver drops its sender. A failure to carry one out (the
    /// blob directory failing) fails the node.
    pub(crate) async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            if let Err(e) = self.take(job).await {
                return self
                    .store
                    .inner
                    .failure
                    .fail(format!("cannot apply the site's log: {e}"));
            }
        }
    }

    async fn take(&mut self, job: Job) -> Result<()> {
        match job {
            Job::Wait(id, reply) => {
                self.waiting.insert(id, reply);
            }
            Job::Apply(committed) => {
                let index = committed.index();
                let effects = self.store.apply_committed(&mut self.applier, committed);
                let mut answers = Vec::new();
                for effect in effects {
                    match effect {
                        Applied::Answer { id, result, index } => answers.push((id, result, index)),
                        Applied::RemoveFiles(blobs) => self.store.remove_files(blobs).await?,
                        Applied::FetchBlob { digest, size } => {
                            self.store.inner.missing.note(&digest, size)
                        }
                        Applied::ForgetBlobs(digests) => self.store.inner.missing.forget(&digests),
                        Applied::SetPeer { id, address } => {
                            self.store.set_peer(id, address.as_deref())
                        }
                        Applied::Publish(event) => self.store.announce(event),
                    }
                }
                // Whoever waits for this index finds its effects done (a sweep's files
                // gone).
                let _ = self.applied_tx.send(index);
                for (id, result, index) in answers {
                    self.answer(id, result, index);
                }
            }
            Job::Install { data, index } => {
                self.store.load_snapshot(&data)?;
                let _ = self.applied_tx.send(index);
            }
            Job::Snapshot {
                index,
                term,
                conf_state,
            } => {
                let data = self.store.state_bytes();
                self.store.snapshot_taken(index, term, conf_state, data);
            }
            // Its failure is its requester's to report (a full disk fails one delivery;
            // a failing one fails the node, `blob_write_failed`).
            Job::Files(op, reply) => {
                let _ = reply.send(self.file_ops.carry_out(op).await);
            }
        }
        Ok(())
    }

    fn answer(&mut self, id: u64, result: std::result::Result<Outcome, StateError>, index: u64) {
        if let Some(reply) = self.waiting.remove(&id) {
            let _ = reply.send(Ok((result, index)));
        }
    }
}
