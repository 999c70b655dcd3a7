//! What the core asks its caller to do, typed by where it goes: the engine's
//! [`Effect`]s go to the Raft log ([`LogEffect`]), the network, the apply task and the
//! node's watchers; the applier's [`Applied`] effects to the blob files, the replicator,
//! the transport's peers, the watchers and the waiting proposer. An effect sent where it
//! does not belong does not compile.

use raft::eraftpb::{ConfState, Entry as RaftEntry, HardState, Message, Snapshot};
use site_core::Digest;
use site_state::{Entry, Event, MemberChange, Outcome, StateError};

/// One thing the engine asks of its driver, typed by where it goes: the Raft log, the
/// network, the apply task, or the node's watchers. The driver executes them in the order
/// given; an effect that fails (a disk error) is fatal to the node's part in the group.
#[derive(Debug, Clone)]
pub enum Effect {
    /// To the node's Raft log.
    Log(LogEffect),
    /// Send raft messages to node `to`, in order (best effort: Raft retries what is lost).
    Send {
        /// The peer.
        to: u64,
        /// The messages.
        messages: Vec<Message>,
    },
    /// To the apply task: apply a committed entry (see [`crate::Applier`]).
    Apply(Committed),
    /// Tell watchers (the leader's view of its peers).
    Publish(Event),
}

/// What the engine asks of the node's Raft log.
#[derive(Debug, Clone)]
pub enum LogEffect {
    /// Write entries (replacing any from the first one's index on) and the hard state to
    /// the log; not durable until [`LogEffect::Sync`].
    Persist {
        /// Entries to append.
        entries: Vec<RaftEntry>,
        /// The hard state, if it changed.
        hard_state: Option<HardState>,
    },
    /// Make everything persisted so far durable.
    Sync,
    /// Record the commit index in the log's hard state (need not be synced).
    SetCommit(u64),
    /// Record the group's new configuration in the log.
    SetConfState(ConfState),
    /// Replace the log by the leader's snapshot, durably; the state machine is replaced
    /// by its data too (the apply task's part).
    InstallSnapshot(Snapshot),
    /// Save the state machine as applied at `index` (whose entry has `term`, the group's
    /// configuration then `conf_state`) as the snapshot, durably, and compact the log
    /// behind it. The state is the apply task's to give when it reaches `index`.
    SaveSnapshot {
        /// The applied index.
        index: u64,
        /// Its term.
        term: u64,
        /// The group's configuration at `index`.
        conf_state: ConfState,
    },
    /// This node, started with an empty log, holds what the group had committed: record
    /// (durably) that it votes again.
    EndCatchUp,
}

/// What applying a committed entry asks of the node, typed by where it goes: its blob
/// files, its replicator, its peers, its watchers, or the proposer waiting on it.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Remove these blob files (the state no longer holds them).
    RemoveFiles(Vec<Digest>),
    /// To the replicator: this node lacks the file of committed blob `digest`, fetch it
    /// from a peer.
    FetchBlob {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// To the replicator: these blobs are no longer the site's, stop fetching them.
    ForgetBlobs(Vec<Digest>),
    /// To the transport: node `id` is reachable at `address` (`None`: it is no longer a
    /// peer).
    SetPeer {
        /// The node.
        id: u64,
        /// Its cluster address.
        address: Option<String>,
    },
    /// Tell watchers.
    Publish(Event),
    /// Answer the proposer of entry `id` on this node.
    Answer {
        /// The id [`crate::Engine::propose`] gave.
        id: u64,
        /// The command's result.
        result: Result<Outcome, StateError>,
        /// The index it was applied at.
        index: u64,
    },
}

/// A committed entry, decoded, in log order.
#[derive(Debug, Clone)]
pub enum Committed {
    /// An entry with nothing to apply (a new leader's empty entry).
    Empty {
        /// Its index.
        index: u64,
    },
    /// A command of the state machine.
    Command {
        /// Its index.
        index: u64,
        /// The entry, or why it could not be decoded (refused alike on every node).
        entry: Result<Entry, String>,
        /// The id of the proposal, when this node proposed it in this run.
        proposal: Option<u64>,
    },
    /// A membership change, already applied to the group's configuration.
    Members {
        /// Its index.
        index: u64,
        /// The change (`None`: a configuration change without one), or why the group
        /// refused it.
        change: Result<Option<MemberChange>, String>,
        /// The id of the proposal, when this node proposed it in this run.
        proposal: Option<u64>,
    },
}

impl Committed {
    /// Its index in the log.
    pub fn index(&self) -> u64 {
        match self {
            Committed::Empty { index }
            | Committed::Command { index, .. }
            | Committed::Members { index, .. } => *index,
        }
    }
}
