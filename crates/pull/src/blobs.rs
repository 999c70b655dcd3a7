//! Blobs fetched on a miss: one upstream transfer per digest on this node, written into
//! the node the way a tower delivery is (`Deliveries::receive_blob`: verified, durable on a
//! majority, recorded), and served to every waiting client while it arrives.
//!
//! A client is streamed the bytes already in the growing file (this node's, or the
//! leader's when the leader fills it for the site, see `peers.rs`); the last byte of
//! what it asked for is held back until the fetch is verified, so a body that turns out
//! wrong ends in a broken connection, never a completed bad body.

use crate::error::PullError;
use crate::stream::{gated, Source};
use crate::Puller;
use site_core::{Digest, Manifest, Repository};
use site_node::{ByteStream, NodeError, Received};
use site_upstream::UpstreamError;
use tokio::sync::watch;

/// Upstream streams tried for one blob (the first, then resumes after breaks).
const ATTEMPTS: usize = 4;

/// How a shared fetch of one blob stands.
#[derive(Debug, Clone)]
pub(crate) enum Fetch {
    /// Asking the upstream.
    Opening,
    /// Bytes are arriving into a growing file.
    Streaming {
        /// The blob's size.
        size: u64,
        /// The node whose file it is, when not this one.
        from: Option<u64>,
    },
    /// Every byte has come and matches the digest; the site is making it durable.
    Verified {
        /// The blob's size.
        size: u64,
        /// The node whose file it is, when not this one.
        from: Option<u64>,
    },
    /// Verified and recorded (its size), or failed.
    Done(Result<u64, PullError>),
}

/// A blob being fetched (or just fetched) for a client.
pub struct BlobFill {
    puller: Puller,
    digest: Digest,
    size: u64,
    /// The node whose growing copy is read, when not this one.
    from: Option<u64>,
    fetch: watch::Receiver<Fetch>,
}

impl BlobFill {
    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes `start..start + len`, as they arrive. The stream fails (and the client's
    /// connection breaks) if the fetch does not end verified.
    pub async fn stream(self, start: u64, len: u64) -> Result<ByteStream, PullError> {
        let store = &self.puller.inner.store;
        let done = match &*self.fetch.borrow() {
            Fetch::Done(done) => Some(done.clone()),
            _ => None,
        };
        if let Some(done) = done {
            done?;
            match (
                store.reads.read_blob(&self.digest, start, len).await,
                self.from,
            ) {
                (Ok(s), _) => return Ok(s),
                // Recorded by the leader, not applied here yet: read the leader's copy.
                (Err(NodeError::BlobUnknown(_)), Some(_)) => {}
                (Err(e), _) => return Err(PullError::store(e)),
            }
        }
        let tail = match self.from {
            Some(node) => {
                self.puller
                    .fetch_from_peer(node, &self.digest, start)
                    .await?
            }
            None => store
                .peer_files
                .blob_for_peer(&self.digest, start, false)
                .await
                .map_err(PullError::store)?,
        };
        Ok(gated(tail, len, self.fetch))
    }
}

impl Puller {
    /// Blob `d` for a client of `repo` that missed it: linked when the site holds it
    /// elsewhere, else fetched from the upstream (or joined to the fetch under way).
    /// Returns once its size is known.
    pub async fn blob(&self, repo: &Repository, d: &Digest) -> Result<BlobFill, PullError> {
        let policy = self.policy_for(repo);
        if policy == crate::Policy::Never {
            let source = self.config().policy_source(repo.host());
            tracing::info!(%repo, registry = %repo.host(), blob = %d, %policy, set_by = %source, "blob not on the site and not fetched: the pull policy of registry {} is Never ({source})", repo.host());
            return Err(PullError::NotPresent(format!("{repo}@{d}")));
        }
        if let Some(size) = self.link_held(repo, d).await? {
            return Ok(BlobFill {
                puller: self.clone(),
                digest: d.clone(),
                size,
                from: None,
                fetch: watch::channel(Fetch::Done(Ok(size))).1,
            });
        }
        let mut fetch = self.fetch_blob(repo, d, None);
        let (size, from) = {
            let now = fetch
                .wait_for(|f| !matches!(f, Fetch::Opening))
                .await
                .map_err(|_| PullError::Unavailable("the fetch was dropped".into()))?;
            match &*now {
                Fetch::Streaming { size, from } | Fetch::Verified { size, from } => (*size, *from),
                Fetch::Done(done) => (done.clone()?, None),
                Fetch::Opening => unreachable!("waited for it to open"),
            }
        };
        Ok(BlobFill {
            puller: self.clone(),
            digest: d.clone(),
            size,
            from,
            fetch,
        })
    }

    /// The size of blob `d` of `repo` when the site can serve it without an upstream
    /// (see [`Puller::link_held`]); `None` under the policy `Never` or when it cannot.
    ///
    /// A fetch of `d` whose bytes have all come and matched is waited for: its clients
    /// have had their last byte, and a HEAD they send next finds what they were served.
    pub async fn held_blob(&self, repo: &Repository, d: &Digest) -> Result<Option<u64>, PullError> {
        if self.policy_for(repo) == crate::Policy::Never {
            return Ok(None);
        }
        let verified = self
            .inner
            .blobs
            .lock()
            .expect("blob fetches")
            .get(d)
            .cloned();
        if let Some(mut fetch) = verified.filter(|f| matches!(*f.borrow(), Fetch::Verified { .. }))
        {
            // It ends with the record (or fails); a dropped sender means it ended too.
            let _ = fetch.wait_for(|f| matches!(f, Fetch::Done(_))).await;
        }
        self.link_held(repo, d).await
    }

    /// The size of blob `d` when `repo` has it (a manifest fetched from its upstream
    /// links what it references and the site holds: [`Puller::link_referenced`]), or when
    /// the site holds it and an image this cache fetched into `repo` references it (then
    /// linked: the upstream's repository has it, so its bytes need not come again).
    ///
    /// A blob of the site that no such image references is not linked: `repo` has it only
    /// if its upstream says so. A blob pushed into a repository and deleted from it thus
    /// stays gone there, whatever other repositories hold.
    pub(crate) async fn link_held(
        &self,
        repo: &Repository,
        d: &Digest,
    ) -> Result<Option<u64>, PullError> {
        let store = &self.inner.store;
        if let Ok(size) = store.repositories.blob_size(repo, d) {
            return Ok(Some(size));
        }
        let held_and_referenced = store.state.read(|s| {
            s.blob(d).is_some()
                && s.repo(repo).is_some_and(|r| {
                    r.manifests.iter().any(|m| {
                        s.repo_manifest(repo, m)
                            .is_some_and(|m| m.cached && m.blobs.contains(d))
                    })
                })
        });
        if !held_and_referenced {
            return Ok(None);
        }
        store
            .repositories
            .link_blob(repo, d)
            .await
            .map_err(PullError::store)?;
        Ok(store.repositories.blob_size(repo, d).ok())
    }

    /// Links into `repo` the blobs `manifest` (just fetched from `repo`'s upstream)
    /// references that the site holds elsewhere: the upstream's repository has them, so
    /// a client of any node is served them with no fetch. A link that fails is logged;
    /// the blob is then fetched like a miss.
    pub(crate) async fn link_referenced(&self, repo: &Repository, manifest: &Manifest) {
        let store = &self.inner.store;
        for b in manifest.blob_references() {
            let d = &b.digest;
            let held_elsewhere = store.repositories.blob_size(repo, d).is_err()
                && store.state.read(|s| s.blob(d).is_some());
            if !held_elsewhere {
                continue;
            }
            if let Err(e) = store.repositories.link_blob(repo, d).await {
                tracing::warn!(%repo, blob = %d, error = %e, "cannot link a blob the site holds");
            }
        }
    }

    /// Starts fetching blob `d` of `repo` (of `expected` bytes, when a manifest said so),
    /// or joins the fetch under way. The fetch runs to its end whoever waits for it.
    pub(crate) fn fetch_blob(
        &self,
        repo: &Repository,
        d: &Digest,
        expected: Option<u64>,
    ) -> watch::Receiver<Fetch> {
        self.start_fetch(repo, d, expected, false)
    }

    /// [`Puller::fetch_blob`]; `for_peer`: asked by a peer, so fetched here whoever leads.
    pub(crate) fn start_fetch(
        &self,
        repo: &Repository,
        d: &Digest,
        expected: Option<u64>,
        for_peer: bool,
    ) -> watch::Receiver<Fetch> {
        let mut fetches = self.inner.blobs.lock().expect("blob fetches");
        if let Some(rx) = fetches.get(d) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Fetch::Opening);
        fetches.insert(d.clone(), rx.clone());
        let (puller, repo, d) = (self.clone(), repo.clone(), d.clone());
        self.spawn(async move {
            let started = std::time::Instant::now();
            let result = puller.run_fetch(&repo, &d, expected, for_peer, &tx).await;
            let outcome = result.as_ref().map_or_else(|e| e.reason(), |_| "ok");
            puller.inner.fetches.inc(&["blob", outcome]);
            match &result {
                Ok(size) => tracing::info!(%repo, blob = %d, size, ms = started.elapsed().as_millis() as u64, "blob fetched from upstream"),
                Err(e) => tracing::warn!(%repo, blob = %d, reason = e.reason(), error = %e, "blob fetch from upstream failed"),
            }
            puller.inner.blobs.lock().expect("blob fetches").remove(&d);
            tx.send_replace(Fetch::Done(result));
        });
        rx
    }

    async fn run_fetch(
        &self,
        repo: &Repository,
        d: &Digest,
        expected: Option<u64>,
        for_peer: bool,
        tx: &watch::Sender<Fetch>,
    ) -> Result<u64, PullError> {
        // The site fetches once: through the leader, unless this node leads (or was
        // asked by a peer, or no leader answers).
        if let (false, Some((leader, peers))) = (for_peer, self.remote_leader()) {
            match self
                .fill_through(leader, peers, repo, d, expected, tx)
                .await
            {
                Ok(size) => return Ok(size),
                Err(Some(e)) => return Err(e),
                Err(None) => {}
            }
        }
        let store = &self.inner.store;
        let max = store.max_blob_bytes;
        let session = self.inner.upstreams.session(repo).await?;
        let reference = session.reference(repo, None, Some(d));
        session.upstream.remember_auth(&reference, &session.auth);
        // A fetch a crash interrupted left its bytes: resume after them.
        let mut offset = store
            .deliveries
            .tower_upload_offset(d)
            .await
            .map_err(PullError::store)?;
        let mut size = expected;
        let mut last_break = None;
        for _ in 0..ATTEMPTS {
            let (stream, skip) = match size {
                Some(_) if offset > 0 => {
                    session.outcome(session.upstream.blob(&reference, d, offset).await)?
                }
                _ => {
                    let (stream, length) =
                        session.outcome(session.upstream.blob_whole(&reference, d).await)?;
                    let declared = match (length, size) {
                        (Some(l), Some(e)) if l != e => {
                            return Err(PullError::Invalid(format!(
                                "the upstream sends {l} bytes for blob {d}, its manifest says {e}"
                            )))
                        }
                        (Some(l), _) | (None, Some(l)) => l,
                        (None, None) => {
                            return Err(PullError::Invalid(format!(
                                "the upstream sends blob {d} without a length"
                            )))
                        }
                    };
                    size = Some(declared);
                    (stream, offset)
                }
            };
            let size = size.expect("known once a stream is open");
            if size > max {
                return Err(PullError::Invalid(format!(
                    "blob {d} of {size} bytes is larger than the limit of {max} bytes"
                )));
            }
            if offset == 0 {
                // Before the first byte, so a client is told at once (507), and nothing
                // live is ever evicted for it.
                self.inner.node.room.make_room(size).await?;
            }
            let mut source = Source {
                stream,
                skip,
                tx,
                size,
                broke: None,
            };
            let received = store
                .deliveries
                .receive_blob(Some(repo), d, size, offset, &mut source)
                .await
                .map_err(PullError::store)?;
            match received.1 {
                Received::Complete => return Ok(size),
                Received::Partial(held) => {
                    let why = source
                        .broke
                        .unwrap_or_else(|| format!("the stream ended at {held} of {size} bytes"));
                    tracing::info!(%repo, blob = %d, held, size, "upstream stream broke: resuming ({why})");
                    last_break = Some(why);
                    offset = held;
                }
            }
        }
        let why = last_break.unwrap_or_default();
        Err(session
            .outcome::<()>(Err(UpstreamError::Unreachable(format!(
                "blob {d}: the stream broke {ATTEMPTS} times: {why}"
            ))))
            .expect_err("an error"))
    }
}
