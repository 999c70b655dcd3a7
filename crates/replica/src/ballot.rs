//! The count of an election with voters that are catching up.
//!
//! A node that started with an empty log (new, or its data directory wiped) may have lost
//! entries its old self helped commit, so its vote alone proves nothing about a
//! candidate's log. It still answers vote requests as Raft does, but marks its grants
//! (`CATCHING_UP` in the message's context), and a candidate counts marked grants only
//! once voters that hold their whole log have granted enough to meet every possible
//! commit quorum: `voters - majority + 1` of them, itself included. Any entry the group
//! committed sits on a majority; such a set of whole voters shares a node with every
//! majority, and that node granted only because the candidate's log holds what its own
//! does. So the site elects whenever a majority can talk and enough of it is whole (two
//! whole nodes of four, with the other two catching up), where refusing those votes
//! outright would leave it without a leader until a catching-up node caught up, which
//! needs a leader.
//!
//! A node catching up never campaigns itself once it holds entries past the founding
//! snapshot (`Engine::may_campaign`): it could hold a prefix longer than a whole voter's
//! and win with its own vote. While every log is still at the founding snapshot (a new
//! group), grants are not marked and the group elects as usual.

use crate::hold::majority;
use raft::eraftpb::{Message, MessageType};
use std::collections::BTreeSet;

/// The context a catching-up node puts on its vote grants.
pub const CATCHING_UP: &[u8] = b"catching-up";

/// Whether `m` answers a vote or pre-vote request.
pub fn is_vote_response(m: &Message) -> bool {
    matches!(
        m.get_msg_type(),
        MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse
    )
}

/// Whole voters that must grant before marked grants count, for a group of `voters`.
pub fn whole_needed(voters: usize) -> usize {
    voters + 1 - majority(voters)
}

/// The grants of the election this node runs now.
#[derive(Debug, Default)]
pub struct Ballot {
    /// The election counted: its term and whether it is a pre-vote.
    round: (u64, bool),
    /// Whole voters that granted (this node included).
    whole: BTreeSet<u64>,
    /// Marked grants not yet counted.
    held: Vec<Message>,
}

impl Ballot {
    /// Takes a vote response to this node (`me`, among `voters`); returns what to hand
    /// to Raft now: the response itself, or nothing while it is held, or held grants
    /// that count from now on.
    pub fn count(&mut self, m: Message, me: u64, voters: &[u64]) -> Vec<Message> {
        let round = (
            m.term,
            m.get_msg_type() == MessageType::MsgRequestPreVoteResponse,
        );
        if round != self.round {
            *self = Ballot {
                round,
                whole: BTreeSet::from([me]),
                held: Vec::new(),
            };
        }
        if m.reject {
            return vec![m];
        }
        let marked = m.context.as_ref() == CATCHING_UP && !cfg!(feature = "bug-wiped-votes");
        let enough = |whole: &BTreeSet<u64>| whole.len() >= whole_needed(voters.len());
        if marked {
            if enough(&self.whole) {
                return vec![m];
            }
            if self.held.is_empty() {
                tracing::info!(
                    voter = m.from,
                    term = m.term,
                    whole_needed = whole_needed(voters.len()),
                    whole_granted = self.whole.len(),
                    "a vote from a node catching up (new, or its data directory wiped) counts only beside enough votes of nodes holding their whole log: holding it back"
                );
            }
            self.held.push(m);
            return Vec::new();
        }
        self.whole.insert(m.from);
        let mut now = vec![m];
        if enough(&self.whole) {
            now.append(&mut self.held);
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(from: u64, term: u64, marked: bool) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgRequestVoteResponse);
        m.from = from;
        m.term = term;
        if marked {
            m.context = CATCHING_UP.to_vec().into();
        }
        m
    }

    fn froms(ms: &[Message]) -> Vec<u64> {
        ms.iter().map(|m| m.from).collect()
    }

    #[test]
    fn whole_voters_needed_meet_every_majority() {
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 7].map(whole_needed),
            [1, 1, 2, 2, 3, 3, 4]
        );
    }

    #[test]
    fn marked_grants_wait_for_enough_whole_ones() {
        if cfg!(feature = "bug-wiped-votes") {
            return;
        }
        let voters = [1, 2, 3, 4];
        let mut b = Ballot::default();
        // Node 1 campaigns; 2 and 4 are catching up, 3 holds its log.
        assert!(b.count(grant(2, 5, true), 1, &voters).is_empty());
        assert!(b.count(grant(4, 5, true), 1, &voters).is_empty());
        assert_eq!(froms(&b.count(grant(3, 5, false), 1, &voters)), [3, 2, 4]);
        // From then on, marked grants count at once.
        assert_eq!(froms(&b.count(grant(4, 5, true), 1, &voters)), [4]);
    }

    #[test]
    fn a_new_round_forgets_held_grants_and_refusals_pass() {
        if cfg!(feature = "bug-wiped-votes") {
            return;
        }
        let voters = [1, 2, 3];
        let mut b = Ballot::default();
        assert!(b.count(grant(2, 5, true), 1, &voters).is_empty());
        let mut refusal = grant(3, 6, false);
        refusal.reject = true;
        assert_eq!(froms(&b.count(refusal, 1, &voters)), [3]);
        // Term 6: the grant held in term 5 is gone; a whole grant alone passes.
        assert_eq!(froms(&b.count(grant(3, 6, false), 1, &voters)), [3]);
        // Three voters need two whole ones: node 1 and node 3 make two.
        assert_eq!(froms(&b.count(grant(2, 6, true), 1, &voters)), [2]);
    }
}
