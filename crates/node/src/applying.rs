//! The apply side on its own task. The Raft driver hands it, in log order over one
//! channel, the committed entries to apply, the snapshots to install or take (the state
//! at a snapshot's index goes back to the driver, which writes it) and the proposers
//! waiting for an answer; it changes the state machine (the core's [`Applier`]), carries
//! out what follows on this node ([`Applied`]: a sweep's blob files removed and fsynced,
//! fetches noted, peers set, events published) and answers; and it installs and removes
//! blob files for the rest of the node in their turn (`file_ops.rs`). So file removals
//! never hold up the driver's ticks, heartbeats and votes, and the order of applies,
//! installs and removals is this one queue's.

use crate::channels::{Input, Job, Ordered};
use crate::events::Events;
use crate::file_ops::FileOps;
use crate::files::on_disk;
use crate::metrics::NodeCounters;
use crate::missing_blobs::MissingBlobs;
use crate::site_clock::SiteClock;
use crate::transport::Transport;
use crate::Result;
use site_replica::{Applied, Applier, Committed};
use site_state::{Event, Outcome, State, StateError};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// The parts of the node the apply task reaches.
pub struct ApplySide {
    /// The blob file operations (with the applied state and the blob files).
    pub file_ops: FileOps,
    /// The committed blobs this node lacks.
    pub missing: MissingBlobs,
    /// Where the addresses of nodes added at run time go.
    pub transport: Arc<dyn Transport>,
    /// What the node tells its watchers.
    pub events: Events,
    /// Counts of what applied entries did, for `/metrics`.
    pub counters: Arc<NodeCounters>,
    /// The log's clock, carried on from a snapshot's time.
    pub clock: Arc<SiteClock>,
    /// The driver, which writes the snapshots.
    pub driver: mpsc::UnboundedSender<Input>,
}

/// The apply task: the driver's jobs, taken in order ([`Applying::run`] on a node, one
/// by one with [`Applying::take`] in the simulation).
pub struct Applying {
    me: u64,
    node: ApplySide,
    applier: Applier,
    /// Proposals of this node not yet applied, by proposal id.
    waiting: HashMap<u64, oneshot::Sender<Result<Ordered>>>,
    /// This node's applied index, for whoever waits for it (replay, forwarded writes).
    applied_tx: watch::Sender<u64>,
}

impl Applying {
    /// The apply side of node `id` over `node`'s parts.
    pub fn new(id: u64, node: ApplySide, applied_tx: watch::Sender<u64>) -> Applying {
        Applying {
            me: id,
            node,
            applier: Applier::new(id),
            waiting: HashMap::new(),
            applied_tx,
        }
    }

    /// Does the jobs until the driver drops its sender. A failure to carry one out (the
    /// blob directory failing) fails the node.
    pub async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            if let Err(e) = self.take(job).await {
                return self
                    .node
                    .file_ops
                    .failure
                    .fail(format!("cannot apply the site's log: {e}"));
            }
        }
    }

    /// Does one job. An error (the blob directory failing) fails the node.
    pub async fn take(&mut self, job: Job) -> Result<()> {
        match job {
            Job::Wait(id, reply) => {
                self.waiting.insert(id, reply);
            }
            Job::Apply(committed) => {
                let index = committed.index();
                let effects = self.apply(committed);
                let mut answers = Vec::new();
                for effect in effects {
                    match effect {
                        Applied::Answer { id, result, index } => answers.push((id, result, index)),
                        // A crash before these files are gone is completed by
                        // reconciliation at the next start.
                        Applied::RemoveFiles(blobs) => {
                            on_disk(&self.node.file_ops.files, move |files| {
                                blobs.iter().try_for_each(|d| files.remove(d))
                            })
                            .await?
                        }
                        Applied::FetchBlob { digest, size } => {
                            self.node.missing.note(&digest, size)
                        }
                        Applied::ForgetBlobs(digests) => self.node.missing.forget(&digests),
                        Applied::SetPeer { id, address } => {
                            self.node.transport.set_peer(id, address.as_deref())
                        }
                        Applied::Publish(event) => self.announce(event),
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
                self.load_snapshot(&data)?;
                let _ = self.applied_tx.send(index);
            }
            Job::Snapshot {
                index,
                term,
                conf_state,
            } => {
                let data = self.node.file_ops.state.read(encode_state);
                let _ = self.node.driver.send(Input::Snapshot {
                    index,
                    term,
                    conf_state,
                    data,
                });
            }
            // Its failure is its requester's to report (a full disk fails one delivery;
            // a failing one fails the node, `blob_write_failed`).
            Job::Files(op, reply) => {
                let _ = reply.send(self.node.file_ops.carry_out(op).await);
            }
        }
        Ok(())
    }

    /// Applies one committed entry to the state; returns what follows.
    fn apply(&mut self, c: Committed) -> Vec<Applied> {
        let files = &self.node.file_ops.files;
        let mut state = self.node.file_ops.state.write();
        self.applier.apply(&mut state, c, |d| files.has(d))
    }

    /// Tells watchers what an applied entry did (and counts it for `/metrics`).
    fn announce(&self, event: Event) {
        self.node.counters.count(&event);
        self.node.events.publish(event)
    }

    /// Replaces the state machine with a snapshot's: the peers it records, and the
    /// blobs it records that this node lacks, follow.
    fn load_snapshot(&self, data: &[u8]) -> Result<()> {
        let state = decode_state(data)?;
        self.node.clock.observe(state.time());
        let ops = &self.node.file_ops;
        *ops.state.write() = state;
        sync_peers(&ops.state, self.me, self.node.transport.as_ref());
        if cfg!(feature = "bug-node-snapshot-forgets-missing") {
            return Ok(());
        }
        let blobs: Vec<(site_core::Digest, u64)> = ops
            .state
            .read(|s| s.blobs().map(|(d, b)| (d.clone(), b.size)).collect());
        self.node
            .missing
            .rescan(blobs.iter().map(|(d, s)| (d, *s)), |d| ops.files.has(d));
        Ok(())
    }

    fn answer(&mut self, id: u64, result: std::result::Result<Outcome, StateError>, index: u64) {
        if let Some(reply) = self.waiting.remove(&id) {
            let _ = reply.send(Ok((result, index)));
        }
    }
}

/// Gives `transport` the address of every node `state` records but `me` (after a
/// restart or a snapshot).
pub(crate) fn sync_peers(state: &crate::SiteState, me: u64, transport: &dyn Transport) {
    let nodes: Vec<(u64, String)> =
        state.read(|s| s.nodes().map(|(id, a)| (id, a.to_owned())).collect());
    for (id, address) in nodes {
        if id != me {
            transport.set_peer(id, Some(&address));
        }
    }
}

/// Opens the site's log on `disk` (founded with `voters` if it is new; marked as catching
/// up if it holds nothing past the founding snapshot) and the state of its snapshot,
/// with the index that state stands at. Blocking.
pub fn open_log(
    disk: Arc<dyn crate::log_disk::LogDisk>,
    voters: &[u64],
) -> Result<(crate::raft_log::RaftLog, State, u64)> {
    let log = crate::raft_log::RaftLog::open(disk)?;
    log.initialize(voters, &encode_state(&State::default()))?;
    log.mark_catching_up_if_empty()?;
    let (state, applied) = match log.snapshot_data()? {
        Some((meta, data)) => (decode_state(&data)?, meta.index),
        None => (State::default(), 0),
    };
    Ok((log, state, applied))
}

/// A state machine's bytes.
pub(crate) fn encode_state(state: &State) -> Vec<u8> {
    serde_json::to_vec(state).expect("state serialises")
}

/// Reads a snapshot's state machine.
pub(crate) fn decode_state(data: &[u8]) -> crate::Result<State> {
    State::decode(data)
        .map_err(|e| std::io::Error::other(format!("the state snapshot is damaged: {e}")).into())
}
