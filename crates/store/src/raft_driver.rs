//! The Raft driver: one tokio task owns the `RawNode` and runs, in this order, tick, step,
//! ready, persist, send, apply, advance. Commands reach it as proposals; each committed
//! entry is handed to the apply side (`apply.rs`) in log order, and the proposer waiting
//! for it gets its outcome.
//!
//! A single node is a group of one: the same path, with no peers to send to.

use crate::catch_up::CatchUp;
use crate::membership::MemberChange;
use crate::raft_log::RaftLog;
use crate::transport::Transport;
use crate::{Result, Store, StoreError};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, Entry as RaftEntry, EntryType, Message, MessageType};
use raft::{RawNode, StateRole};
use serde::{Deserialize, Serialize};
use site_state::{Entry, Outcome, StateError};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How a node takes part in the site's Raft group.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// This node's id (> 0).
    pub id: u64,
    /// The founding voters (this node included), used only to initialise a new log.
    pub voters: Vec<u64>,
    /// Time of one Raft tick (elections take 10 to 20 ticks, heartbeats 1).
    pub tick: Duration,
    /// Applied entries between snapshots of the state machine (the log is compacted to
    /// the snapshot).
    pub snapshot_every: u64,
}

impl RaftSettings {
    /// A group of one node.
    pub fn single(id: u64) -> RaftSettings {
        RaftSettings {
            id,
            voters: vec![id],
            tick: Duration::from_millis(100),
            snapshot_every: 1000,
        }
    }
}

/// Where this node's Raft stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
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
}

/// What ordering an entry gave: the command's result, and the index it was applied at.
pub(crate) type Ordered = (std::result::Result<Outcome, StateError>, u64);

/// What a proposer asks the log to order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Ask {
    /// A command of the state machine, with its time.
    Command(Entry),
    /// A change of the group's voters.
    Members(MemberChange),
}

/// A request waiting to be ordered by the log.
pub(crate) struct Proposal {
    pub(crate) ask: Ask,
    pub(crate) reply: oneshot::Sender<Result<Ordered>>,
}

/// Input of the driver besides proposals.
pub(crate) enum Input {
    /// A message from a peer.
    Message(Box<Message>),
}

pub(crate) struct Driver {
    node: RawNode<RaftLog>,
    log: RaftLog,
    store: Store,
    transport: std::sync::Arc<dyn Transport>,
    settings: RaftSettings,
    /// Proposals of this node not yet applied, by the id carried in the entry's context.
    waiting: HashMap<u64, oneshot::Sender<Result<Ordered>>>,
    next_id: u64,
    applied: u64,
    /// Index of the last snapshot of the state machine.
    snapshot_index: u64,
    /// Sends this node's applied index to whoever waits for it (replay, forwarded writes).
    applied_tx: watch::Sender<u64>,
    /// Whether the loss of this node's log was logged already.
    lost_log_noted: bool,
    /// When this node, as leader, last heard from each peer; `None` while not leading.
    heard: Option<HashMap<u64, Instant>>,
    /// Peers the leader has reported as degraded.
    degraded: std::collections::HashSet<u64>,
    /// Set while this node, started with an empty log, catches up (it does not vote).
    catch_up: Option<CatchUp>,
}

/// A peer the leader has not heard from for this long is reported degraded.
const DEGRADED_AFTER: Duration = Duration::from_secs(3);

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Driver {
    /// A driver over `store`'s Raft log; `applied` is the index the loaded state holds.
    pub(crate) fn new(
        store: Store,
        settings: RaftSettings,
        transport: std::sync::Arc<dyn Transport>,
        applied: u64,
        applied_tx: watch::Sender<u64>,
    ) -> Result<Driver> {
        let log = store.raft_log();
        let config = raft::Config {
            id: settings.id,
            applied,
            election_tick: 10,
            heartbeat_tick: 1,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let mut node = RawNode::new(&config, log.clone(), &logger())
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        if settings.voters == [settings.id] {
            // Alone: no election to wait for.
            node.campaign()
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        }
        Ok(Driver {
            node,
            store,
            transport,
            settings,
            waiting: HashMap::new(),
            // A new run starts its counter anywhere, so that its ids do not repeat those of
            // entries proposed before a restart and applied after it.
            next_id: {
                let mut raw = [0u8; 8];
                getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
                u64::from_be_bytes(raw) >> 1
            },
            applied,
            snapshot_index: applied,
            applied_tx,
            lost_log_noted: false,
            heard: None,
            degraded: Default::default(),
            catch_up: log.catching_up()?.then(CatchUp::default),
            log,
        })
    }

    /// Runs until `shutdown` turns true (or every proposer and input is gone).
    pub(crate) async fn run(
        mut self,
        mut proposals: mpsc::UnboundedReceiver<Proposal>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(e) = self.on_ready().await {
                tracing::error!(error = %e, "raft: cannot persist or apply; stopping this node's raft");
                return;
            }
            if let Err(e) = self.end_catch_up_when_done().await {
                tracing::error!(error = %e, "raft: cannot persist the end of catching up; stopping this node's raft");
                return;
            }
            self.publish_status();
            tokio::select! {
                _ = tick.tick() => {
                    self.node.tick();
                    self.watch_peers();
                }
                p = proposals.recv() => match p {
                    Some(p) => self.propose(p),
                    None => return,
                },
                Some(input) = inputs.recv() => match input {
                    Input::Message(mut m) => {
                        if let Some(heard) = &mut self.heard {
                            heard.insert(m.from, Instant::now());
                        }
                        self.recover_lost_log(&mut m);
                        if !self.may_step(&m) {
                            continue;
                        }
                        if let Err(e) = self.node.step(*m) {
                            tracing::debug!(error = %e, "raft: message dropped");
                        }
                    }
                },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// A node whose data directory was wiped comes back with an empty log while the
    /// leader still counts its old entries as matched. The leader's heartbeats then carry
    /// a commit index beyond this node's log, which raft-rs treats as a broken invariant,
    /// and the leader sends nothing more until a new entry comes. So the commit is
    /// clamped to the log's end, and the leader is told that its appends are refused past
    /// anything it counted as matched: it probes back to where this log ends and sends the
    /// entries from there (or a snapshot).
    fn recover_lost_log(&mut self, m: &mut Message) {
        let last = self.node.raft.raft_log.last_index();
        if m.get_msg_type() != MessageType::MsgHeartbeat || m.commit <= last {
            return;
        }
        if !self.lost_log_noted {
            self.lost_log_noted = true;
            tracing::warn!(
                leader = m.from,
                leader_commit = m.commit,
                last_index = last,
                "the group committed entries this node's log does not have (was its data directory wiped?): catching up from the leader"
            );
        }
        m.commit = last;
        let mut refusal = Message::default();
        refusal.set_msg_type(MessageType::MsgAppendResponse);
        refusal.to = m.from;
        refusal.from = self.settings.id;
        refusal.term = m.term;
        refusal.reject = true;
        refusal.index = u64::MAX;
        refusal.reject_hint = last;
        self.send(vec![refusal]);
    }

    /// Whether Raft may step `m`: while this node catches up after starting with an
    /// empty log, it declines (drops) votes for candidates with a history (`catch_up.rs`).
    fn may_step(&mut self, m: &Message) -> bool {
        let Some(c) = &mut self.catch_up else {
            return true;
        };
        if c.admits(m) {
            return true;
        }
        if !c.declined_noted {
            c.declined_noted = true;
            tracing::warn!(
                candidate = m.from,
                candidate_last_index = m.index,
                "declining to vote: this node started with an empty log (new, or its data directory was wiped) and votes only once it holds what the group had committed"
            );
        }
        false
    }

    /// Ends catching up (durably) once this node holds what the group had committed.
    async fn end_catch_up_when_done(&mut self) -> Result<()> {
        let leading = self.node.raft.state == StateRole::Leader;
        if !self
            .catch_up
            .as_ref()
            .is_some_and(|c| c.done(self.applied, leading))
        {
            return Ok(());
        }
        self.log.end_catching_up().await?;
        self.catch_up = None;
        tracing::info!(
            applied = self.applied,
            "caught up with the group's log: this node votes again"
        );
        Ok(())
    }

    /// On the leader: reports a voter it has not heard from for [`DEGRADED_AFTER`]
    /// (replication degraded), and again once it answers (restored).
    fn watch_peers(&mut self) {
        if self.node.raft.state != StateRole::Leader {
            self.heard = None;
            self.degraded.clear();
            return;
        }
        let now = Instant::now();
        let me = self.settings.id;
        let voters: Vec<u64> = self.node.raft.prs().conf().voters().ids().iter().collect();
        let heard = self.heard.get_or_insert_with(HashMap::new);
        self.degraded.retain(|p| voters.contains(p));
        for peer in voters.into_iter().filter(|p| *p != me) {
            let last = *heard.entry(peer).or_insert(now);
            let silent = now.duration_since(last);
            if silent >= DEGRADED_AFTER && self.degraded.insert(peer) {
                self.store.publish(site_state::Event::ReplicationDegraded {
                    node: peer,
                    reason: format!(
                        "no answer from node {peer} for {} s; the site goes on while a majority answers",
                        silent.as_secs()
                    ),
                });
            } else if silent < DEGRADED_AFTER && self.degraded.remove(&peer) {
                self.store
                    .publish(site_state::Event::ReplicationRestored { node: peer });
            }
        }
    }

    fn publish_status(&self) {
        let raft = &self.node.raft;
        let mut voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        let now = RaftStatus {
            voters,
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied,
        };
        let mut status = self
            .store
            .inner
            .raft_status
            .lock()
            .expect("raft status lock");
        if status.leader != now.leader {
            tracing::info!(leader = now.leader, term = now.term, "raft leader changed");
        }
        *status = now;
    }

    fn propose(&mut self, p: Proposal) {
        if self.node.raft.state != StateRole::Leader {
            let _ = p
                .reply
                .send(Err(StoreError::NotLeader(self.node.raft.leader_id)));
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        // The proposer's node id and a counter: another node's entries, or this node's
        // from an earlier run, never answer a waiter here.
        let mut context = self.settings.id.to_be_bytes().to_vec();
        context.extend_from_slice(&id.to_be_bytes());
        let proposed = match &p.ask {
            Ask::Command(entry) => {
                let data = serde_json::to_vec(entry).expect("entries serialise");
                self.node.propose(context, data)
            }
            Ask::Members(change) => match self.conf_change(change) {
                Ok(Some(cc)) => self.node.propose_conf_change(context, cc),
                Ok(None) => {
                    // Already so: nothing to order.
                    let _ = p.reply.send(Ok((Ok(Outcome::default()), self.applied)));
                    return;
                }
                Err(refusal) => {
                    let _ = p.reply.send(Ok((Err(refusal), self.applied)));
                    return;
                }
            },
        };
        match proposed {
            Ok(()) => {
                self.waiting.insert(id, p.reply);
            }
            Err(e) => {
                let _ = p.reply.send(Err(StoreError::Unavailable(format!(
                    "raft refused the proposal: {e}"
                ))));
            }
        }
    }

    /// The proposer waiting for the entry with `context`, if this node proposed it.
    fn waiter(&mut self, context: &[u8]) -> Option<oneshot::Sender<Result<Ordered>>> {
        let (node, id) = context.split_at_checked(8)?;
        let node = u64::from_be_bytes(node.try_into().ok()?);
        let id = u64::from_be_bytes(id.try_into().ok()?);
        (node == self.settings.id)
            .then(|| self.waiting.remove(&id))
            .flatten()
    }

    /// The configuration change that makes `change`, if it changes anything.
    fn conf_change(
        &self,
        change: &MemberChange,
    ) -> std::result::Result<Option<ConfChangeV2>, StateError> {
        use raft::eraftpb::{ConfChangeSingle, ConfChangeType};
        let raft = &self.node.raft;
        if raft.pending_conf_index > raft.raft_log.applied {
            // raft-rs would turn it into an empty entry that answers nobody.
            return Err(StateError::InUse(
                "another membership change is being applied: try again in a moment".into(),
            ));
        }
        let conf = raft.prs().conf();
        let voters = conf.voters().ids();
        let (kind, id) = match change {
            MemberChange::Add { id, .. } if voters.contains(*id) => return Ok(None),
            MemberChange::Add { id, .. } => (ConfChangeType::AddNode, *id),
            MemberChange::Remove { id } if !voters.contains(*id) => {
                return Err(StateError::NotFound(format!("node {id} of the site")))
            }
            MemberChange::Remove { .. } if voters.len() == 1 => {
                return Err(StateError::InUse(
                    "the last node of a site cannot be removed".into(),
                ))
            }
            MemberChange::Remove { id } => (ConfChangeType::RemoveNode, *id),
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        cc.context = serde_json::to_vec(change)
            .expect("changes serialise")
            .into();
        Ok(Some(cc))
    }

    fn send(&self, messages: Vec<Message>) {
        let mut by_peer: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for m in messages {
            let bytes = m.write_to_bytes().expect("raft messages encode");
            by_peer.entry(m.to).or_default().push(bytes);
        }
        for (to, batch) in by_peer {
            self.transport.send(to, batch);
        }
    }

    /// One pass of the Ready procedure, if there is anything ready.
    async fn on_ready(&mut self) -> Result<()> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.log.install_snapshot(&snapshot).await?;
            self.store.load_snapshot(&snapshot.data)?;
            self.applied = snapshot.get_metadata().index;
            self.snapshot_index = self.applied;
            let _ = self.applied_tx.send(self.applied);
            tracing::info!(
                index = self.applied,
                term = snapshot.get_metadata().term,
                "state installed from the leader's snapshot"
            );
        }
        self.apply(ready.take_committed_entries()).await?;
        self.log.persist(ready.entries(), ready.hs())?;
        if ready.must_sync() || !ready.entries().is_empty() {
            self.log.sync().await?;
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries()).await?;
        self.node.advance_apply();
        self.maybe_snapshot().await
    }

    async fn apply(&mut self, entries: Vec<RaftEntry>) -> Result<()> {
        for e in entries {
            self.applied = e.index;
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {}
                EntryType::EntryNormal => {
                    let outcome = match serde_json::from_slice::<Entry>(&e.data) {
                        Ok(entry) => self.store.apply_entry(&entry).await,
                        Err(err) => {
                            // Every node refuses it alike: the log stays the same everywhere.
                            tracing::error!(index = e.index, error = %err, "raft entry is not a command; skipped");
                            Ok(Err(StateError::Invalid(format!(
                                "undecodable entry: {err}"
                            ))))
                        }
                    };
                    if let Some(reply) = self.waiter(&e.context) {
                        let _ = reply.send(outcome.map(|o| (o, e.index)));
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let change = if e.get_entry_type() == EntryType::EntryConfChange {
                        raft::eraftpb::ConfChange::parse_from_bytes(&e.data).map(|c| {
                            let mut single = raft::eraftpb::ConfChangeSingle::default();
                            single.set_change_type(c.get_change_type());
                            single.node_id = c.node_id;
                            let mut v2 = ConfChangeV2::default();
                            v2.mut_changes().push(single);
                            v2
                        })
                    } else {
                        ConfChangeV2::parse_from_bytes(&e.data)
                    };
                    let result = match change {
                        Ok(cc) => match self.node.apply_conf_change(&cc) {
                            Ok(cs) => {
                                self.log.set_conf_state(&cs)?;
                                // Before anyone waiting on this index wakes up and reads
                                // the voters.
                                self.publish_status();
                                if let Ok(m) = serde_json::from_slice::<MemberChange>(&cc.context) {
                                    tracing::info!(index = e.index, change = ?m, voters = ?cs.voters, "site membership changed");
                                    self.store.apply_member_change(&m);
                                }
                                // A node that joins is sent the snapshot: it must carry a
                                // configuration that includes the node.
                                self.snapshot().await?;
                                Ok(Outcome {
                                    changed: true,
                                    ..Default::default()
                                })
                            }
                            Err(err) => {
                                tracing::warn!(index = e.index, error = %err, "conf change refused");
                                Err(StateError::Invalid(format!(
                                    "membership change refused: {err}"
                                )))
                            }
                        },
                        Err(err) => {
                            tracing::error!(index = e.index, error = %err, "undecodable conf change");
                            Err(StateError::Invalid(format!(
                                "undecodable membership change: {err}"
                            )))
                        }
                    };
                    if let Some(reply) = self.waiter(&e.context) {
                        let _ = reply.send(Ok((result, e.index)));
                    }
                }
            }
        }
        let _ = self.applied_tx.send(self.applied);
        Ok(())
    }

    async fn maybe_snapshot(&mut self) -> Result<()> {
        if self.applied < self.snapshot_index + self.settings.snapshot_every {
            return Ok(());
        }
        self.snapshot().await
    }

    /// Snapshots the state machine at the applied index and compacts the log behind it.
    async fn snapshot(&mut self) -> Result<()> {
        let term = self
            .log
            .term_of(self.applied)
            .unwrap_or(self.node.raft.term);
        let data = self.store.state_bytes();
        self.log.save_snapshot(self.applied, term, data).await?;
        self.snapshot_index = self.applied;
        tracing::debug!(
            index = self.applied,
            "state snapshot written, raft log compacted"
        );
        Ok(())
    }
}
