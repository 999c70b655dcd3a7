//! The Raft driver: one tokio task owns the replication core's [`Engine`] and executes
//! its effects, each typed by where it goes: the Raft log ([`LogEffect`], sled), the
//! transport (peers), the apply task (`applying.rs`: committed entries, snapshots to
//! install or take, in log order) and the node's watchers. Ticks, peer messages and
//! proposals go in. A snapshot of the state is taken by the apply task when it reaches
//! the snapshot's index and handed back as an input ([`Input::Snapshot`]), so the driver
//! never waits for the apply queue: heartbeats and votes go on while files are installed.
//! Each proposer waits for the answer matched by its proposal id.
//!
//! A single node is a group of one: the same path, with no peers to send to.
//!
//! [`Driver::run`] is a loop over the driver's steps ([`Driver::tick`],
//! [`Driver::propose`], [`Driver::take`], [`Driver::settle`]), which the simulation
//! (`simulations/`) calls one by one under its own clock, network and disk.

use crate::channels::{gone, Input, Job, Proposal};
use crate::events::Events;
use crate::failure::Failure;
use crate::leadership::Leadership;
use crate::raft_log::RaftLog;
use crate::site_clock::SiteClock;
use crate::transport::Transport;
use crate::{NodeError, Result};
use protobuf::Message as _;
use site_replica::{Ask, Committed, Effect, Engine, LogEffect, Refusal};
use site_state::Outcome;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How a node takes part in the site's Raft group.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// This node's id (> 0).
    pub id: u64,
    /// The founding voters (this node included), used only to initialise a new log.
    pub voters: Vec<u64>,
    /// Time of one Raft tick (elections take 10 to 19 ticks, heartbeats 1).
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

/// The parts of the node the driver reaches: where it publishes its status, the failure
/// it raises or stops on, the log's clock it stamps and carries on (its monotonic clock
/// is the engine's), the events it tells.
pub struct NodeSide {
    /// Where the driver publishes where this node's Raft stands.
    pub leadership: Leadership,
    /// The node's failure, raised by the driver or stopping it.
    pub failure: Failure,
    /// The log's clock on this node.
    pub clock: std::sync::Arc<SiteClock>,
    /// What the node tells its watchers.
    pub events: Events,
}

/// The Raft driver of a node: the engine, its log, and where its effects go.
pub struct Driver {
    engine: Engine<RaftLog>,
    log: RaftLog,
    /// What the driver tells the rest of the node, and reads from it.
    node: NodeSide,
    transport: std::sync::Arc<dyn Transport>,
    tick: Duration,
    /// The apply task's queue (`applying.rs`).
    jobs: mpsc::UnboundedSender<Job>,
    /// Commands asked of this node as a leader not yet settled (`Engine::settled`):
    /// proposed, and stamped, once it is (or no longer leads).
    held: Vec<Proposal>,
}

impl Driver {
    /// A driver over the node's Raft log `log`; `applied` is the index the loaded state
    /// holds, `jobs` the apply task's queue, `seed` the engine's randomness (election
    /// timeouts).
    pub fn new(
        node: NodeSide,
        log: RaftLog,
        settings: RaftSettings,
        transport: std::sync::Arc<dyn Transport>,
        applied: u64,
        jobs: mpsc::UnboundedSender<Job>,
        seed: u64,
    ) -> Result<Driver> {
        let core = site_replica::Settings {
            id: settings.id,
            election_ticks: 10,
            snapshot_every: settings.snapshot_every,
        };
        let engine = Engine::new(
            &core,
            log.clone(),
            applied,
            log.catching_up()?,
            settings.voters == [settings.id],
            seed,
        )
        .map_err(|e| NodeError::Io(std::io::Error::other(e)))?;
        Ok(Driver {
            engine,
            log,
            node,
            transport,
            tick: settings.tick,
            jobs,
            held: Vec::new(),
        })
    }

    /// The engine's time: this node's monotonic clock.
    fn now(&self) -> u64 {
        self.node.clock.monotonic_ms()
    }

    /// The replication core this driver runs.
    pub fn engine(&self) -> &Engine<RaftLog> {
        &self.engine
    }

    /// Runs until `shutdown` turns true (or every proposer and input is gone).
    pub async fn run(
        mut self,
        mut proposals: mpsc::UnboundedReceiver<Proposal>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A failure elsewhere (the apply task, the blob directory) stops the driver too:
        // a failed node neither takes writes nor votes.
        let mut failure = self.node.failure.subscribe();
        loop {
            if let Err(e) = self.settle().await {
                return self
                    .node
                    .failure
                    .fail(format!("cannot persist or apply the site's log: {e}"));
            }
            self.publish_status();
            let input = tokio::select! {
                _ = tick.tick() => None,
                p = proposals.recv() => match p {
                    Some(p) => {
                        self.propose(p);
                        continue;
                    }
                    None => return,
                },
                Some(input) = inputs.recv() => Some(input),
                _ = shutdown.wait_for(|s| *s) => return,
                _ = failure.wait_for(Option::is_some) => return,
            };
            let done = match input {
                Some(input) => self.take(input).await,
                None => self.tick().await,
            };
            if let Err(e) = done {
                return self
                    .node
                    .failure
                    .fail(format!("cannot persist or apply the site's log: {e}"));
            }
        }
    }

    /// Makes where this node's Raft stands visible to the rest of the node.
    pub fn publish_status(&self) {
        self.node.leadership.publish(self.engine.status());
    }

    /// One tick of the engine's clock.
    pub async fn tick(&mut self) -> Result<()> {
        let now = self.now();
        let effects = self.engine.tick(now);
        self.execute(effects).await
    }

    /// Proposes `p`, or answers it at once with why not (or holds it until this node,
    /// leading, is settled).
    pub fn propose(&mut self, mut p: Proposal) {
        let applied = self.engine.status().applied;
        if let Ask::Command(entry) = &mut p.ask {
            // The log has one clock: the leader's reading of the log's time
            // (`site_clock.rs`), whatever the proposer's wall clock said, read once
            // the leader has every entry before its term in hand.
            if self.engine.is_leader() {
                #[cfg(not(feature = "bug-node-unsettled-stamp"))]
                if !self.engine.settled() {
                    return self.held.push(p);
                }
                entry.now = self.node.clock.stamp();
            }
        }
        match self.engine.propose(&p.ask) {
            Ok(id) => {
                // Queued before the entry can be committed, so before its apply.
                let _ = self.jobs.send(Job::Wait(id, p.reply));
            }
            Err(Refusal::NotLeader(leader)) => {
                let _ = p.reply.send(Err(NodeError::NotLeader(leader)));
            }
            Err(Refusal::Moving(to)) => {
                let _ = p.reply.send(Err(NodeError::LeaderMoving(to)));
            }
            Err(Refusal::Unchanged) => {
                let _ = p.reply.send(Ok((Ok(Outcome::default()), applied)));
            }
            Err(Refusal::Refused(refusal)) => {
                let _ = p.reply.send(Ok((Err(refusal), applied)));
            }
            Err(Refusal::Dropped(e)) => {
                let _ = p.reply.send(Err(NodeError::Unavailable(e)));
            }
        }
    }

    /// Proposes the held commands once this node is settled or no longer leads; whether
    /// there were any.
    fn release_held(&mut self) -> bool {
        if self.held.is_empty() || (self.engine.is_leader() && !self.engine.settled()) {
            return false;
        }
        for p in std::mem::take(&mut self.held) {
            self.propose(p);
        }
        true
    }

    /// Runs the Ready procedure until nothing is ready, proposing the commands held for
    /// a leader once it is settled.
    pub async fn settle(&mut self) -> Result<()> {
        loop {
            self.on_ready().await?;
            if !self.release_held() {
                return Ok(());
            }
        }
    }

    /// One pass of the Ready procedure, if there is anything ready.
    async fn on_ready(&mut self) -> Result<()> {
        let Some(mut cycle) = self.engine.ready() else {
            return Ok(());
        };
        let effects = std::mem::take(&mut cycle.effects);
        self.execute(effects).await?;
        let effects = self.engine.advance(cycle);
        self.execute(effects).await
    }

    /// Takes an input: a peer's message to the engine, or the state for a snapshot,
    /// written here (the log is the driver's) once the apply task has reached its index,
    /// so the driver never waits for the apply queue.
    pub async fn take(&mut self, input: Input) -> Result<()> {
        match input {
            Input::Message(m) => {
                let now = self.now();
                let effects = self.engine.step(*m, now);
                self.execute(effects).await
            }
            Input::Snapshot {
                index,
                term,
                conf_state,
                data,
            } => {
                // A leader's snapshot installed meanwhile covers it.
                if index > self.log.snapshot_index() {
                    self.log
                        .save_snapshot(index, term, conf_state, data)
                        .await?;
                    tracing::debug!(index, "state snapshot written, raft log compacted");
                }
                Ok(())
            }
        }
    }

    /// Carries out the core's effects, in order.
    async fn execute(&mut self, effects: Vec<Effect>) -> Result<()> {
        for effect in effects {
            match effect {
                Effect::Log(effect) => self.on_log(effect).await?,
                Effect::Send { to, messages } => {
                    let batch = messages
                        .iter()
                        .map(|m| m.write_to_bytes().expect("raft messages encode"))
                        .collect();
                    self.transport.send(to, batch);
                }
                Effect::Apply(committed) => {
                    // Here, not on the apply task: this node's clock is carried on
                    // before it may stamp again ([`Engine::settled`]).
                    if let Committed::Command { entry: Ok(e), .. } = &committed {
                        self.node.clock.observe(e.now);
                    }
                    self.queue(Job::Apply(committed))?
                }
                Effect::Publish(event) => self.node.events.publish(event),
            }
        }
        Ok(())
    }

    /// Carries out an effect on the Raft log.
    async fn on_log(&mut self, effect: LogEffect) -> Result<()> {
        match effect {
            LogEffect::Persist {
                entries,
                hard_state,
            } => self.log.persist(&entries, hard_state.as_ref())?,
            #[cfg(not(feature = "bug-node-unsynced-ack"))]
            LogEffect::Sync => self.log.sync().await?,
            #[cfg(feature = "bug-node-unsynced-ack")]
            LogEffect::Sync => {}
            LogEffect::SetCommit(commit) => self.log.set_commit(commit)?,
            LogEffect::SetConfState(cs) => {
                self.log.set_conf_state(&cs)?;
                // Before anyone waiting on this index wakes up and reads the voters.
                self.publish_status();
            }
            LogEffect::InstallSnapshot(snapshot) => {
                self.log.install_snapshot(&snapshot).await?;
                // Before this node may stamp again (the apply task loads it later).
                let time = site_state::State::time_of(&snapshot.data);
                self.node.clock.observe(time);
                let index = snapshot.get_metadata().index;
                self.queue(Job::Install {
                    data: snapshot.data.to_vec(),
                    index,
                })?;
            }
            // The apply task gives the state once it has applied up to `index`
            // (`Input::Snapshot`): every entry up to there is queued before this.
            LogEffect::SaveSnapshot {
                index,
                term,
                conf_state,
            } => self.queue(Job::Snapshot {
                index,
                term,
                conf_state,
            })?,
            LogEffect::EndCatchUp => self.log.end_catching_up().await?,
        }
        Ok(())
    }

    /// Queues a job for the apply task.
    fn queue(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| gone())
    }
}

#[cfg(test)]
#[path = "raft_driver_test.rs"]
mod tests;
