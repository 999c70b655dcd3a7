//! Changes of the site's voters, as the log carries them (in the context of a Raft
//! configuration change).

use serde::{Deserialize, Serialize};

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
