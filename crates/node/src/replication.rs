//! Blob bytes across the site's nodes. Bytes never travel in the Raft log; only the
//! `AddBlob` entry that records a blob does.
//!
//! - **Before a new blob is recorded**, the node that received it has a majority of the
//!   voters hold it ([`crate::MajorityHold`]): as many peers as that needs are asked
//!   to hold it; each fetches it from this node, verifies its digest, fsyncs and installs
//!   it, and only then answers. So a committed blob survives the loss of any minority of
//!   nodes. For a blob the tower delivers, the peers are asked as soon as its stream
//!   starts and copy it while it arrives (`growing.rs`).
//! - **A committed blob a node lacks** (the node was down, its disk was wiped, it is new,
//!   or it was not among the first majority) is in the node's missing set; a background
//!   task (`Fetcher::run`) fetches each from a peer until none is missing.
//! - **A read of a committed blob not here yet** streams it from a peer meanwhile
//!   ([`crate::Reads::read_blob`], `reads.rs`).
//!
//! A fetched copy is written to `uploads/replica-<hex>-<n>`, fsynced, verified and
//! renamed into place like any other blob ([`crate::files::BlobFiles::install`]).

use crate::applied_state::SiteState;
use crate::channels::FileOp;
use crate::events::Events;
use crate::fetches::Fetches;
use crate::file_ops::FileQueue;
use crate::files::{on_disk, BlobFiles};
use crate::leadership::Leadership;
use crate::missing_blobs::MissingBlobs;
use crate::site_clock::{within, Clock};
use crate::transport::{BlobStream, Transport};
use crate::{NodeError, Result};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use site_core::{Digest, DigestHasher};
use site_replica::missing::Backoff;
use site_state::Event;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A peer stream that delivers nothing for this long is given up.
const STALL: Duration = Duration::from_secs(30);

/// Bytes of a blob, from this node's disk or a peer's.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// This node's place among its peers, set when the node starts.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) id: u64,
    /// A group of one without a cluster listener: it cannot take members.
    pub(crate) alone: bool,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Copies of blobs from peers: a fetch asked for (a majority hold, a read), and the
/// background copy of every committed blob this node lacks. Cheap to clone; clones
/// share everything.
#[derive(Clone)]
pub struct Fetcher {
    /// This node.
    pub id: u64,
    /// The committed blobs this node lacks.
    pub missing: MissingBlobs,
    /// The fetches under way, shared by their callers.
    pub fetches: Fetches,
    /// The way to the apply task, which installs a copy in its turn.
    pub queue: FileQueue,
    /// The state as applied here.
    pub state: SiteState,
    /// Who leads and which peers answer: the order peers are asked in.
    pub leadership: Leadership,
    /// The way to the peers.
    pub transport: Arc<dyn Transport>,
    /// Where a repaired blob is told.
    pub events: Events,
    /// Set when the node shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Where copies are written before they are installed.
    pub scratch: PathBuf,
    /// Names temporary files apart.
    pub next_tmp: Arc<AtomicU64>,
    /// The blob files, whose copy of a blob is read back before it answers for a hold,
    /// and whose file system a copy is written on.
    pub files: BlobFiles,
    /// What the waits between rounds and for silent peers are measured on.
    pub clock: Arc<dyn Clock>,
}

impl Fetcher {
    /// Makes sure this node holds blob `d` of `size` bytes, fetching it from `first` (if
    /// given) or any other peer. Concurrent calls for one digest and first peer share one
    /// fetch, which runs to its end even if every caller gives up waiting. A call naming
    /// another first peer (a node asking this one to hold the blob it holds) does not
    /// wait on a fetch from a peer that may have gone out of reach: it fetches from the
    /// node that asked, and the first copy verified is installed.
    pub async fn fetch_blob(&self, d: &Digest, size: u64, first: Option<u64>) -> Result<()> {
        let fetcher = self.clone();
        let digest = d.clone();
        self.fetches
            .share(d, first, move || async move {
                fetcher.fetch_now(&digest, size, first).await
            })
            .await
    }

    async fn fetch_now(&self, d: &Digest, size: u64, first: Option<u64>) -> Result<()> {
        // A copy here already stands, kept from stray removal in its turn among the file
        // operations (an unrecorded copy could otherwise go before the blob is recorded).
        // For a hold it must be whole: it may have rotted since it was written, and a
        // hold counts only verified copies (a recorded blob's copy is the scrub's).
        let whole = first.is_none() || self.good_copy(d).await?;
        let stands = whole && self.queue.run(FileOp::Keep(d.clone())).await?;
        if !stands {
            let peers = self.leadership.fetch_order(first);
            let mut errors = Vec::new();
            let mut fetched = false;
            for peer in peers {
                // A hold is waited for; a copy of a recorded blob is not.
                match self.fetch_from(peer, d, size, first.is_none()).await {
                    Ok(()) => {
                        tracing::info!(blob = %d, peer, size, "blob fetched from peer");
                        if self.missing.found(d) {
                            self.events.publish(Event::BlobRepaired {
                                digest: d.clone(),
                                node: self.id,
                                from: peer,
                            });
                        }
                        fetched = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(blob = %d, peer, error = %e, "could not copy a blob from a peer");
                        errors.push(format!("node {peer}: {e}"));
                    }
                }
            }
            if !fetched {
                return Err(NodeError::Unavailable(format!(
                    "no peer could provide blob {d} ({})",
                    if errors.is_empty() {
                        "no peers".to_owned()
                    } else {
                        errors.join("; ")
                    }
                )));
            }
        }
        self.missing.forget([d]);
        Ok(())
    }

    /// Copies blob `d` from `peer`: streamed to a temporary file, fsynced, verified,
    /// installed.
    async fn fetch_from(&self, peer: u64, d: &Digest, size: u64, background: bool) -> Result<()> {
        let mut shutdown = self.shutdown.clone();
        let clock = self.clock.as_ref();
        let mut stream = open_fetch(self.transport.as_ref(), clock, peer, d, 0, background).await?;
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.scratch.join(format!("replica-{}-{n}", d.hex()));
        let path = tmp.clone();
        let mut file = on_disk(&self.files, move |f| f.file_system().create(&path)).await?;
        let copied = async {
            let mut hasher = DigestHasher::for_digest(d);
            loop {
                let chunk = tokio::select! {
                    biased;
                    c = within(clock, STALL, stream.next()) => c.ok_or_else(|| {
                        NodeError::Unavailable(format!("no bytes for {} s", STALL.as_secs()))
                    })?,
                    _ = shutdown.wait_for(|s| *s) => {
                        return Err(NodeError::Unavailable("the node is shutting down".into()))
                    }
                    // Another peer may have it: no use waiting on one gone silent.
                    e = self.leadership.silent(peer) => return Err(e),
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(NodeError::Interrupted)?;
                if hasher.len() + chunk.len() as u64 > size {
                    return Err(NodeError::SizeInvalid(format!(
                        "peer sent more than the {size} bytes of the blob"
                    )));
                }
                hasher.update(&chunk);
                file.write(chunk).await?;
            }
            #[cfg(not(feature = "bug-node-unsynced-copy"))]
            file.sync().await?;
            #[cfg(feature = "bug-node-unsynced-copy")]
            drop(file);
            if hasher.len() != size {
                return Err(NodeError::Interrupted(format!(
                    "peer sent {} of {size} bytes",
                    hasher.len()
                )));
            }
            let actual = hasher.finish();
            if actual != *d {
                tracing::error!(blob = %d, peer, %actual, "peer sent bytes of another digest");
                return Err(NodeError::DigestMismatch {
                    expected: d.clone(),
                    actual,
                });
            }
            self.queue
                .run(FileOp::Install {
                    src: tmp.clone(),
                    digest: d.clone(),
                })
                .await?;
            Ok(())
        }
        .await;
        if copied.is_err() {
            let _ = on_disk(&self.files, move |f| f.file_system().remove_file(&tmp)).await;
        }
        copied
    }

    /// Fetches every missing blob from peers, in the background, until `shutdown`.
    /// Failed rounds are retried after a pause that grows (the core's [`Backoff`]).
    pub async fn run(self) {
        let mut shutdown = self.shutdown.clone();
        let mut backoff = Backoff::default();
        loop {
            let next = self.missing.round();
            if next.is_empty() {
                tokio::select! {
                    biased;
                    _ = self.missing.woken() => continue,
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
            let mut failed = 0;
            for (d, size) in next {
                if *shutdown.borrow() {
                    return;
                }
                if self.state.read(|s| s.blob(&d).is_none()) {
                    self.missing.forget([&d]);
                    continue;
                }
                // A copy a sweep made debris meanwhile goes with the stray files
                // (`sweep.rs`: `Strays`).
                match self.fetch_blob(&d, size, None).await {
                    Ok(()) => {}
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(blob = %d, error = %e, "cannot fetch a missing blob yet");
                    }
                }
            }
            let Some(pause) = backoff.after_round(failed) else {
                continue;
            };
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return,
                () = self.clock.sleep(Duration::from_millis(pause)) => {}
            }
        }
    }
}

impl Fetcher {
    /// Whether this node's file of blob `d` matches its digest, read back whole. A bad
    /// copy of a recorded blob is removed in its turn (a bad unrecorded one is replaced
    /// by the copy fetched instead).
    async fn good_copy(&self, d: &Digest) -> Result<bool> {
        let (path, algorithm) = (self.files.path(d), d.algorithm());
        match on_disk(&self.files, move |f| {
            f.file_system().hash_file(&path, algorithm)
        })
        .await
        {
            Ok(hasher) => {
                let actual = hasher.finish();
                if actual == *d {
                    return Ok(true);
                }
                tracing::error!(blob = %d, %actual, "this node's copy of a blob no longer matches its digest: fetching a verified one");
                self.queue.run(FileOp::Corrupt(d.clone())).await?;
                Ok(false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// How long a peer may take to start streaming a blob.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens blob `d` on `peer` from `offset` on, within [`OPEN_TIMEOUT`] on `clock`.
pub(crate) async fn open_fetch(
    transport: &dyn Transport,
    clock: &dyn Clock,
    peer: u64,
    d: &Digest,
    offset: u64,
    background: bool,
) -> Result<BlobStream> {
    let call = transport.fetch(peer, d.clone(), offset, background);
    match within(clock, OPEN_TIMEOUT, call).await {
        Some(Ok(stream)) => Ok(stream),
        Some(Err(e)) => Err(NodeError::Unavailable(e)),
        None => Err(NodeError::Unavailable(format!(
            "no answer within {} s",
            OPEN_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
#[path = "replication_test.rs"]
mod tests;
