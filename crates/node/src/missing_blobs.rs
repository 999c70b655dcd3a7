//! The committed blobs whose file this node lacks (the core's `Missing` bookkeeping),
//! and the wake-up of the background copy when one goes missing. Noted by the apply
//! task (an `AddBlob` recorded elsewhere), a read that found no file, the scrub (a bad
//! copy) and reconciliation; drained by the replicator (`replication.rs`).

use site_core::Digest;
use site_replica::missing::Missing;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// This node's missing blobs. Cheap to clone; clones share them.
#[derive(Clone, Default)]
pub struct MissingBlobs(Arc<Inner>);

#[derive(Default)]
struct Inner {
    missing: Mutex<Missing>,
    /// Wakes the background copy when a blob goes missing.
    wake: Notify,
}

impl MissingBlobs {
    fn lock(&self) -> MutexGuard<'_, Missing> {
        self.0.missing.lock().expect("missing")
    }

    /// Notes that committed blob `d` has no file here; the background copy fetches it.
    pub fn note(&self, d: &Digest, size: u64) {
        self.lock().note(d, size);
        self.0.wake.notify_one();
    }

    /// Notes that this node's copy of committed blob `d` was bad and is gone: the blob is
    /// missing, and its next verified copy is reported as a repair.
    pub fn note_corrupt(&self, d: &Digest, size: u64) {
        self.lock().note_corrupt(d, size);
        self.0.wake.notify_one();
    }

    /// Forgets that `digests` are missing (fetched, or the state no longer holds them).
    pub fn forget<'a>(&self, digests: impl IntoIterator<Item = &'a Digest>) {
        self.lock().forget(digests);
    }

    /// `d` was fetched: whether its copy had been found bad (a repair to report).
    pub fn found(&self, d: &Digest) -> bool {
        self.lock().found(d)
    }

    /// Recomputes the set from the state's `blobs` and the files this node `has` (after
    /// a snapshot replaced the state).
    pub fn rescan<'a>(
        &self,
        blobs: impl IntoIterator<Item = (&'a Digest, u64)>,
        has: impl Fn(&Digest) -> bool,
    ) {
        if self.lock().rescan(blobs, has) {
            self.0.wake.notify_one();
        }
    }

    /// How many committed blobs this node lacks.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// How many committed blobs this node lacks, and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        let m = self.lock();
        (m.len() as u64, m.bytes())
    }

    /// The blobs to fetch in the next round of the background copy.
    pub fn round(&self) -> Vec<(Digest, u64)> {
        self.lock().round()
    }

    /// Resolves when a blob goes missing.
    pub async fn woken(&self) {
        self.0.wake.notified().await
    }
}
