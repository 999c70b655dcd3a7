//! Reads of blob bytes for clients: from this node's file (as a [`FileRegion`] the
//! HTTP server sends without copying, or checked as it streams when `verify.rs` says
//! so), or, while this node lacks a committed blob, from a peer that has it (the blob is
//! then noted missing and fetched in the background, `replication.rs`).

use crate::applied_state::SiteState;
use crate::files::BlobFiles;
use crate::leadership::Leadership;
use crate::missing_blobs::MissingBlobs;
use crate::replication::open_fetch;
use crate::scrub::Scrubber;
use crate::site_clock::Clock;
use crate::transport::{BlobStream, Transport};
use crate::{ByteStream, NodeError, Result};
use futures_util::StreamExt;
use site_core::Digest;
use std::sync::Arc;

/// Read size when serving a blob from disk: large enough that one read fills many TCP
/// segments.
const CHUNK: usize = 256 * 1024;

/// Bytes `offset..offset + len` of a blob file this node holds, known good: what an
/// HTTP server may send straight from the page cache (`sendfile`).
#[derive(Clone, Debug)]
pub struct FileRegion {
    /// The open blob file (it stays readable if the blob is removed meanwhile).
    pub file: Arc<std::fs::File>,
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

impl FileRegion {
    /// The region's bytes as a stream read through this process (for HTTPS, which must
    /// encrypt them).
    pub fn stream(self) -> ByteStream {
        let state = (self.file, self.offset, self.len);
        futures_util::stream::try_unfold(state, |(file, offset, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = (left as usize).min(CHUNK);
            let f = file.clone();
            let chunk =
                tokio::task::spawn_blocking(move || crate::file_io::read_at(&f, offset, want))
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "blob file shorter than its recorded size",
                        ),
                        _ => e,
                    })?;
            let n = chunk.len() as u64;
            Ok(Some((chunk, (file, offset + n, left - n))))
        })
        .boxed()
    }
}

/// A blob's bytes for a client.
pub enum BlobBytes {
    /// From this node's copy, known good.
    File(FileRegion),
    /// Streamed: checked as it goes, or from a peer.
    Stream(ByteStream),
}

impl BlobBytes {
    /// The bytes as a stream, whichever way they come.
    pub fn into_stream(self) -> ByteStream {
        match self {
            BlobBytes::File(region) => region.stream(),
            BlobBytes::Stream(stream) => stream,
        }
    }
}

/// Reads of committed blobs for clients. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    /// This node's blob files.
    pub files: BlobFiles,
    /// The state as applied here: which blobs are committed, and their sizes.
    pub state: SiteState,
    /// The checks of copies against their digests.
    pub scrubber: Scrubber,
    /// The committed blobs this node lacks.
    pub missing: MissingBlobs,
    /// Who leads: the order peers are asked in.
    pub leadership: Leadership,
    /// The way to the peers.
    pub transport: Arc<dyn Transport>,
    /// What the wait for a peer to start streaming is measured on.
    pub clock: Arc<dyn Clock>,
}

impl Reads {
    /// Bytes `start..start + len` of committed blob `d` as a stream (see
    /// [`Reads::open_blob`]).
    pub async fn read_blob(&self, d: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        Ok(self.open_blob(d, start, len).await?.into_stream())
    }

    /// Bytes `start..start + len` of committed blob `d`: from this node's file, or, while
    /// this node lacks it, streamed from a peer that has it. A whole read of a copy that
    /// `verify_reads` says to check streams through a hash and ends in an error rather
    /// than its last bytes if they do not match the digest (`verify.rs`); a ranged read
    /// of an unchecked copy starts a check of the whole file in the background.
    pub async fn open_blob(&self, d: &Digest, start: u64, len: u64) -> Result<crate::BlobBytes> {
        if let Some(file) = self.files.open_blob(d)? {
            let region = FileRegion {
                file: Arc::new(file),
                offset: start,
                len,
            };
            return Ok(match self.begin_read(d, start, len) {
                ReadCheck::Verify => BlobBytes::Stream(crate::scrub::verified(
                    self.scrubber.clone(),
                    d.clone(),
                    len,
                    region.stream(),
                )),
                ReadCheck::AsIs => BlobBytes::File(region),
            });
        }
        let Some(size) = self.state.read(|s| s.blob(d).map(|b| b.size)) else {
            return Err(NodeError::BlobUnknown(d.clone()));
        };
        self.missing.note(d, size);
        let mut errors = Vec::new();
        for peer in self.leadership.fetch_order(None) {
            match open_fetch(
                self.transport.as_ref(),
                self.clock.as_ref(),
                peer,
                d,
                start,
                false,
            )
            .await
            {
                Ok(stream) => {
                    tracing::info!(blob = %d, peer, "blob not here yet: serving it from a peer");
                    return Ok(BlobBytes::Stream(limit(stream, len)));
                }
                Err(e) => errors.push(format!("node {peer}: {e}")),
            }
        }
        tracing::warn!(blob = %d, errors = %errors.join("; "), "committed blob on no reachable node");
        Err(NodeError::Unavailable(format!(
            "blob {d} is not on this node yet and no peer could serve it"
        )))
    }
}

/// How a read of this node's copy of a blob is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCheck {
    /// Through a hash, its last bytes released only if the copy matches the digest
    /// ([`crate::scrub::verified`]).
    Verify,
    /// As the file holds it.
    AsIs,
}

impl Reads {
    /// How a read of bytes `start..start + len` of this node's copy of committed blob
    /// `d` is served: a whole read of a copy `verify_reads` says to check goes through a
    /// hash; a ranged read of a copy not checked yet starts a check of the whole file in
    /// the background.
    pub fn begin_read(&self, d: &Digest, start: u64, len: u64) -> ReadCheck {
        let size = self.state.read(|s| s.blob(d).map(|b| b.size));
        let whole = start == 0 && size == Some(len) && len > 0;
        if whole && self.scrubber.read_checks.needed(d) {
            return ReadCheck::Verify;
        }
        if let (false, Some(size)) = (whole, size) {
            self.scrubber.check_in_background(d, size);
        }
        ReadCheck::AsIs
    }
}

/// The first `len` bytes of a peer's stream; a stream that ends short is an error.
fn limit(stream: BlobStream, len: u64) -> ByteStream {
    futures_util::stream::unfold((stream, len), |(mut s, left)| async move {
        if left == 0 {
            return None;
        }
        match s.next().await {
            Some(Ok(mut b)) => {
                if b.len() as u64 > left {
                    b.truncate(left as usize);
                }
                let left = left - b.len() as u64;
                Some((Ok(b), (s, left)))
            }
            Some(Err(e)) => Some((Err(std::io::Error::other(e)), (s, 0))),
            None => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("peer stream ended {left} bytes short"),
                )),
                (s, 0),
            )),
        }
    })
    .boxed()
}
