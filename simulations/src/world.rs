//! One simulated run: nodes, network, clock and clients, all drawn from one seed. Events
//! (ticks, messages, client operations, faults) are taken in time order (ties in the
//! order they were scheduled); the invariants are checked after every one.

use crate::clock::{NodeClock, SimClock};
use crate::invariants;
use crate::msg::{Out, Payload};
use crate::net::Net;
use crate::node::Node;
use crate::oracle::Oracle;
use crate::workload::Op;
use site_core::Digest;
use site_replica::Rng;
use std::collections::BTreeMap;

/// Milliseconds between a node's ticks (before its drift).
const TICK_MS: u64 = 100;
/// How long clients and faults act.
pub const ACTIVE_MS: u64 = 30_000;
/// How long the nodes have to converge once the faults stop.
const HEAL_MS: u64 = 90_000;

pub enum Ev {
    Tick(u64),
    Deliver {
        from: u64,
        to: u64,
        payload: Payload,
    },
    Op(Op),
    /// A client stops waiting for request `req`.
    Timeout(u64),
    Restart(u64),
    Heal,
    DiskFixed(u64),
    Scrub(u64),
    /// Node `.0`'s wall clock is set `.1` ms forward (backward: negative).
    ClockJump(u64, i64),
}

pub struct World {
    pub now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    pub nodes: BTreeMap<u64, Node>,
    pub rng: Rng,
    pub net: Net,
    pub oracle: Oracle,
    /// What happened, for replaying a seed.
    pub trace: Vec<String>,
    pub verbose: bool,
    pub violations: Vec<String>,
    pub clients: crate::workload::Clients,
    /// Node ids wiped and not yet caught up again.
    pub damaged: std::collections::BTreeSet<u64>,
    /// When each node was last damaged (a wiped disk, a flipped bit, a removal).
    pub damaged_at: BTreeMap<u64, u64>,
    /// Copies a bit flip damaged since their node's last scrub pass.
    pub rotten: std::collections::BTreeSet<(u64, Digest)>,
    seed: u64,
    /// The nodes' clocks and their jumps, drawn apart from the rest of the run.
    clocks: Rng,
    /// The real time, as the nodes' clocks read it.
    real: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl World {
    pub fn new(seed: u64, verbose: bool) -> World {
        let mut rng = Rng::new(seed);
        let n = [1, 3, 3, 3, 5, 5, 7][rng.below(7) as usize];
        let voters: Vec<u64> = (1..=n).collect();
        let net = Net::new(&mut rng);
        let mut w = World {
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: BTreeMap::new(),
            rng,
            net,
            oracle: Oracle::default(),
            trace: Vec::new(),
            verbose,
            violations: Vec::new(),
            clients: Default::default(),
            damaged: Default::default(),
            damaged_at: Default::default(),
            rotten: Default::default(),
            seed,
            clocks: Rng::new(seed ^ 0x0c10_c0c1_0c00_0000),
            real: Default::default(),
        };
        w.note(format!(
            "seed {seed}: {n} nodes, loss {}, duplication {}, delay 1..{} ms",
            w.net.loss, w.net.dup, w.net.max_delay
        ));
        for id in voters.clone() {
            w.add_node(id, voters.clone());
        }
        for _ in 0..w.clocks.below(4) {
            let at = w.clocks.below(ACTIVE_MS);
            let id = 1 + w.clocks.below(n + 2);
            let by = NodeClock::draw_jump(&mut w.clocks);
            w.at(at, Ev::ClockJump(id, by));
        }
        w
    }

    pub fn add_node(&mut self, id: u64, founding: Vec<u64>) {
        let clock = NodeClock::draw(&mut self.clocks);
        self.note(format!("node {id}'s clock: {clock:?}"));
        let mut node = Node::new(id, founding, SimClock::new(clock, self.real.clone()));
        let seed = self.seed ^ (id << 48) ^ self.now;
        if let Err(e) = node.start(seed) {
            self.violations.push(format!("node {id} cannot start: {e}"));
        }
        self.nodes.insert(id, node);
        let first = self.rng.below(TICK_MS);
        self.at(first, Ev::Tick(id));
        let scrub = 1_000 + self.rng.below(4_000);
        self.at(scrub, Ev::Scrub(id));
    }

    /// Node `id` is damaged now: it loses what it held until it heals.
    pub fn damage(&mut self, id: u64) {
        self.damaged.insert(id);
        self.damaged_at.insert(id, self.now);
    }

    fn set_now(&mut self, t: u64) {
        self.now = t;
        self.real.store(t, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn note(&mut self, line: String) {
        if self.verbose {
            println!("{:>7} ms  {line}", self.now);
        }
        self.trace.push(format!("{:>7} ms  {line}", self.now));
    }

    /// Schedules `ev` `after` milliseconds from now.
    pub fn at(&mut self, after: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), ev);
    }

    /// Runs the seed: clients and faults for [`ACTIVE_MS`], then the nodes converge.
    pub fn run(mut self) -> (Vec<String>, Vec<String>) {
        crate::workload::plan(&mut self);
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > ACTIVE_MS {
                self.queue.insert((t, 0), ev);
                break;
            }
            self.set_now(t);
            self.handle(ev);
        }
        self.heal();
        (self.violations, self.trace)
    }

    fn heal(&mut self) {
        self.note("faults stop; the site heals".into());
        self.net.heal();
        self.net.loss = 0.0;
        self.net.dup = 0.0;
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let n = self.nodes.get_mut(&id).expect("node");
            n.set_disk_full(false);
            if !n.up() && !n.removed {
                self.restart(id);
            }
        }
        let end = self.now + HEAL_MS;
        let mut next_check = self.now;
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > end {
                break;
            }
            self.set_now(t);
            if matches!(ev, Ev::Op(_)) {
                continue;
            }
            self.handle(ev);
            if t >= next_check {
                next_check = t + 1_000;
                self.settle_members();
                if self.converged().is_none() {
                    break;
                }
            }
        }
        if self.verbose {
            for n in self.nodes.values() {
                let status = n.run.as_ref().map(|r| r.driver.engine().status());
                println!("node {}: removed {}, {status:?}", n.id, n.removed);
            }
        }
        let site: Vec<&Node> = self.nodes.values().filter(|n| !n.removed).collect();
        if let Some(why) = invariants::convergence::pending(&site) {
            self.violations.push(format!(
                "no convergence {} s after the faults stopped: {why}",
                HEAL_MS / 1000
            ));
        }
        self.violations
            .extend(invariants::convergence::final_check(&site, &self.oracle));
    }

    /// Nodes the leader's configuration no longer (or never) counts are out of it: a
    /// removal or a join whose answer the client never saw.
    fn settle_members(&mut self) {
        let Some(voters) = self
            .nodes
            .values()
            .filter_map(|n| n.run.as_ref())
            .filter(|r| r.driver.engine().is_leader())
            .max_by_key(|r| r.driver.engine().status().term)
            .map(|r| r.driver.engine().voters())
        else {
            return;
        };
        for n in self.nodes.values_mut() {
            if !voters.contains(&n.id) && !n.removed {
                n.removed = true;
                n.crash();
            }
        }
    }

    fn converged(&self) -> Option<String> {
        let site: Vec<&Node> = self.nodes.values().filter(|n| !n.removed).collect();
        invariants::convergence::pending(&site)
    }

    pub fn restart(&mut self, id: u64) {
        let seed = self.rng.next_u64();
        let n = self.nodes.get_mut(&id).expect("node");
        if n.up() || n.removed {
            return;
        }
        let full = n.disk_full;
        match n.start(seed) {
            Ok(()) => self.note(format!("node {id} starts")),
            // As a node does: it stops, and starts again once the disk has room.
            Err(e) if full => {
                n.crash();
                self.note(format!("node {id} cannot start on a full disk: {e}"))
            }
            Err(e) => self
                .violations
                .push(format!("node {id} cannot restart: {e}")),
        }
    }

    fn handle(&mut self, ev: Ev) {
        let mut out = Out::default();
        match ev {
            Ev::Tick(id) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.tick(&mut out);
                    let drift = TICK_MS - 10 + self.rng.below(21);
                    self.at(drift, Ev::Tick(id));
                }
            }
            Ev::Deliver { from, to, payload } => {
                if self.verbose {
                    self.note(format!("{from} -> {to} {}", payload.name()));
                }
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.receive(from, payload, &mut out);
                }
            }
            Ev::Op(op) => crate::workload::start(self, op, &mut out),
            Ev::Timeout(req) => crate::workload::timeout(self, req),
            Ev::Restart(id) => self.restart(id),
            Ev::Heal => {
                self.note("partition heals".into());
                self.net.heal();
            }
            Ev::DiskFixed(id) => {
                self.note(format!("node {id}: disk has room again"));
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.set_disk_full(false);
                }
                self.restart(id);
            }
            Ev::Scrub(id) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    // The scrub checks the copies of the blobs the state records.
                    let (checked, bad) = n.scrub(&mut out);
                    self.rotten
                        .retain(|(node, d)| *node != id || !checked.contains(d));
                    if bad > 0 {
                        self.note(format!("node {id}: scrub found {bad} corrupt copies"));
                    }
                }
                self.at(5_000, Ev::Scrub(id));
            }
            Ev::ClockJump(id, by) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.clock.jump(by);
                    self.note(format!("node {id}'s wall clock jumps {by} ms"));
                }
            }
        }
        self.settle(out);
        self.check();
    }

    pub fn settle_out(&mut self, out: Out) {
        self.settle(out);
    }

    /// Sends what a step sent, answers clients, records what nodes applied.
    fn settle(&mut self, out: Out) {
        for (from, to, payload) in out.sends {
            for t in self.net.arrivals(from, to, self.now, &mut self.rng) {
                let payload = payload.clone();
                self.at(t - self.now, Ev::Deliver { from, to, payload });
            }
        }
        for (log, real) in out.stamps {
            invariants::clock::stamped(&mut self.oracle, log, real);
        }
        for (node, ended) in &out.expired {
            if let Some(v) = invariants::clock::check(&self.oracle, *node, ended) {
                self.violations.push(v);
            }
        }
        for (node, d, voters, since) in &out.held {
            if let Some(v) = invariants::durability::held(self, *node, d, voters, *since) {
                self.violations.push(v);
            }
        }
        for (node, index, fp) in out.applied {
            if let Some(v) = invariants::durability::applied(&mut self.oracle, node, index, fp) {
                self.violations.push(v);
            }
        }
        for (req, answer) in out.answers {
            crate::workload::answered(self, req, answer);
        }
        if let Some(why) = out.fatal {
            self.note(why);
        }
        self.violations.extend(out.violations);
    }

    /// The invariants checked after every step.
    fn check(&mut self) {
        let mut found = Vec::new();
        for n in self.nodes.values() {
            let Some(run) = &n.run else { continue };
            if run.driver.engine().is_leader() {
                let term = run.driver.engine().status().term;
                if let Some(v) = invariants::leaders::check(&mut self.oracle, n.id, term) {
                    found.push(v);
                }
            }
        }
        self.violations.extend(found);
        if self.damaged.is_empty() {
            return;
        }
        // Healed: the whole log, applied as far as any node's, and a good copy of every
        // blob the state records.
        // As far as any node has applied, now or before a restart (a node restarted on
        // an old commit index learns the rest from a leader).
        let top = self
            .nodes
            .values()
            .filter_map(|n| n.run.as_ref().map(|r| r.driver.engine().status().applied))
            .chain(self.oracle.applied.keys().next_back().copied())
            .max()
            .unwrap_or(0);
        let whole = |n: &Node| {
            n.run.as_ref().is_some_and(|r| {
                !r.driver.engine().catching_up()
                    && r.driver.engine().status().applied >= top
                    && r.missing.count() == 0
                    && r.state
                        .read(|s| s.blobs().all(|(d, _)| n.disk.blobs.has(d)))
            }) && n.files_good()
        };
        // A removed node's loss is made good once every other node holds every blob.
        let site_whole = || self.nodes.values().filter(|n| !n.removed).all(whole);
        let healed: Vec<u64> = self
            .damaged
            .iter()
            .copied()
            .filter(|id| {
                let n = &self.nodes[id];
                if n.removed {
                    site_whole()
                } else {
                    whole(n) && !crate::workload::removing(self, *id)
                }
            })
            .collect();
        for id in healed {
            self.damaged.remove(&id);
        }
    }
}
