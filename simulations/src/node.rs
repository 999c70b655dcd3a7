//! One simulated node: the replication core ([`Engine`], [`Applier`]) over the node's
//! own Raft log (`site-store`'s `RaftLog`) on a simulated disk (`disk.rs`), with the node's side of proposals carried out as the real node does
//! (`site-store`'s `raft_driver.rs`). Blob holds, fetches, reads and scrubs are in
//! `blobs.rs`.

use crate::disk::Disk;
use crate::msg::{Answer, Out, Payload};
use futures_util::FutureExt;
use site_core::Digest;
use site_replica::missing::{Backoff, Missing};
use site_replica::{
    Applied, Applier, Ask, Committed, Effect, Engine, LogClock, LogEffect, Refusal, Settings,
};
use site_state::{Command, Entry, State};
use site_store::raft_log::RaftLog;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Ticks of 100 ms before an election.
const ELECTION_TICKS: usize = 10;
/// Entries between state snapshots: small, so that snapshots and compaction happen.
const SNAPSHOT_EVERY: u64 = 24;

/// Who waits for a proposal.
pub enum Waiter {
    Client(u64),
    Remote { from: u64, req: u64 },
}

/// A node that is up.
pub struct Run {
    pub engine: Engine<RaftLog>,
    pub log: RaftLog,
    pub applier: Applier,
    pub state: State,
    pub missing: Missing,
    pub backoff: Backoff,
    pub next_round: u64,
    /// Fetches of the current replication round: request -> (digest, sent at).
    pub fetching: BTreeMap<u64, (Digest, u64)>,
    pub round_failed: usize,
    pub waiting: BTreeMap<u64, Waiter>,
    pub holds: BTreeMap<u64, crate::blobs::HoldJob>,
    pub next_id: u64,
    /// Copies checked against their digest since this start (written, scrubbed or read
    /// whole): their reads are not hashed (`verify_reads = "first"`).
    pub checked: BTreeSet<Digest>,
    /// The log's clock as this node reads it (`site_replica::LogClock`).
    pub log_clock: LogClock,
    /// Commands asked of this node as a leader not yet settled (`Engine::settled`),
    /// proposed once it is (or no longer leads).
    pub held: Vec<(Ask, Waiter)>,
}

pub struct Node {
    pub id: u64,
    /// Its wall and monotonic clocks.
    pub clock: crate::clock::NodeClock,
    pub disk: Rc<RefCell<Disk>>,
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
}

impl Node {
    pub fn new(id: u64, founding: Vec<u64>, clock: crate::clock::NodeClock) -> Node {
        Node {
            id,
            clock,
            disk: Default::default(),
            run: None,
            founding,
            disk_full: false,
            removed: false,
            forwards_taken: BTreeSet::new(),
        }
    }

    pub fn up(&self) -> bool {
        self.run.is_some()
    }

    /// Starts the node from what its disk holds, at real time `now`, as the node opens
    /// its log.
    pub fn start(&mut self, seed: u64, now: u64) -> Result<(), String> {
        let disk = self.disk.borrow().log.clone();
        let log = RaftLog::open(disk).map_err(|e| e.to_string())?;
        let empty = serde_json::to_vec(&State::default()).expect("state serialises");
        log.initialize(&self.founding, &empty)
            .map_err(|e| e.to_string())?;
        log.mark_catching_up_if_empty().map_err(|e| e.to_string())?;
        let (state, applied) = match log.snapshot_data().map_err(|e| e.to_string())? {
            Some((meta, data)) => (State::decode(&data).map_err(|e| e.to_string())?, meta.index),
            None => (State::default(), 0),
        };
        let catching_up = log.catching_up().map_err(|e| e.to_string())?;
        let settings = Settings {
            id: self.id,
            election_ticks: ELECTION_TICKS,
            snapshot_every: SNAPSHOT_EVERY,
        };
        let alone = self.founding == [self.id];
        let engine = Engine::new(&settings, log.clone(), applied, catching_up, alone, seed)?;
        let mut missing = Missing::default();
        {
            let d = self.disk.borrow();
            missing.rescan(state.blobs().map(|(d, b)| (d, b.size)), |x| {
                d.blobs.contains_key(x)
            });
        }
        let mut log_clock = LogClock::new();
        log_clock.observe(state.time(), self.clock.mono(now));
        self.run = Some(Run {
            engine,
            log,
            applier: Applier::new(self.id),
            state,
            missing,
            backoff: Backoff::default(),
            next_round: 0,
            fetching: BTreeMap::new(),
            round_failed: 0,
            waiting: BTreeMap::new(),
            holds: BTreeMap::new(),
            next_id: 1,
            checked: BTreeSet::new(),
            log_clock,
            held: Vec::new(),
        });
        Ok(())
    }

    /// A crash: what was not synced is gone, and so is everything in memory.
    pub fn crash(&mut self) {
        self.run = None;
        self.disk.borrow().log.crash();
    }

    /// A crash that also loses the whole data directory.
    pub fn wipe(&mut self) {
        self.run = None;
        *self.disk.borrow_mut() = Disk::default();
        self.disk.borrow().log.set_full(self.disk_full);
    }

    /// The disk fills (writes fail) or has room again.
    pub fn set_disk_full(&mut self, full: bool) {
        self.disk_full = full;
        self.disk.borrow().log.set_full(full);
    }

    pub fn tick(&mut self, now: u64, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        let effects = run.engine.tick(now);
        self.execute(effects, now, out);
        self.drive(now, out);
        self.replicate(now, out);
    }

    /// Runs the Ready procedure until nothing is ready, proposing the commands held for
    /// a leader once it is settled.
    pub fn drive(&mut self, now: u64, out: &mut Out) {
        while let Some(run) = &mut self.run {
            let Some(mut cycle) = run.engine.ready() else {
                let settled = run.engine.settled() || !run.engine.is_leader();
                if run.held.is_empty() || !settled {
                    return;
                }
                for (ask, waiter) in std::mem::take(&mut run.held) {
                    self.propose(ask, waiter, now, out);
                }
                continue;
            };
            let effects = std::mem::take(&mut cycle.effects);
            self.execute(effects, now, out);
            let Some(run) = &mut self.run else { return };
            let effects = run.engine.advance(cycle);
            self.execute(effects, now, out);
        }
    }

    pub fn receive(&mut self, from: u64, payload: Payload, now: u64, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        match payload {
            Payload::Raft(m) => {
                let effects = run.engine.step(*m, now);
                self.execute(effects, now, out);
            }
            Payload::Forward { req, ask } => {
                if !self.forwards_taken.insert((from, req)) {
                    return;
                }
                let waiter = Waiter::Remote { from, req };
                self.propose(ask, waiter, now, out);
            }
            Payload::ForwardAnswer { req, answer } => out.answers.push((req, answer)),
            other => self.receive_blob_message(from, other, now, out),
        }
        self.drive(now, out);
    }

    /// A client's command, asked of this node at `now`.
    pub fn submit(&mut self, req: u64, ask: Ask, now: u64, out: &mut Out) {
        self.propose(ask, Waiter::Client(req), now, out);
        self.drive(now, out);
    }

    fn propose(&mut self, mut ask: Ask, waiter: Waiter, now: u64, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        // The log has one clock: the leader's reading of the log's time, as the node's
        // driver stamps it.
        if let Ask::Command(entry) = &mut ask {
            if run.engine.is_leader() && !run.engine.settled() {
                run.held.push((ask, waiter));
                return;
            }
            if run.engine.is_leader() {
                let (mono, wall) = (self.clock.mono(now), self.clock.wall(now));
                entry.now = run.log_clock.stamp(mono, wall);
                out.stamps.push((entry.now, now));
            }
        }
        let applied = run.engine.status().applied;
        let answer: Answer = match run.engine.propose(&ask) {
            Ok(id) => {
                run.waiting.insert(id, waiter);
                return;
            }
            Err(Refusal::NotLeader(leader)) if leader != 0 && leader != self.id => {
                if let Waiter::Client(req) = waiter {
                    out.sends
                        .push((self.id, leader, Payload::Forward { req, ask }));
                    return;
                }
                Err(format!("not the leader; node {leader} is"))
            }
            Err(Refusal::NotLeader(_)) => Err("no leader".into()),
            Err(Refusal::Unchanged) => Ok((Ok(Default::default()), applied, 0)),
            Err(Refusal::Moving(to)) => Err(format!("leadership moves to node {to} first")),
            Err(Refusal::Refused(e)) => Ok((Err(e), applied, 0)),
            Err(Refusal::Dropped(e)) => Err(e),
        };
        self.answer(waiter, answer, out);
    }

    fn answer(&self, waiter: Waiter, answer: Answer, out: &mut Out) {
        match waiter {
            Waiter::Client(req) => out.answers.push((req, answer)),
            Waiter::Remote { from, req } => {
                out.sends
                    .push((self.id, from, Payload::ForwardAnswer { req, answer }))
            }
        }
    }

    /// A disk failure: the node stops (and is started again once the disk works).
    fn fail(&mut self, what: &str, out: &mut Out) {
        out.fatal = Some(format!("node {}: {what} failed", self.id));
        self.crash();
    }

    /// Carries out the core's effects, in order, as the node's driver does.
    pub fn execute(&mut self, effects: Vec<Effect>, now: u64, out: &mut Out) {
        for effect in effects {
            if self.run.is_none() {
                return;
            }
            match effect {
                Effect::Send { to, messages } => {
                    for m in messages {
                        out.sends.push((self.id, to, Payload::Raft(Box::new(m))));
                    }
                }
                Effect::Log(effect) => {
                    if let Err(e) = self.on_log(effect, now) {
                        return self.fail(&format!("a log write ({e})"), out);
                    }
                }
                Effect::Apply(c) => self.apply(c, now, out),
                Effect::Publish(_) => {}
            }
        }
    }

    /// Carries out an effect on the log, as the node's driver does (a snapshot's state
    /// comes from the state as applied: here, at once).
    fn on_log(&mut self, effect: LogEffect, now: u64) -> site_store::Result<()> {
        let Some(run) = &mut self.run else {
            return Ok(());
        };
        let log = &run.log;
        match effect {
            LogEffect::Persist {
                entries,
                hard_state,
            } => log.persist(&entries, hard_state.as_ref())?,
            LogEffect::Sync => done(log.sync())?,
            LogEffect::SetCommit(c) => log.set_commit(c)?,
            LogEffect::SetConfState(cs) => log.set_conf_state(&cs)?,
            LogEffect::InstallSnapshot(s) => {
                done(log.install_snapshot(&s))?;
                run.state = State::decode(&s.data).unwrap_or_default();
                run.log_clock
                    .observe(run.state.time(), self.clock.mono(now));
                let d = self.disk.borrow();
                run.missing
                    .rescan(run.state.blobs().map(|(d, b)| (d, b.size)), |x| {
                        d.blobs.contains_key(x)
                    });
            }
            LogEffect::SaveSnapshot {
                index,
                term,
                conf_state,
            } => {
                let data = serde_json::to_vec(&run.state).expect("state serialises");
                done(log.save_snapshot(index, term, conf_state, data))?;
            }
            LogEffect::EndCatchUp => done(log.end_catching_up())?,
        }
        Ok(())
    }

    fn apply(&mut self, c: Committed, now: u64, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        let index = c.index();
        let fp = fingerprint(&c);
        let mut time = None;
        let mut before = None;
        if let Committed::Command { entry: Ok(e), .. } = &c {
            refused_changes_nothing(&run.state, e, out);
            time = Some(e.now);
            before = crate::invariants::clock::before(&run.state, e);
        }
        let effects = {
            let d = self.disk.borrow();
            run.applier
                .apply(&mut run.state, c, |x| d.blobs.contains_key(x))
        };
        if let Some(t) = time {
            run.log_clock.observe(t, self.clock.mono(now));
        }
        out.applied.push((self.id, index, fp));
        for effect in &effects {
            if let (Applied::Publish(site_state::Event::GcRun { report }), Some(b)) =
                (effect, &before)
            {
                let ended = crate::invariants::clock::ended(b, report);
                out.expired.extend(ended.into_iter().map(|e| (self.id, e)));
            }
        }
        for effect in effects {
            match effect {
                Applied::Answer { id, result, index } => {
                    let Some(run) = &mut self.run else { return };
                    if let Some(w) = run.waiting.remove(&id) {
                        self.answer(w, Ok((result, index, fp)), out);
                    }
                }
                other => self.carry_out(other, out),
            }
        }
    }

    fn carry_out(&mut self, effect: Applied, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        match effect {
            Applied::FetchBlob { digest, size } => run.missing.note(&digest, size),
            Applied::ForgetBlobs(ds) => run.missing.forget(&ds),
            Applied::RemoveFiles(ds) => {
                crate::invariants::gc::check_removal(self.id, &run.state, &ds, out);
                let mut d = self.disk.borrow_mut();
                for x in &ds {
                    d.blobs.remove(x);
                }
            }
            Applied::Publish(_) | Applied::SetPeer { .. } | Applied::Answer { .. } => {}
        }
    }

    /// Blobs this node holds a file of.
    pub fn files(&self) -> BTreeSet<Digest> {
        self.disk.borrow().blobs.keys().cloned().collect()
    }
}

/// The result of a write to the simulated disk, which never waits.
fn done<T>(f: impl std::future::Future<Output = T>) -> T {
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
