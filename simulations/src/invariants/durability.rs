//! Nothing acknowledged is lost while a majority of nodes lives: every node applies the
//! same entry at each index (the one a client was told of, if one was), and every blob
//! a client was told is recorded keeps a good copy somewhere while the state holds it.
//! Before a blob is recorded, a majority of the voters hold a durable good copy of it:
//! when a node's majority hold says so, a crash of every node would leave that many.

use crate::oracle::Oracle;
use crate::world::World;
use site_core::Digest;

/// Node `node`'s majority hold of blob `d`, begun at real time `since` when `voters`
/// were the site's voters, just ended well: a crash of every node now must leave a good
/// copy on a majority of them (a node damaged since, by a wiped disk or a flipped bit,
/// counts as holding one: that loss is the premise's).
pub fn held(w: &World, node: u64, d: &Digest, voters: &[u64], since: u64) -> Option<String> {
    let needed = voters.len() / 2 + 1;
    let holding = voters
        .iter()
        .filter(|v| {
            w.damaged.contains(v)
                || w.damaged_at.get(v).is_some_and(|at| *at >= since)
                || w.nodes.get(v).is_some_and(|n| n.disk.blobs.durable(d))
        })
        .count();
    (holding < needed).then(|| {
        format!(
            "node {node}'s majority hold of {d} ended with durable copies on {holding} of {} voters",
            voters.len()
        )
    })
}

/// Node `node` applied the entry with fingerprint `fp` at `index`.
pub fn applied(oracle: &mut Oracle, node: u64, index: u64, fp: u64) -> Option<String> {
    let first = *oracle.applied.entry(index).or_insert(fp);
    if first != fp {
        return Some(format!(
            "node {node} applied another entry at index {index} than the site had ({fp:x} != {first:x})"
        ));
    }
    match oracle.acked.get(&index) {
        Some(acked) if *acked != fp => Some(format!(
            "acknowledged entry at index {index} lost: node {node} applied {fp:x} there"
        )),
        _ => None,
    }
}

/// A client was told that the entry `fp` was applied at `index`.
pub fn acked(oracle: &mut Oracle, index: u64, fp: u64) -> Option<String> {
    if fp == 0 {
        return None;
    }
    oracle.acked.insert(index, fp);
    match oracle.applied.get(&index) {
        Some(seen) if *seen != fp => Some(format!(
            "a client was told of entry {fp:x} at index {index}, but the site applied {seen:x} there"
        )),
        _ => None,
    }
}
