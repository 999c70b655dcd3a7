//! The leader's view of its peers: a voter it has not heard from for a while is reported
//! degraded (replication goes on while a majority answers), and restored once it answers.
//! Peers that answer recently are also the ones worth asking to hold a blob
//! (`hold.rs`).

use site_state::Event;
use std::collections::{BTreeMap, BTreeSet};

/// A peer not heard from for this long (milliseconds) is reported degraded.
pub const DEGRADED_AFTER_MS: u64 = 3_000;
/// A peer not heard from for this long (milliseconds; a leader hears from every
/// follower each heartbeat) is not waited on (`hold.rs`).
pub const UNREACHABLE_AFTER_MS: u64 = 1_000;

/// When this node last heard from each peer, and which it reported degraded.
#[derive(Debug, Default, Clone)]
pub struct Health {
    /// Milliseconds of the last message from each peer; empty while not leading.
    heard: BTreeMap<u64, u64>,
    /// Whether this node led at the last look.
    leading: bool,
    degraded: BTreeSet<u64>,
}

impl Health {
    /// A message from `peer` arrived at `now`.
    pub fn heard(&mut self, peer: u64, now: u64) {
        if self.leading {
            self.heard.insert(peer, now);
        }
    }

    /// Looks at the peers at `now`: returns the events of peers that went silent or came
    /// back. `voters` includes `me`. A node that does not lead forgets what it saw.
    pub fn look(&mut self, leading: bool, me: u64, voters: &[u64], now: u64) -> Vec<Event> {
        if !leading {
            self.leading = false;
            self.heard.clear();
            self.degraded.clear();
            return Vec::new();
        }
        if !self.leading {
            self.leading = true;
            self.heard.clear();
        }
        self.degraded.retain(|p| voters.contains(p));
        self.heard.retain(|p, _| voters.contains(p));
        let mut events = Vec::new();
        for &peer in voters.iter().filter(|p| **p != me) {
            let last = *self.heard.entry(peer).or_insert(now);
            let silent = now.saturating_sub(last);
            if silent >= DEGRADED_AFTER_MS && self.degraded.insert(peer) {
                events.push(Event::ReplicationDegraded {
                    node: peer,
                    reason: format!(
                        "no answer from node {peer} for {} s; the site goes on while a majority answers",
                        silent / 1000
                    ),
                });
            } else if silent < DEGRADED_AFTER_MS && self.degraded.remove(&peer) {
                events.push(Event::ReplicationRestored { node: peer });
            }
        }
        events
    }

    /// Voters other than `me` this node, as leader, has not heard from for `after`
    /// milliseconds at `now` (none while it does not lead).
    pub fn silent(&self, me: u64, voters: &[u64], now: u64, after: u64) -> Vec<u64> {
        if !self.leading {
            return Vec::new();
        }
        voters
            .iter()
            .copied()
            .filter(|p| *p != me)
            .filter(|p| {
                self.heard
                    .get(p)
                    .is_some_and(|last| now.saturating_sub(*last) >= after)
            })
            .collect()
    }

    /// Peers reported degraded now.
    pub fn degraded(&self) -> &BTreeSet<u64> {
        &self.degraded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_degraded_once_and_restored_when_it_answers() {
        let mut h = Health::default();
        assert!(h.look(true, 1, &[1, 2, 3], 0).is_empty());
        h.heard(2, 2_500);
        let events = h.look(true, 1, &[1, 2, 3], 3_000);
        assert!(matches!(
            events.as_slice(),
            [Event::ReplicationDegraded { node: 3, .. }]
        ));
        assert!(
            h.look(true, 1, &[1, 2, 3], 3_100).is_empty(),
            "reported once"
        );
        assert!(h.degraded().contains(&3));
        assert_eq!(
            h.silent(1, &[1, 2, 3], 3_100, UNREACHABLE_AFTER_MS),
            vec![3]
        );
        h.heard(3, 3_200);
        assert_eq!(
            h.look(true, 1, &[1, 2, 3], 3_300),
            vec![Event::ReplicationRestored { node: 3 }]
        );
    }

    #[test]
    fn a_follower_reports_nothing_and_a_new_leader_starts_afresh() {
        let mut h = Health::default();
        h.heard(2, 0);
        assert!(h.look(false, 1, &[1, 2], 10_000).is_empty());
        // Leading from 10 s on: peers count as heard from then.
        assert!(h.look(true, 1, &[1, 2], 10_000).is_empty());
        assert!(h.look(true, 1, &[1, 2], 12_999).is_empty());
        assert_eq!(h.look(true, 1, &[1, 2], 13_000).len(), 1);
    }
}

/// The mark of a heartbeat's context that carries the leader's unreachable voters
/// (raft-rs uses heartbeat contexts only for read-index requests, which this site does
/// not make).
const UNREACHABLE: &[u8] = b"unreachable:";

/// A heartbeat context that tells followers which voters the leader does not hear
/// from: only the leader hears every node, and a follower fetching a blob from one of
/// them gives up on it at once instead of waiting for its stream to stall.
pub fn encode_unreachable(peers: &[u64]) -> Vec<u8> {
    let list: Vec<String> = peers.iter().map(u64::to_string).collect();
    [UNREACHABLE, list.join(",").as_bytes()].concat()
}

/// The voters a heartbeat's context says the leader does not hear from, if it says.
pub fn decode_unreachable(context: &[u8]) -> Option<Vec<u64>> {
    let list = std::str::from_utf8(context.strip_prefix(UNREACHABLE)?).ok()?;
    Some(list.split(',').filter_map(|p| p.parse().ok()).collect())
}

#[cfg(test)]
mod unreachable_tests {
    use super::*;

    #[test]
    fn the_unreachable_list_travels_in_a_heartbeat_context() {
        for peers in [vec![], vec![2], vec![2, 5, 7]] {
            assert_eq!(decode_unreachable(&encode_unreachable(&peers)), Some(peers));
        }
        assert_eq!(decode_unreachable(b""), None);
        assert_eq!(decode_unreachable(b"a read-index request"), None);
    }
}
