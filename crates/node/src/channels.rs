//! What the node's tasks send each other: proposals and inputs to the Raft driver
//! (`raft_driver.rs`), jobs for the apply task (`applying.rs`), among them the blob file
//! operations that take their turn there (`file_ops.rs`). The types alone, so that the
//! three talk through this module and none imports another.

use crate::{NodeError, Result};
use raft::eraftpb::{ConfState, Message};
use site_core::Digest;
use site_replica::{Ask, Committed};
use site_state::{Outcome, StateError};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// What ordering an entry gave: the command's result, and the index it was applied at.
pub type Ordered = (std::result::Result<Outcome, StateError>, u64);

/// A request waiting to be ordered by the log.
pub struct Proposal {
    /// What to order.
    pub ask: Ask,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Ordered>>,
}

/// Input of the driver besides proposals.
pub enum Input {
    /// A message from a peer.
    Message(Box<Message>),
    /// The apply task's state at `index`, for the snapshot the engine asked for
    /// (`site_replica::LogEffect::SaveSnapshot`).
    Snapshot {
        /// The index the state stands at.
        index: u64,
        /// The term of the entry there.
        term: u64,
        /// The group's configuration then.
        conf_state: ConfState,
        /// The state's bytes.
        data: Vec<u8>,
    },
}

/// Work for the apply task, done in the order sent.
pub enum Job {
    /// A proposer waits for the entry that carries proposal id `.0`.
    Wait(u64, oneshot::Sender<Result<Ordered>>),
    /// Applies a committed entry.
    Apply(Committed),
    /// Replaces the state with a snapshot's, taken at `index`.
    Install {
        /// The snapshot's state.
        data: Vec<u8>,
        /// Its index.
        index: u64,
    },
    /// Hands the driver the state's bytes as applied so far, for the snapshot at `index`
    /// (`raft_driver::Input::Snapshot`).
    Snapshot {
        /// The snapshot's index.
        index: u64,
        /// The term of the entry there.
        term: u64,
        /// The group's configuration then.
        conf_state: ConfState,
    },
    /// Installs or removes a blob file, in its turn (`file_ops.rs`), and answers.
    Files(FileOp, oneshot::Sender<Result<bool>>),
}

/// A change to the blob files.
pub enum FileOp {
    /// Moves the verified, synced file `src` (a delivery's, or a copy fetched from a
    /// peer) into place as blob `digest`. When the state records the blob and a file of
    /// it is here already, `src` is dropped instead (the site's copies stand for it); an
    /// unrecorded copy is replaced, so its age counts from now.
    Install {
        /// The verified, synced file.
        src: PathBuf,
        /// The blob it holds.
        digest: Digest,
    },
    /// Removes the file of blob `digest` if the state does not record it, no fetch of it
    /// is under way and it is older than the upload TTL.
    Stray(Digest),
    /// Removes the file of blob `digest`, which no longer matches its digest, if the
    /// state still records the blob.
    Corrupt(Digest),
    /// Keeps this node's file of blob `digest`, if it has one, as a copy it answers for
    /// (a majority hold): its age counts from now, so that no removal of stray files
    /// takes it before the blob is recorded. `false`: there is no such file.
    Keep(Digest),
}

/// The error of a driver whose apply task has ended.
pub(crate) fn gone() -> NodeError {
    NodeError::Unavailable("the apply side of the log has stopped".into())
}
