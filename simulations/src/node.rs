//! One simulated node: the node's own Raft driver (`site-node`'s `raft_driver.rs`, with
//! the replication core's `Engine`, the log's clock and held proposals), Raft log
//! (`raft_log.rs`), apply task (`applying.rs`), orderer (`ordering.rs`: clients' changes,
//! forwarded to the leader), blob file operations (`file_ops.rs`), majority hold, fetcher
//! and scrub over a simulated disk (`disk.rs`), clock (`clock.rs`) and network
//! (`outbox.rs`). The driver's and the apply task's steps are
//! called one by one: after each step of the driver, the apply task takes the jobs it
//! queued, in their order; then the node's tasks (`tasks.rs`) run until they wait, and
//! the apply task takes what they queued, until nothing moves. Blob holds, fetches,
//! reads and scrubs are in `blobs.rs`.

use crate::clock::SimClock;
use crate::disk::Disk;
use crate::msg::{ForwardError, Out, Payload};
use crate::outbox::Outbox;
use crate::tasks::Tasks;
use futures_util::FutureExt;
use protobuf::Message as _;
use site_core::Digest;
use site_node::applying::{open_log, ApplySide, Applying};
use site_node::channels::{Input, Job, Ordered, Proposal};
use site_node::file_ops::{FileOps, FileQueue};
use site_node::raft_driver::{Driver, NodeSide, RaftSettings};
use site_node::spawn::Spawn;
use site_node::Orderer;
use site_node::{
    Events, Failure, Fetcher, Fetches, Leadership, MajorityHold, MissingBlobs, NodeError,
    ReadChecks, Reads, Scrubber, SiteClock, SiteState, VerifyReads,
};
use site_replica::{Ask, Committed};
use site_state::{Command, Entry, Event, State};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, watch};

/// Entries between state snapshots: small, so that snapshots and compaction happen.
const SNAPSHOT_EVERY: u64 = 24;

/// A client's change, ordered or not: (client request, answer).
type ClientAnswer = (u64, site_node::Result<Ordered>);

/// A node that is up.
pub struct Run {
    /// The node's Raft driver: the engine, the log, the log's clock.
    pub driver: Driver,
    /// The driver's jobs for the apply task.
    jobs: mpsc::UnboundedReceiver<Job>,
    /// The node's apply task.
    applying: Applying,
    /// The states the apply task hands the driver for its snapshots.
    snapshots: mpsc::UnboundedReceiver<Input>,
    /// What the apply task tells (a sweep's report).
    events: broadcast::Receiver<Event>,
    /// Where the node's messages wait for the network.
    pub outbox: Arc<Outbox>,
    /// The node's majority hold of the blobs delivered to it.
    pub majority: MajorityHold,
    /// The state as applied here.
    pub state: SiteState,
    /// The blob file operations, in their turn on the apply task.
    pub file_ops: FileOps,
    /// Which copies are checked when read (`verify_reads = "first"`).
    pub read_checks: Arc<ReadChecks>,
    /// The way into the site's log: clients' changes, forwarded to the leader.
    pub orderer: Orderer,
    /// The orderer's proposals to the driver.
    proposals: mpsc::UnboundedReceiver<Proposal>,
    /// Peers' Raft messages through the orderer (the simulation hands them to the driver
    /// itself).
    _inputs: mpsc::UnboundedReceiver<Input>,
    /// Clients' changes ordered (or not): (client request, answer).
    ordered: Arc<Mutex<Vec<ClientAnswer>>>,
    /// The fingerprint of the entry applied at each index.
    applied_fps: BTreeMap<u64, u64>,
    /// The committed blobs this node lacks.
    pub missing: MissingBlobs,
    /// The node's tasks.
    pub tasks: Arc<Tasks>,
    /// Copies of blobs from peers: holds asked of this node, the background rounds.
    pub fetcher: Fetcher,
    /// The checks of copies against their digests.
    pub scrubber: Scrubber,
    /// How a read of a copy here is served.
    pub reads: Reads,
    /// Majority holds of deliveries that ended.
    pub settled: crate::blobs::Settled,
    /// Kept until the node stops: its tasks watch it.
    _shutdown: watch::Sender<bool>,
}

pub struct Node {
    pub id: u64,
    /// Its wall and monotonic clocks.
    pub clock: Arc<SimClock>,
    pub disk: Disk,
    pub run: Option<Run>,
    /// The voters a new or wiped disk is founded with (empty for a node that joins).
    pub founding: Vec<u64>,
    /// Writes fail (a full or failing disk).
    pub disk_full: bool,
    /// The node has been removed from the site and stays down.
    pub removed: bool,
    /// Forwarded asks taken, by sender and request: a forward is one call of the peer
    /// transport (a gRPC request on its own HTTP/2 stream), which a duplicated packet
    /// never makes twice, so a copy the network duplicates is dropped here.
    forwards_taken: BTreeSet<(u64, u64)>,
    /// How many times the node started.
    lives: u64,
}

impl Node {
    pub fn new(id: u64, founding: Vec<u64>, clock: SimClock) -> Node {
        let clock = Arc::new(clock);
        Node {
            id,
            disk: Disk::new(clock.clone()),
            clock,
            run: None,
            founding,
            disk_full: false,
            removed: false,
            forwards_taken: BTreeSet::new(),
            lives: 0,
        }
    }

    pub fn up(&self) -> bool {
        self.run.is_some()
    }

    /// Starts the node from what its disk holds, as the node opens its log and starts
    /// its driver.
    pub fn start(&mut self, seed: u64) -> Result<(), String> {
        let (log, state, applied) =
            open_log(self.disk.log.clone(), &self.founding).map_err(|e| e.to_string())?;
        let clock = Arc::new(SiteClock::new(self.clock.clone()));
        clock.observe(state.time());
        let events = Events::default();
        let failure = Failure::new(self.id, events.clone());
        let alone = self.founding == [self.id];
        let leadership = Leadership::new(self.id, alone, failure.clone());
        let node = NodeSide {
            leadership: leadership.clone(),
            failure: failure.clone(),
            clock: clock.clone(),
            events: events.clone(),
        };
        let settings = RaftSettings {
            id: self.id,
            voters: self.founding.clone(),
            tick: std::time::Duration::from_millis(100),
            snapshot_every: SNAPSHOT_EVERY,
        };
        self.lives += 1;
        let outbox = Arc::new(Outbox::new(self.lives));
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let queue = FileQueue::default();
        queue.connect(&jobs_tx);
        let driver = Driver::new(node, log, settings, outbox.clone(), applied, jobs_tx, seed)
            .map_err(|e| e.to_string())?;
        let (proposals_tx, proposals) = mpsc::unbounded_channel();
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        driver.publish_status();
        let majority = MajorityHold::new(self.id, leadership.clone(), outbox.clone());
        let files = self.disk.blobs.files.clone();
        let missing = MissingBlobs::default();
        missing.rescan(state.blobs().map(|(d, b)| (d, b.size)), |x| files.has(x));
        let (applied_tx, applied_rx) = watch::channel(applied);
        let state = SiteState::new(state, applied_rx);
        let read_checks = Arc::new(ReadChecks::new(VerifyReads::First));
        self.clock.drop_timers();
        let tasks = Arc::new(Tasks::default());
        let fetches = Fetches::on(tasks.spawner());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let fetcher = Fetcher {
            id: self.id,
            missing: missing.clone(),
            fetches: fetches.clone(),
            queue: queue.clone(),
            state: state.clone(),
            leadership: leadership.clone(),
            transport: outbox.clone(),
            events: events.clone(),
            shutdown: shutdown_rx,
            scratch: crate::disk::UPLOADS.into(),
            next_tmp: Arc::default(),
            files: files.clone(),
            clock: self.clock.clone(),
        };
        tasks.spawn(Box::pin(fetcher.clone().run()));
        let scrubber = Scrubber {
            id: self.id,
            files: files.clone(),
            read_checks: read_checks.clone(),
            queue,
            missing: missing.clone(),
            state: state.clone(),
            events: events.clone(),
            counters: Arc::default(),
            interval: std::time::Duration::ZERO,
            tasks: tasks.spawner(),
        };
        let orderer = Orderer {
            proposals: proposals_tx,
            inputs: inputs_tx,
            leadership: leadership.clone(),
            state: state.clone(),
            failure: failure.clone(),
            clock: clock.clone(),
            transport: outbox.clone(),
        };
        let reads = Reads {
            files: files.clone(),
            state: state.clone(),
            scrubber: scrubber.clone(),
            missing: missing.clone(),
            leadership,
            transport: outbox.clone(),
            clock: self.clock.clone(),
        };
        let file_ops = FileOps {
            files,
            state: state.clone(),
            fetches,
            read_checks: read_checks.clone(),
            failure,
            upload_ttl: std::time::Duration::from_secs(900),
        };
        let (snapshots_tx, snapshots) = mpsc::unbounded_channel();
        let side = ApplySide {
            file_ops: file_ops.clone(),
            missing: missing.clone(),
            transport: outbox.clone(),
            events: events.clone(),
            counters: Arc::default(),
            clock,
            driver: snapshots_tx,
        };
        self.run = Some(Run {
            driver,
            jobs,
            applying: Applying::new(self.id, side, applied_tx),
            snapshots,
            events: events.subscribe(),
            outbox,
            majority,
            state,
            file_ops,
            read_checks,
            orderer,
            proposals,
            _inputs: inputs,
            ordered: Arc::default(),
            applied_fps: BTreeMap::new(),
            missing,
            tasks,
            fetcher,
            scrubber,
            reads,
            settled: Arc::default(),
            _shutdown: shutdown,
        });
        Ok(())
    }

    /// A crash: what was not synced is gone, and so is everything in memory.
    pub fn crash(&mut self) {
        self.run = None;
        self.clock.drop_timers();
        self.disk.crash();
    }

    /// A crash that also loses the whole data directory.
    pub fn wipe(&mut self) {
        self.run = None;
        self.clock.drop_timers();
        self.disk = Disk::new(self.clock.clone());
        self.disk.set_full(self.disk_full);
    }

    /// The disk fills (writes fail) or has room again.
    pub fn set_disk_full(&mut self, full: bool) {
        self.disk_full = full;
        self.disk.set_full(full);
    }

    pub fn tick(&mut self, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        let done = done(run.driver.tick());
        self.after(done, out);
    }

    /// Settles the driver (its Ready procedure, held proposals), lets the apply side
    /// take the jobs it queued and the node's tasks run, until none has anything left;
    /// then hands the world what the step sent, stamped and answered.
    pub(crate) fn after(&mut self, step: site_node::Result<()>, out: &mut Out) {
        let mut step = step;
        loop {
            if let Err(e) = step {
                return self.fail(&format!("the raft driver ({e})"), out);
            }
            let Some(run) = &mut self.run else { return };
            while let Ok(p) = run.proposals.try_recv() {
                run.driver.propose(p);
            }
            if let Err(e) = done(run.driver.settle()) {
                return self.fail(&format!("the raft driver ({e})"), out);
            }
            if let Some(input) = self.apply_jobs(out) {
                let Some(run) = &mut self.run else { return };
                step = done(run.driver.take(input));
                continue;
            }
            let Some(run) = &mut self.run else { return };
            // As the driver's loop does before it waits again.
            run.driver.publish_status();
            self.clock.fire_due();
            match run.tasks.run_until_stalled() {
                Ok(true) => step = Ok(()),
                Ok(false) => break,
                Err(e) => {
                    out.violations.push(format!("node {}: {e}", self.id));
                    break;
                }
            }
        }
        let Some(run) = &mut self.run else { return };
        // Changes ordered for clients: the entry applied at the index given.
        for (req, ordered) in std::mem::take(&mut *run.ordered.lock().expect("ordered")) {
            let answer = match ordered {
                Ok((result, index)) => {
                    let fp = run.applied_fps.get(&index).copied().unwrap_or(0);
                    Ok((result, index, fp))
                }
                Err(e) => Err(e.to_string()),
            };
            out.answers.push((req, answer));
        }
        for (to, messages) in run.outbox.take() {
            for m in messages {
                let m = raft::eraftpb::Message::parse_from_bytes(&m).expect("raft message");
                out.sends.push((self.id, to, Payload::Raft(Box::new(m))));
            }
        }
        for (to, payload) in run.outbox.take_other() {
            out.sends.push((self.id, to, payload));
        }
        out.stamps.extend(self.clock.take_stamps());
        self.record_held(out);
    }

    pub fn receive(&mut self, from: u64, payload: Payload, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        match payload {
            Payload::Raft(m) => {
                let step = done(run.driver.take(Input::Message(m)));
                self.after(step, out);
            }
            Payload::Forward { req, ask } => {
                if !self.forwards_taken.insert((from, req)) {
                    return;
                }
                // As the node's peer service orders a follower's change.
                let (orderer, outbox) = (run.orderer.clone(), run.outbox.clone());
                run.tasks.spawn(Box::pin(async move {
                    let answer = match orderer.order_forwarded(ask).await {
                        Ok(ordered) => Ok(ordered),
                        Err(NodeError::NotLeader(n)) => Err(ForwardError::NotLeader(n)),
                        Err(e) => Err(ForwardError::Other(e.to_string())),
                    };
                    outbox.send_payload(from, Payload::ForwardAnswer { req, answer });
                }));
                self.after(Ok(()), out);
            }
            Payload::ForwardAnswer { req, answer } => {
                run.outbox.answer_forward(req, answer);
                self.after(Ok(()), out);
            }
            other => self.receive_blob_message(from, other, out),
        }
    }

    /// A client's change, asked of this node: ordered by the node's `Orderer` (through
    /// the leader if this node is not it).
    pub fn submit(&mut self, req: u64, ask: Ask, out: &mut Out) {
        let Some(run) = &self.run else { return };
        let (orderer, ordered) = (run.orderer.clone(), run.ordered.clone());
        run.tasks.spawn(Box::pin(async move {
            let answer = orderer.ask_ordered(ask).await;
            ordered.lock().expect("ordered").push((req, answer));
        }));
        self.after(Ok(()), out);
    }

    /// A disk failure: the node stops (and is started again once the disk works).
    fn fail(&mut self, what: &str, out: &mut Out) {
        out.fatal = Some(format!("node {}: {what} failed", self.id));
        self.crash();
    }

    /// Lets the apply task take the driver's jobs in order, up to a state it hands the
    /// driver for a snapshot (returned, for the driver to write). What each applied
    /// entry did is checked on the way.
    fn apply_jobs(&mut self, out: &mut Out) -> Option<Input> {
        loop {
            let run = self.run.as_mut()?;
            if let Ok(input) = run.snapshots.try_recv() {
                return Some(input);
            }
            let job = run.jobs.try_recv().ok()?;
            let applied = match &job {
                Job::Apply(c) => Some(self.before_apply(c, out)),
                _ => None,
            };
            let id = self.id;
            let run = self.run.as_mut()?;
            if let Err(e) = done(run.applying.take(job)) {
                self.fail(&format!("the apply task ({e})"), out);
                return None;
            }
            if let Some((index, fp, before)) = applied {
                run.applied_fps.insert(index, fp);
                out.applied.push((id, index, fp));
                loop {
                    match run.events.try_recv() {
                        Ok(Event::GcRun { report }) => {
                            if let Some(b) = &before {
                                let ended = crate::invariants::clock::ended(b, &report);
                                out.expired.extend(ended.into_iter().map(|e| (id, e)));
                            }
                        }
                        Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
            }
            self.check_removals(out);
        }
    }

    /// What is checked of committed entry `c` before it is applied; its index and
    /// fingerprint, and what a sweep's check needs.
    fn before_apply(
        &self,
        c: &Committed,
        out: &mut Out,
    ) -> (u64, u64, Option<crate::invariants::clock::Before>) {
        let mut before = None;
        if let (Committed::Command { entry: Ok(e), .. }, Some(run)) = (c, &self.run) {
            run.state.read(|s| {
                refused_changes_nothing(s, e, out);
                let back = crate::invariants::clock::went_back(self.id, c.index(), s, e);
                out.violations.extend(back);
                before = crate::invariants::clock::before(s, e);
            });
        }
        (c.index(), fingerprint(c), before)
    }

    /// No good copy of a blob the state records, or a live image needs, is removed.
    pub fn check_removals(&mut self, out: &mut Out) {
        let Some(run) = &self.run else { return };
        for (d, bytes) in self.disk.blobs.take_removed() {
            if Digest::of(&bytes) == d {
                run.state
                    .read(|s| crate::invariants::gc::check_removal(self.id, s, &[d], out));
            }
        }
    }

    /// Blobs this node holds a file of.
    pub fn files(&self) -> BTreeSet<Digest> {
        self.disk.blobs.digests()
    }
}

/// The result of a step of the node, which never waits on the simulated disk.
pub(crate) fn done<T>(f: impl std::future::Future<Output = T>) -> T {
    f.now_or_never().expect("the simulated disk never waits")
}

/// A refused command must change nothing (`site-state`'s promise, checked on the way).
fn refused_changes_nothing(state: &State, entry: &Entry, out: &mut Out) {
    if matches!(entry.cmd, Command::Sweep { .. }) {
        return; // a sweep is never refused; cloning for it is wasted
    }
    let mut probe = state.clone();
    if probe.apply(entry).is_err() && probe != *state {
        out.violations.push(format!(
            "refused command changed the state: {:?}",
            entry.cmd
        ));
    }
}

/// What identifies an applied entry.
pub fn fingerprint(c: &Committed) -> u64 {
    let text = match c {
        Committed::Empty { .. } => return 0,
        Committed::Command { entry, .. } => format!("{entry:?}"),
        Committed::Members { change, .. } => format!("{change:?}"),
    };
    // FNV-1a.
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
