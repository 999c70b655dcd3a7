//! Catching up: a node that starts with an empty log.
//!
//! Raft counts on a node keeping its log and its vote. A node whose data directory was
//! wiped has lost both, and a new node joining at run time looks the same from inside.
//! Until it has applied everything the group had committed when a leader first wrote to
//! it, such a node marks its vote grants so that candidates count them only beside
//! enough whole ones (`ballot.rs`), and it does not campaign once it holds entries past
//! the founding snapshot. A new group (every log still at the founding snapshot) elects
//! as usual.

use crate::{Engine, FOUNDING_INDEX};
use raft::eraftpb::{Message, MessageType};
use raft::{StateRole, Storage};
use std::collections::BTreeSet;

/// Where a node that started with an empty log stands in catching up.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// The leader's commit index when it first wrote to this node.
    target: Option<u64>,
    /// Candidates whose grants from this node are marked (their log, or this one, is
    /// past the founding snapshot).
    marked: BTreeSet<u64>,
    /// Whether a declined leadership transfer has been logged already.
    pub declined_noted: bool,
}

impl CatchUp {
    /// Looks at a message before Raft steps it (`last`: this log's last index); `false`
    /// for one this node must not act on yet (the message is then dropped, as if lost):
    /// a leadership transfer to a node holding part of the log only.
    pub fn admits(&mut self, m: &Message, last: u64) -> bool {
        match m.get_msg_type() {
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => {
                if m.index > FOUNDING_INDEX || last > FOUNDING_INDEX {
                    self.marked.insert(m.from);
                } else {
                    self.marked.remove(&m.from);
                }
                true
            }
            MessageType::MsgTimeoutNow => last <= FOUNDING_INDEX,
            MessageType::MsgAppend => {
                self.target.get_or_insert(m.commit);
                true
            }
            MessageType::MsgSnapshot => {
                let index = m.get_snapshot().get_metadata().index;
                self.target.get_or_insert(m.commit.max(index));
                true
            }
            _ => true,
        }
    }

    /// Whether this node's vote grants to `candidate` are marked as from a node
    /// catching up.
    pub fn marks(&self, candidate: u64) -> bool {
        self.marked.contains(&candidate)
    }

    /// Whether this node has caught up: it leads (a leader holds every committed
    /// entry), or it has applied as far as the group had committed when a leader first
    /// wrote to it.
    pub fn done(&self, applied: u64, leading: bool) -> bool {
        leading || self.target.is_some_and(|t| applied >= t)
    }
}

/// The lost-log rule. A node whose data directory was wiped comes back with an empty
/// log while the leader still counts its old entries as matched. The leader's heartbeats
/// then carry a commit index beyond this node's log (`last`), which raft-rs treats as a
/// broken invariant, and the leader sends nothing more until a new entry comes. So the
/// heartbeat's commit is clamped to the log's end, and the answers returned here tell
/// the leader that its appends are refused past anything it counted as matched: it
/// probes back to where this log ends and sends the entries from there (or a snapshot).
///
/// raft-rs takes a refusal as current only if it names the right index: past the match,
/// while the leader replicates to this node (the first answer); the index before the
/// next one it would send, while it probes (the second: the heartbeat's commit, which
/// is where the match stands when the leader has nothing more to send). A leader
/// paused in a probe would otherwise never send again.
pub fn recover_lost_log(m: &mut Message, last: u64, me: u64) -> Vec<Message> {
    if m.get_msg_type() != MessageType::MsgHeartbeat || m.commit <= last {
        return Vec::new();
    }
    let refusal = |index: u64| {
        let mut r = Message::default();
        r.set_msg_type(MessageType::MsgAppendResponse);
        r.to = m.from;
        r.from = me;
        r.term = m.term;
        r.reject = true;
        r.index = index;
        r.reject_hint = last;
        r
    };
    let answers = vec![refusal(u64::MAX), refusal(m.commit)];
    m.commit = last;
    answers
}

/// What the engine does about logs lost or partly held.
impl<S: Storage> Engine<S> {
    /// Whether this node may start an election: not while it catches up holding part
    /// of the log only (`ballot.rs`).
    pub(crate) fn may_campaign(&self) -> bool {
        self.catch_up.is_none() || self.node.raft.raft_log.last_index() <= FOUNDING_INDEX
    }

    /// Keeps a node that may not campaign from reaching its election timeout, while its
    /// clock still runs past the leader's lease so that it answers other candidates.
    pub(crate) fn hold_off_election(&mut self) {
        if self.may_campaign() || self.node.raft.state == StateRole::Leader {
            return;
        }
        let raft = &mut self.node.raft;
        let longest = 2 * self.election_ticks - 1;
        raft.set_randomized_election_timeout(longest);
        raft.election_elapsed = raft.election_elapsed.min(longest - 2);
    }

    /// A peer that lost its log (`last`: where it ends now) no longer holds what it
    /// acknowledged. raft-rs never lowers a peer's match: it would go on counting those
    /// entries as held there (towards commits) and never send them again. So this
    /// leader lowers the match and probes the peer from the end of its log.
    pub(crate) fn forget_match(&mut self, peer: u64, last: u64) {
        if self.node.raft.state != StateRole::Leader {
            return;
        }
        if let Some(pr) = self.node.raft.mut_prs().get_mut(peer) {
            if pr.matched > last {
                pr.matched = last;
                pr.snapshot_failure();
                pr.become_probe();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: MessageType, index: u64, commit: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.index = index;
        m.commit = commit;
        m
    }

    #[test]
    fn grants_are_marked_once_a_log_is_past_the_founding_snapshot() {
        let mut c = CatchUp::default();
        for t in [MessageType::MsgRequestVote, MessageType::MsgRequestPreVote] {
            // A new group: every log at the founding snapshot.
            let mut m = msg(t, FOUNDING_INDEX, 0);
            m.from = 2;
            assert!(c.admits(&m, FOUNDING_INDEX));
            assert!(!c.marks(2));
            // A group with a history this node may have lost.
            m.index = 40;
            assert!(c.admits(&m, FOUNDING_INDEX));
            assert!(c.marks(2));
            // Or this node already holds part of it.
            m.index = FOUNDING_INDEX;
            assert!(c.admits(&m, 7));
            assert!(c.marks(2));
        }
        // A leadership transfer is taken only while this log is at the founding snapshot.
        assert!(c.admits(&msg(MessageType::MsgTimeoutNow, 0, 0), FOUNDING_INDEX));
        assert!(!c.admits(&msg(MessageType::MsgTimeoutNow, 0, 0), 7));
        assert!(!c.done(1_000, false), "no leader has written yet");
        // The first append fixes the target; later ones do not move it.
        assert!(c.admits(&msg(MessageType::MsgAppend, 30, 35), 1));
        assert!(c.admits(&msg(MessageType::MsgAppend, 36, 50), 30));
        // Heartbeats carry a commit clamped to what the leader thinks this node holds.
        assert!(c.admits(&msg(MessageType::MsgHeartbeat, 0, 90), 50));
        assert!(!c.done(34, false));
        assert!(c.done(35, false));
        assert!(CatchUp::default().done(0, true), "a leader holds the log");
    }

    #[test]
    fn a_heartbeat_past_the_log_is_clamped_and_answered_with_a_refusal() {
        let mut m = msg(MessageType::MsgHeartbeat, 0, 90);
        m.from = 2;
        m.term = 7;
        let refusals = recover_lost_log(&mut m, 1, 3);
        assert_eq!(m.commit, 1, "clamped to the log's end");
        let indexes: Vec<u64> = refusals.iter().map(|r| r.index).collect();
        assert_eq!(
            indexes,
            [u64::MAX, 90],
            "one for each state of the leader's progress"
        );
        for refusal in refusals {
            assert_eq!(refusal.get_msg_type(), MessageType::MsgAppendResponse);
            assert!(refusal.reject);
            assert_eq!((refusal.to, refusal.from, refusal.term), (2, 3, 7));
            assert_eq!(refusal.reject_hint, 1);
        }
        let mut fine = msg(MessageType::MsgHeartbeat, 0, 1);
        assert!(recover_lost_log(&mut fine, 5, 3).is_empty());
        let mut append = msg(MessageType::MsgAppend, 0, 90);
        assert!(recover_lost_log(&mut append, 1, 3).is_empty());
    }

    #[test]
    fn a_snapshot_sets_the_target_to_at_least_its_index() {
        let mut c = CatchUp::default();
        let mut m = msg(MessageType::MsgSnapshot, 0, 10);
        m.mut_snapshot().mut_metadata().index = 64;
        assert!(c.admits(&m, 1));
        assert!(!c.done(63, false));
        assert!(c.done(64, false));
    }
}
