//! Streams one blob from the upstream into the site, resuming after broken links.
//!
//! Each attempt asks the site where its partial copy stands (`BlobStatus`), reads the
//! blob from that offset at its [`Source`] (the upstream for `towerctl deliver`, the
//! tower's cache for a rollout) and sends it with a client-streaming `PutBlob` in chunks
//! of at most [`CHUNK`] bytes. Nothing is buffered beyond a few chunks in flight.

use crate::exit::Error;
use crate::site::{self, Client, ATTEMPTS, FIRST_BACKOFF};
use crate::upstream::{ByteStream, Upstream};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use site_core::Digest;
use site_proto::pb::{BlobStatusRequest, PutBlobHeader, PutBlobRequest, PutBlobResponse};
use site_upstream::Reference;
use tokio::sync::mpsc;
use tonic::Code;

/// Largest data chunk of one `PutBlob` message.
pub const CHUNK: usize = 1 << 20;
/// Messages queued towards the site.
const IN_FLIGHT: usize = 4;
/// Longest time bytes wait in a message being gathered.
const GATHER: std::time::Duration = std::time::Duration::from_secs(1);

/// One blob to deliver.
pub struct Blob<'a> {
    /// Canonical repository name at the site (the blob is linked into it).
    pub repository: &'a str,
    /// Where its bytes come from.
    pub source: &'a dyn Source,
    /// The blob's digest.
    pub digest: &'a Digest,
    /// The blob's size.
    pub size: u64,
}

/// Where the bytes of one blob come from.
pub trait Source: Send + Sync {
    /// The blob's bytes from `offset`, and how many leading bytes of the stream to drop
    /// (a source that cannot seek sends them all).
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<(ByteStream, u64), Error>>;
    /// Whether a failure to open is worth a retry.
    fn is_transient(&self, error: &Error) -> bool;
    /// The error a failed read of the stream means; a retry follows only for
    /// [`Error::UpstreamUnreachable`].
    fn read_error(&self, error: &std::io::Error) -> Error;
    /// The blob as messages name it.
    fn describe(&self) -> String;
}

/// A blob served by its upstream registry.
pub struct UpstreamBlob<'a> {
    /// The client.
    pub upstream: &'a Upstream,
    /// Any reference in the blob's repository.
    pub reference: &'a Reference,
    /// The blob.
    pub digest: &'a Digest,
}

impl Source for UpstreamBlob<'_> {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<(ByteStream, u64), Error>> {
        Box::pin(async move {
            Ok(self
                .upstream
                .blob(self.reference, self.digest, offset)
                .await?)
        })
    }

    fn is_transient(&self, error: &Error) -> bool {
        matches!(error, Error::UpstreamUnreachable(_))
    }

    fn read_error(&self, error: &std::io::Error) -> Error {
        site_upstream::classify::io(error, &self.describe()).into()
    }

    fn describe(&self) -> String {
        format!("{}@{}", self.reference.repository(), self.digest)
    }
}

/// What a blob's sender reports as it goes.
pub trait Meter: Sync {
    /// The site holds `bytes` of the blob.
    fn set(&self, bytes: u64);
    /// Something worth telling the operator (a retry).
    fn note(&self, line: &str);
}

/// How one attempt ended short of a verified blob.
enum Failure {
    /// A broken link or a wrong offset: ask the site again and resume.
    Retry(Error),
    /// The upstream or the site refused: give up.
    Fatal(Error),
}

/// Delivers one blob; returns the bytes this delivery added at the site (the blob's size
/// less what the site held of it at the start). Progress shows the bytes the site holds
/// of this blob on top of the others'.
pub async fn send_blob(site: &Client, blob: &Blob<'_>, progress: &dyn Meter) -> Result<u64, Error> {
    let mut held_at_start: Option<u64> = None;
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let status = site::retry(|| {
            let mut c = site.clone();
            let digest = blob.digest.to_string();
            async move { c.blob_status(BlobStatusRequest { digest }).await }
        })
        .await?;
        let offset = status.offset;
        let start = *held_at_start.get_or_insert(if status.present { blob.size } else { offset });
        let added = blob.size.saturating_sub(start);
        if status.present {
            progress.set(blob.size);
            return Ok(added);
        }
        if offset > blob.size {
            return Err(Error::Other(format!(
                "the site holds {offset} bytes of {}, which has {} bytes",
                blob.digest, blob.size
            )));
        }
        progress.set(offset);
        let failure = match put_from(site, blob, offset, progress).await {
            Ok(r) if r.complete => {
                progress.set(blob.size);
                return Ok(added);
            }
            Ok(r) => Failure::Retry(Error::Other(format!(
                "the site holds {} of {} bytes of {} after the stream ended",
                r.offset, blob.size, blob.digest
            ))),
            Err(f) => f,
        };
        match failure {
            Failure::Fatal(e) => return Err(e),
            Failure::Retry(e) if attempt == ATTEMPTS => return Err(e),
            Failure::Retry(e) => {
                progress.note(&format!(
                    "blob {}: {e}; attempt {}/{ATTEMPTS} in {} ms",
                    &blob.digest.hex()[..12],
                    attempt + 1,
                    backoff.as_millis()
                ));
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    Err(Error::Other(format!("{}: gave up", blob.digest)))
}

/// Why the pump that feeds the site stopped early.
enum PumpStop {
    /// The upstream failed.
    Upstream(Error),
    /// The site closed its end: its answer says why.
    SiteGone,
}

/// One `PutBlob` stream from `offset` to the end of the blob.
async fn put_from(
    site: &Client,
    blob: &Blob<'_>,
    offset: u64,
    progress: &dyn Meter,
) -> Result<PutBlobResponse, Failure> {
    let (stream, skip): (ByteStream, u64) = if offset == blob.size {
        // Every byte is there but the blob is not whole yet: an empty stream finishes it.
        (Box::pin(futures_util::stream::empty()), 0)
    } else {
        blob.source.open(offset).await.map_err(|e| {
            if blob.source.is_transient(&e) {
                Failure::Retry(e)
            } else {
                Failure::Fatal(e)
            }
        })?
    };
    let (tx, rx) = mpsc::channel::<PutBlobRequest>(IN_FLIGHT);
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let header = PutBlobRequest {
        header: Some(PutBlobHeader {
            repository: blob.repository.to_owned(),
            digest: blob.digest.to_string(),
            size: blob.size,
            offset,
        }),
        data: Default::default(),
    };
    let mut client = site.clone();
    let call = client.put_blob(outbound);
    let pump = pump(stream, skip, header, tx, blob, offset, progress);
    tokio::pin!(call, pump);
    let mut pumping = true;
    let mut upstream_failure = None;
    loop {
        tokio::select! {
            biased;
            answer = &mut call => {
                if let Some(e) = upstream_failure {
                    // The stream ended short on purpose: the site kept what arrived.
                    return Err(Failure::Retry(e));
                }
                return answer.map(|r| r.into_inner()).map_err(|s| {
                    if site::is_cut_off(&s) {
                        // This node cannot write: another one of the site can.
                        Failure::Fatal(site::status_error(&s))
                    } else if s.code() == Code::FailedPrecondition || site::is_broken_link(&s) {
                        Failure::Retry(site::status_error(&s))
                    } else {
                        Failure::Fatal(site::status_error(&s))
                    }
                });
            }
            stop = &mut pump, if pumping => match stop {
                Ok(()) | Err(PumpStop::SiteGone) => pumping = false,
                // The pump has sent what arrived and ended the stream: let the site
                // answer, so that every byte sent counts, then resume.
                Err(PumpStop::Upstream(e)) if matches!(e, Error::UpstreamUnreachable(_)) => {
                    pumping = false;
                    upstream_failure = Some(e);
                }
                Err(PumpStop::Upstream(e)) => return Err(Failure::Fatal(e)),
            },
        }
    }
}

/// Feeds the site: the header, then the upstream bytes from `offset` in chunks of at most
/// [`CHUNK`]; checks that the upstream sent exactly the blob's size.
async fn pump(
    mut stream: ByteStream,
    mut skip: u64,
    header: PutBlobRequest,
    tx: mpsc::Sender<PutBlobRequest>,
    blob: &Blob<'_>,
    offset: u64,
    progress: &dyn Meter,
) -> Result<(), PumpStop> {
    tx.send(header).await.map_err(|_| PumpStop::SiteGone)?;
    let what = blob.source.describe();
    let mut position = offset;
    // Upstream reads come in pieces of a few KiB: gather them into messages of up to
    // CHUNK bytes, so the site handles one message per MiB rather than per read. A slow
    // source (a thin upstream link, a rate cap) has what it gathered sent after
    // [`GATHER`], so that the site holds it, and progress shows it, without waiting for
    // a whole MiB.
    let mut pending = Vec::with_capacity(CHUNK);
    let mut gathering_since = tokio::time::Instant::now();
    loop {
        let item = if pending.is_empty() {
            gathering_since = tokio::time::Instant::now();
            stream.next().await
        } else {
            match tokio::time::timeout_at(gathering_since + GATHER, stream.next()).await {
                Ok(item) => item,
                Err(_) => {
                    position = send(&tx, &mut pending, position, progress).await?;
                    continue;
                }
            }
        };
        let Some(item) = item else { break };
        let mut bytes = match item {
            Ok(b) => b,
            Err(e) => {
                // What arrived before the break is good: send it before giving up.
                if !pending.is_empty() {
                    send(&tx, &mut pending, position, progress).await?;
                }
                return Err(PumpStop::Upstream(blob.source.read_error(&e)));
            }
        };
        if skip > 0 {
            let drop = skip.min(bytes.len() as u64);
            skip -= drop;
            let _ = bytes.split_to(drop as usize);
        }
        if position + (pending.len() + bytes.len()) as u64 > blob.size {
            return Err(PumpStop::Upstream(crate::exit::Error::Other(format!(
                "{what}: the upstream sent more than the {} bytes of the blob",
                blob.size
            ))));
        }
        while !bytes.is_empty() {
            let take = bytes.len().min(CHUNK - pending.len());
            pending.extend_from_slice(&bytes.split_to(take));
            if pending.len() == CHUNK {
                position = send(&tx, &mut pending, position, progress).await?;
            }
        }
    }
    if !pending.is_empty() {
        position = send(&tx, &mut pending, position, progress).await?;
    }
    if position != blob.size {
        return Err(PumpStop::Upstream(Error::UpstreamUnreachable(format!(
            "{what}: the upstream stream ended at byte {position} of {}",
            blob.size
        ))));
    }
    Ok(())
}

/// Sends what `pending` holds as one message; returns the new position in the blob.
async fn send(
    tx: &mpsc::Sender<PutBlobRequest>,
    pending: &mut Vec<u8>,
    position: u64,
    progress: &dyn Meter,
) -> Result<u64, PumpStop> {
    let data = std::mem::replace(pending, Vec::with_capacity(CHUNK));
    let position = position + data.len() as u64;
    let message = PutBlobRequest {
        header: None,
        data: data.into(),
    };
    tx.send(message).await.map_err(|_| PumpStop::SiteGone)?;
    progress.set(position);
    Ok(position)
}
