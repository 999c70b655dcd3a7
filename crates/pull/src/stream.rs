//! The two streams of a blob fetch: the upstream's bytes as the store reads them, and a
//! client's bytes from the growing copy, whose last byte waits for the digest check.

use crate::blobs::Fetch;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use site_node::{ByteSource, ByteStream};
use tokio::sync::watch;

/// The upstream's bytes for the store: drops the `skip` leading bytes a registry that
/// ignored `Range` resent, and tells waiting clients that bytes flow once the store asks
/// for the first chunk (its growing file is open then).
pub(crate) struct Source<'a> {
    pub(crate) stream: BoxStream<'static, std::io::Result<Bytes>>,
    pub(crate) skip: u64,
    pub(crate) tx: &'a watch::Sender<Fetch>,
    pub(crate) size: u64,
    /// Why the stream broke, if it did.
    pub(crate) broke: Option<String>,
}

impl ByteSource for Source<'_> {
    fn whole(&mut self) {
        self.tx.send_replace(Fetch::Verified {
            size: self.size,
            from: None,
        });
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        if matches!(*self.tx.borrow(), Fetch::Opening) {
            self.tx.send_replace(Fetch::Streaming {
                size: self.size,
                from: None,
            });
        }
        loop {
            match self.stream.next().await? {
                Ok(mut b) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(b.len() as u64);
                        self.skip -= drop;
                        let _ = b.split_to(drop as usize);
                        if b.is_empty() {
                            continue;
                        }
                    }
                    return Some(Ok(b));
                }
                Err(e) => {
                    let why = site_upstream::error::chain(&e);
                    self.broke = Some(why.clone());
                    return Some(Err(why));
                }
            }
        }
    }
}

/// The first `len` bytes of `tail`, the last of them only once the fetch has verified
/// the blob's digest.
pub(crate) fn gated(tail: ByteStream, len: u64, fetch: watch::Receiver<Fetch>) -> ByteStream {
    futures_util::stream::try_unfold(
        (tail, 0u64, fetch),
        move |(mut tail, sent, mut fetch)| async move {
            if sent >= len {
                return Ok(None);
            }
            let Some(chunk) = tail.next().await else {
                return Err(std::io::Error::other(
                    "the upstream fetch ended before the blob was whole",
                ));
            };
            let mut chunk = chunk?;
            if sent + chunk.len() as u64 >= len {
                chunk.truncate((len - sent) as usize);
                let done = fetch
                    .wait_for(|f| matches!(f, Fetch::Verified { .. } | Fetch::Done(_)))
                    .await
                    .map_err(|_| std::io::Error::other("the upstream fetch was dropped"))?
                    .clone();
                if let Fetch::Done(Err(e)) = done {
                    return Err(std::io::Error::other(format!(
                        "the fetched blob failed: {e}"
                    )));
                }
            }
            let sent = sent + chunk.len() as u64;
            Ok(Some((chunk, (tail, sent, fetch))))
        },
    )
    .boxed()
}
