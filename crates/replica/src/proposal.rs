//! Proposals: what a node asks the log to order, and the id in the entry's context that
//! matches the committed entry to the proposer waiting for it.

use serde::{Deserialize, Serialize};
use site_state::{Entry, MemberChange, StateError};

/// What a proposer asks the log to order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// A command of the state machine, with its time.
    Command(Entry),
    /// A change of the group's voters.
    Members(MemberChange),
}

/// Why a proposal was not ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not lead; the leader it knows of (0: none).
    NotLeader(u64),
    /// The change is refused as it stands (a membership change that cannot be made).
    Refused(StateError),
    /// The change is already so: nothing to order.
    Unchanged,
    /// This node leads and is asked to leave: leadership moves to the node given first
    /// (raft-rs cannot go on leading a group it left), and the new leader orders it.
    Moving(u64),
    /// Raft dropped it (a leader transfer, a full queue).
    Dropped(String),
}

/// The context of an entry proposed by node `node` with id `id`.
pub(crate) fn context(node: u64, id: u64) -> Vec<u8> {
    let mut c = node.to_be_bytes().to_vec();
    c.extend_from_slice(&id.to_be_bytes());
    c
}

/// The proposal id in `context` if node `me` proposed the entry.
pub(crate) fn proposal_of(me: u64, context: &[u8]) -> Option<u64> {
    let (node, id) = context.split_at_checked(8)?;
    let node = u64::from_be_bytes(node.try_into().ok()?);
    let id = u64::from_be_bytes(id.try_into().ok()?);
    (node == me).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_proposer_matches_its_entries() {
        let c = context(3, 41);
        assert_eq!(proposal_of(3, &c), Some(41));
        assert_eq!(proposal_of(2, &c), None);
        assert_eq!(proposal_of(3, b"short"), None);
        assert_eq!(proposal_of(3, &[]), None);
    }
}
