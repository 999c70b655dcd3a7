//! Blobs still arriving from the tower, readable by peers while they arrive.
//!
//! A blob delivered to a node of a cluster is recorded only once a majority of the voters
//! hold it (`replication.rs`). Rather than wait for its last byte, the receiving node asks
//! the peers to hold it as soon as its stream starts ([`Store::start_hold`]); they fetch it
//! from the upload file as the file grows ([`Store::blob_for_peer`]). The copies thus go on
//! alongside the upload, and the acknowledgement follows the last byte by little more
//! than the peers' fsync.
//!
//! Only bytes already in the file are offered (the writer reports them, see
//! [`crate::blob_writer::BlobWriter::reporting`]). A reader verifies the digest of what it
//! read like for any other fetch; if the upload breaks off, readers still waiting get an
//! error and their hold fails (the blob then goes to the peers the usual way, after it is
//! whole).

use crate::blob_writer::Report;
use crate::{ByteStream, Result, Store, StoreError};
use bytes::Bytes;
use futures_util::StreamExt;
use site_core::Digest;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest chunk a reader of a growing file gets at once.
const CHUNK: u64 = 1 << 20;

/// How far an upload has come.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Bytes in the file.
    written: u64,
    /// The upload stopped before the last byte.
    broken: bool,
}

struct Entry {
    id: u64,
    path: PathBuf,
    size: u64,
    progress: watch::Receiver<Progress>,
}

/// Blobs being received on this node.
#[derive(Default)]
pub(crate) struct Growing {
    blobs: Mutex<HashMap<Digest, Entry>>,
    next_id: AtomicU64,
}

/// Publishes an upload's progress for as long as it lives; dropped before the last byte,
/// it tells readers the upload broke off.
pub(crate) struct GrowingGuard {
    store: Store,
    digest: Digest,
    id: u64,
    size: u64,
    progress: Arc<watch::Sender<Progress>>,
}

impl GrowingGuard {
    /// What tells readers how long the file is (from any thread).
    pub(crate) fn reporter(&self) -> Report {
        let progress = self.progress.clone();
        Arc::new(move |written| {
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
        let mut blobs = self.store.inner.growing.blobs.lock().expect("growing");
        if blobs.get(&self.digest).is_some_and(|e| e.id == self.id) {
            blobs.remove(&self.digest);
        }
    }
}

/// A hold of a blob started while it arrives; aborted if dropped.
pub(crate) struct EarlyHold(JoinHandle<Result<()>>);

impl EarlyHold {
    /// Whether a majority holds the blob: waits for the peers' answers.
    pub(crate) async fn held(mut self) -> Result<()> {
        (&mut self.0)
            .await
            .map_err(|e| StoreError::Unavailable(format!("the hold was dropped: {e}")))?
    }
}

impl Drop for EarlyHold {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Store {
    /// Offers the upload of blob `d` (`size` bytes, `written` of them already in the file
    /// at `path`) to peers until the guard is dropped.
    pub(crate) fn begin_growing(
        &self,
        d: &Digest,
        path: PathBuf,
        size: u64,
        written: u64,
    ) -> GrowingGuard {
        let g = &self.inner.growing;
        let id = g.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Progress {
            written,
            broken: false,
        });
        g.blobs.lock().expect("growing").insert(
            d.clone(),
            Entry {
                id,
                path,
                size,
                progress: rx,
            },
        );
        GrowingGuard {
            store: self.clone(),
            digest: d.clone(),
            id,
            size,
            progress: Arc::new(tx),
        }
    }

    /// Starts having a majority of the voters hold blob `d` while it is still arriving.
    pub(crate) fn start_hold(&self, d: &Digest, size: u64) -> EarlyHold {
        let (store, d) = (self.clone(), d.clone());
        EarlyHold(tokio::spawn(async move {
            store.hold_on_majority(&d, size).await
        }))
    }

    /// Bytes of blob `d` from `offset` on, for a peer: from the blob file, or from the
    /// upload file while the blob is still arriving (recorded or not).
    pub async fn blob_for_peer(&self, d: &Digest, offset: u64) -> Result<ByteStream> {
        let growing = {
            let blobs = self.inner.growing.blobs.lock().expect("growing");
            blobs
                .get(d)
                .map(|e| (e.path.clone(), e.size, e.progress.clone()))
        };
        if let Some((path, size, progress)) = growing {
            if offset > size {
                return Err(StoreError::RangeInvalid {
                    start: offset,
                    offset: size,
                });
            }
            match File::open(&path) {
                Ok(file) => return Ok(tail(file, offset, size, progress)),
                // Installed meanwhile: read the blob file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let file = self.local_blob(d, offset).await?;
        Ok(tokio_util::io::ReaderStream::with_capacity(file, CHUNK as usize).boxed())
    }
}

/// Bytes `from..size` of a growing file, each as soon as the file holds it.
fn tail(file: File, from: u64, size: u64, progress: watch::Receiver<Progress>) -> ByteStream {
    let file = Arc::new(file);
    futures_util::stream::try_unfold(
        (file, from, progress),
        move |(file, pos, mut progress)| async move {
            if pos >= size {
                return Ok(None);
            }
            loop {
                let now = *progress.borrow_and_update();
                if pos < now.written {
                    let n = (now.written - pos).min(CHUNK) as usize;
                    let f = file.clone();
                    let chunk = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0; n];
                        f.read_exact_at(&mut buf, pos).map(|()| Bytes::from(buf))
                    })
                    .await
                    .map_err(std::io::Error::other)??;
                    return Ok(Some((chunk, (file, pos + n as u64, progress))));
                }
                let broke_off = || {
                    std::io::Error::other(
                        "the upload of the blob broke off; it is fetched again once whole",
                    )
                };
                if now.broken {
                    return Err(broke_off());
                }
                if progress.changed().await.is_err() && pos >= progress.borrow().written {
                    return Err(broke_off());
                }
            }
        },
    )
    .boxed()
}
