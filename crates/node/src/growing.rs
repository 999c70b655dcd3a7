//! Blobs still arriving from the tower, readable by peers while they arrive.
//!
//! A blob delivered to a node of a cluster is recorded only once a majority of the voters
//! hold it (`replication.rs`). Rather than wait for its last byte, the receiving node asks
//! the peers to hold it as soon as its stream starts (`MajorityHold::start`, `majority.rs`); they fetch it
//! from the upload file as the file grows ([`crate::PeerFile`]). The copies thus go on
//! alongside the upload, and the acknowledgement follows the last byte by little more
//! than the peers' fsync.
//!
//! Only bytes already in the file are offered (the writer reports them, see
//! [`crate::blob_writer::BlobWriter::reporting`]). The last few MiB reported are also kept
//! as the chunks that arrived ([`Recent`]): a peer that keeps up with the upload over gRPC
//! is sent those, with no read of the file (one sent the file with `sendfile`, or that
//! falls behind, is sent the file's bytes). A reader
//! verifies the digest of what it read like for any other fetch; if the upload breaks
//! off, readers still waiting get an error and their hold fails (the blob then goes to
//! the peers the usual way, after it is whole).

use crate::blob_writer::Report;
use bytes::Bytes;
use site_core::Digest;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Bytes of an upload's latest chunks kept for its readers.
const RECENT: u64 = 8 << 20;

/// A delivery counts as arriving while its bytes came this recently.
pub(crate) const RECEIVING_LATELY: std::time::Duration = std::time::Duration::from_secs(1);

/// The latest chunks written to a growing file, by their offset in it.
#[derive(Default)]
pub(crate) struct Recent {
    chunks: std::collections::VecDeque<(u64, Bytes)>,
    bytes: u64,
}

impl Recent {
    /// Keeps `batch`, which ends at `end`, dropping the oldest chunks beyond [`RECENT`].
    fn push(&mut self, end: u64, batch: &[Bytes]) {
        let mut at = end - batch.iter().map(|b| b.len() as u64).sum::<u64>();
        for chunk in batch {
            self.chunks.push_back((at, chunk.clone()));
            self.bytes += chunk.len() as u64;
            at += chunk.len() as u64;
        }
        while self.bytes > RECENT {
            let (_, old) = self.chunks.pop_front().expect("bytes counted");
            self.bytes -= old.len() as u64;
        }
    }

    /// Up to `max` bytes from offset `pos` (below `written`), if they are still here.
    pub(crate) fn get(&self, pos: u64, written: u64, max: u64) -> Option<Bytes> {
        let (at, chunk) = self
            .chunks
            .iter()
            .rev()
            .find(|(at, c)| *at <= pos && pos < at + c.len() as u64)?;
        let from = (pos - at) as usize;
        let to = (chunk.len() as u64)
            .min(written - at)
            .min(from as u64 + max) as usize;
        Some(chunk.slice(from..to))
    }
}

/// How far an upload has come.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Bytes in the file.
    pub(crate) written: u64,
    /// The upload stopped before the last byte.
    pub(crate) broken: bool,
}

/// An upload file's progress and latest chunks, as its readers follow them.
#[derive(Clone)]
pub(crate) struct Growth {
    pub(crate) progress: watch::Receiver<Progress>,
    pub(crate) recent: Arc<Mutex<Recent>>,
}

/// A blob still arriving, as its readers see it.
#[derive(Clone)]
pub(crate) struct Arriving {
    /// The upload file.
    pub(crate) path: PathBuf,
    /// The blob's size.
    pub(crate) size: u64,
    pub(crate) growth: Growth,
}

struct Entry {
    /// Which upload of the blob (a later one may replace it).
    id: u64,
    blob: Arriving,
}

/// Blobs being received on this node. Cheap to clone; clones share them.
#[derive(Clone, Default)]
pub(crate) struct Growing(Arc<Uploading>);

#[derive(Default)]
struct Uploading {
    blobs: Mutex<HashMap<Digest, Entry>>,
    next_id: AtomicU64,
    /// When bytes of an upload last reached its file.
    last_bytes: Mutex<Option<std::time::Instant>>,
}

/// Publishes an upload's progress for as long as it lives; dropped before the last byte,
/// it tells readers the upload broke off.
pub(crate) struct GrowingGuard {
    growing: Growing,
    digest: Digest,
    id: u64,
    size: u64,
    progress: Arc<watch::Sender<Progress>>,
    recent: Arc<Mutex<Recent>>,
}

impl GrowingGuard {
    /// What tells readers how long the file is (from any thread).
    pub(crate) fn reporter(&self) -> Report {
        let (progress, recent) = (self.progress.clone(), self.recent.clone());
        let growing = self.growing.clone();
        Arc::new(move |written, batch| {
            *growing.0.last_bytes.lock().expect("growing") = Some(std::time::Instant::now());
            recent.lock().expect("recent chunks").push(written, batch);
            progress.send_if_modified(|p| {
                let moved = p.written < written;
                p.written = p.written.max(written);
                moved
            });
        })
    }
}

impl Drop for GrowingGuard {
    fn drop(&mut self) {
        let size = self.size;
        self.progress.send_if_modified(|p| {
            p.broken = p.written < size;
            p.broken
        });
        let mut blobs = self.growing.0.blobs.lock().expect("growing");
        if blobs.get(&self.digest).is_some_and(|e| e.id == self.id) {
            blobs.remove(&self.digest);
        }
    }
}

impl Growing {
    /// Offers the upload of blob `d` (`size` bytes, `written` of them already in the file
    /// at `path`) to peers until the guard is dropped.
    pub(crate) fn begin(&self, d: &Digest, path: PathBuf, size: u64, written: u64) -> GrowingGuard {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Progress {
            written,
            broken: false,
        });
        let recent = Arc::new(Mutex::new(Recent::default()));
        self.0.blobs.lock().expect("growing").insert(
            d.clone(),
            Entry {
                id,
                blob: Arriving {
                    path,
                    size,
                    growth: Growth {
                        progress: rx,
                        recent: recent.clone(),
                    },
                },
            },
        );
        GrowingGuard {
            growing: self.clone(),
            digest: d.clone(),
            id,
            size,
            progress: Arc::new(tx),
            recent,
        }
    }

    /// Blob `d`, if it is arriving on this node.
    pub(crate) fn arriving(&self, d: &Digest) -> Option<Arriving> {
        let blobs = self.0.blobs.lock().expect("growing");
        blobs.get(d).map(|e| e.blob.clone())
    }

    /// Whether a delivery is arriving whose bytes came in the last second (one that
    /// stalled does not count).
    pub(crate) fn flowing(&self) -> bool {
        let lately = self
            .0
            .last_bytes
            .lock()
            .expect("growing")
            .is_some_and(|t| t.elapsed() < RECEIVING_LATELY);
        lately && !self.0.blobs.lock().expect("growing").is_empty()
    }
}

/// What a background copy yields to: this node receiving a blob someone waits for (a
/// delivery from the tower whose bytes are flowing, or a copy for a majority hold).
#[derive(Clone)]
pub(crate) struct Receiving {
    pub(crate) growing: Growing,
    pub(crate) fetches: crate::fetches::Fetches,
}

impl Receiving {
    /// Whether this node receives a blob someone waits for now.
    pub(crate) fn now(&self) -> bool {
        self.growing.flowing() || self.fetches.holding()
    }
}

#[cfg(test)]
#[path = "growing_test.rs"]
mod tests;
