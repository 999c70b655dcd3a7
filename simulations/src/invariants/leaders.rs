//! At most one leader per term.

use crate::oracle::Oracle;

/// Node `node` leads in `term`: no other node may have led in it.
pub fn check(oracle: &mut Oracle, node: u64, term: u64) -> Option<String> {
    let first = *oracle.leaders.entry(term).or_insert(node);
    (first != node).then(|| format!("two leaders in term {term}: nodes {first} and {node}"))
}
