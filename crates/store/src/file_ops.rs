//! Every install and removal of a blob file goes through the apply task's queue
//! (`applying.rs`), in its turn among the committed entries it applies: a sweep's
//! removals, a delivery's or a fetch's install, a scrub's removal of a corrupt copy and
//! the removal of a stray file are one sequence on each node, and each checks the state
//! as applied at its place in it. So no lock orders them, and a removal decided from the
//! state never meets an install of the same digest half-way.

use crate::channels::{gone, FileOp, Job};
use crate::{Result, Store};
use tokio::sync::oneshot;

impl Store {
    /// Carries out `op` in its turn on the apply task. `Ok(false)`: the state said to
    /// leave the files as they were.
    pub(crate) async fn file_op(&self, op: FileOp) -> Result<bool> {
        let jobs = self
            .inner
            .jobs
            .get()
            .and_then(|weak| weak.upgrade())
            .ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::Files(op, reply)).map_err(|_| gone())?;
        drop(jobs);
        answer.await.map_err(|_| gone())?
    }

    /// `op`, now: called by the apply task only.
    pub(crate) async fn carry_out_file_op(&self, op: FileOp) -> Result<bool> {
        let files = self.inner.files.clone();
        match op {
            FileOp::Install { src, digest } => {
                let recorded = self.read(|s| s.blob(&digest).is_some());
                let keep = recorded && self.inner.files.has(&digest);
                let d = digest.clone();
                crate::files::blocking(move || {
                    if keep {
                        std::fs::remove_file(&src)
                    } else {
                        files.install(&src, &d)
                    }
                })
                .await
                .map_err(|e| self.inner.failure.blob_write_failed(e))?;
                if !keep {
                    // Verified before it was renamed into place.
                    self.inner.read_checks.passed(&digest);
                }
                Ok(!keep)
            }
            FileOp::Stray(digest) => {
                // A delivery may have installed a fresh copy since the stray was found.
                let young = !self.idle_past_ttl(0, &files.path(&digest));
                if young
                    || self.read(|s| s.blob(&digest).is_some())
                    || self.inner.fetches.fetching(&digest)
                {
                    return Ok(false);
                }
                crate::files::blocking(move || files.remove(&digest)).await?;
                Ok(true)
            }
            FileOp::Corrupt(digest) => {
                if self.read(|s| s.blob(&digest).is_none()) {
                    return Ok(false);
                }
                self.inner.read_checks.forget(&digest);
                crate::files::blocking(move || files.remove(&digest)).await?;
                Ok(true)
            }
        }
    }
}
