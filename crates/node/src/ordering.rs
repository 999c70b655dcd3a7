//! The write path's ordering: every change goes through the site's log, proposed on the
//! leader (forwarded there from a follower) and answered once applied here. A node that
//! knows it cannot reach its site (no leader: cut off from its peers) refuses writes at
//! once, with `NoQuorum`, rather than take bytes it cannot make durable on a majority;
//! a forward or a majority hold in progress gives up as soon as this node loses its
//! leader.

use crate::applied_state::SiteState;
use crate::channels::{self, Proposal};
use crate::failure::Failure;
use crate::leadership::Leadership;
use crate::site_clock::{within, SiteClock};
use crate::transport::Transport;
use crate::{NodeError, Ordered, Result};
use site_state::{Command, Entry, Outcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a leader asked to leave waits for its leadership to move.
const LEADER_MOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a proposer waits for its change to be committed and applied.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(20);

/// The way into the site's log from this node. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Orderer {
    /// Proposals to this node's Raft driver.
    pub proposals: mpsc::UnboundedSender<Proposal>,
    /// Peers' messages to the driver.
    pub inputs: mpsc::UnboundedSender<channels::Input>,
    /// Who leads: where a change goes, and whether this node is cut off.
    pub leadership: Leadership,
    /// The state as applied here, which a forwarded change is waited for in.
    pub state: SiteState,
    /// Whether this node's disk failed: it then orders nothing.
    pub failure: Failure,
    /// The log's clock (a command's time; the leader stamps it), and the node's timers.
    pub clock: Arc<SiteClock>,
    /// The way to the leader, when it is another node.
    pub transport: Arc<dyn Transport>,
}

impl Orderer {
    /// Hands an encoded raft message from a peer to the driver.
    pub fn receive_raft(&self, message: &[u8]) -> Result<()> {
        let m = <raft::eraftpb::Message as protobuf::Message>::parse_from_bytes(message)
            .map_err(|e| NodeError::SizeInvalid(format!("not a raft message: {e}")))?;
        self.inputs
            .send(channels::Input::Message(Box::new(m)))
            .map_err(|_| NodeError::Unavailable("the node is shutting down".into()))
    }

    /// Orders `cmd` through the log (through the leader if this node is not it; the
    /// leader stamps it with the log's time) and returns its outcome once it is committed
    /// and applied here. A refused command leaves the state as it was.
    pub async fn execute(&self, cmd: Command) -> Result<Outcome> {
        let now = self.clock.now();
        self.ask(site_replica::Ask::Command(Entry { now, cmd }))
            .await
    }

    /// Orders `ask` through the log, through the leader if this node is not it.
    pub async fn ask(&self, ask: site_replica::Ask) -> Result<Outcome> {
        let (result, _) = self.ask_ordered(ask).await?;
        Ok(result?)
    }

    /// [`Orderer::ask`], with the index the change was applied at.
    pub async fn ask_ordered(&self, ask: site_replica::Ask) -> Result<Ordered> {
        match self.order(ask.clone()).await {
            Err(NodeError::NotLeader(0)) => Err(NodeError::NoQuorum(
                "the site's group has no leader (too few nodes reachable?)".into(),
            )),
            Err(NodeError::NotLeader(leader)) => self.forward(leader, &ask).await,
            other => other,
        }
    }

    /// Orders `ask` through this node's driver (which refuses with `NotLeader` unless
    /// this node leads) and waits until it is applied here.
    async fn order(&self, ask: site_replica::Ask) -> Result<Ordered> {
        self.failure.intact()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.proposals
            .send(channels::Proposal { ask, reply })
            .map_err(|_| NodeError::Unavailable("the node is shutting down".into()))?;
        let timers = self.clock.source();
        match within(timers, COMMIT_TIMEOUT, answer).await {
            Some(Ok(Err(NodeError::LeaderMoving(to)))) => {
                // Wait (bounded) for the move; the caller forwards to the new leader.
                let me = self.leadership.id();
                let mut status = self.leadership.subscribe();
                let moved = status.wait_for(|s| s.leader != me);
                let _ = within(timers, LEADER_MOVE_TIMEOUT, moved).await;
                match self.leadership.get().leader {
                    leader if leader == me => Err(NodeError::Unavailable(format!(
                        "leadership did not move to node {to} in time: try again"
                    ))),
                    leader => Err(NodeError::NotLeader(leader)),
                }
            }
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(NodeError::Unavailable(
                "the node stopped before the change was committed".into(),
            )),
            None => Err(NodeError::Unavailable(format!(
                "the change was not committed within {} s",
                COMMIT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Has the leader order `ask`, then waits until this node has applied as far, so
    /// that what the caller reads next includes the change.
    async fn forward(&self, leader: u64, ask: &site_replica::Ask) -> Result<Ordered> {
        let me = self.leadership.id();
        let timers = self.clock.source();
        let mut to = leader;
        let answer = loop {
            let call = within(
                timers,
                COMMIT_TIMEOUT,
                self.transport.forward(to, ask.clone()),
            );
            let answer = tokio::select! {
                biased;
                answer = call => answer.ok_or_else(|| {
                    NodeError::Unavailable(format!("leader {to} did not answer in time"))
                })?,
                // The leader went out of reach: no use waiting for its answer.
                cut_off = self.leadership.cut_off() => return Err(cut_off),
            };
            match answer {
                // Leadership moved on since this node last heard: one more hop, to the
                // node the old leader names.
                Err(NodeError::NotLeader(next))
                    if to == leader && next != 0 && next != to && next != me =>
                {
                    to = next
                }
                // The old leader knows of none: the group is between leaders, or has lost
                // its majority; the caller goes on through another node.
                Err(NodeError::NotLeader(0)) => {
                    return Err(NodeError::NoQuorum(format!(
                        "node {to} no longer leads and knows of no leader"
                    )))
                }
                other => break other?,
            }
        };
        let index = answer.1;
        match within(timers, COMMIT_TIMEOUT, self.state.applied_up_to(index)).await {
            Some(true) => Ok(answer),
            Some(false) => Err(NodeError::Unavailable("the node is shutting down".into())),
            None => Err(NodeError::Unavailable(format!(
                "this node has not applied up to {index} in time"
            ))),
        }
    }

    /// Orders a follower's forwarded change on this node, the leader; returns its outcome
    /// (or the state machine's refusal) and the index it was applied at. A command is
    /// stamped by the leader's driver: the log has one clock (GC's grace periods count
    /// on it).
    pub async fn order_forwarded(&self, ask: site_replica::Ask) -> Result<Ordered> {
        let me = self.leadership.id();
        match self.order(ask.clone()).await {
            // This node was asked to remove itself: the new leader orders it.
            Err(NodeError::NotLeader(leader)) if leader != 0 && leader != me => {
                self.forward(leader, &ask).await
            }
            other => other,
        }
    }
}
