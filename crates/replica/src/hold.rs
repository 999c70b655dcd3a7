//! The majority hold: before a new blob is recorded, the node that received it has a
//! majority of the voters hold a verified, durable copy (its own counts while it is a
//! voter). Only as many peers as the majority needs are asked at once; another is asked
//! when one fails. [`Hold`] is that arithmetic; the caller makes the calls.

/// A majority of `voters` nodes.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// How many peers must hold a blob that node `me` holds before it is recorded.
pub fn needed(voters: &[u64], me: u64) -> usize {
    if cfg!(feature = "bug-ack-before-hold") {
        return 0;
    }
    majority(voters.len()) - usize::from(voters.contains(&me))
}

/// The nodes other than `me` in the order to ask them: `first`, then the leader, then the
/// other voters.
pub fn peer_order(leader: u64, voters: &[u64], me: u64, first: Option<u64>) -> Vec<u64> {
    let mut order: Vec<u64> = first.into_iter().collect();
    order.push(leader);
    order.extend(voters);
    let mut seen = std::collections::BTreeSet::new();
    order.retain(|p| *p != 0 && *p != me && seen.insert(*p));
    order
}

/// The nodes other than `me` to copy a recorded blob from, in order: `first`, then the
/// voters other than the leader, then the leader. The leader receives most deliveries
/// and serves the copies of their majority holds; a node that fetches a blob after it
/// was recorded copies it from another holder when there is one, so that the leader
/// does not serve every copy (on a site of three, it serves one instead of two).
pub fn fetch_order(leader: u64, voters: &[u64], me: u64, first: Option<u64>) -> Vec<u64> {
    let mut order: Vec<u64> = first.into_iter().collect();
    order.extend(voters.iter().filter(|v| **v != leader));
    order.push(leader);
    let mut seen = std::collections::BTreeSet::new();
    order.retain(|p| *p != 0 && *p != me && seen.insert(*p));
    order
}

/// One majority hold in progress.
#[derive(Debug, Clone)]
pub struct Hold {
    /// Peers not asked yet, in order.
    waiting: std::collections::VecDeque<u64>,
    needed: usize,
    held: usize,
    /// Peers asked whose answer has not come yet: a second answer from a peer (a
    /// message delivered twice) or one from a peer never asked counts for nothing.
    asking: std::collections::BTreeSet<u64>,
    voters: usize,
    errors: Vec<String>,
}

/// What to do next in a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Ask these peers (each to fetch and hold the blob).
    Ask(Vec<u64>),
    /// Wait for the answers of the peers asked.
    Wait,
    /// A majority holds it: record it.
    Held,
    /// A majority cannot be had now; the message says how far it got.
    Failed(String),
}

impl Hold {
    /// A hold by node `me` among `voters`, whose leader is `leader` (0: none). Peers in
    /// `unreachable` (not heard from lately) are asked only after every other.
    pub fn new(me: u64, voters: &[u64], leader: u64, unreachable: &[u64]) -> Hold {
        let (reachable, silent): (Vec<u64>, Vec<u64>) = peer_order(leader, voters, me, None)
            .into_iter()
            .filter(|p| voters.contains(p))
            .partition(|p| !unreachable.contains(p));
        let order = reachable.into_iter().chain(silent).collect();
        Hold {
            waiting: order,
            needed: needed(voters, me),
            held: 0,
            asking: Default::default(),
            voters: voters.len(),
            errors: Vec::new(),
        }
    }

    /// The first peers to ask (as many as the majority needs), or `Held` when none are.
    pub fn start(&mut self) -> Next {
        if self.needed == 0 {
            return Next::Held;
        }
        self.ask(self.needed)
    }

    fn ask(&mut self, n: usize) -> Next {
        let asked: Vec<u64> = (0..n).filter_map(|_| self.waiting.pop_front()).collect();
        self.asking.extend(asked.iter().copied());
        if asked.is_empty() {
            return self.settle();
        }
        Next::Ask(asked)
    }

    /// Peer `peer` holds the blob now.
    pub fn held(&mut self, peer: u64) -> Next {
        if !self.asking.remove(&peer) {
            return Next::Wait;
        }
        self.held += 1;
        if self.held >= self.needed {
            return Next::Held;
        }
        Next::Wait
    }

    /// Peer `peer` could not hold the blob: the next peer is asked.
    pub fn failed(&mut self, peer: u64, error: &str) -> Next {
        if !self.asking.remove(&peer) {
            return Next::Wait;
        }
        self.errors.push(format!("node {peer}: {error}"));
        self.ask(1)
    }

    fn settle(&self) -> Next {
        if self.held >= self.needed {
            Next::Held
        } else if !self.asking.is_empty() {
            Next::Wait
        } else {
            let majority = majority(self.voters);
            Next::Failed(format!(
                "durable on {} of {} nodes, a majority needs {majority} ({})",
                self.held + majority - self.needed,
                self.voters,
                self.errors.join("; ")
            ))
        }
    }
}

#[cfg(all(test, not(feature = "bug-ack-before-hold")))]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!(
            [1, 2, 3, 4, 5, 7].map(majority),
            [1, 2, 2, 3, 3, 4],
            "n / 2 + 1"
        );
        assert_eq!(needed(&[1], 1), 0, "a node alone holds it itself");
        assert_eq!(needed(&[1, 2, 3], 1), 1);
        assert_eq!(needed(&[1, 2, 3, 4, 5], 1), 2);
        assert_eq!(
            needed(&[1, 2, 3], 9),
            2,
            "a removed node's copy does not count"
        );
    }

    #[test]
    fn peers_in_order_first_leader_then_voters() {
        assert_eq!(peer_order(3, &[1, 2, 3], 1, None), vec![3, 2]);
        assert_eq!(peer_order(0, &[1, 2, 3], 1, Some(2)), vec![2, 3]);
        assert_eq!(peer_order(1, &[1, 2, 3], 1, None), vec![2, 3]);
    }

    #[test]
    fn fetches_ask_the_leader_last() {
        assert_eq!(fetch_order(1, &[1, 2, 3], 3, None), vec![2, 1]);
        assert_eq!(fetch_order(1, &[1, 2, 3], 3, Some(1)), vec![1, 2]);
        assert_eq!(fetch_order(0, &[1, 2, 3], 3, None), vec![1, 2]);
        assert_eq!(fetch_order(2, &[1, 2, 3, 4, 5], 1, None), vec![3, 4, 5, 2]);
    }

    #[test]
    fn an_answer_delivered_twice_or_from_a_peer_never_asked_counts_for_nothing() {
        let mut h = Hold::new(1, &[1, 2, 3, 4, 5], 2, &[]);
        assert_eq!(h.start(), Next::Ask(vec![2, 3]));
        assert_eq!(h.held(2), Next::Wait);
        assert_eq!(h.held(2), Next::Wait, "one copy on node 2, not two");
        assert_eq!(h.held(5), Next::Wait, "node 5 was not asked");
        assert_eq!(h.failed(2, "late"), Next::Wait);
        assert_eq!(h.held(3), Next::Held);
    }

    #[test]
    fn a_failed_peer_is_replaced_by_the_next_until_none_is_left() {
        let mut h = Hold::new(1, &[1, 2, 3, 4, 5], 4, &[]);
        assert_eq!(h.start(), Next::Ask(vec![4, 2]));
        assert_eq!(h.failed(4, "down"), Next::Ask(vec![3]));
        assert_eq!(h.held(2), Next::Wait);
        assert_eq!(h.failed(3, "disk full"), Next::Ask(vec![5]));
        assert_eq!(h.held(5), Next::Held);

        let mut h = Hold::new(1, &[1, 2, 3], 0, &[]);
        assert_eq!(h.start(), Next::Ask(vec![2]));
        assert_eq!(h.failed(2, "down"), Next::Ask(vec![3]));
        match h.failed(3, "down") {
            Next::Failed(m) => assert!(
                m.starts_with(
                    "durable on 1 of 3 nodes, a majority needs 2 (node 2: down; node 3: down)"
                ),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(Hold::new(1, &[1], 1, &[]).start(), Next::Held);
    }

    #[test]
    fn peers_not_heard_from_are_asked_last() {
        let mut h = Hold::new(1, &[1, 2, 3, 4, 5], 2, &[2, 3]);
        assert_eq!(h.start(), Next::Ask(vec![4, 5]));
        assert_eq!(h.failed(4, "down"), Next::Ask(vec![2]));
    }
}
