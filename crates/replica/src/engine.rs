//! The engine: raft-rs's `RawNode` and everything this site decides around it, driven by
//! its caller. In: ticks, peer messages, proposals, each with the time in milliseconds.
//! Out: effects (`effect.rs`), and the Ready procedure in `ready.rs`.
//!
//! raft-rs draws election timeouts from the thread's random generator; the engine draws
//! them from its own seeded [`Rng`] instead, so a seed decides every election.

use crate::ballot::{self, Ballot};
use crate::catch_up::{self, CatchUp};
use crate::health::Health;
use crate::members::{self, Conf};
use crate::proposal::{self, Ask, Refusal};
use crate::{Effect, Rng};
use raft::eraftpb::Message;
use raft::{RawNode, StateRole, Storage};

/// How a node takes part in the group.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's id (> 0).
    pub id: u64,
    /// Ticks without a leader before an election (the timeout is drawn from this to
    /// twice this); heartbeats go every tick.
    pub election_ticks: usize,
    /// Applied entries between snapshots of the state machine.
    pub snapshot_every: u64,
}

/// Where this node's Raft stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The voters of the group (this node included), sorted.
    pub voters: Vec<u64>,
    /// The leader as this node knows it; 0 when there is none.
    pub leader: u64,
    /// The current term.
    pub term: u64,
    /// The commit index as this node knows it.
    pub commit: u64,
    /// The index applied to this node's state.
    pub applied: u64,
    /// Voters this node, as leader, has not heard from lately (as a follower: those its
    /// leader said so of in its last heartbeat).
    pub unreachable: Vec<u64>,
}

/// One node's part in the group.
pub struct Engine<S: Storage> {
    pub(crate) node: RawNode<S>,
    pub(crate) id: u64,
    pub(crate) snapshot_every: u64,
    /// The next proposal id (the proposer's node id travels beside it).
    next_id: u64,
    /// The last index handed out to apply (or installed by a snapshot).
    pub(crate) applied: u64,
    /// Index of the last snapshot of the state machine.
    pub(crate) snapshot_index: u64,
    /// Set while this node, started with an empty log, catches up (its vote grants are
    /// marked and it does not campaign).
    pub(crate) catch_up: Option<CatchUp>,
    /// The grants of the election this node runs.
    ballot: Ballot,
    /// Whether the loss of this node's log was logged already.
    lost_log_noted: bool,
    health: Health,
    /// Voters this node, as leader, has not heard from lately (as of the last tick); as
    /// a follower, those its leader last said it does not hear from.
    pub(crate) unreachable: Vec<u64>,
    /// Peers sent a snapshot, with the ticks since (see [`Engine::tick`]).
    pub(crate) snapshots_sent: std::collections::BTreeMap<u64, usize>,
    rng: Rng,
    pub(crate) election_ticks: usize,
    /// The broken variant's last entry applied before it was committed.
    #[cfg(feature = "bug-apply-uncommitted")]
    pub(crate) early: u64,
}

/// Ticks a peer has to confirm a snapshot before it is sent again.
pub const SNAPSHOT_RETRY_TICKS: usize = 50;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl<S: Storage> Engine<S> {
    /// An engine over `storage`, whose state machine stands at `applied`. `catching_up`:
    /// the log was empty at start (see `catch_up.rs`). `alone`: the group is this node
    /// only, so it leads at once. `seed` draws election timeouts and proposal ids.
    pub fn new(
        settings: &Settings,
        storage: S,
        applied: u64,
        catching_up: bool,
        alone: bool,
        seed: u64,
    ) -> Result<Engine<S>, String> {
        let election = settings.election_ticks.max(2);
        let config = raft::Config {
            id: settings.id,
            applied,
            election_tick: election,
            heartbeat_tick: 1,
            min_election_tick: election,
            max_election_tick: 2 * election,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        let node = RawNode::new(&config, storage, &logger()).map_err(|e| e.to_string())?;
        let mut rng = Rng::new(seed);
        let mut engine = Engine {
            node,
            id: settings.id,
            snapshot_every: settings.snapshot_every,
            // A new run starts its ids anywhere, so that they do not repeat those of
            // entries proposed before a restart and applied after it.
            next_id: rng.next_u64() >> 1,
            applied,
            snapshot_index: applied,
            catch_up: catching_up.then(CatchUp::default),
            ballot: Ballot::default(),
            lost_log_noted: false,
            health: Health::default(),
            snapshots_sent: Default::default(),
            unreachable: Vec::new(),
            rng,
            election_ticks: election,
            #[cfg(feature = "bug-apply-uncommitted")]
            early: 0,
        };
        engine.jitter();
        if alone {
            // No election to wait for.
            engine.node.campaign().map_err(|e| e.to_string())?;
            engine.jitter();
        }
        Ok(engine)
    }

    /// Replaces raft-rs's draw of the election timeout (from the thread's generator) by
    /// the engine's own, in `election_ticks .. 2 * election_ticks`. raft-rs draws when it
    /// resets its election clock, which leaves `election_elapsed` at 0; so a new draw
    /// follows every operation after which the clock stands at 0, a condition that
    /// depends on the inputs only.
    fn jitter(&mut self) {
        if self.node.raft.election_elapsed == 0 {
            let e = self.election_ticks;
            let t = e + self.rng.below(e as u64) as usize;
            self.node.raft.set_randomized_election_timeout(t);
        }
    }

    /// raft-rs waits for a snapshot it sent until told how it went; a snapshot lost on
    /// the way (the peer was down, or crashed before installing it) would stall that
    /// peer for as long as this node leads. The sends are best effort, so a snapshot
    /// the peer has not confirmed within [`SNAPSHOT_RETRY_TICKS`] counts as failed, and
    /// raft-rs probes the peer again (sending a new snapshot if it still needs one).
    fn retry_snapshots(&mut self) {
        let leading = self.node.raft.state == StateRole::Leader;
        let mut failed = Vec::new();
        self.snapshots_sent.retain(|peer, ticks| {
            let pending = leading
                && self
                    .node
                    .raft
                    .prs()
                    .get(*peer)
                    .is_some_and(|p| p.state == raft::ProgressState::Snapshot);
            *ticks += 1;
            if pending && *ticks >= SNAPSHOT_RETRY_TICKS {
                failed.push(*peer);
            }
            pending && *ticks < SNAPSHOT_RETRY_TICKS
        });
        for peer in failed {
            tracing::info!(
                peer,
                "no word of the snapshot sent to a peer: sending it again"
            );
            self.node
                .report_snapshot(peer, raft::SnapshotStatus::Failure);
        }
    }

    /// One tick of time (`now`: milliseconds, monotonic).
    pub fn tick(&mut self, now: u64) -> Vec<Effect> {
        self.hold_off_election();
        self.node.tick();
        self.jitter();
        self.retry_snapshots();
        let leading = self.node.raft.state == StateRole::Leader;
        let voters = self.voters();
        let events = self.health.look(leading, self.id, &voters, now);
        if leading {
            self.unreachable =
                self.health
                    .silent(self.id, &voters, now, crate::health::UNREACHABLE_AFTER_MS);
        } else if self.node.raft.leader_id == raft::INVALID_ID {
            // No leader to say: the wait for one covers it (`cut_off`).
            self.unreachable.clear();
        }
        events.into_iter().map(Effect::Publish).collect()
    }

    /// A message from a peer, at `now`.
    pub fn step(&mut self, mut m: Message, now: u64) -> Vec<Effect> {
        self.health.heard(m.from, now);
        if m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat {
            if let Some(peers) = crate::health::decode_unreachable(&m.context) {
                self.unreachable = peers.into_iter().filter(|p| *p != self.id).collect();
                m.context = Default::default();
            }
        }
        if m.get_msg_type() == raft::eraftpb::MessageType::MsgAppendResponse
            && m.reject
            && m.index == u64::MAX
        {
            // The lost-log refusal (`catch_up.rs`).
            self.forget_match(m.from, m.reject_hint);
        }
        let mut effects = Vec::new();
        let last = self.node.raft.raft_log.last_index();
        let refusals = catch_up::recover_lost_log(&mut m, last, self.id);
        if !refusals.is_empty() {
            if !self.lost_log_noted {
                self.lost_log_noted = true;
                tracing::warn!(
                    leader = m.from,
                    last_index = last,
                    "the group committed entries this node's log does not have (was its data directory wiped?): catching up from the leader"
                );
            }
            effects.push(Effect::Send {
                to: m.from,
                messages: refusals,
            });
        }
        if let Some(c) = &mut self.catch_up {
            if !c.admits(&m, last) {
                if !c.declined_noted {
                    c.declined_noted = true;
                    tracing::warn!(
                        from = m.from,
                        "declining to take over leadership: this node started with an empty log (new, or its data directory was wiped) and holds part of the group's log only"
                    );
                }
                return effects;
            }
        }
        if ballot::is_vote_response(&m) {
            let voters = self.voters();
            for m in self.ballot.count(m, self.id, &voters) {
                self.step_raft(m);
            }
        } else {
            self.step_raft(m);
        }
        self.jitter();
        effects
    }

    fn step_raft(&mut self, m: Message) {
        if let Err(e) = self.node.step(m) {
            tracing::debug!(error = %e, "raft: message dropped");
        }
    }

    /// Proposes `ask`; returns the id its committed entry will carry
    /// ([`crate::Committed`]), or why it is not ordered.
    pub fn propose(&mut self, ask: &Ask) -> Result<u64, Refusal> {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader {
            return Err(Refusal::NotLeader(raft.leader_id));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let context = proposal::context(self.id, id);
        let proposed = match ask {
            Ask::Command(entry) => {
                let data = site_entry::encode_entry(entry);
                self.node.propose(context, data)
            }
            Ask::Members(change) => {
                let voters = self.voters();
                let conf = Conf {
                    voters: &voters,
                    pending: raft.pending_conf_index > raft.raft_log.applied,
                };
                match members::conf_change(&conf, change) {
                    Ok(Some(_)) if !self.quorum_stays_whole(change) => {
                        return Err(Refusal::Refused(site_state::StateError::InUse(
                            "too few nodes hold the site's log to change its members now (a new or wiped node is still catching up): with this change the site could not elect a leader; try again once every node has caught up".into(),
                        )))
                    }
                    Ok(Some(_)) if change.id() == self.id => {
                        let to = self.successor().ok_or_else(|| {
                            Refusal::Dropped("no other voter can lead".into())
                        })?;
                        tracing::info!(to, "asked to leave the site while leading: moving leadership first");
                        self.node.transfer_leader(to);
                        return Err(Refusal::Moving(to));
                    }
                    Ok(Some(cc)) => self.node.propose_conf_change(context, cc),
                    Ok(None) => return Err(Refusal::Unchanged),
                    Err(refusal) => return Err(Refusal::Refused(refusal)),
                }
            }
        };
        proposed.map_err(|e| Refusal::Dropped(format!("raft refused the proposal: {e}")))?;
        self.jitter();
        Ok(id)
    }

    /// Whether a majority of the voters after `change` holds the log as far as it is
    /// committed now. The votes of a node that started with an empty log count only
    /// beside enough whole ones until it has caught up (`ballot.rs`); a change that left
    /// fewer whole voters than a majority (a node added, or a whole one removed, while
    /// another catches up) would leave the site with fewer nodes able to lead, and a
    /// leader harder to elect once this one is gone.
    fn quorum_stays_whole(&self, change: &site_state::MemberChange) -> bool {
        let raft = &self.node.raft;
        let committed = raft.raft_log.committed;
        let mut voters = self.voters();
        match change {
            site_state::MemberChange::Add { id, .. } => voters.push(*id),
            site_state::MemberChange::Remove { id } => voters.retain(|v| v != id),
        }
        let whole = voters
            .iter()
            .filter(|v| {
                // A peer that lost its log has its match lowered (`forget_match`).
                **v == self.id || raft.prs().get(**v).is_some_and(|p| p.matched >= committed)
            })
            .count();
        whole >= crate::hold::majority(voters.len())
    }

    /// The voter best placed to lead after this node: the one whose log matches the most.
    fn successor(&self) -> Option<u64> {
        let prs = self.node.raft.prs();
        self.voters()
            .into_iter()
            .filter(|v| *v != self.id)
            .max_by_key(|v| prs.get(*v).map_or(0, |p| p.matched))
    }

    /// Starts an election now (a test or an operator's nudge).
    pub fn campaign(&mut self) -> Result<(), String> {
        if !self.may_campaign() {
            return Err("this node is catching up with the group's log and cannot lead yet".into());
        }
        self.node.campaign().map_err(|e| e.to_string())?;
        self.jitter();
        Ok(())
    }

    /// The group's voters, sorted.
    pub fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.node.raft.prs().conf().voters().ids().iter().collect();
        v.sort_unstable();
        v
    }

    /// Where this node's Raft stands.
    pub fn status(&self) -> Status {
        let raft = &self.node.raft;
        Status {
            voters: self.voters(),
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied,
            unreachable: self.unreachable.clone(),
        }
    }

    /// Whether this node leads and has handed out for applying every entry committed
    /// before its term (its term's first entry is committed, and applied as far): only
    /// then does its reading of the log's time ([`crate::LogClock`]) start from the latest
    /// entry, so only then may it stamp the entries it proposes. A new leader is settled
    /// one round trip after its election; one that restarts, once it has replayed its log.
    pub fn settled(&self) -> bool {
        let raft = &self.node.raft;
        let committed = raft.raft_log.committed;
        raft.state == StateRole::Leader
            && raft.raft_log.term(committed).is_ok_and(|t| t == raft.term)
            && self.applied >= committed
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// Whether this node is catching up after starting with an empty log.
    pub fn catching_up(&self) -> bool {
        self.catch_up.is_some()
    }

    /// Peers this node, as leader, has not heard from lately.
    pub fn degraded(&self) -> &std::collections::BTreeSet<u64> {
        self.health.degraded()
    }

    /// The log the engine reads.
    pub fn storage(&self) -> &S {
        self.node.store()
    }
}

#[cfg(test)]
#[path = "engine_test.rs"]
mod tests;
