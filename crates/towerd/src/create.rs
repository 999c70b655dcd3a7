//! `POST /rollouts`: check the request, resolve each image once in the tower's registry
//! (tags become digests, manifests are kept with their exact bytes; what the registry
//! lacks it fetches from the upstream), select the sites.

use crate::api::error::ApiError;
use crate::tower::{now_ms, Tower};
use serde::Deserialize;
use serde_json::Value;
use site_core::{Descriptor, ImageReference};
use site_fleet::missing::Blob;
use site_fleet::rollout::{check_application, Image, Manifest};
use site_fleet::{Filter, Rollout};
use site_tower::resolve::resolve_at;
use std::sync::Arc;

/// Most images in one rollout.
const MAX_IMAGES: usize = 64;
/// Sites served at once unless the request says.
pub const DEFAULT_PARALLEL: u32 = 10;
/// Most sites served at once.
const MAX_PARALLEL: u32 = 10_000;

/// The body of `POST /rollouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    application: String,
    images: Vec<String>,
    /// Required: `{}` selects every site, and has to be said.
    selector: Value,
    #[serde(default)]
    max_parallel: Option<u32>,
    #[serde(default)]
    bandwidth_bytes_per_second: Option<u64>,
}

/// Creates a rollout from a request body; nothing is kept when it is refused.
pub async fn create(tower: &Arc<Tower>, body: &Value, id: String) -> Result<Rollout, ApiError> {
    let request: Request =
        serde_json::from_value(body.clone()).map_err(|e| ApiError::bad(format!("rollout: {e}")))?;
    check_application(&request.application)?;
    if request.images.is_empty() || request.images.len() > MAX_IMAGES {
        return Err(ApiError::bad(format!(
            "a rollout has 1 to {MAX_IMAGES} images, not {}",
            request.images.len()
        )));
    }
    let references = request
        .images
        .iter()
        .map(|text| {
            ImageReference::parse(text)
                .map_err(|e| ApiError::bad(format!("image {text:?}: {e}")))
                .map(|r| (text, r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_parallel = request.max_parallel.unwrap_or(DEFAULT_PARALLEL);
    if !(1..=MAX_PARALLEL).contains(&max_parallel) {
        return Err(ApiError::bad(format!(
            "max_parallel is 1 to {MAX_PARALLEL}, not {max_parallel}"
        )));
    }
    if request.bandwidth_bytes_per_second == Some(0) {
        return Err(ApiError::bad(
            "bandwidth_bytes_per_second is more than 0 (leave it out for no cap)",
        ));
    }
    let selector = request.selector;
    let filter = Filter::parse(&selector)?;
    let sites = tower.store.sites()?;
    let selected: Vec<&str> = sites
        .iter()
        .filter(|s| filter.matches(&s.document()))
        .map(|s| s.id.as_str())
        .collect();
    if selected.is_empty() {
        return Err(site_fleet::Error::new(
            site_fleet::error::NO_SITES,
            format!(
                "the selector matches none of the {} sites of the inventory",
                sites.len()
            ),
        )
        .into());
    }

    // Every image is resolved before anything is kept: a refusal keeps nothing.
    let mut images = Vec::with_capacity(references.len());
    let mut bodies = Vec::new();
    for (text, reference) in references {
        images.push(resolve_image(tower, text, &reference, &mut bodies).await?);
    }
    for (digest, body) in &bodies {
        tower.store.put_manifest(digest, body)?;
    }
    let mut rollout = Rollout {
        id,
        application: request.application,
        images,
        selector,
        max_parallel,
        bandwidth: request.bandwidth_bytes_per_second,
        created_ms: now_ms(),
        cancelled_ms: None,
        superseded_by: None,
        sites: Default::default(),
    };
    rollout.join(selected);
    tower.add(rollout.clone()).await?;
    Ok(rollout)
}

/// Resolves one image in the tower's registry; its manifests' bytes go to `bodies`.
async fn resolve_image(
    tower: &Tower,
    text: &str,
    reference: &ImageReference,
    bodies: &mut Vec<(String, bytes::Bytes)>,
) -> Result<Image, ApiError> {
    // Asked of the tower's registry: what it holds (pushed, or pulled before) needs no
    // upstream request; the rest it fetches from the upstream with its credentials.
    let registry = &tower.registry;
    let at = registry.location(reference);
    let resolved = resolve_at(&registry.client, &registry.auth(), reference, &at, None).await?;
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
    tracing::info!(image = text, digest = %resolved.digest, "resolved for a rollout");
    Ok(Image {
        requested: text.to_owned(),
        repository: reference.repository.to_string(),
        tag: reference.tag.clone(),
        digest: resolved.digest.to_string(),
        manifests,
        blobs: resolved.blobs.iter().map(blob).collect(),
    })
}
