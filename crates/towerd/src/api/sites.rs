//! The inventory: `/sites`, `/sites/query`, `/sites/{id}`, `/sites/{id}/health`.

use super::error::ApiError;
use super::{body_json, json, new_id};
use crate::health;
use crate::tower::Tower;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use site_fleet::site::check_unique;
use site_fleet::{Filter, Site};
use std::sync::Arc;

type Tw = State<Arc<Tower>>;

fn listing(sites: Vec<&Site>) -> Response {
    let total = sites.len();
    let sites: Vec<Value> = sites.iter().map(|s| s.document()).collect();
    json(StatusCode::OK, &json!({"sites": sites, "total": total}))
}

fn find(tower: &Tower, id: &str) -> Result<Site, ApiError> {
    tower
        .store
        .site(id)?
        .ok_or_else(|| ApiError::not_found(format!("no site {id:?}")))
}

/// `GET /sites`.
pub async fn list(State(tower): Tw) -> Result<Response, ApiError> {
    let sites = tower.store.sites()?;
    Ok(listing(sites.iter().collect()))
}

/// `POST /sites`.
pub async fn create(State(tower): Tw, body: Bytes) -> Result<Response, ApiError> {
    let site = Site::create(&body_json(&body)?, &new_id("s"))?;
    let _inventory = tower.inventory.lock().await;
    check_unique(&site, &tower.store.sites()?)?;
    if !tower.store.insert_site(&site)? {
        return Err(site_fleet::Error::new(
            site_fleet::error::CONFLICT,
            format!("site {:?} exists", site.id),
        )
        .into());
    }
    tracing::info!(site = %site.id, name = %site.name, "site onboarded");
    tower.inventory_changed();
    Ok(json(StatusCode::CREATED, &site.document()))
}

/// `POST /sites/query` with `{"filter": {...}}`.
pub async fn query(State(tower): Tw, body: Bytes) -> Result<Response, ApiError> {
    let body = body_json(&body)?;
    let Value::Object(fields) = &body else {
        return Err(ApiError::bad("a query is {\"filter\": {...}}"));
    };
    if let Some(other) = fields.keys().find(|k| *k != "filter") {
        return Err(ApiError::bad(format!(
            "a query takes only \"filter\", not {other:?}"
        )));
    }
    let filter = match fields.get("filter") {
        Some(f) => Filter::parse(f)?,
        None => Filter::all(),
    };
    let sites = tower.store.sites()?;
    Ok(listing(
        sites
            .iter()
            .filter(|s| filter.matches(&s.document()))
            .collect(),
    ))
}

/// `GET /sites/{id}`.
pub async fn get(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &find(&tower, &id)?.document()))
}

/// `PUT /sites/{id}`: a JSON merge patch.
pub async fn update(
    State(tower): Tw,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = body_json(&body)?;
    let _inventory = tower.inventory.lock().await;
    let site = find(&tower, &id)?.patched(&patch)?;
    check_unique(&site, &tower.store.sites()?)?;
    tower.store.update_site(&site)?;
    tracing::info!(site = %site.id, "site updated");
    tower.inventory_changed();
    Ok(json(StatusCode::OK, &site.document()))
}

/// `DELETE /sites/{id}`: the site leaves the inventory and its rollouts.
pub async fn remove(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    let _inventory = tower.inventory.lock().await;
    let site = find(&tower, &id)?;
    tower.store.remove_site(&id)?;
    tracing::info!(site = %id, name = %site.name, "site removed");
    tower.inventory_changed();
    Ok(json(StatusCode::OK, &site.document()))
}

/// `GET /sites/{id}/health`.
pub async fn health(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    let site = find(&tower, &id)?;
    let health = health::check(&site).await;
    let mut body = serde_json::to_value(&health).map_err(|e| ApiError::bad(e.to_string()))?;
    body["site_id"] = json!(site.id);
    body["name"] = json!(site.name);
    Ok(json(StatusCode::OK, &body))
}
