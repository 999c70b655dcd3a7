//! Reference counting and garbage collection, as pure functions of the state.
//!
//! - An image (manifest) is **live** while an application or a pin references it, or it
//!   is a child of a live index, or its subject is live (signatures, SBOMs).
//! - A non-live manifest records since when it is unreferenced; a sweep deletes it once
//!   the grace period has passed (a cached one: once it has not been pulled for the cache
//!   TTL), or earlier under disk pressure, least recently used first. A live manifest is
//!   never deleted.
//! - A blob is deleted when no remaining manifest references it and no lease holds it,
//!   and either it belonged to a deleted manifest or it has been on the site for longer
//!   than the grace period (an upload whose manifest never came).

use crate::State;
use serde::{Deserialize, Serialize};
use site_core::Digest;
use std::collections::BTreeSet;

/// The rules of one sweep (see [`crate::Command::Sweep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepRules {
    /// Grace period of unreferenced images, in milliseconds.
    pub grace_ms: u64,
    /// How long an unreferenced cached image is kept after its last pull, in
    /// milliseconds.
    pub cache_ttl_ms: u64,
    /// Bytes to free beyond those rules (disk pressure), 0 for none.
    pub evict_bytes: u64,
}

/// What a sweep deletes (or, for a dry run, would delete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Entry time of the sweep (milliseconds since the Unix epoch).
    pub at: u64,
    /// Manifests deleted.
    pub manifests: Vec<Digest>,
    /// Of those, the ones deleted early because of disk pressure.
    pub evicted: Vec<Digest>,
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Bytes freed: the deleted blobs' sizes.
    pub bytes_freed: u64,
}

/// How many manifests the site holds, by what GC makes of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageCounts {
    /// Referenced by an application or a pin (directly, through an index, or as a
    /// referrer of such a manifest): kept.
    pub live: usize,
    /// Unreferenced and delivered or pushed: deleted once the grace period has passed.
    pub eligible: usize,
    /// Unreferenced and fetched by the pull-through cache: kept for its time to live.
    pub cached: usize,
}

impl State {
    /// Manifests by what GC makes of them.
    pub fn image_counts(&self) -> ImageCounts {
        let live = self.live_manifests();
        let mut counts = ImageCounts {
            live: live.len(),
            ..ImageCounts::default()
        };
        for (d, m) in &self.manifests {
            if live.contains(d) {
                continue;
            }
            if m.cached {
                counts.cached += 1;
            } else {
                counts.eligible += 1;
            }
        }
        counts
    }

    /// Manifests that are live now.
    pub fn live_manifests(&self) -> BTreeSet<Digest> {
        let mut live = BTreeSet::new();
        let mut todo: Vec<Digest> = self
            .apps
            .values()
            .flatten()
            .chain(self.pins.iter())
            .map(|r| r.digest.clone())
            .collect();
        loop {
            while let Some(d) = todo.pop() {
                let Some(m) = self.manifests.get(&d) else {
                    continue;
                };
                if live.insert(d) {
                    todo.extend(m.children.iter().cloned());
                }
            }
            // Referrers of live manifests live with them.
            todo.extend(
                self.manifests
                    .iter()
                    .filter(|(d, m)| {
                        !live.contains(*d)
                            && m.subject.as_ref().is_some_and(|(s, _)| live.contains(s))
                    })
                    .map(|(d, _)| d.clone()),
            );
            if todo.is_empty() {
                return live;
            }
        }
    }

    /// Updates every manifest's `unreferenced_since` after a change of references.
    pub(crate) fn refresh_liveness(&mut self, now: u64) {
        let live = self.live_manifests();
        for (d, m) in self.manifests.iter_mut() {
            if live.contains(d) {
                m.unreferenced_since = None;
            } else if m.unreferenced_since.is_none() {
                m.unreferenced_since = Some(now);
            }
        }
    }

    /// What a sweep at `now` would delete. See [`crate::Command::Sweep`].
    pub fn plan_sweep(&self, now: u64, rules: &SweepRules) -> SweepReport {
        let SweepRules {
            grace_ms,
            cache_ttl_ms,
            evict_bytes,
        } = *rules;
        let live = self.live_manifests();
        let dead: Vec<(&Digest, &crate::ManifestInfo)> = self
            .manifests
            .iter()
            .filter(|(d, _)| !live.contains(*d))
            .collect();
        let mut delete: BTreeSet<Digest> = dead
            .iter()
            .filter(|(_, m)| {
                if m.cached {
                    m.last_used.saturating_add(cache_ttl_ms) <= now
                } else {
                    m.unreferenced_since
                        .is_none_or(|t| t.saturating_add(grace_ms) <= now)
                }
            })
            .map(|(d, _)| (*d).clone())
            .collect();
        let mut evicted = Vec::new();
        if evict_bytes > 0 {
            let mut candidates: Vec<_> = dead
                .iter()
                .filter(|(d, _)| !delete.contains(*d))
                .map(|(d, m)| (m.last_used, (*d).clone()))
                .collect();
            candidates.sort();
            let mut freed = self.blobs_freed(&delete, now, grace_ms).1;
            for (_, d) in candidates {
                if freed >= evict_bytes {
                    break;
                }
                delete.insert(d.clone());
                evicted.push(d);
                freed = self.blobs_freed(&delete, now, grace_ms).1;
            }
        }
        let (blobs, bytes_freed) = self.blobs_freed(&delete, now, grace_ms);
        SweepReport {
            at: now,
            manifests: delete.into_iter().collect(),
            evicted,
            blobs,
            bytes_freed,
        }
    }

    /// Bytes a sweep could free at most: every unreferenced image evicted.
    pub fn reclaimable_bytes(&self, now: u64) -> u64 {
        let rules = SweepRules {
            grace_ms: u64::MAX,
            cache_ttl_ms: u64::MAX,
            evict_bytes: u64::MAX,
        };
        self.plan_sweep(now, &rules).bytes_freed
    }

    /// Blobs deleted, and their bytes, if the manifests in `delete` go.
    fn blobs_freed(&self, delete: &BTreeSet<Digest>, now: u64, grace: u64) -> (Vec<Digest>, u64) {
        let mut kept_refs = BTreeSet::new();
        let mut dropped_refs = BTreeSet::new();
        for (d, m) in &self.manifests {
            let set = if delete.contains(d) {
                &mut dropped_refs
            } else {
                &mut kept_refs
            };
            set.extend(m.blobs.iter());
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for (d, b) in &self.blobs {
            let leased = self.leases.get(d).is_some_and(|until| *until > now);
            let old = b.added.saturating_add(grace) <= now;
            if !kept_refs.contains(d) && !leased && (old || dropped_refs.contains(d)) {
                out.push(d.clone());
                bytes += b.size;
            }
        }
        (out, bytes)
    }

    /// Carries out a planned sweep.
    pub(crate) fn execute_sweep(&mut self, report: &SweepReport) -> Vec<crate::Event> {
        let mut events = Vec::new();
        for d in &report.manifests {
            self.manifests.remove(d);
            let mut repos = Vec::new();
            for (name, r) in self.repos.iter_mut() {
                if r.manifests.remove(d) {
                    repos.push(name.clone());
                }
                r.tags.retain(|_, t| t != d);
            }
            events.push(crate::Event::ImageRemoved {
                digest: d.clone(),
                repos,
            });
        }
        for d in &report.blobs {
            self.blobs.remove(d);
            self.leases.remove(d);
            for r in self.repos.values_mut() {
                r.blobs.remove(d);
            }
        }
        self.repos.retain(|_, r| !r.is_empty());
        self.leases.retain(|_, until| *until > report.at);
        self.last_sweep = Some(report.clone());
        events.push(crate::Event::GcRun {
            report: report.clone(),
        });
        events
    }
}
