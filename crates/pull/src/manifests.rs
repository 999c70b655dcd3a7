//! Manifests on a miss, tags under the `Always` policy, and the completion of a fetched
//! image.
//!
//! A manifest an HTTP client missed is answered at once, from the upstream's bytes; the
//! image then completes in the background: its blobs are fetched (shared with the clients
//! that ask for them meanwhile) and the manifest is stored as cache, tag included, once
//! every blob is on the site. An index is stored once the platform asked for (if any) is:
//! it holds only the platforms that were pulled.

use crate::error::PullError;
use crate::peers::FillWatch;
use crate::{Policy, Puller};
use futures_util::StreamExt;
use site_core::{Digest, Manifest, ManifestKind, Platform, Repository};
use site_node::{ManifestRef, NodeError, StoredManifest};
use site_state::{Event, PullSource};
use site_upstream::UpstreamError;
use std::time::Instant;
use tokio::sync::watch;

/// Blobs of one image fetched at once in the background.
const BLOBS_AT_ONCE: usize = 3;

/// A manifest fetched from the upstream, checked.
pub(crate) struct Fetched {
    pub stored: StoredManifest,
    pub manifest: Manifest,
}

impl Puller {
    /// The manifest `reference` names in `repo`, per the registry's policy: what the site
    /// holds, or what the upstream has (fetched now, cached as it completes).
    pub async fn manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
    ) -> Result<StoredManifest, PullError> {
        let store = &self.inner.store;
        let held = match store.repositories.get_manifest(repo, reference) {
            Ok(m) => Some(m),
            Err(NodeError::ManifestUnknown(_)) => None,
            Err(e) => return Err(PullError::store(e)),
        };
        let policy = self.policy_for(repo);
        let tag = match (reference, held) {
            // By digest, or by tag under a policy that trusts the site: what is held.
            (ManifestRef::Digest(_), Some(m)) => return Ok(m),
            (ManifestRef::Tag(_), Some(m)) if policy != Policy::Always => return Ok(m),
            (ManifestRef::Tag(tag), Some(m)) => return self.check_tag(repo, tag, m).await,
            (ManifestRef::Tag(tag), None) => Some(tag.as_str()),
            (ManifestRef::Digest(_), None) => None,
        };
        if policy == Policy::Never {
            let source = self.config().policy_source(repo.host());
            tracing::info!(%repo, registry = %repo.host(), reference = %show(reference), %policy, set_by = %source, "manifest not on the site and not fetched: the pull policy of registry {} is Never ({source})", repo.host());
            return Err(PullError::NotPresent(format!("{repo}:{}", show(reference))));
        }
        let digest = match reference {
            ManifestRef::Digest(d) => Some(d),
            ManifestRef::Tag(_) => None,
        };
        self.fetch_for_client(repo, tag, digest).await
    }

    /// `Always`, tag held: serves what is held unless the tag moved at the upstream and
    /// the new image can be fetched.
    async fn check_tag(
        &self,
        repo: &Repository,
        tag: &str,
        held: StoredManifest,
    ) -> Result<StoredManifest, PullError> {
        let Some(d) = self.moved_tag(repo, tag, &held.digest).await else {
            return Ok(held);
        };
        match self.fetch_for_client(repo, Some(tag), Some(&d)).await {
            Ok(m) => Ok(m),
            Err(e) => {
                kept_held(repo, tag, &e);
                Ok(held)
            }
        }
    }

    /// The digest the upstream gives `repo:tag` now (a HEAD request), when it is not
    /// `held`. An upstream that cannot answer leaves the held image standing: `None`, and
    /// a log line.
    pub(crate) async fn moved_tag(
        &self,
        repo: &Repository,
        tag: &str,
        held: &Digest,
    ) -> Option<Digest> {
        let current = async {
            let session = self.inner.upstreams.session(repo).await?;
            let reference = session.reference(repo, Some(tag), None);
            session.outcome(
                session
                    .upstream
                    .manifest_digest(&reference, &session.auth)
                    .await,
            )
        };
        match current.await {
            Ok(d) if d == *held => None,
            // The upstream names it in another algorithm (sha512): the same manifest if
            // the held bytes have that digest.
            Ok(d)
                if d.algorithm() != held.algorithm()
                    && self
                        .inner
                        .store
                        .repositories
                        .get_manifest(repo, &ManifestRef::Digest(held.clone()))
                        .is_ok_and(|m| d.matches(&m.body)) =>
            {
                None
            }
            Ok(d) => {
                tracing::info!(%repo, tag, old = %held, new = %d, "tag moved at the upstream: fetching it");
                Some(d)
            }
            Err(e) => {
                tracing::warn!(%repo, tag, digest = %held, reason = e.reason(), error = %e, "upstream cannot answer: serving the held image");
                None
            }
        }
    }

    /// An HTTP client's miss: fetches the manifest (once for every client asking for it
    /// meanwhile), answers with it, and completes the image in the background, with the
    /// pull events.
    async fn fetch_for_client(
        &self,
        repo: &Repository,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<StoredManifest, PullError> {
        let image = match (tag, digest) {
            (_, Some(d)) => format!("{repo}@{d}"),
            (Some(t), None) => format!("{repo}:{t}"),
            (None, None) => repo.to_string(),
        };
        let mut answer = {
            let mut pulls = self.inner.manifests.lock().expect("manifest pulls");
            match pulls.get(&image) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    pulls.insert(image.clone(), rx.clone());
                    let (puller, repo) = (self.clone(), repo.clone());
                    let (tag, digest) = (tag.map(str::to_owned), digest.cloned());
                    self.spawn(async move {
                        puller
                            .pull_for_clients(&image, &repo, tag.as_deref(), digest.as_ref(), &tx)
                            .await;
                        puller
                            .inner
                            .manifests
                            .lock()
                            .expect("manifest pulls")
                            .remove(&image);
                    });
                    rx
                }
            }
        };
        let answer = answer
            .wait_for(Option::is_some)
            .await
            .map_err(|_| PullError::Unavailable("the node is shutting down".into()))?
            .clone();
        answer.expect("waited for it")
    }

    /// The shared pull of [`Puller::fetch_for_client`]: the manifest goes to the waiting
    /// clients as soon as it is fetched; the image is then completed.
    async fn pull_for_clients(
        &self,
        image: &str,
        repo: &Repository,
        tag: Option<&str>,
        digest: Option<&Digest>,
        answer: &watch::Sender<Option<Result<StoredManifest, PullError>>>,
    ) {
        let started = Instant::now();
        self.publish(Event::ImagePullStarted {
            image: image.to_owned(),
            node: self.inner.node.node,
        });
        let fetched = match self.fetch_manifest(repo, tag, digest).await {
            Ok(f) => f,
            Err(e) => {
                self.pull_failed(image, &e);
                answer.send_replace(Some(Err(e)));
                return;
            }
        };
        // The clients ask for its blobs next, on any node: those the site holds are
        // linked into the repository first (the upstream's image references them).
        self.link_referenced(repo, &fetched.manifest).await;
        answer.send_replace(Some(Ok(fetched.stored.clone())));
        let done = self.complete(repo, tag, &fetched, None).await;
        self.pull_ended(image, &fetched.stored.digest, done, started);
    }

    /// Fetches a manifest by tag or digest and checks it: its digest, its size, that it
    /// parses.
    pub(crate) async fn fetch_manifest(
        &self,
        repo: &Repository,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Fetched, PullError> {
        let result = self.fetch_manifest_once(repo, tag, digest).await;
        let outcome = result.as_ref().map_or_else(|e| e.reason(), |_| "ok");
        self.inner.fetches.inc(&["manifest", outcome]);
        result
    }

    async fn fetch_manifest_once(
        &self,
        repo: &Repository,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Fetched, PullError> {
        let session = self.inner.upstreams.session(repo).await?;
        let reference = session.reference(repo, tag, digest);
        let max = self.inner.store.max_manifest_bytes;
        let (body, d) = session.outcome(
            session
                .upstream
                .manifest_bounded(&reference, &session.auth, max)
                .await,
        )?;
        let manifest = Manifest::parse(&body, None)
            .map_err(|e| PullError::Invalid(format!("the upstream's manifest {d}: {e}")))?;
        tracing::info!(%repo, tag = tag.unwrap_or(""), digest = %d, media_type = %manifest.media_type, "manifest fetched from upstream");
        Ok(Fetched {
            stored: StoredManifest {
                digest: d,
                media_type: manifest.media_type.clone(),
                body: body.to_vec(),
            },
            manifest,
        })
    }

    /// Makes a fetched image present: an image manifest's missing blobs are fetched
    /// (room made for them first), then it is stored; an index's `platform` child (if
    /// one is asked) is made present, then the index is stored. Returns the image's
    /// bytes on the site.
    pub(crate) async fn complete(
        &self,
        repo: &Repository,
        tag: Option<&str>,
        fetched: &Fetched,
        platform: Option<&Platform>,
    ) -> Result<u64, PullError> {
        match &fetched.manifest.kind {
            ManifestKind::Image { .. } => self.fetch_blobs(repo, &fetched.manifest).await?,
            ManifestKind::Index { manifests } => {
                if let Some(p) = platform {
                    let child = p.pick(manifests).ok_or_else(|| PullError::Upstream {
                        registry: repo.host().to_owned(),
                        error: UpstreamError::NotFound(format!(
                            "{repo}@{}: no manifest for platform {p} in the index",
                            fetched.stored.digest
                        )),
                        retry_after: None,
                    })?;
                    let held = self.inner.store.state.read(|s| {
                        s.manifest(&child.digest).is_some()
                            && s.missing_parts(&child.digest).is_empty()
                    });
                    if !held {
                        let child = self.fetch_manifest(repo, None, Some(&child.digest)).await?;
                        if matches!(child.manifest.kind, ManifestKind::Index { .. }) {
                            return Err(PullError::Invalid(format!(
                                "{repo}@{}: an index within an index",
                                child.stored.digest
                            )));
                        }
                        Box::pin(self.complete(repo, None, &child, None)).await?;
                    }
                }
            }
        }
        let reference = match tag {
            Some(t) => ManifestRef::Tag(t.to_owned()),
            None => ManifestRef::Digest(fetched.stored.digest.clone()),
        };
        let m = &fetched.stored;
        self.inner
            .store
            .repositories
            .cache_manifest(repo, &reference, Some(&m.media_type), &m.body)
            .await
            .map_err(PullError::store)?;
        let bytes = self.inner.store.state.read(|s| s.image_size(&m.digest));
        tracing::info!(%repo, tag = tag.unwrap_or(""), digest = %m.digest, bytes, "image cached");
        self.publish(Event::ImageCached {
            repo: repo.clone(),
            digest: m.digest.clone(),
            bytes,
        });
        Ok(bytes)
    }

    /// Fetches the blobs of an image manifest the site lacks, a few at once, once there
    /// is room for them.
    async fn fetch_blobs(&self, repo: &Repository, manifest: &Manifest) -> Result<(), PullError> {
        let store = &self.inner.store;
        let missing: Vec<(Digest, u64)> = manifest
            .blob_references()
            .iter()
            .filter(|b| store.state.read(|s| s.blob(&b.digest).is_none()))
            .map(|b| (b.digest.clone(), b.size))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let needed = missing.iter().map(|(_, size)| size).sum();
        self.inner.node.room.make_room(needed).await?;
        let fetches = missing.into_iter().map(|(d, size)| {
            let mut fetch = FillWatch(self.fetch_blob(repo, &d, Some(size)));
            async move { fetch.done().await.map(|_| ()) }
        });
        let mut results = futures_util::stream::iter(fetches).buffer_unordered(BLOBS_AT_ONCE);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// Publishes how a pull that fetched ended.
    pub(crate) fn pull_ended(
        &self,
        image: &str,
        digest: &Digest,
        done: Result<u64, PullError>,
        started: Instant,
    ) {
        match done {
            Ok(bytes) => self.publish(Event::ImagePullCompleted {
                image: image.to_owned(),
                digest: digest.clone(),
                source: PullSource::Downloaded,
                bytes,
                millis: started.elapsed().as_millis() as u64,
                node: self.inner.node.node,
            }),
            Err(e) => self.pull_failed(image, &e),
        }
    }

    /// Publishes (and logs) a failed pull.
    pub(crate) fn pull_failed(&self, image: &str, e: &PullError) {
        tracing::warn!(image, reason = e.reason(), error = %e, "image pull failed");
        self.publish(Event::ImagePullFailed {
            image: image.to_owned(),
            reason: e.reason().to_owned(),
            message: e.to_string(),
            node: self.inner.node.node,
        });
    }
}

/// Logs that the held image stands because the tag's new one could not be fetched.
pub(crate) fn kept_held(repo: &Repository, tag: &str, e: &PullError) {
    tracing::warn!(%repo, tag, reason = e.reason(), error = %e, "serving the held image: the new one could not be fetched");
}

fn show(r: &ManifestRef) -> String {
    match r {
        ManifestRef::Tag(t) => t.clone(),
        ManifestRef::Digest(d) => d.to_string(),
    }
}
