//! What clients were told: the oracle every invariant checks the nodes against.

use site_core::Digest;
use site_state::ImageRef;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Oracle {
    /// Entries acknowledged to a client: index -> fingerprint.
    pub acked: BTreeMap<u64, u64>,
    /// The entry every node applied at each index (the first node to apply it sets it).
    pub applied: BTreeMap<u64, u64>,
    /// Blobs acknowledged (recorded), with their bytes.
    pub blobs: BTreeMap<Digest, Vec<u8>>,
    /// Images acknowledged (their manifest stored).
    pub images: Vec<ImageRef>,
    /// The leader of each term.
    pub leaders: BTreeMap<u64, u64>,
    /// Each log time a leader stamped: the earliest and latest real time it was stamped
    /// at (`invariants/clock.rs`).
    pub stamps: BTreeMap<u64, (u64, u64)>,
}
