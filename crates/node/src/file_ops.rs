//! Every install and removal of a blob file goes through the apply task's queue
//! (`applying.rs`), in its turn among the committed entries it applies: a sweep's
//! removals, a delivery's or a fetch's install, a scrub's removal of a corrupt copy and
//! the removal of a stray file are one sequence on each node, and each checks the state
//! as applied at its place in it. So no lock orders them, and a removal decided from the
//! state never meets an install of the same digest half-way.
//!
//! `FileQueue` is how the rest of the node asks for one; [`FileOps`], owned by the
//! apply task, carries them out.

use crate::applied_state::SiteState;
use crate::channels::{gone, FileOp, Job};
use crate::failure::Failure;
use crate::fetches::Fetches;
use crate::files::{on_disk, BlobFiles};
use crate::verify::ReadChecks;
use crate::Result;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The way to the apply task's queue. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct FileQueue(Arc<OnceLock<mpsc::WeakUnboundedSender<Job>>>);

impl FileQueue {
    /// Sends to the apply task's queue `jobs` from now on (weakly: the task ends once
    /// the driver is gone).
    pub fn connect(&self, jobs: &mpsc::UnboundedSender<Job>) {
        let _ = self.0.set(jobs.downgrade());
    }

    /// Carries out `op` in its turn on the apply task. `Ok(false)`: the state said to
    /// leave the files as they were.
    pub async fn run(&self, op: FileOp) -> Result<bool> {
        let jobs = self
            .0
            .get()
            .and_then(|weak| weak.upgrade())
            .ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::Files(op, reply)).map_err(|_| gone())?;
        drop(jobs);
        answer.await.map_err(|_| gone())?
    }
}

/// What carries out the file operations on the apply task: the blob files, and what it
/// checks before it touches them.
#[derive(Clone)]
pub struct FileOps {
    /// The blob files.
    pub files: BlobFiles,
    /// The state as applied here.
    pub state: SiteState,
    /// Copies from peers under way.
    pub fetches: Fetches,
    /// Which blob files are checked when read.
    pub read_checks: Arc<ReadChecks>,
    /// Where a failing blob directory fails the node.
    pub failure: Failure,
    /// How long an unrecorded file is kept.
    pub upload_ttl: Duration,
}

impl FileOps {
    /// `op`, now: called by the apply task only.
    pub async fn carry_out(&self, op: FileOp) -> Result<bool> {
        match op {
            FileOp::Install { src, digest } => {
                let recorded = self.state.read(|s| s.blob(&digest).is_some());
                let keep = recorded && self.files.has(&digest);
                let d = digest.clone();
                on_disk(&self.files, move |files| {
                    if keep {
                        files.discard(&src)
                    } else {
                        files.install(&src, &d)
                    }
                })
                .await
                .map_err(|e| self.failure.blob_write_failed(e))?;
                if !keep {
                    // Verified before it was renamed into place.
                    self.read_checks.passed(&digest);
                }
                Ok(!keep)
            }
            FileOp::Stray(digest) => {
                // A delivery may have installed a fresh copy since the stray was found.
                let young = !self.files.idle_past(&digest, self.upload_ttl);
                if young
                    || self.state.read(|s| s.blob(&digest).is_some())
                    || self.fetches.fetching(&digest)
                {
                    return Ok(false);
                }
                on_disk(&self.files, move |files| files.remove(&digest)).await?;
                Ok(true)
            }
            FileOp::Keep(digest) => {
                Ok(on_disk(&self.files, move |files| files.keep(&digest)).await?)
            }
            FileOp::Corrupt(digest) => {
                if self.state.read(|s| s.blob(&digest).is_none()) {
                    return Ok(false);
                }
                self.read_checks.forget(&digest);
                on_disk(&self.files, move |files| files.remove(&digest)).await?;
                Ok(true)
            }
        }
    }
}

/// Whether an upload started at `started` (seconds since the Unix epoch) with its bytes
/// in `path` has been idle for longer than `ttl` (to the millisecond: the file's last
/// write counts).
pub(crate) fn idle_past(ttl: Duration, started: u64, path: &Path) -> bool {
    let written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let idle = crate::now_ms().saturating_sub(started.saturating_mul(1000).max(written));
    u128::from(idle) > ttl.as_millis()
}
