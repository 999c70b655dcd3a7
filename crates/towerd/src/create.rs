//! `POST /rollouts`: check the request, resolve each image in the tower's registry (tags
//! become digests; `pull.rs`), select the sites. The rollout starts `pulling`: its sites
//! are worked once every image is held in the registry.

use crate::api::error::ApiError;
use crate::tower::{now_ms, Tower};
use site_fleet::rollout::{check_application, Pulling};
use site_fleet::{Filter, Rollout};
use site_fleet_api::NewRollout;
use std::sync::Arc;

/// Most images in one rollout.
const MAX_IMAGES: usize = 64;
/// Sites served at once unless the request says.
pub const DEFAULT_PARALLEL: u32 = 10;
/// Most sites served at once.
const MAX_PARALLEL: u32 = 10_000;

/// Creates a rollout from a request; nothing is kept when it is refused.
pub async fn create(
    tower: &Arc<Tower>,
    request: NewRollout,
    id: String,
) -> Result<Rollout, ApiError> {
    check_application(&request.application)?;
    if request.images.is_empty() || request.images.len() > MAX_IMAGES {
        return Err(ApiError::bad(format!(
            "a rollout has 1 to {MAX_IMAGES} images, not {}",
            request.images.len()
        )));
    }
    for text in &request.images {
        crate::pull::reference(tower, text)?;
    }
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
    let sites = tower.store.query_sites(&filter).await?;
    let selected: Vec<&str> = sites.iter().map(|s| s.id.as_str()).collect();
    if selected.is_empty() {
        return Err(site_fleet::Error::new(
            site_fleet::error::NO_SITES,
            format!(
                "the selector matches none of the {} sites of the inventory",
                tower.store.count_sites().await?
            ),
        )
        .into());
    }

    // Every image is resolved in the tower's registry before anything is kept: an image
    // the upstream does not have refuses the rollout, and keeps nothing. An upstream that
    // cannot answer now does not: the rollout is accepted, `pulling`, and its images are
    // fetched in the background, retried until they are all there.
    let mut images = Vec::with_capacity(request.images.len());
    let mut bodies = Vec::new();
    let mut failure = None;
    for text in &request.images {
        match crate::pull::resolve(tower, text).await {
            Ok(r) => {
                images.push(r.image);
                bodies.extend(r.bodies);
            }
            Err(e @ site_delivery::exit::Error::ImageNotFound(_)) => return Err(e.into()),
            Err(e) => {
                failure = Some((e.reason(), e.to_string()));
                break;
            }
        }
    }
    for (digest, body) in &bodies {
        tower.store.put_manifest(digest, body).await?;
    }
    if failure.is_some() {
        // Nothing is kept of a partial resolution: the next attempt resolves them all.
        images.clear();
    }
    let now = now_ms();
    let mut rollout = Rollout {
        id,
        application: request.application,
        images,
        selector,
        max_parallel,
        bandwidth: request.bandwidth_bytes_per_second,
        created_ms: now,
        cancelled_ms: None,
        superseded_by: None,
        sites: Default::default(),
        pulling: Some(Pulling {
            requested: request.images,
            next_attempt_ms: now,
            ..Default::default()
        }),
    };
    if let Some((reason, message)) = failure {
        rollout.pull_failed(reason, &message, now, &tower.settings.backoff);
    }
    rollout.join(selected);
    tower.add(rollout.clone()).await?;
    Ok(rollout)
}
