//! Garbage collection's effect on disk: a sweep is decided in the state machine (one
//! `Sweep` entry), and only once that entry is committed and applied are the deleted
//! blobs' files removed by the apply task, in their turn among the installs
//! (`file_ops.rs`), so no install of the same digest on the node interleaves.
//! A `kill -9` between the two leaves files the state no longer holds; opening the
//! store removes them, which completes the sweep.

use crate::{Result, Store};
use site_state::{Command, SweepReport, SweepRules};

impl Store {
    /// Runs one sweep at the log's time (stamped by the leader): see
    /// [`site_state::Command::Sweep`].
    pub async fn sweep(&self, rules: &SweepRules) -> Result<SweepReport> {
        let outcome = self.inner.orderer.execute(Command::sweep(rules)).await?;
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

    /// What a sweep at `now` would delete, without deleting anything (dry run).
    pub fn plan_sweep(&self, rules: &SweepRules, now: u64) -> SweepReport {
        self.read(|s| s.plan_sweep(now, rules))
    }
}
