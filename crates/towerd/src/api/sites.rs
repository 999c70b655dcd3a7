//! The inventory: `/sites`, `/sites/query`, `/sites/{id}`, `/sites/{id}/health`.

use super::error::ApiError;
use super::{body_as, body_json, json, new_id};
use crate::health;
use crate::store::Written;
use crate::tower::Tower;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use site_fleet::{Filter, Site};
use site_fleet_api::{NewSite, SiteHealth, SiteListing, SiteQuery, SiteView};
use std::sync::Arc;

type Tw = State<Arc<Tower>>;

async fn find(tower: &Tower, id: &str) -> Result<Site, ApiError> {
    tower
        .store
        .site(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no site {id:?}")))
}

/// A write of `site` the store refused, as the API says it.
fn refused(site: &Site, written: Written) -> Result<(), ApiError> {
    let conflict =
        |message| Err(site_fleet::Error::new(site_fleet::error::CONFLICT, message).into());
    match written {
        Written::Done => Ok(()),
        Written::IdTaken => conflict(format!("site {:?} exists", site.id)),
        Written::NameTaken(other) => {
            conflict(format!("site {other} is already named {:?}", site.name))
        }
        Written::Missing => Err(ApiError::not_found(format!("no site {:?}", site.id))),
        Written::Changed => conflict(format!("site {:?} changed meanwhile", site.id)),
    }
}

/// `GET /sites`.
pub async fn list(State(tower): Tw) -> Result<Response, ApiError> {
    let sites = tower.store.sites().await?;
    Ok(json(StatusCode::OK, &SiteListing::of(&sites)))
}

/// `POST /sites` with a [`NewSite`].
pub async fn create(State(tower): Tw, body: Bytes) -> Result<Response, ApiError> {
    let new: NewSite = body_as(&body, "site")?;
    let value = serde_json::to_value(&new).map_err(|e| ApiError::bad(e.to_string()))?;
    let site = Site::create(&value, &new_id("s"))?;
    let _inventory = tower.inventory.lock().await;
    refused(&site, tower.store.insert_site(&site).await?)?;
    tracing::info!(site = %site.id, name = %site.name, "site onboarded");
    tower.inventory_changed();
    Ok(json(StatusCode::CREATED, &SiteView::from(&site)))
}

/// `POST /sites/query` with a [`SiteQuery`].
pub async fn query(State(tower): Tw, body: Bytes) -> Result<Response, ApiError> {
    let value = body_json(&body)?;
    if value.get("filter").is_some_and(|f| f.is_null()) {
        return Err(site_fleet::Error::new(
            site_fleet::error::BAD_FILTER,
            "a filter is an object, not null ({} selects every site)",
        )
        .into());
    }
    let query: SiteQuery = serde_json::from_value(value)
        .map_err(|e| ApiError::bad(format!("a query is {{\"filter\": {{...}}}}: {e}")))?;
    let filter = match &query.filter {
        Some(f) => Filter::parse(f)?,
        None => Filter::all(),
    };
    let sites = tower.store.query_sites(&filter).await?;
    Ok(json(StatusCode::OK, &SiteListing::of(&sites)))
}

/// `GET /sites/{id}`.
pub async fn get(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &SiteView::from(&find(&tower, &id).await?),
    ))
}

/// `PUT /sites/{id}`: a JSON merge patch.
pub async fn update(
    State(tower): Tw,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = body_json(&body)?;
    let _inventory = tower.inventory.lock().await;
    // Read, patch, write if unchanged: another tower's update between the read and the
    // write is read again and patched over, never lost.
    let mut attempts = 0;
    let site = loop {
        let before = find(&tower, &id).await?;
        let site = before.patched(&patch)?;
        match tower.store.update_site(&before, &site).await? {
            Written::Changed if attempts < 5 => attempts += 1,
            Written::Changed => {
                return Err(site_fleet::Error::new(
                    site_fleet::error::CONFLICT,
                    format!("site {id:?} keeps changing: try again"),
                )
                .into())
            }
            written => {
                refused(&site, written)?;
                break site;
            }
        }
    };
    tracing::info!(site = %site.id, "site updated");
    tower.inventory_changed();
    Ok(json(StatusCode::OK, &SiteView::from(&site)))
}

/// `DELETE /sites/{id}`: the site leaves the inventory and its rollouts.
pub async fn remove(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    let _inventory = tower.inventory.lock().await;
    let site = find(&tower, &id).await?;
    tower.store.remove_site(&id).await?;
    tracing::info!(site = %id, name = %site.name, "site removed");
    tower.inventory_changed();
    Ok(json(StatusCode::OK, &SiteView::from(&site)))
}

/// `GET /sites/{id}/health`.
pub async fn health(State(tower): Tw, Path(id): Path<String>) -> Result<Response, ApiError> {
    let site = find(&tower, &id).await?;
    let health = health::check(&site).await;
    Ok(json(
        StatusCode::OK,
        &SiteHealth {
            site_id: site.id.clone(),
            name: site.name.clone(),
            verdict: health.verdict.to_owned(),
            nodes: health.nodes,
        },
    ))
}
