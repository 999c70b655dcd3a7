//! The tower's JSON HTTP API (README, "Fleet API") and its status page.

pub mod error;
mod page;
mod rollouts;
mod sites;

use crate::tower::Tower;
use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::ApiError;
use serde_json::Value;
use std::sync::Arc;

/// The API's routes over `tower`.
pub fn router(tower: Arc<Tower>) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/sites", get(sites::list).post(sites::create))
        .route("/sites/query", post(sites::query))
        .route(
            "/sites/{id}",
            get(sites::get).put(sites::update).delete(sites::remove),
        )
        .route("/sites/{id}/health", get(sites::health))
        .route("/rollouts", get(rollouts::list).post(rollouts::create))
        .route(
            "/rollouts/{id}",
            get(rollouts::get).delete(rollouts::cancel),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(tower)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> Response {
    let body = serde_json::json!({"error": {"code": "METHOD_NOT_ALLOWED", "message": "this route does not take that method"}});
    json(StatusCode::METHOD_NOT_ALLOWED, &body)
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A request body as JSON; anything else is a `BAD_REQUEST`.
pub fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))
}

/// A random id with a prefix: `s-` and 12 hex digits for a site.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}
