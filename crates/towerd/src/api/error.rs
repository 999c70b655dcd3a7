//! The API's errors: one table from codes to HTTP statuses, and one JSON shape,
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// Stable code.
    pub code: &'static str,
    /// One line for people.
    pub message: String,
}

/// Each code with its HTTP status; codes not listed answer 500.
pub const TABLE: [(&str, StatusCode); 15] = [
    ("BAD_REQUEST", StatusCode::BAD_REQUEST),
    ("BAD_FILTER", StatusCode::BAD_REQUEST),
    ("NO_SITES", StatusCode::BAD_REQUEST),
    ("NOT_FOUND", StatusCode::NOT_FOUND),
    ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
    ("FORBIDDEN", StatusCode::FORBIDDEN),
    ("CONFLICT", StatusCode::CONFLICT),
    ("IMAGE_NOT_FOUND", StatusCode::UNPROCESSABLE_ENTITY),
    ("UPSTREAM_AUTH", StatusCode::BAD_GATEWAY),
    ("UPSTREAM_UNREACHABLE", StatusCode::BAD_GATEWAY),
    ("RATE_LIMITED", StatusCode::SERVICE_UNAVAILABLE),
    ("SITE_UNREACHABLE", StatusCode::BAD_GATEWAY),
    ("SITE_REFUSED", StatusCode::BAD_GATEWAY),
    ("SITE_OUT_OF_SPACE", StatusCode::BAD_GATEWAY),
    ("INTERNAL", StatusCode::INTERNAL_SERVER_ERROR),
];

impl ApiError {
    /// A `BAD_REQUEST`.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError {
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    /// A `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            code: "NOT_FOUND",
            message: message.into(),
        }
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        TABLE
            .iter()
            .find(|(code, _)| *code == self.code)
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, |(_, s)| *s)
    }
}

impl From<site_fleet::Error> for ApiError {
    fn from(e: site_fleet::Error) -> ApiError {
        ApiError {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        // Its detail (where the database is, what it said) goes to the log only.
        tracing::error!(error = %e, "store failed");
        ApiError {
            code: "INTERNAL",
            message: "the tower's store failed; its log says why".into(),
        }
    }
}

impl From<site_delivery::exit::Error> for ApiError {
    fn from(e: site_delivery::exit::Error) -> ApiError {
        let code = match e.reason() {
            "USAGE" => "BAD_REQUEST",
            "OTHER" => "INTERNAL",
            reason => reason,
        };
        ApiError {
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        super::json(
            status,
            &site_fleet_api::ErrorBody::new(self.code, self.message),
        )
    }
}
