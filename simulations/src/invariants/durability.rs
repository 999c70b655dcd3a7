//! Nothing acknowledged is lost while a majority of nodes lives: every node applies the
//! same entry at each index (the one a client was told of, if one was), and every blob
//! a client was told is recorded keeps a good copy somewhere while the state holds it.

use crate::oracle::Oracle;

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
