//! Blobs arriving from the tower: streamed into `uploads/tower-<hex>`, resumable from
//! what the node already holds after a broken link, verified against their digest, then
//! installed as blobs.
//!
//! Unlike an OCI upload chunk, a tower stream keeps what arrived when the link breaks:
//! the next stream resumes from that offset. Bytes beyond the declared size are refused
//! and undone, so a lying stream changes nothing.

use crate::applied_state::SiteState;
use crate::blob_writer::BlobWriter;
use crate::channels::FileOp;
use crate::file_ops::FileQueue;
use crate::files::BlobFiles;
use crate::growing::Growing;
use crate::leadership::Leadership;
use crate::majority::{EarlyHold, MajorityHold};
use crate::ordering::Orderer;
use crate::sessions::{tower_file_name, Sessions};
use crate::{ByteSource, NodeError, Result};
use site_core::{Digest, Repository};
use site_state::Command;
use std::path::PathBuf;

/// Where a tower upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The blob is whole and visible.
    Complete,
    /// The stream ended (or broke) after this many bytes of the blob; resume from there.
    Partial(u64),
}

/// Blobs made the site's: a verified file committed (installed, held by a majority,
/// recorded), and the tower's (and the pull-through cache's) resumable streams. Cheap
/// to clone.
#[derive(Clone)]
pub struct Deliveries {
    pub(crate) sessions: Sessions,
    pub(crate) files: BlobFiles,
    pub(crate) queue: FileQueue,
    pub(crate) state: SiteState,
    pub(crate) majority: MajorityHold,
    pub(crate) orderer: Orderer,
    pub(crate) leadership: Leadership,
    pub(crate) growing: Growing,
    /// Largest blob accepted, in bytes.
    pub(crate) max_blob_bytes: u64,
}

impl Deliveries {
    /// Makes the fsynced, verified file at `src` blob `d`, linked into `repo` if given,
    /// and records it once a majority of the site's nodes hold it (`majority.rs`).
    /// If this node already has `d`, `src` is removed instead.
    pub async fn commit_blob(
        &self,
        src: PathBuf,
        d: &Digest,
        size: u64,
        repo: Option<&Repository>,
    ) -> Result<()> {
        self.commit_held_blob(src, d, size, repo, None).await
    }

    /// [`Deliveries::commit_blob`], where `early` may be a hold of the blob started while it
    /// arrived (`growing.rs`); if that one failed, the majority is asked again.
    async fn commit_held_blob(
        &self,
        src: PathBuf,
        d: &Digest,
        size: u64,
        repo: Option<&Repository>,
        early: Option<EarlyHold>,
    ) -> Result<()> {
        let committed = self.state.read(|s| s.blob(d).is_some());
        self.queue
            .run(FileOp::Install {
                src,
                digest: d.clone(),
            })
            .await?;
        if committed {
            // The site's copies stand for it, unless a sweep dropped it meanwhile.
            match self.record_blob(d, size, repo, true).await {
                Err(NodeError::Refused(site_state::StateError::BlobUnknown(_))) => {}
                other => return other,
            }
        }
        if !self.files.has(d) {
            return Err(NodeError::Unavailable(format!(
                "blob {d} was collected while it was being delivered; send it again"
            )));
        }
        // Other nodes copy it from this one meanwhile; no lock is held.
        let held = match early {
            Some(early) => match early.held().await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::info!(blob = %d, error = %e, "peers could not copy the blob while it arrived; asking again now that it is whole");
                    self.majority.hold(d, size).await
                }
            },
            None => self.majority.hold(d, size).await,
        };
        held?;
        self.record_blob(d, size, repo, false).await
    }

    /// Records blob `d` (see [`Command::AddBlob`]).
    async fn record_blob(
        &self,
        d: &Digest,
        size: u64,
        repo: Option<&Repository>,
        recorded: bool,
    ) -> Result<()> {
        self.orderer
            .execute(Command::AddBlob {
                repo: repo.cloned(),
                digest: d.clone(),
                size,
                recorded,
            })
            .await?;
        Ok(())
    }

    /// Bytes of blob `d` the node holds from an unfinished tower upload (0 if none).
    pub async fn tower_upload_offset(&self, d: &Digest) -> Result<u64> {
        match tokio::fs::metadata(self.sessions.tower_path(d)).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives bytes `offset..` of blob `d` of `size` bytes. `offset` must be where the
    /// node's partial copy stands. When the last byte arrives the digest is verified and
    /// the blob installed (a mismatch discards the partial copy). Returns how many bytes
    /// this call received, and where the upload stands.
    pub async fn receive_blob(
        &self,
        repo: Option<&Repository>,
        d: &Digest,
        size: u64,
        offset: u64,
        source: &mut impl ByteSource,
    ) -> Result<(u64, Received)> {
        let max = self.max_blob_bytes;
        if size > max {
            return Err(NodeError::SizeInvalid(format!(
                "blob of {size} bytes is larger than the limit of {max} bytes"
            )));
        }
        // Refused before any byte is taken when the node is cut off from its site.
        self.leadership.writable()?;
        let id = tower_file_name(d);
        let path = self.sessions.tower_path(d);
        // One stream per digest at a time; a second waits and then sees the first's work.
        let slot = self.sessions.slot(&id);
        let mut live = slot.lock().await;
        if self.state.read(|s| s.blob(d).is_some()) {
            match self.record_blob(d, size, repo, true).await {
                // A sweep dropped it meanwhile: receive it after all.
                Err(NodeError::Refused(site_state::StateError::BlobUnknown(_))) => {}
                other => return other.map(|()| (0, Received::Complete)),
            }
        }
        let exists = path.exists();
        let before = if exists {
            self.sessions
                .hasher(&id, &mut live, Some(d.algorithm()))
                .await?
                .clone()
        } else {
            live.forget_hasher();
            site_core::DigestHasher::for_digest(d)
        };
        if offset != before.len() {
            return Err(NodeError::RangeInvalid {
                start: offset,
                offset: before.len(),
            });
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?
            .into_std()
            .await;
        let mut hasher = before.clone();
        // Peers may copy the blob from the file while it grows: a majority's copies are
        // needed before it is recorded, and they go on alongside the upload.
        let growing = self.growing.begin(d, path.clone(), size, before.len());
        let mut file = BlobWriter::new(file, before.len()).reporting(growing.reporter());
        let early = self.majority.start(d, size);
        let mut broken = None;
        let mut cut_off = None;
        let lost_leader = self.leadership.cut_off();
        tokio::pin!(lost_leader);
        loop {
            let chunk = tokio::select! {
                chunk = source.next_chunk() => chunk,
                // Bytes this node could not make durable on a majority: stop taking them.
                e = &mut lost_leader => {
                    cut_off = Some(e);
                    break;
                }
            };
            let Some(chunk) = chunk else { break };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            };
            if hasher.len() + chunk.len() as u64 > size {
                drop(file.into_file().await?);
                if before.is_empty() {
                    // Nothing was held before this stream: leave no file behind.
                    tokio::fs::remove_file(&path).await?;
                    live.forget_hasher();
                } else {
                    live.rewind(&path, before).await?;
                }
                return Err(NodeError::SizeInvalid(format!(
                    "stream carries more than the declared {size} bytes"
                )));
            }
            hasher.update(&chunk);
            file.write(chunk).await?;
        }
        let received = hasher.len() - before.len();
        let held = hasher.len();
        if broken.is_some() || cut_off.is_some() || held < size {
            // What arrived is kept, durably, for the next stream to resume after.
            drop(file.sync().await?);
            if let Some(e) = broken {
                tracing::info!(digest = %d, held, size, "blob stream broke: {e}");
            }
            live.set_hasher(hasher);
            if let Some(e) = cut_off {
                tracing::warn!(digest = %d, held, size, error = %e, "blob stream refused midway");
                return Err(e);
            }
            return Ok((received, Received::Partial(held)));
        }
        let actual = hasher.finish();
        live.forget_hasher();
        self.sessions.forget(&id);
        if actual == *d {
            // Readers of the growing file may have its last bytes now; the site makes it
            // durable meanwhile.
            source.whole();
        }
        drop(file.sync().await?);
        if actual != *d {
            tokio::fs::remove_file(&path).await?;
            return Err(NodeError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        self.commit_held_blob(path, d, size, repo, Some(early))
            .await?;
        drop(growing);
        Ok((received, Received::Complete))
    }
}
