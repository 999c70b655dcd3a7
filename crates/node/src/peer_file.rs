//! A blob's bytes as a peer is sent them: from the blob file, or from the upload file
//! while the blob still arrives (`growing.rs`), each byte once the file holds it.
//!
//! A [`PeerFile`] is what the cluster link sends from: with `sendfile` on a link without
//! TLS (the bytes go from the page cache to the socket, never through this process), or as
//! a stream of chunks over gRPC ([`PeerFiles`]). A background copy (a recorded
//! blob the peer lacks, which nobody waits for) paces itself: while this node receives a
//! blob someone does wait for, each of its chunks waits first (up to [`YIELD_AT_MOST`]),
//! so that on a small machine it does not take the CPU from the delivery.

use crate::growing::{Growth, Receiving};
use crate::{ByteStream, NodeError, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use site_core::Digest;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Largest chunk a peer's stream gets at once.
pub const CHUNK: u64 = 1 << 20;
/// How long a background copy waits at most, per chunk, while this node receives a blob
/// (well under a fetcher's stall limit, so the copy trickles on rather than fail).
pub(crate) const YIELD_AT_MOST: Duration = Duration::from_secs(2);
/// How often a waiting background copy looks again.
pub(crate) const YIELD_STEP: Duration = Duration::from_millis(20);

/// The way blob bytes leave for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSend {
    /// From the page cache to the socket (`sendfile`), on a cluster link without TLS.
    Sendfile,
    /// As messages of the gRPC peer service.
    Grpc,
}

impl PeerSend {
    fn label(self) -> &'static str {
        match self {
            PeerSend::Sendfile => "sendfile",
            PeerSend::Grpc => "grpc",
        }
    }
}

/// The file a peer is sent blob bytes from.
pub struct PeerFile {
    file: Arc<File>,
    size: u64,
    /// How far the upload has come, while the blob arrives; `None`: the file is whole.
    growth: Option<Growth>,
    /// For a background copy: what it yields to.
    pace: Option<Receiving>,
}

impl PeerFile {
    /// The open file (it stays readable if the blob is removed or installed meanwhile).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Waits until the file holds the byte at `pos` (below the size) and returns where
    /// the bytes it holds end; a background copy first yields to a blob this node
    /// receives. An error when the upload broke off before `pos`.
    pub async fn ready(&mut self, pos: u64) -> io::Result<u64> {
        if let Some(receiving) = &self.pace {
            pace(receiving).await;
        }
        let Some(growth) = &mut self.growth else {
            return Ok(self.size);
        };
        let broke_off =
            || io::Error::other("the upload of the blob broke off; it is fetched again once whole");
        loop {
            let now = *growth.progress.borrow_and_update();
            if pos < now.written {
                return Ok(now.written.min(self.size));
            }
            if now.broken {
                return Err(broke_off());
            }
            if growth.progress.changed().await.is_err() && pos >= growth.progress.borrow().written {
                return Err(broke_off());
            }
        }
    }

    /// Up to [`CHUNK`] bytes at `pos`, below `end` (from [`PeerFile::ready`]): the chunk
    /// as it arrived if it is still kept, else read from the file.
    async fn chunk(&self, pos: u64, end: u64) -> io::Result<Bytes> {
        if let Some(growth) = &self.growth {
            let kept = growth
                .recent
                .lock()
                .expect("recent chunks")
                .get(pos, end, CHUNK);
            if let Some(chunk) = kept {
                return Ok(chunk);
            }
        }
        let n = (end - pos).min(CHUNK) as usize;
        let file = self.file.clone();
        crate::file_io::blocking(move || crate::file_io::read_at(&file, pos, n)).await
    }

    /// The bytes from `from` to the end, as a stream of chunks.
    pub fn stream(self, from: u64) -> ByteStream {
        futures_util::stream::try_unfold((self, from), |(mut file, pos)| async move {
            if pos >= file.size {
                return Ok(None);
            }
            let end = file.ready(pos).await?;
            let chunk = file.chunk(pos, end).await?;
            let next = pos + chunk.len() as u64;
            Ok(Some((chunk, (file, next))))
        })
        .boxed()
    }
}

/// The files peers are sent blob bytes from. Cheap to clone.
#[derive(Clone)]
pub struct PeerFiles {
    pub(crate) files: crate::files::BlobFiles,
    pub(crate) receiving: Receiving,
    pub(crate) counters: Arc<crate::metrics::NodeCounters>,
}

impl PeerFiles {
    /// The file to send a peer blob `d` from, from `offset` on: the blob file, or the
    /// upload file while the blob still arrives (recorded or not). `background`: a copy
    /// nobody waits for, which yields to the blobs this node receives.
    pub async fn peer_file(&self, d: &Digest, offset: u64, background: bool) -> Result<PeerFile> {
        let (file, size, growth) = match self
            .receiving
            .growing
            .arriving(d)
            .map(|a| (File::open(&a.path), a))
        {
            Some((Ok(file), a)) => (file, a.size, Some(a.growth)),
            // Not arriving, or installed meanwhile: the blob file.
            None => self.whole_blob_file(d).await?,
            Some((Err(e), _)) if e.kind() == io::ErrorKind::NotFound => {
                self.whole_blob_file(d).await?
            }
            Some((Err(e), _)) => return Err(e.into()),
        };
        if offset > size {
            return Err(NodeError::RangeInvalid {
                start: offset,
                offset: size,
            });
        }
        Ok(PeerFile {
            file: Arc::new(file),
            size,
            growth,
            pace: background.then(|| self.receiving.clone()),
        })
    }

    /// Blob `d`'s file and size (no growth: it is whole).
    async fn whole_blob_file(&self, d: &Digest) -> Result<(File, u64, Option<Growth>)> {
        let file = self
            .files
            .open_blob(d)?
            .ok_or_else(|| NodeError::BlobUnknown(d.clone()))?;
        let size = file.metadata()?.len();
        Ok((file, size, None))
    }

    /// Bytes of blob `d` from `offset` on, for a peer, as a stream (see
    /// [`PeerFiles::peer_file`]).
    pub async fn blob_for_peer(
        &self,
        d: &Digest,
        offset: u64,
        background: bool,
    ) -> Result<ByteStream> {
        Ok(self.peer_file(d, offset, background).await?.stream(offset))
    }

    /// Counts `n` bytes of blobs sent to a peer `by` a way.
    pub fn count_sent(&self, by: PeerSend, n: u64) {
        self.counters.peer_sent.add(&[by.label()], n);
    }
}

/// Waits, up to [`YIELD_AT_MOST`], while this node receives a blob someone waits for.
pub(crate) async fn pace(receiving: &Receiving) {
    let until = tokio::time::Instant::now() + YIELD_AT_MOST;
    while receiving.now() && tokio::time::Instant::now() < until {
        tokio::time::sleep(YIELD_STEP).await;
    }
}
