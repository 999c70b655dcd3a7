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

use crate::applied_state::SiteState;
use crate::channels::FileOp;
use crate::events::Events;
use crate::file_ops::FileQueue;
use crate::files::{on_disk, BlobFiles};
use crate::metrics::NodeCounters;
use crate::missing_blobs::MissingBlobs;
use crate::spawn::Spawn;
use crate::verify::ReadChecks;
use crate::{ByteStream, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use site_core::Digest;
use site_core::DigestHasher;
use site_state::Event;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Checks of blob files against their digests: the pass over every file, one file's
/// check, and a read's check in the background. Cheap to clone.
#[derive(Clone)]
pub struct Scrubber {
    /// This node.
    pub id: u64,
    /// The blob files checked.
    pub files: BlobFiles,
    /// Which copies are known good since the start.
    pub read_checks: Arc<ReadChecks>,
    /// The way to the apply task, which removes a bad copy in its turn.
    pub queue: FileQueue,
    /// The committed blobs this node lacks, a bad copy's among them.
    pub missing: MissingBlobs,
    /// The state as applied here.
    pub state: SiteState,
    /// Where a bad copy is told.
    pub events: Events,
    /// The scrub's counts.
    pub counters: Arc<NodeCounters>,
    /// Time between passes; zero: no pass.
    pub interval: Duration,
    /// Where a check started in the background runs.
    pub tasks: Arc<dyn Spawn>,
}

impl Scrubber {
    /// Checks every blob file once per interval (never when it is zero), until
    /// `shutdown`.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval = self.interval;
        if interval.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let blobs: Vec<(Digest, u64)> = self
                .state
                .read(|s| s.blobs().map(|(d, b)| (d.clone(), b.size)).collect());
            let (mut checked, mut bad) = (0u64, 0u64);
            let counters = &self.counters;
            counters
                .scrub_pass_blobs
                .store(blobs.len() as u64, Ordering::Relaxed);
            counters.scrub_pass_done.store(0, Ordering::Relaxed);
            for (d, size) in blobs {
                let started = Instant::now();
                let result = self.check(&d, size).await;
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
    pub async fn check(&self, d: &Digest, size: u64) -> Result<Option<bool>> {
        let path = self.files.path(d);
        let algorithm = d.algorithm();
        let hashed = on_disk(&self.files, move |f| {
            f.file_system().hash_file(&path, algorithm)
        });
        let actual = match hashed.await {
            Ok(hasher) => hasher.finish(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if actual == *d {
            self.read_checks.passed(d);
            return Ok(Some(true));
        }
        // In its turn among installs and applies: removed only if the blob is still
        // recorded (a sweep may have removed it meanwhile).
        if !self.queue.run(FileOp::Corrupt(d.clone())).await? {
            return Ok(None);
        }
        tracing::error!(blob = %d, %actual, "a blob file no longer matches its digest: removed; fetching a verified copy");
        self.missing.note_corrupt(d, size);
        self.counters.scrub_corrupt.inc();
        self.events.publish(Event::BlobCorrupt {
            digest: d.clone(),
            node: self.id,
            actual,
        });
        Ok(Some(false))
    }

    /// Checks this node's copy of `d` (`size` bytes) on its own, once at a time.
    pub(crate) fn check_in_background(&self, d: &Digest, size: u64) {
        if !self.read_checks.start_check(d) {
            return;
        }
        let (this, d) = (self.clone(), d.clone());
        self.tasks.spawn(Box::pin(async move {
            let turn = this.read_checks.one_at_a_time.acquire().await;
            if let Err(e) = this.check(&d, size).await {
                tracing::warn!(blob = %d, error = %e, "cannot check a blob file");
            }
            drop(turn);
            this.read_checks.end_check(&d);
        }));
    }
}

struct Reading {
    inner: ByteStream,
    hasher: Option<DigestHasher>,
    held: Option<Bytes>,
    scrubber: Scrubber,
    digest: Digest,
    size: u64,
}

/// `inner`, the whole of blob `digest` (`size` bytes), with its last chunk released only
/// once the bytes match the digest.
pub fn verified(scrubber: Scrubber, digest: Digest, size: u64, inner: ByteStream) -> ByteStream {
    let reading = Reading {
        inner,
        hasher: Some(DigestHasher::for_digest(&digest)),
        held: None,
        scrubber,
        digest,
        size,
    };
    futures_util::stream::unfold(reading, |mut r| async move {
        let hasher = r.hasher.as_mut()?;
        loop {
            match r.inner.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    r.scrubber.read_checks.hashed.add(chunk.len() as u64);
                    if let Some(before) = r.held.replace(chunk) {
                        return Some((Ok(before), r));
                    }
                }
                Some(Err(e)) => {
                    r.hasher = None;
                    return Some((Err(e), r));
                }
                None => {
                    let actual = r.hasher.take().expect("reading").finish();
                    if actual == r.digest {
                        r.scrubber.read_checks.passed(&r.digest);
                        return r.held.take().map(|last| (Ok(last), r));
                    }
                    tracing::error!(blob = %r.digest, %actual, "a blob file read for a client does not match its digest: the read is cut short");
                    let (scrubber, d, size) = (r.scrubber.clone(), r.digest.clone(), r.size);
                    r.scrubber.tasks.spawn(Box::pin(async move {
                        if let Err(e) = scrubber.check(&d, size).await {
                            tracing::warn!(blob = %d, error = %e, "cannot check a blob file");
                        }
                    }));
                    let e = std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("this node's copy of blob {} does not match its digest", r.digest),
                    );
                    return Some((Err(e), r));
                }
            }
        }
    })
    .boxed()
}
