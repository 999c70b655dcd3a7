//! The tower's JSON HTTP API (README, "Fleet API") and its status page.

pub mod error;
mod page;
mod rollouts;
mod sites;

use crate::tower::Tower;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
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
        .route("/openapi.json", get(openapi))
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
        .layer(axum::middleware::from_fn(guard))
        .layer(axum::middleware::from_fn_with_state(
            tower.clone(),
            crate::access::gate,
        ))
        .with_state(tower)
}

/// Refuses writes a web page could forge (a body that is not JSON, another site's
/// `Origin`), and answers the refusals of extractors (a body over the limit) with the
/// API's JSON error.
async fn guard(request: Request, next: Next) -> Response {
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if writes {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if let Some(origin) = origin {
            let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
            if Some(authority) != host {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    &format!("a request from the page of {origin:?} may not change the tower"),
                );
            }
        }
    }
    if matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body is JSON: Content-Type: application/json",
            );
        }
    }
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
            s if s.is_client_error() => "BAD_REQUEST",
            _ => "INTERNAL",
        };
        let reason = status.canonical_reason().unwrap_or("refused");
        return refuse(status, code, &format!("the request was refused: {reason}"));
    }
    response
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, &site_fleet_api::ErrorBody::new(code, message))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> Response {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not take that method",
    )
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError {
            code: "INTERNAL",
            message: format!("cannot encode the answer: {e}"),
        }
        .into_response(),
    }
}

/// A request body as the type `T` of the API's contract; anything else is a
/// `BAD_REQUEST` that says what (`what`: the body's name).
pub fn body_as<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, ApiError> {
    let value = body_json(body)?;
    serde_json::from_value(value).map_err(|e| ApiError::bad(format!("{what}: {e}")))
}

/// `GET /openapi.json`.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        site_fleet_api::openapi::document(),
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
