//! Garbage collection's effect on disk: a sweep is decided in the state machine (one
//! `Sweep` entry), and only once that entry is committed and applied are the deleted
//! blobs' files removed (by the apply side), while the proposer holds the writer lock so
//! no install of the same digest on this node interleaves.
//! A `kill -9` between the two leaves files the state no longer holds; opening the
//! store removes them, which completes the sweep.

use crate::{now_secs, Result, Store};
use site_state::{Command, SweepReport, SweepRules};

impl Store {
    /// Runs one sweep: see [`site_state::Command::Sweep`].
    pub async fn sweep(&self, rules: &SweepRules) -> Result<SweepReport> {
        let _writer = self.inner.writer.lock().await;
        let outcome = self
            .propose(Command::Sweep {
                grace_secs: rules.grace_secs,
                evict_bytes: rules.evict_bytes,
                cache_ttl_secs: Some(rules.cache_ttl_secs),
            })
            .await?;
        let report = outcome.sweep.expect("a sweep reports");
        tracing::info!(
            manifests = report.manifests.len(),
            evicted = report.evicted.len(),
            blobs = report.blobs.len(),
            bytes_freed = report.bytes_freed,
            "gc sweep done"
        );
        Ok(report)
    }

    /// What a sweep now would delete, without deleting anything (dry run).
    pub fn plan_sweep(&self, rules: &SweepRules) -> SweepReport {
        self.read(|s| s.plan_sweep(now_secs(), rules))
    }
}
