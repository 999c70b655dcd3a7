//! `EnsureImage`, the edge enforcer's call: make an image present as the policy says,
//! and say whether it was held (`CACHED`) or fetched now (`DOWNLOADED`).
//!
//! The image is present when its manifest is in its repository with every blob on the
//! site; for an index, when the child of the asked platform (the node's own by default)
//! is present too. A fetch is awaited to the end: the answer means the image is durable
//! on the site.

use crate::error::PullError;
use crate::{Policy, Puller};
use site_core::{Digest, ImageReference, ManifestKind, Platform, Repository};
use site_state::{Event, PullSource};
use std::time::Instant;

/// An image made present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The manifest (or index) digest held.
    pub digest: Digest,
    /// Bytes of the image on the site (manifests and blobs).
    pub size: u64,
    /// Held already, or fetched now.
    pub source: PullSource,
}

impl Puller {
    /// Makes `image` (`NAME:TAG`, `NAME@DIGEST` or `NAME:TAG@DIGEST`) present under
    /// `policy` (the registry's when `None`), its `platform` child too for an index (the
    /// node's own when `None`). Raises the pull events.
    pub async fn ensure(
        &self,
        image: &str,
        policy: Option<&str>,
        platform: Option<&str>,
    ) -> Result<Ensured, PullError> {
        let started = Instant::now();
        let node = self.inner.node.node;
        let shown: String = image.chars().take(300).collect();
        let request = parse_request(image, policy, platform, &self.inner.node.default_registry);
        let (reference, policy, platform) = match request {
            Ok(r) => r,
            Err(e) => {
                self.pull_failed(&shown, &e);
                return Err(e);
            }
        };
        let policy = policy.unwrap_or_else(|| self.policy_for(&reference.repository));
        self.publish(Event::ImagePullStarted {
            image: shown.clone(),
            node,
        });
        let result = self.ensure_parsed(&reference, policy, &platform).await;
        match &result {
            Ok(e) if e.source == PullSource::Cached => self.publish(Event::ImagePullCompleted {
                image: shown,
                digest: e.digest.clone(),
                source: PullSource::Cached,
                bytes: e.size,
                millis: started.elapsed().as_millis() as u64,
                node,
            }),
            Ok(e) => self.pull_ended(&shown, &e.digest, Ok(e.size), started),
            Err(e) => self.pull_failed(&shown, e),
        }
        result
    }

    async fn ensure_parsed(
        &self,
        reference: &ImageReference,
        policy: Policy,
        platform: &Platform,
    ) -> Result<Ensured, PullError> {
        let repo = &reference.repository;
        let tag = reference.tag.as_deref();
        let held_digest = match &reference.digest {
            Some(d) => Some(d.clone()),
            None => self
                .inner
                .store
                .state
                .read(|s| s.tag(repo, tag.unwrap_or("latest")).cloned()),
        };
        let held = held_digest.as_ref().and_then(|d| {
            self.held_whole(repo, d, platform)
                .map(|size| (d.clone(), size))
        });
        let cached = |(digest, size): (Digest, u64)| Ensured {
            digest,
            size,
            source: PullSource::Cached,
        };
        match (policy, held) {
            (_, Some(h)) if reference.digest.is_some() || policy != Policy::Always => {
                return Ok(cached(h))
            }
            (Policy::Never, None) => {
                tracing::info!(image = %reference, "image not on the site; the pull policy Never forbids fetching it");
                return Err(PullError::NotPresent(reference.to_string()));
            }
            (Policy::Always, Some(h)) => {
                // Tag held: is it still the upstream's?
                let tag = tag.unwrap_or("latest");
                let Some(d) = self.moved_tag(repo, tag, &h.0).await else {
                    return Ok(cached(h));
                };
                return match self.fetch_whole(repo, Some(tag), Some(&d), platform).await {
                    Ok(e) => Ok(e),
                    Err(e) => {
                        crate::manifests::kept_held(repo, tag, &e);
                        Ok(cached(h))
                    }
                };
            }
            _ => {}
        }
        self.fetch_whole(repo, tag, reference.digest.as_ref(), platform)
            .await
    }

    /// Fetches an image and waits until it is present.
    async fn fetch_whole(
        &self,
        repo: &Repository,
        tag: Option<&str>,
        digest: Option<&Digest>,
        platform: &Platform,
    ) -> Result<Ensured, PullError> {
        let tag = tag.or(digest.is_none().then_some("latest"));
        let fetched = self.fetch_manifest(repo, tag, digest).await?;
        let size = self.complete(repo, tag, &fetched, Some(platform)).await?;
        Ok(Ensured {
            digest: fetched.stored.digest,
            size,
            source: PullSource::Downloaded,
        })
    }

    /// The bytes of image `d` of `repo` when the site holds it whole (for an index: with
    /// its `platform` child).
    fn held_whole(&self, repo: &Repository, d: &Digest, platform: &Platform) -> Option<u64> {
        self.inner.store.state.read(|s| {
            let m = s.repo_manifest(repo, d)?;
            if !s.missing_parts(d).is_empty() {
                return None;
            }
            let parsed = site_core::Manifest::parse(m.body.as_bytes(), Some(&m.media_type)).ok()?;
            if let ManifestKind::Index { manifests } = &parsed.kind {
                let child = platform.pick(manifests)?;
                s.manifest(&child.digest)?;
            }
            Some(s.image_size(d))
        })
    }
}

/// The image, the policy and the platform of a request; `INVALID` when malformed.
fn parse_request(
    image: &str,
    policy: Option<&str>,
    platform: Option<&str>,
    default_registry: &str,
) -> Result<(ImageReference, Option<Policy>, Platform), PullError> {
    let reference = ImageReference::parse_with_default(image, default_registry)
        .map_err(|e| PullError::Invalid(format!("image {image:?}: {e}")))?;
    let policy = match policy {
        None | Some("") => None,
        Some(p) => Some(p.parse().map_err(PullError::Invalid)?),
    };
    let platform = match platform {
        None | Some("") => Platform::current(),
        Some(p) => p
            .parse()
            .map_err(|e| PullError::Invalid(format!("platform: {e}")))?,
    };
    Ok((reference, policy, platform))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_anything_is_asked() {
        let ok = parse_request("nginx:1.25", None, None, "docker.io").unwrap();
        assert_eq!(ok.0.repository.to_string(), "docker.io/library/nginx");
        assert_eq!(ok.1, None);
        assert_eq!(ok.2, Platform::current());
        let pinned = parse_request(
            "127.0.0.1:5000/team/app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            Some("Never"),
            Some("linux/arm64"),
            "docker.io",
        )
        .unwrap();
        assert_eq!(pinned.0.tag.as_deref(), Some("v1"));
        assert!(pinned.0.digest.is_some());
        assert_eq!(pinned.1, Some(Policy::Never));
        assert_eq!(pinned.2.to_string(), "linux/arm64");
        for (image, policy, platform) in [
            ("", None, None),
            ("team/UPPER:v1", None, None),
            ("../../etc/passwd", None, None),
            ("app@sha256:short", None, None),
            ("app:v1", Some("Sometimes"), None),
            ("app:v1", None, Some("linux")),
            ("app:v1", None, Some("linux/../../x")),
        ] {
            let e = parse_request(image, policy, platform, "docker.io").unwrap_err();
            assert_eq!(e.reason(), "INVALID", "{image:?} {policy:?} {platform:?}");
        }
    }
}
