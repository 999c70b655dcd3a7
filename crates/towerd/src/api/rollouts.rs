//! Rollouts: `POST /rollouts`, `GET /rollouts`, `GET /rollouts/{id}`,
//! `DELETE /rollouts/{id}` (cancel: sites keep what they hold).

use super::error::ApiError;
use super::{body_json, json, new_id};
use crate::create;
use crate::tower::{now_ms, Tower};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use site_fleet::schedule::totals;
use site_fleet::Rollout;
use std::sync::Arc;

type Tw = State<Arc<Tower>>;

/// `pulling` (its images not all in the tower's registry yet), `running`, `complete`,
/// `superseded` (by a newer rollout of its application) or `cancelled`.
fn status(r: &Rollout) -> &'static str {
    if r.superseded_by.is_some() {
        "superseded"
    } else if r.cancelled() {
        "cancelled"
    } else if r.pulling.is_some() {
        "pulling"
    } else if r.complete() {
        "complete"
    } else {
        "running"
    }
}

/// The totals: sites per state (every state listed), then bytes and the estimate.
fn totals_of(r: &Rollout, now: u64) -> Value {
    let t = totals(r, now);
    let mut out = json!({
        "selected": t.selected,
        "bytes_done": t.bytes_done,
        "bytes_left": t.bytes_left,
        "eta_seconds": t.eta_seconds,
    });
    for (state, n) in t.sites {
        out[state] = json!(n);
    }
    out
}

/// A rollout as `GET /rollouts/{id}` shows it.
fn view(r: &Rollout, now: u64) -> Value {
    let sites: Vec<Value> = r
        .sites
        .iter()
        .map(|(id, s)| {
            json!({
                "site_id": id,
                "state": s.state.name(),
                "bytes_done": s.bytes_done,
                "bytes_left": s.bytes_left,
                "lacked": s.lacked,
                "reason": s.reason,
                "message": s.message,
                "retries": s.retries,
                "next_attempt_unix": (s.state == site_fleet::State::Failed).then_some(s.next_attempt_ms / 1000),
            })
        })
        .collect();
    let mut out = summary(r, now);
    out["sites"] = json!(sites);
    out["manifests"] = json!(r
        .images
        .iter()
        .map(
            |i| json!({"image": i.pinned(), "manifests": i.manifests.len(), "blobs": i.blobs.len()})
        )
        .collect::<Vec<_>>());
    out
}

/// A rollout without its sites, as `GET /rollouts` lists it.
fn summary(r: &Rollout, now: u64) -> Value {
    json!({
        "id": r.id,
        "application": r.application,
        "images": r.pinned(),
        "requested": r.requested(),
        "pulling": r.pulling.as_ref().map(|p| json!({
            "reason": p.reason,
            "message": p.message,
            "retries": p.retries,
            "next_attempt_unix": p.next_attempt_ms / 1000,
        })),
        "selector": r.selector,
        "max_parallel": r.max_parallel,
        "bandwidth_bytes_per_second": r.bandwidth,
        "created_unix": r.created_ms / 1000,
        "cancelled_unix": r.cancelled_ms.map(|ms| ms / 1000),
        "superseded_by": r.superseded_by,
        "status": status(r),
        "totals": totals_of(r, now),
    })
}

async fn find(tower: &Tower, id: &str) -> Result<Rollout, ApiError> {
    tower
        .load(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rollout {id:?}")))
}

/// `GET /rollouts`.
pub async fn list(State(tower): Tw) -> Response {
    let now = now_ms();
    let rollouts: Vec<Value> = tower
        .all_rollouts()
        .iter()
        .map(|r| summary(r, now))
        .collect();
    json(
        StatusCode::OK,
        &json!({"total": rollouts.len(), "rollouts": rollouts}),
    )
}

/// `POST /rollouts`.
pub async fn create(State(tower): Tw, body: Bytes) -> Result<Response, ApiError> {
    let body = body_json(&body)?;
    let rollout = create::create(&tower, &body, new_id("r")).await?;
    tracing::info!(
        rollout = %rollout.id,
        application = %rollout.application,
        sites = rollout.sites.len(),
        "rollout created"
    );
    Ok(json(StatusCode::CREATED, &view(&rollout, now_ms())))
}

/// `GET /rollouts/{id}`.
pub async fn get(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &view(&find(&tower, &id).await?, now_ms()),
    ))
}

/// `DELETE /rollouts/{id}`: stops its workers; the sites keep what they hold.
pub async fn cancel(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    find(&tower, &id).await?;
    tower.cancel(&id, None).await?;
    tracing::info!(rollout = %id, "rollout cancelled");
    Ok(json(
        StatusCode::OK,
        &view(&find(&tower, &id).await?, now_ms()),
    ))
}
