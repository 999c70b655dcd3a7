//! A rollout's images into the tower's registry ("automatic pull"): each image resolved
//! there (tags become digests, manifests kept with their exact bytes), then every image
//! manifest made present in it (the registry fetches what it lacks from the upstream,
//! verified and durable), and scheduled there as the rollout's application (live for its
//! GC). Until every image is held, the rollout is `pulling`: no site is worked, and a
//! failed attempt is tried again after the tower's backoff.

use crate::tower::{now_ms, Tower};
use site_core::{Descriptor, ImageReference};
use site_delivery::exit::Error;
use site_delivery::resolve::resolve_at;
use site_fleet::missing::Blob;
use site_fleet::rollout::{Image, Manifest};
use std::sync::Arc;

/// Manifest media types that are indexes (their children are made present instead).
const INDEXES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// One image resolved in the tower's registry, with its manifests' bytes.
pub struct Resolved {
    /// The image as the rollout keeps it.
    pub image: Image,
    /// Each manifest's digest and exact bytes.
    pub bodies: Vec<(String, bytes::Bytes)>,
}

/// `text` as an image reference: a name without a host is the registry's
/// `[registry] default_upstream`'s, as for what is pushed to it.
pub fn reference(tower: &Tower, text: &str) -> Result<ImageReference, Error> {
    ImageReference::parse_with_default(text, &tower.registry.default_upstream)
        .map_err(|e| Error::Usage(format!("image {text:?}: {e}")))
}

/// Resolves `text` in the tower's registry.
pub async fn resolve(tower: &Tower, text: &str) -> Result<Resolved, Error> {
    let reference = reference(tower, text)?;
    let registry = &tower.registry;
    let at = registry.location(&reference);
    let resolved = resolve_at(&registry.client, &registry.auth(), &reference, &at, None).await?;
    let mut bodies = Vec::with_capacity(resolved.manifests.len());
    let mut manifests = Vec::with_capacity(resolved.manifests.len());
    for node in &resolved.manifests {
        bodies.push((node.digest.to_string(), node.body.clone()));
        manifests.push(Manifest {
            digest: node.digest.to_string(),
            media_type: node.media_type.clone(),
            size: node.body.len() as u64,
        });
    }
    let blob = |d: &Descriptor| Blob {
        digest: d.digest.to_string(),
        size: d.size,
    };
    tracing::info!(image = text, digest = %resolved.digest, "resolved in the tower's registry");
    Ok(Resolved {
        image: Image {
            requested: text.to_owned(),
            repository: reference.repository.to_string(),
            tag: reference.tag.clone(),
            digest: resolved.digest.to_string(),
            manifests,
            blobs: resolved.blobs.iter().map(blob).collect(),
        },
        bodies,
    })
}

/// Makes every image manifest of `image` present in the tower's registry: held whole,
/// verified and durable. Returns the failure's reason and message.
async fn hold(tower: &Tower, image: &Image) -> Result<(), (&'static str, String)> {
    for m in &image.manifests {
        if INDEXES.contains(&m.media_type.as_str()) {
            continue;
        }
        let pinned = format!("{}@{}", image.repository, m.digest);
        if let Err(e) = tower.registry.puller.ensure(&pinned, None, None).await {
            return Err((e.reason(), e.to_string()));
        }
    }
    Ok(())
}

/// One attempt at rollout `id`'s images: resolved, then held; on success the rollout's
/// sites may be worked, else it waits for its backoff.
pub async fn attempt(tower: &Arc<Tower>, id: &str) {
    let Some(rollout) = tower.rollout(id) else {
        return;
    };
    let Some(pulling) = &rollout.pulling else {
        return;
    };
    let outcome = async {
        // Tags are resolved once: by the creation, or by the first attempt that could.
        let mut images = rollout.images.clone();
        if images.is_empty() {
            for text in &pulling.requested {
                let r = resolve(tower, text)
                    .await
                    .map_err(|e| (e.reason(), e.to_string()))?;
                for (digest, body) in &r.bodies {
                    tower
                        .store
                        .put_manifest(digest, body)
                        .await
                        .map_err(|e| ("OTHER", e.to_string()))?;
                }
                images.push(r.image);
            }
            let resolved = images.clone();
            tower.change(id, |r| r.images = resolved);
        }
        for image in &images {
            hold(tower, image).await?;
        }
        // Live in the registry as the rollout's application: its GC keeps them while
        // this is the application's latest rollout (a newer one schedules its own).
        // A rollout cancelled (or superseded) meanwhile schedules nothing: its attempt
        // is also stopped with its workers.
        if tower.rollout(id).is_none_or(|r| r.cancelled()) {
            return Err(("CANCELLED", "the rollout was cancelled".to_owned()));
        }
        let pinned: Vec<String> = images.iter().map(Image::pinned).collect();
        tower
            .registry
            .applications
            .schedule(&rollout.application, &pinned)
            .await
            .map_err(|e| ("OTHER", format!("scheduling in the tower's registry: {e}")))?;
        Ok::<_, (&'static str, String)>(images)
    }
    .await;
    let backoff = tower.settings.backoff;
    match outcome {
        Ok(images) => {
            tracing::info!(
                rollout = id,
                images = images.len(),
                "every image is in the tower's registry"
            );
            let pulled = tower.change(id, |r| {
                r.pulled(images);
                r.clone()
            });
            if let Some(r) = pulled {
                if let Err(e) = tower.supersede_older(&r).await {
                    tracing::error!(rollout = id, error = %e, "cannot supersede older rollouts");
                }
            }
        }
        Err((reason, message)) => {
            tracing::warn!(rollout = id, reason, %message, "the rollout's images are not all in the tower's registry yet");
            tower.change(id, |r| r.pull_failed(reason, &message, now_ms(), &backoff));
        }
    }
    if let Err(e) = tower.save_header(id).await {
        tracing::error!(rollout = id, error = %e, "cannot write the rollout");
    }
    tower.wake.notify_one();
}
