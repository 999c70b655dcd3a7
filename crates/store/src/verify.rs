//! A whole blob read from this node's disk is released only if its bytes match its
//! digest: the last chunk is held back until the hash of everything before it is known.
//! A copy that does not match (bit rot the scrub has not found yet) ends the stream with
//! an error instead of its last bytes, so a client never gets a whole wrong blob; the
//! copy is then checked again, removed and fetched from a peer (`scrub.rs`).

use crate::{ByteStream, Store};
use bytes::Bytes;
use futures_util::StreamExt;
use site_core::{Digest, DigestHasher};

struct Reading {
    inner: ByteStream,
    hasher: Option<DigestHasher>,
    held: Option<Bytes>,
    store: Store,
    digest: Digest,
    size: u64,
}

/// `inner`, the whole of blob `digest` (`size` bytes), with its last chunk released only
/// once the bytes match the digest.
pub(crate) fn verified(store: Store, digest: Digest, size: u64, inner: ByteStream) -> ByteStream {
    let reading = Reading {
        inner,
        hasher: Some(DigestHasher::for_digest(&digest)),
        held: None,
        store,
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
                        return r.held.take().map(|last| (Ok(last), r));
                    }
                    tracing::error!(blob = %r.digest, %actual, "a blob file read for a client does not match its digest: the read is cut short");
                    let (store, d, size) = (r.store.clone(), r.digest.clone(), r.size);
                    tokio::spawn(async move {
                        if let Err(e) = store.scrub_blob(&d, size).await {
                            tracing::warn!(blob = %d, error = %e, "cannot check a blob file");
                        }
                    });
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
