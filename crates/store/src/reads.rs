//! Reads of blob bytes for clients: from this node's file (a whole blob checked as it
//! streams, `verify.rs`), or, while this node lacks a committed blob, from a peer that
//! has it (the blob is then noted missing and fetched in the background,
//! `replication.rs`).

use crate::replication::open_fetch;
use crate::transport::BlobStream;
use crate::{ByteStream, Result, Store, StoreError};
use futures_util::StreamExt;
use site_core::Digest;
use tokio::io::AsyncSeekExt;

/// Read size when serving a blob from disk: large enough that one read fills many TCP
/// segments.
const CHUNK: usize = 256 * 1024;

impl Store {
    /// Bytes `start..start + len` of committed blob `d`: from this node's file, or, while
    /// this node lacks it, streamed from a peer that has it. A whole blob read from this
    /// node's file ends in an error rather than its last bytes if they do not match the
    /// digest (`verify.rs`).
    pub async fn read_blob(&self, d: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        match self.local_blob(d, start).await {
            Ok(file) => {
                use tokio::io::AsyncReadExt;
                let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), CHUNK);
                let size = self.read(|s| s.blob(d).map(|b| b.size));
                if start == 0 && size == Some(len) && len > 0 {
                    return Ok(crate::verify::verified(
                        self.clone(),
                        d.clone(),
                        len,
                        stream.boxed(),
                    ));
                }
                return Ok(stream.boxed());
            }
            Err(StoreError::BlobUnknown(_)) => {}
            Err(e) => return Err(e),
        }
        let Some(size) = self.read(|s| s.blob(d).map(|b| b.size)) else {
            return Err(StoreError::BlobUnknown(d.clone()));
        };
        self.note_missing(d, size);
        let transport = self.cluster()?.transport.clone();
        let mut errors = Vec::new();
        for peer in self.fetch_order(None)? {
            match open_fetch(transport.as_ref(), peer, d, start).await {
                Ok(stream) => {
                    tracing::info!(blob = %d, peer, "blob not here yet: serving it from a peer");
                    return Ok(limit(stream, len));
                }
                Err(e) => errors.push(format!("node {peer}: {e}")),
            }
        }
        tracing::warn!(blob = %d, errors = %errors.join("; "), "committed blob on no reachable node");
        Err(StoreError::Unavailable(format!(
            "blob {d} is not on this node yet and no peer could serve it"
        )))
    }

    /// This node's file of blob `d`, positioned at `offset`, whether or not the state
    /// records it yet.
    pub(crate) async fn local_blob(&self, d: &Digest, offset: u64) -> Result<tokio::fs::File> {
        let mut file = self.open_blob_file(d).await?;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset)).await?;
        }
        Ok(file)
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
