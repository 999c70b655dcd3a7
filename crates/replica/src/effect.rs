//! What the core asks its caller to do. The caller executes effects in the order given;
//! an effect that fails (a disk error) is fatal to the node's part in the group.

use raft::eraftpb::{ConfState, Entry as RaftEntry, HardState, Message, Snapshot};
use site_core::Digest;
use site_state::{Entry, Event, MemberChange, Outcome, StateError};

/// One thing for the caller to do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send raft messages to node `to`, in order (best effort: Raft retries what is lost).
    Send {
        /// The peer.
        to: u64,
        /// The messages.
        messages: Vec<Message>,
    },
    /// Write entries (replacing any from the first one's index on) and the hard state to
    /// the log; not durable until [`Effect::Sync`].
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
    /// Replace the log and the state machine by the leader's snapshot, durably.
    InstallSnapshot(Snapshot),
    /// Apply a committed entry (see [`crate::Applier`]).
    Apply(Committed),
    /// Save the state machine as applied now as the snapshot at `index` (whose entry has
    /// `term`), durably, and compact the log behind it.
    SaveSnapshot {
        /// The applied index.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// This node, started with an empty log, holds what the group had committed: record
    /// (durably) that it votes again.
    EndCatchUp,
    /// Answer the proposer of entry `id` on this node.
    Answer {
        /// The id [`crate::Engine::propose`] gave.
        id: u64,
        /// The command's result.
        result: Result<Outcome, StateError>,
        /// The index it was applied at.
        index: u64,
    },
    /// Tell watchers.
    Publish(Event),
    /// Remove these blob files (the state no longer holds them).
    RemoveFiles(Vec<Digest>),
    /// This node lacks the file of committed blob `digest`: fetch it from a peer.
    FetchBlob {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// These blobs are no longer the site's: stop fetching them.
    ForgetBlobs(Vec<Digest>),
    /// Node `id` is reachable at `address` (`None`: it is no longer a peer).
    SetPeer {
        /// The node.
        id: u64,
        /// Its cluster address.
        address: Option<String>,
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
