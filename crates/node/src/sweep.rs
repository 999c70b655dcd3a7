//! Garbage collection's effect on disk: a sweep is decided in the state machine (one
//! `Sweep` entry), and only once that entry is committed and applied are the deleted
//! blobs' files removed by the apply task, in their turn among the installs
//! (`file_ops.rs`), so no install of the same digest on the node interleaves.
//! A `kill -9` between the two leaves files the state no longer holds; opening the
//! store removes them, which completes the sweep. Blob files the site never recorded
//! ([`Strays`]) go once they are older than the upload TTL.

use crate::applied_state::SiteState;
use crate::channels::FileOp;
use crate::fetches::Fetches;
use crate::file_ops::FileQueue;
use crate::files::BlobFiles;
use crate::ordering::Orderer;
use crate::Result;
use site_state::{Command, SweepReport, SweepRules};
use std::time::Duration;

/// Runs one sweep through `orderer`, at the log's time (stamped by the leader): see
/// [`site_state::Command::Sweep`].
pub(crate) async fn sweep(orderer: &Orderer, rules: &SweepRules) -> Result<SweepReport> {
    let outcome = orderer.execute(Command::sweep(rules)).await?;
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

/// Blob files the state does not record. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Strays {
    pub(crate) files: BlobFiles,
    pub(crate) state: SiteState,
    pub(crate) fetches: Fetches,
    pub(crate) queue: FileQueue,
    /// How old a stray file must be to go.
    pub(crate) ttl: Duration,
}

impl Strays {
    /// Removes blob files the state does not record once they are older than the upload
    /// TTL: copies held for a delivery that never completed, or fetched just before a
    /// sweep dropped the blob. Younger ones may be copies a delivery is about to record.
    pub(crate) async fn remove(&self) -> Result<usize> {
        let files = self.files.clone();
        let found = crate::file_io::blocking(move || files.scan()).await?;
        let mut removed = 0;
        for (d, _) in found {
            let stray = self.state.read(|s| s.blob(&d).is_none()) && !self.fetches.fetching(&d);
            if !stray || !self.files.idle_past(&d, self.ttl) {
                continue;
            }
            // Checked again in its turn among installs and applies.
            if self.queue.run(FileOp::Stray(d.clone())).await? {
                tracing::info!(blob = %d, "removed a blob file the site never recorded");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
