//! The simulated network: every message is delivered after a delay drawn from the seed
//! (so messages reorder), or lost, or duplicated; a partition swallows what crosses it
//! until it heals.

use site_replica::Rng;
use std::collections::BTreeSet;

/// How the network behaves in one run.
#[derive(Debug, Clone)]
pub struct Net {
    /// Chance that a message is lost.
    pub loss: f64,
    /// Chance that a message is delivered twice.
    pub dup: f64,
    /// Delays are drawn from `1..=max_delay` milliseconds.
    pub max_delay: u64,
    /// Links cut: (from, to).
    pub cut: BTreeSet<(u64, u64)>,
}

impl Net {
    pub fn new(rng: &mut Rng) -> Net {
        Net {
            loss: [0.0, 0.01, 0.05, 0.15][rng.below(4) as usize],
            dup: [0.0, 0.01, 0.05][rng.below(3) as usize],
            max_delay: [2, 20, 80][rng.below(3) as usize],
            cut: BTreeSet::new(),
        }
    }

    /// When each copy of a message sent now arrives (none: lost).
    pub fn arrivals(&self, from: u64, to: u64, now: u64, rng: &mut Rng) -> Vec<u64> {
        if from == to || self.cut.contains(&(from, to)) || rng.chance(self.loss) {
            return Vec::new();
        }
        let copies = if rng.chance(self.dup) { 2 } else { 1 };
        (0..copies)
            .map(|_| now + 1 + rng.below(self.max_delay))
            .collect()
    }

    /// Cuts every link between `side` and the other nodes.
    pub fn partition(&mut self, side: &[u64], all: &[u64]) {
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                self.cut.insert((*a, *b));
                self.cut.insert((*b, *a));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }
}
