//! The one shape of every refusal: `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

/// A refused request's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What was refused.
    pub error: ErrorDetail,
}

/// A refusal: a stable code and a line for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// `BAD_REQUEST`, `BAD_FILTER`, `NO_SITES`, `NOT_FOUND`, `CONFLICT`, `UNAUTHORIZED`,
    /// `FORBIDDEN`, `IMAGE_NOT_FOUND`, `UPSTREAM_AUTH`, `UPSTREAM_UNREACHABLE`,
    /// `RATE_LIMITED`, `UNSUPPORTED_MEDIA_TYPE`, `METHOD_NOT_ALLOWED`,
    /// `PAYLOAD_TOO_LARGE`, `INTERNAL`.
    pub code: String,
    /// What happened, in one line.
    pub message: String,
}

impl ErrorBody {
    /// A refusal with this code and message.
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}
