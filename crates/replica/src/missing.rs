//! Committed blobs this node lacks the bytes of: the node was down when they were
//! recorded, its disk was wiped, it is new, it was not among the first majority, or its
//! copy was found corrupt. Each is fetched from a peer until none is missing; rounds that
//! fail are retried after a pause that doubles up to a limit.

use site_core::Digest;
use std::collections::{BTreeMap, BTreeSet};

/// First pause after a round of fetches that failed, in milliseconds.
pub const FIRST_BACKOFF_MS: u64 = 1_000;
/// Longest pause between rounds of fetches that failed, in milliseconds.
pub const MAX_BACKOFF_MS: u64 = 30_000;

/// The blobs this node lacks.
#[derive(Debug, Default, Clone)]
pub struct Missing {
    /// Committed blobs whose file this node lacks, with their sizes.
    missing: BTreeMap<Digest, u64>,
    /// Blobs whose copy here was found bad and is not yet replaced.
    corrupt: BTreeSet<Digest>,
}

impl Missing {
    /// Committed blob `d` of `size` bytes has no file here.
    pub fn note(&mut self, d: &Digest, size: u64) {
        self.missing.insert(d.clone(), size);
    }

    /// This node's copy of committed blob `d` was bad and is gone: it is missing, and its
    /// next verified copy is a repair.
    pub fn note_corrupt(&mut self, d: &Digest, size: u64) {
        self.corrupt.insert(d.clone());
        self.note(d, size);
    }

    /// `d` is here now (fetched), or no longer the site's. Returns whether it replaced a
    /// corrupt copy (a repair to report).
    pub fn found(&mut self, d: &Digest) -> bool {
        self.missing.remove(d);
        self.corrupt.remove(d)
    }

    /// Forgets `digests` (the state no longer holds them).
    pub fn forget<'a>(&mut self, digests: impl IntoIterator<Item = &'a Digest>) {
        for d in digests {
            self.missing.remove(d);
            self.corrupt.remove(d);
        }
    }

    /// Recomputes the set from the state's blobs and the files here (after a snapshot
    /// replaced the state). Returns whether any is missing.
    pub fn rescan<'a>(
        &mut self,
        blobs: impl IntoIterator<Item = (&'a Digest, u64)>,
        has_file: impl Fn(&Digest) -> bool,
    ) -> bool {
        self.missing = blobs
            .into_iter()
            .filter(|(d, _)| !has_file(d))
            .map(|(d, s)| (d.clone(), s))
            .collect();
        self.corrupt.retain(|d| self.missing.contains_key(d));
        !self.missing.is_empty()
    }

    /// How many are missing.
    pub fn len(&self) -> usize {
        self.missing.len()
    }

    /// Their bytes.
    pub fn bytes(&self) -> u64 {
        self.missing.values().sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }

    /// Whether `d` is.
    pub fn contains(&self, d: &Digest) -> bool {
        self.missing.contains_key(d)
    }

    /// The missing blobs and their sizes, in digest order: the next round of fetches.
    pub fn round(&self) -> Vec<(Digest, u64)> {
        self.missing.iter().map(|(d, s)| (d.clone(), *s)).collect()
    }
}

/// The pause between rounds of fetches.
#[derive(Debug, Clone)]
pub struct Backoff {
    next_ms: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next_ms: FIRST_BACKOFF_MS,
        }
    }
}

impl Backoff {
    /// A round ended with `failed` fetches failing: the pause before the next round
    /// (`None`: go on at once).
    pub fn after_round(&mut self, failed: usize) -> Option<u64> {
        if failed == 0 {
            self.next_ms = FIRST_BACKOFF_MS;
            return None;
        }
        let pause = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(MAX_BACKOFF_MS);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn a_corrupt_copy_fetched_again_is_a_repair_once() {
        let mut m = Missing::default();
        m.note(&d(1), 10);
        m.note_corrupt(&d(2), 20);
        assert_eq!(m.len(), 2);
        assert!(!m.found(&d(1)), "a plain fetch is no repair");
        assert!(m.found(&d(2)));
        assert!(!m.found(&d(2)));
        assert!(m.is_empty());
    }

    #[test]
    fn a_rescan_keeps_what_the_state_holds_and_the_node_lacks() {
        let mut m = Missing::default();
        m.note_corrupt(&d(9), 1);
        let (a, b) = (d(1), d(2));
        assert!(m.rescan([(&a, 1), (&b, 2)], |x| *x == a));
        assert_eq!(m.round(), vec![(b.clone(), 2)]);
        assert!(!m.found(&d(9)), "a blob the state dropped is no repair");
        m.forget([&b]);
        assert!(m.is_empty());
    }

    #[test]
    fn backoff_doubles_to_its_limit_and_resets_after_a_clean_round() {
        let mut b = Backoff::default();
        let pauses: Vec<_> = (0..7).map(|_| b.after_round(1).unwrap()).collect();
        assert_eq!(pauses, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(b.after_round(0), None);
        assert_eq!(b.after_round(3), Some(1_000));
    }
}
