//! The periodic check of blob files.
//!
//! Once per `scrub_interval` every blob file this node holds is read back and hashed. A
//! file whose bytes no longer match its digest (a failing disk, bit rot, a hand edit) is
//! removed in its turn among the installs and applies (`file_ops.rs`) and reported
//! (`Event::BlobCorrupt`): from then on this node counts the blob as missing, serves it
//! from a peer, and the background fetch
//! (`replication.rs`) brings a verified copy back (`Event::BlobRepaired`). A node with no
//! peer holding a good copy keeps the blob missing, so a bad copy is never served.
//!
//! The check reads at most half the time: after each blob it pauses as long as the blob
//! took, so serving goes on at full speed on the other core.

use crate::channels::FileOp;
use crate::files::{blocking, hash_file};
use crate::{Result, Store};
use site_core::Digest;
use site_state::Event;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

impl Store {
    /// Checks every blob file once per `scrub_interval` (never when it is zero), until
    /// `shutdown`.
    pub(crate) async fn run_scrub(self, mut shutdown: watch::Receiver<bool>) {
        let interval = self.inner.config.scrub_interval;
        if interval.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let blobs: Vec<(Digest, u64)> =
                self.read(|s| s.blobs().map(|(d, b)| (d.clone(), b.size)).collect());
            let (mut checked, mut bad) = (0u64, 0u64);
            let counters = &self.inner.counters;
            counters
                .scrub_pass_blobs
                .store(blobs.len() as u64, Ordering::Relaxed);
            counters.scrub_pass_done.store(0, Ordering::Relaxed);
            for (d, size) in blobs {
                let started = Instant::now();
                let result = self.scrub_blob(&d, size).await;
                counters.scrub_pass_done.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(Some(true)) => {
                        checked += 1;
                        counters.scrub_checked.inc();
                    }
                    Ok(Some(false)) => bad += 1,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(blob = %d, error = %e, "cannot check a blob file"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(started.elapsed().min(Duration::from_secs(10))) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
            tracing::info!(checked, bad, "blob files checked against their digests");
        }
    }

    /// Reads blob `d`'s file back: `Some(true)` when its bytes match, `Some(false)` when
    /// they did not (the file is then removed, reported and the blob noted missing),
    /// `None` when this node holds no file of a committed blob `d`.
    pub(crate) async fn scrub_blob(&self, d: &Digest, size: u64) -> Result<Option<bool>> {
        let path = self.inner.files.path(d);
        let algorithm = d.algorithm();
        let actual = match blocking(move || hash_file(&path, algorithm)).await {
            Ok(hasher) => hasher.finish(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if actual == *d {
            self.inner.read_checks.passed(d);
            return Ok(Some(true));
        }
        // In its turn among installs and applies: removed only if the blob is still
        // recorded (a sweep may have removed it meanwhile).
        if !self
            .inner
            .file_queue
            .run(FileOp::Corrupt(d.clone()))
            .await?
        {
            return Ok(None);
        }
        tracing::error!(blob = %d, %actual, "a blob file no longer matches its digest: removed; fetching a verified copy");
        self.inner.missing.note_corrupt(d, size);
        self.inner.counters.scrub_corrupt.inc();
        self.publish(Event::BlobCorrupt {
            digest: d.clone(),
            node: self.cluster().id,
            actual,
        });
        Ok(Some(false))
    }
}
