//! The whole sled keyspace of a node, drawn and built in this one file.
//!
//! ```text
//! tree       key                 value
//! raft       'e' + index u64 BE  raft Entry (protobuf)   the Raft log after the snapshot
//!            "hs"                HardState (protobuf)
//!            "cs"                ConfState (protobuf)
//!            "cu"                empty: present while the node catches up after starting
//!                                with an empty log (its votes are marked meanwhile)
//! snapshot   "state"             State JSON       the state machine at the snapshot's index
//!            "meta"              SnapshotMetadata (protobuf): index, term, conf state
//! uploads    upload id           UploadRecord JSON   node-local upload sessions
//! ```
//!
//! The site's metadata is the state machine of `site-state`. Its commands are the
//! entries of the Raft log; the snapshot holds the state up to an index and the log the
//! entries after it. Opening the node loads the snapshot; the Raft driver then applies
//! the committed entries after it. Upload sessions are node-local (bytes in
//! `uploads/<id>`), not part of the state.

use serde::{Deserialize, Serialize};

/// Tree of the snapshot.
pub const SNAPSHOT: &str = "snapshot";
/// Tree of the Raft log: entries, hard state and conf state (one batch persists a Ready).
pub const RAFT: &str = "raft";
/// Key of the hard state in `raft`.
pub const RAFT_HARD_STATE: &[u8] = b"hs";
/// Key of the conf state in `raft`.
pub const RAFT_CONF_STATE: &[u8] = b"cs";
/// Key of the catching-up mark in `raft` (see `RaftLog::catching_up`).
pub const RAFT_CATCHING_UP: &[u8] = b"cu";
/// First key after every entry key of `raft`.
pub const RAFT_ENTRY_END: [u8; 9] = [b'f', 0, 0, 0, 0, 0, 0, 0, 0];
/// Key of the Raft snapshot's metadata in `snapshot`.
pub const SNAPSHOT_META: &[u8] = b"meta";

/// Key of entry `index` in `raft`; big-endian so keys sort in log order.
pub fn raft_entry_key(index: u64) -> [u8; 9] {
    let mut k = [b'e'; 9];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The index of an entry key of `raft`.
pub fn decode_raft_entry_key(k: &[u8]) -> Option<u64> {
    match k {
        [b'e', rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Tree of open upload sessions.
pub const UPLOADS: &str = "uploads";

/// Key of the snapshot's state in `snapshot`.
pub const SNAPSHOT_STATE: &[u8] = b"state";

/// An open upload session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Canonical name of the repository the blob will be linked into.
    pub repo: String,
    /// Seconds since the Unix epoch when the session was opened.
    pub started: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_entry_keys_sort_in_order_and_stay_apart() {
        assert!(raft_entry_key(255) < raft_entry_key(256));
        assert!(raft_entry_key(u64::MAX) < RAFT_ENTRY_END);
        assert_eq!(decode_raft_entry_key(&raft_entry_key(42)), Some(42));
        assert_eq!(decode_raft_entry_key(RAFT_HARD_STATE), None);
        for k in [RAFT_HARD_STATE, RAFT_CONF_STATE, RAFT_CATCHING_UP] {
            assert!(k < &raft_entry_key(0)[..] || k >= &RAFT_ENTRY_END[..]);
        }
    }
}
