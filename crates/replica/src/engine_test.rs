//! The engine without sockets or files: three engines over raft-rs's in-memory storage,
//! their effects carried out by a small loop (messages delivered in order, the Ready
//! procedure run to the end, committed entries applied to `site-state`).

use crate::{Applied, Applier, Ask, Committed, Effect, Engine, LogEffect, Refusal, Settings};
use raft::eraftpb::{ConfState, Message};
use raft::storage::MemStorage;
use site_core::Digest;
use site_state::{Command, Entry, MemberChange, State, StateError};
use std::collections::{BTreeMap, VecDeque};

struct Node {
    engine: Engine<MemStorage>,
    store: MemStorage,
    applier: Applier,
    state: State,
    /// Proposal answers: id -> result.
    answers: BTreeMap<u64, Result<site_state::Outcome, StateError>>,
    /// Entries applied, in order (index, what).
    applied: Vec<(u64, String)>,
}

struct Group {
    nodes: BTreeMap<u64, Node>,
    wire: VecDeque<Message>,
    now: u64,
}

impl Group {
    fn new(ids: &[u64], seed: u64) -> Group {
        let nodes = ids
            .iter()
            .map(|&id| {
                let store =
                    MemStorage::new_with_conf_state(ConfState::from((ids.to_vec(), vec![])));
                let settings = Settings {
                    id,
                    election_ticks: 10,
                    snapshot_every: 1000,
                };
                let engine =
                    Engine::new(&settings, store.clone(), 0, false, ids == [id], seed + id)
                        .unwrap();
                let node = Node {
                    engine,
                    store,
                    applier: Applier::new(id),
                    state: State::default(),
                    answers: BTreeMap::new(),
                    applied: Vec::new(),
                };
                (id, node)
            })
            .collect();
        Group {
            nodes,
            wire: VecDeque::new(),
            now: 0,
        }
    }

    fn execute(&mut self, id: u64, effects: Vec<Effect>) {
        for e in effects {
            let n = self.nodes.get_mut(&id).unwrap();
            match e {
                Effect::Send { messages, .. } => self.wire.extend(messages),
                Effect::Log(LogEffect::Persist {
                    entries,
                    hard_state,
                }) => {
                    let mut w = n.store.wl();
                    w.append(&entries).unwrap();
                    if let Some(hs) = hard_state {
                        w.set_hardstate(hs);
                    }
                }
                Effect::Log(LogEffect::SetCommit(c)) => n.store.wl().mut_hard_state().commit = c,
                Effect::Log(LogEffect::SetConfState(cs)) => n.store.wl().set_conf_state(cs),
                Effect::Log(LogEffect::InstallSnapshot(s)) => {
                    n.store.wl().apply_snapshot(s).unwrap()
                }
                Effect::Apply(c) => {
                    let what = match &c {
                        Committed::Empty { .. } => "empty".to_owned(),
                        Committed::Command { entry, .. } => format!("{entry:?}"),
                        Committed::Members { change, .. } => format!("{change:?}"),
                    };
                    n.applied.push((c.index(), what));
                    let applied = n.applier.apply(&mut n.state, c, |_| true);
                    for a in applied {
                        if let Applied::Answer { id, result, .. } = a {
                            n.answers.insert(id, result);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs every node's Ready procedure and delivers messages until all is quiet.
    fn settle(&mut self) {
        loop {
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                while let Some(mut cycle) = self.nodes.get_mut(&id).unwrap().engine.ready() {
                    let effects = std::mem::take(&mut cycle.effects);
                    self.execute(id, effects);
                    let effects = self.nodes.get_mut(&id).unwrap().engine.advance(cycle);
                    self.execute(id, effects);
                }
            }
            let Some(m) = self.wire.pop_front() else {
                return;
            };
            let now = self.now;
            if let Some(n) = self.nodes.get_mut(&m.to) {
                let effects = n.engine.step(m.clone(), now);
                self.execute(m.to, effects);
            }
        }
    }

    fn tick(&mut self, times: usize) {
        for _ in 0..times {
            self.now += 100;
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                let now = self.now;
                let effects = self.nodes.get_mut(&id).unwrap().engine.tick(now);
                self.execute(id, effects);
            }
            self.settle();
        }
    }

    /// Restarts node `id` on its log, or on an empty one (`wiped`: its data directory
    /// lost; it starts catching up).
    fn restart(&mut self, id: u64, wiped: bool) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let n = self.nodes.get_mut(&id).unwrap();
        if wiped {
            n.store = MemStorage::new_with_conf_state(ConfState::from((ids, vec![])));
            n.state = State::default();
            n.applier = Applier::new(id);
            n.applied.clear();
        }
        let settings = Settings {
            id,
            election_ticks: 10,
            snapshot_every: 1000,
        };
        let applied = if wiped { 0 } else { n.engine.status().applied };
        n.engine = Engine::new(&settings, n.store.clone(), applied, wiped, false, 99 + id).unwrap();
    }

    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.engine.is_leader())
            .map(|(id, _)| *id)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    fn elect(&mut self) -> u64 {
        for _ in 0..100 {
            self.tick(1);
            if let Some(l) = self.leader() {
                return l;
            }
        }
        panic!("no leader after 100 ticks");
    }
}

fn add_blob(n: u8) -> Ask {
    Ask::Command(Entry {
        now: 1,
        cmd: Command::AddBlob {
            repo: None,
            digest: Digest::of(&[n]),
            size: 1,
            recorded: false,
        },
    })
}

#[test]
fn a_proposal_on_the_leader_is_applied_everywhere_and_answered_on_its_node_only() {
    let mut g = Group::new(&[1, 2, 3], 7);
    let l = g.elect();
    let id = g
        .nodes
        .get_mut(&l)
        .unwrap()
        .engine
        .propose(&add_blob(1))
        .unwrap();
    g.settle();
    g.tick(2);
    assert!(matches!(g.nodes[&l].answers.get(&id), Some(Ok(o)) if o.changed));
    let applied: Vec<_> = g.nodes.values().map(|n| n.applied.clone()).collect();
    assert!(applied.iter().all(|a| *a == applied[0]), "{applied:?}");
    assert!(applied[0]
        .iter()
        .any(|(_, w)| w.contains("add_blob") || w.contains("AddBlob")));
    for (id2, n) in &g.nodes {
        if *id2 != l {
            assert!(n.answers.is_empty(), "node {id2} answers nobody");
        }
        assert!(n.state.blob(&Digest::of(&[1])).is_some());
    }
}

#[test]
fn a_follower_refuses_a_proposal_naming_the_leader() {
    let mut g = Group::new(&[1, 2, 3], 11);
    let l = g.elect();
    let f = *g.nodes.keys().find(|id| **id != l).unwrap();
    let refusal = g.nodes.get_mut(&f).unwrap().engine.propose(&add_blob(2));
    assert_eq!(refusal, Err(Refusal::NotLeader(l)));
}

#[test]
fn a_leader_asked_to_leave_moves_leadership_first_and_the_new_leader_removes_it() {
    let mut g = Group::new(&[1, 2, 3], 5);
    let l = g.elect();
    let leave = Ask::Members(MemberChange::Remove { id: l });
    let moved = g.nodes.get_mut(&l).unwrap().engine.propose(&leave);
    let Err(Refusal::Moving(to)) = moved else {
        panic!("{moved:?}");
    };
    g.settle();
    g.tick(3);
    assert_eq!(g.leader(), Some(to), "leadership moved to node {to}");
    let id = g
        .nodes
        .get_mut(&to)
        .unwrap()
        .engine
        .propose(&leave)
        .unwrap();
    g.settle();
    g.tick(3);
    assert!(matches!(g.nodes[&to].answers.get(&id), Some(Ok(_))));
    assert!(!g.nodes[&to].engine.voters().contains(&l));
}

#[test]
fn a_change_that_leaves_too_few_whole_voters_is_refused() {
    let mut g = Group::new(&[1, 2, 3], 3);
    let l = g.elect();
    g.nodes
        .get_mut(&l)
        .unwrap()
        .engine
        .propose(&add_blob(3))
        .unwrap();
    g.settle();
    // One follower tells the leader it lost its log (the refusal of `catch_up.rs`).
    let f = *g.nodes.keys().find(|id| **id != l).unwrap();
    let mut lost = Message::default();
    lost.set_msg_type(raft::eraftpb::MessageType::MsgAppendResponse);
    lost.from = f;
    lost.to = l;
    lost.term = g.nodes[&l].engine.status().term;
    lost.reject = true;
    lost.index = u64::MAX;
    let now = g.now;
    g.nodes.get_mut(&l).unwrap().engine.step(lost, now);
    // With it catching up, a fourth voter would leave 2 whole of 4 (a majority is 3).
    let add = Ask::Members(MemberChange::Add {
        id: 4,
        address: "10.0.0.4:7000".into(),
    });
    let refused = g.nodes.get_mut(&l).unwrap().engine.propose(&add);
    assert!(
        matches!(refused, Err(Refusal::Refused(StateError::InUse(_)))),
        "{refused:?}"
    );
    // Removing the lagging node itself leaves 2 whole of 2: allowed.
    let remove = Ask::Members(MemberChange::Remove { id: f });
    assert!(g.nodes.get_mut(&l).unwrap().engine.propose(&remove).is_ok());
}

#[test]
fn one_seed_elects_the_same_way_twice() {
    let run = |seed| {
        let mut g = Group::new(&[1, 2, 3], seed);
        let l = g.elect();
        (l, g.now, g.nodes[&l].engine.status().term)
    };
    assert_eq!(run(21), run(21));
}

#[test]
fn two_whole_voters_of_four_elect_a_leader_with_the_marked_votes_of_two_catching_up() {
    let ids = [1, 2, 3, 4];
    let mut g = Group::new(&ids, 5);
    let l = g.elect();
    for n in 1..=3 {
        g.nodes
            .get_mut(&l)
            .unwrap()
            .engine
            .propose(&add_blob(n))
            .unwrap();
        g.settle();
    }
    g.tick(2);
    let others: Vec<u64> = ids.iter().copied().filter(|i| *i != l).collect();
    let (whole, wiped) = (others[0], [others[1], others[2]]);
    // Two disks lost, and the leader restarts: no node leads, two of four hold the log.
    for id in wiped {
        g.restart(id, true);
    }
    g.restart(l, false);
    assert_eq!(g.leader(), None);
    let leader = g.elect();
    assert!(
        leader == l || leader == whole,
        "node {leader} leads without the whole log"
    );
    g.tick(5);
    for id in wiped {
        let n = &g.nodes[&id];
        assert!(!n.engine.catching_up(), "node {id} caught up");
        assert!(
            n.state.blob(&Digest::of(&[3])).is_some(),
            "node {id} holds the log"
        );
    }
}

#[test]
fn followers_learn_from_heartbeats_which_voters_the_leader_does_not_hear() {
    let mut g = Group::new(&[1, 2, 3], 9);
    let l = g.elect();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != l).collect();
    let (silent, f) = (others[0], others[1]);
    // One follower goes silent (down, or its links black-holed) for 2 s.
    let gone = g.nodes.remove(&silent).unwrap();
    g.tick(20);
    assert_eq!(g.nodes[&l].engine.status().unreachable, [silent]);
    assert_eq!(
        g.nodes[&f].engine.status().unreachable,
        [silent],
        "the other follower is told"
    );
    // It comes back: the next heartbeats say so.
    g.nodes.insert(silent, gone);
    g.tick(3);
    assert!(g.nodes[&f].engine.status().unreachable.is_empty());
    assert!(g.nodes[&silent].engine.status().unreachable.is_empty());
}

#[test]
fn a_leader_is_settled_once_its_terms_first_entry_is_committed_and_handed_out() {
    let mut g = Group::new(&[1, 2, 3], 11);
    let l = g.elect();
    g.settle();
    assert!(g.nodes[&l].engine.settled());
    for (id, n) in &g.nodes {
        if *id != l {
            assert!(!n.engine.settled(), "a follower is never settled");
        }
    }
    // Restarted, it is settled only once elected again with its log replayed.
    g.restart(l, false);
    assert!(!g.nodes[&l].engine.settled());
}
