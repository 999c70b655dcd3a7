//! Rollouts: `POST /rollouts`, `GET /rollouts`, `GET /rollouts/{id}`,
//! `DELETE /rollouts/{id}` (cancel: sites keep what they hold).

use super::error::ApiError;
use super::{body_as, json, new_id};
use crate::create;
use crate::tower::{now_ms, Tower};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use site_fleet::Rollout;
use site_fleet_api::{RolloutListing, RolloutSummary, RolloutView};
use std::sync::Arc;

type Tw = State<Arc<Tower>>;

async fn find(tower: &Tower, id: &str) -> Result<Rollout, ApiError> {
    tower
        .load(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rollout {id:?}")))
}

/// `GET /rollouts`.
pub async fn list(State(tower): Tw) -> Response {
    let now = now_ms();
    let rollouts: Vec<RolloutSummary> = tower
        .all_rollouts()
        .iter()
        .map(|r| RolloutSummary::of(r, now))
        .collect();
    json(
        StatusCode::OK,
        &RolloutListing {
            total: rollouts.len(),
            rollouts,
        },
    )
}

/// `POST /rollouts` with a [`site_fleet_api::NewRollout`].
pub async fn create(State(tower): Tw, body: Bytes) -> Result<Response, ApiError> {
    let request = body_as(&body, "rollout")?;
    let rollout = create::create(&tower, request, new_id("r")).await?;
    tracing::info!(
        rollout = %rollout.id,
        application = %rollout.application,
        sites = rollout.sites.len(),
        "rollout created"
    );
    Ok(json(
        StatusCode::CREATED,
        &RolloutView::of(&rollout, now_ms()),
    ))
}

/// `GET /rollouts/{id}`.
pub async fn get(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &RolloutView::of(&find(&tower, &id).await?, now_ms()),
    ))
}

/// `DELETE /rollouts/{id}`: stops its workers; the sites keep what they hold.
pub async fn cancel(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    find(&tower, &id).await?;
    tower.cancel(&id, None).await?;
    tracing::info!(rollout = %id, "rollout cancelled");
    Ok(json(
        StatusCode::OK,
        &RolloutView::of(&find(&tower, &id).await?, now_ms()),
    ))
}
