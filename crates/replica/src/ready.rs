//! The Ready procedure of raft-rs 0.7, as effects. [`Engine::ready`] returns a
//! [`Cycle`]: send what needs no persistence, install a snapshot, apply committed
//! entries, persist new entries and the hard state, sync, send what needed them. Its
//! caller executes those effects in order and then calls [`Engine::advance`], whose
//! effects (the commit index, more messages, more committed entries, a state snapshot,
//! the end of catching up) it executes before the next tick, message or proposal.

use crate::members;
use crate::proposal::proposal_of;
use crate::{Committed, Effect, Engine, LogEffect};
use raft::eraftpb::{Entry as RaftEntry, EntryType, Message};
use raft::{StateRole, Storage};
use std::collections::BTreeMap;

/// One pass of the Ready procedure, between [`Engine::ready`] and [`Engine::advance`].
pub struct Cycle {
    /// What to do before advancing, in order.
    pub effects: Vec<Effect>,
    ready: raft::Ready,
}

impl<S: Storage> Engine<S> {
    /// The next pass of the Ready procedure, if anything is ready.
    pub fn ready(&mut self) -> Option<Cycle> {
        if !self.node.has_ready() {
            return None;
        }
        let mut ready = self.node.ready();
        let mut effects = Vec::new();
        self.sends(ready.take_messages(), &mut effects);
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.applied = snapshot.get_metadata().index;
            self.snapshot_index = self.applied;
            tracing::info!(
                index = self.applied,
                term = snapshot.get_metadata().term,
                "state installed from the leader's snapshot"
            );
            effects.push(Effect::Log(LogEffect::InstallSnapshot(snapshot)));
        }
        self.committed(ready.take_committed_entries(), &mut effects);
        #[cfg(feature = "bug-apply-uncommitted")]
        self.apply_early(ready.entries(), &mut effects);
        if !ready.entries().is_empty() || ready.hs().is_some() {
            effects.push(Effect::Log(LogEffect::Persist {
                entries: ready.entries().clone(),
                hard_state: ready.hs().cloned(),
            }));
        }
        if ready.must_sync() || !ready.entries().is_empty() {
            effects.push(Effect::Log(LogEffect::Sync));
        }
        self.sends(ready.take_persisted_messages(), &mut effects);
        self.note_snapshots(&effects);
        Some(Cycle { effects, ready })
    }

    /// Ends the pass begun by [`Engine::ready`], once its effects are done.
    pub fn advance(&mut self, cycle: Cycle) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut light = self.node.advance(cycle.ready);
        if let Some(commit) = light.commit_index() {
            effects.push(Effect::Log(LogEffect::SetCommit(commit)));
        }
        self.sends(light.take_messages(), &mut effects);
        self.note_snapshots(&effects);
        self.committed(light.take_committed_entries(), &mut effects);
        self.node.advance_apply();
        if self.applied >= self.snapshot_index + self.snapshot_every {
            effects.push(self.save_snapshot());
        }
        let leading = self.node.raft.state == StateRole::Leader;
        if self
            .catch_up
            .as_ref()
            .is_some_and(|c| c.done(self.applied, leading))
        {
            self.catch_up = None;
            tracing::info!(
                applied = self.applied,
                "caught up with the group's log: this node's votes count in full and it may lead again"
            );
            effects.push(Effect::Log(LogEffect::EndCatchUp));
        }
        effects
    }

    /// Raft messages as one [`Effect::Send`] per peer, each peer's in order; a node catching up marks its vote grants
    /// (`ballot.rs`).
    fn sends(&self, messages: Vec<Message>, effects: &mut Vec<Effect>) {
        let mut by_peer: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        let leading = self.node.raft.state == StateRole::Leader;
        for mut m in messages {
            if leading
                && m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat
                && m.context.is_empty()
            {
                m.context = crate::health::encode_unreachable(&self.unreachable).into();
            }
            if crate::ballot::is_vote_response(&m)
                && self.catch_up.as_ref().is_some_and(|c| c.marks(m.to))
            {
                m.context = crate::ballot::CATCHING_UP.to_vec().into();
            }
            by_peer.entry(m.to).or_default().push(m);
        }
        effects.extend(
            by_peer
                .into_iter()
                .map(|(to, messages)| Effect::Send { to, messages }),
        );
    }

    /// Notes the peers sent a snapshot (see `Engine::retry_snapshots`).
    fn note_snapshots(&mut self, effects: &[Effect]) {
        for e in effects {
            if let Effect::Send { to, messages } = e {
                if messages
                    .iter()
                    .any(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot)
                {
                    self.snapshots_sent.insert(*to, 0);
                }
            }
        }
    }

    /// A snapshot of the state machine at the applied index.
    fn save_snapshot(&mut self) -> Effect {
        let term = self
            .node
            .raft
            .raft_log
            .term(self.applied)
            .unwrap_or(self.node.raft.term);
        self.snapshot_index = self.applied;
        Effect::Log(LogEffect::SaveSnapshot {
            index: self.applied,
            term,
            conf_state: self.node.raft.prs().conf().to_conf_state(),
        })
    }

    /// Committed entries as effects, in log order; configuration changes are applied to
    /// the group here.
    fn committed(&mut self, entries: Vec<RaftEntry>, effects: &mut Vec<Effect>) {
        for e in entries {
            #[cfg(feature = "bug-apply-uncommitted")]
            if e.index <= self.early {
                self.applied = self.applied.max(e.index);
                continue;
            }
            self.applied = e.index;
            let index = e.index;
            let proposal = proposal_of(self.id, &e.context);
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {
                    effects.push(Effect::Apply(Committed::Empty { index }));
                }
                EntryType::EntryNormal => {
                    let entry = site_entry::decode_entry(&e.data);
                    effects.push(Effect::Apply(Committed::Command {
                        index,
                        entry,
                        proposal,
                    }));
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let applied = members::decode(&e).and_then(|cc| {
                        let cs = self
                            .node
                            .apply_conf_change(&cc)
                            .map_err(|e| e.to_string())?;
                        Ok((cc, cs))
                    });
                    match applied {
                        Ok((cc, cs)) => {
                            tracing::info!(index, voters = ?cs.voters, "group configuration changed");
                            if !cs.voters.contains(&self.id)
                                && self.node.raft.state == StateRole::Leader
                            {
                                // raft-rs cannot lead a group it is not in (it would count
                                // its own progress): the others elect a leader.
                                let term = self.node.raft.term;
                                self.node.raft.become_follower(term, raft::INVALID_ID);
                            }
                            effects.push(Effect::Log(LogEffect::SetConfState(cs)));
                            effects.push(Effect::Apply(Committed::Members {
                                index,
                                change: Ok(members::change_of(&cc).ok()),
                                proposal,
                            }));
                            // A node that joins is sent the snapshot: it must carry a
                            // configuration that includes the node.
                            effects.push(self.save_snapshot());
                        }
                        Err(err) => effects.push(Effect::Apply(Committed::Members {
                            index,
                            change: Err(err),
                            proposal,
                        })),
                    }
                }
            }
        }
    }

    /// The broken variant: a leader applies (and answers) its new entries before they
    /// are committed.
    #[cfg(feature = "bug-apply-uncommitted")]
    fn apply_early(&mut self, entries: &[RaftEntry], effects: &mut Vec<Effect>) {
        if self.node.raft.state != StateRole::Leader {
            return;
        }
        for e in entries {
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                self.early = e.index;
                effects.push(Effect::Apply(Committed::Command {
                    index: e.index,
                    entry: site_entry::decode_entry(&e.data),
                    proposal: proposal_of(self.id, &e.context),
                }));
            }
        }
    }
}
