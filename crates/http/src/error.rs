//! API errors: the one table from OCI error codes to HTTP statuses, the spec's JSON
//! error body, and one log line per refused request.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use site_core::{DigestError, ErrorCode, ReferenceError};
use site_node::NodeError;
use site_pull::PullError;

/// The HTTP status of each OCI error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        BlobUnknown | BlobUploadUnknown | ManifestUnknown | NameUnknown => StatusCode::NOT_FOUND,
        BlobUploadInvalid | DigestInvalid | ManifestBlobUnknown | ManifestInvalid | NameInvalid
        | SizeInvalid => StatusCode::BAD_REQUEST,
        Unauthorized => StatusCode::UNAUTHORIZED,
        Denied => StatusCode::FORBIDDEN,
        Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A refused request: status, OCI errors, and headers the client needs to recover.
/// Boxed, so that `Result<_, ApiError>` stays small on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<Refusal>);

#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    errors: Vec<(ErrorCode, String, Option<Value>)>,
    headers: HeaderMap,
}

impl ApiError {
    fn from_parts(status: StatusCode, errors: Vec<(ErrorCode, String, Option<Value>)>) -> ApiError {
        ApiError(Box::new(Refusal {
            status,
            errors,
            headers: HeaderMap::new(),
        }))
    }
}

impl ApiError {
    /// An error with the status of its code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::from_parts(status_of(code), vec![(code, message.into(), None)])
    }

    /// Overrides the status (416 for ranges, 413 for bodies over a limit).
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.0.status = status;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, v);
        }
        self
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The first error code, for logs.
    pub fn code(&self) -> ErrorCode {
        self.0.errors[0].0
    }

    /// The first message, for logs.
    pub fn message(&self) -> &str {
        &self.0.errors[0].1
    }

    /// An internal failure of the node: logged in full, reported without detail.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::from_parts(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![(
                ErrorCode::Unsupported,
                "internal error, see the node's log".into(),
                None,
            )],
        )
    }

    /// A miss the pull-through cache could not fill, as the same answer on every node:
    /// not found (here, or at the upstream) is `not_found`'s 404; refused credentials
    /// 403 `DENIED` (never 401, which would make clients retry their own credentials);
    /// an upstream that cannot answer 503 `UNAVAILABLE`, rate limits 429
    /// `TOOMANYREQUESTS`, both with `Retry-After`; a full site 507; content the node
    /// refuses 502.
    pub fn pull(e: PullError, not_found: ErrorCode) -> ApiError {
        use site_upstream::UpstreamError as U;
        let message = e.to_string();
        let retry =
            |default: u64, retry_after: Option<u64>| retry_after.unwrap_or(default).to_string();
        match e {
            PullError::NotPresent(_) => ApiError::new(not_found, message),
            PullError::Upstream {
                error, retry_after, ..
            } => match error {
                U::NotFound(_) => ApiError::new(not_found, message),
                U::AuthFailed(_) => ApiError::new(ErrorCode::Denied, message),
                U::RateLimited { .. } => ApiError::new(ErrorCode::TooManyRequests, message)
                    .with_header(header::RETRY_AFTER, &retry(60, retry_after)),
                U::Unreachable(_) | U::Other(_) => ApiError::new(ErrorCode::Unavailable, message)
                    .with_header(header::RETRY_AFTER, &retry(5, retry_after)),
                U::Invalid(_) => ApiError::new(ErrorCode::Unavailable, message)
                    .with_status(StatusCode::BAD_GATEWAY),
            },
            PullError::OutOfSpace(_) => ApiError::new(ErrorCode::Unavailable, message)
                .with_status(StatusCode::INSUFFICIENT_STORAGE),
            PullError::Invalid(_) => {
                ApiError::new(ErrorCode::Unavailable, message).with_status(StatusCode::BAD_GATEWAY)
            }
            PullError::Unavailable(_) => {
                ApiError::new(ErrorCode::Unavailable, message).with_header(header::RETRY_AFTER, "5")
            }
        }
    }

    /// Push refused because it is not configured.
    pub fn push_disabled() -> ApiError {
        ApiError::new(
            ErrorCode::Unsupported,
            "push over HTTP is disabled on this node",
        )
    }

    /// Credentials missing or wrong.
    pub fn unauthorized(why: &str) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, why)
            .with_header(header::WWW_AUTHENTICATE, r#"Basic realm="site-registry""#)
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        if let NodeError::Unavailable(_)
        | NodeError::NotLeader(_)
        | NodeError::LeaderMoving(_)
        | NodeError::NoQuorum(_)
        | NodeError::NodeFailed(_) = &e
        {
            tracing::warn!(error = %e, "write refused: the site cannot order changes now");
            return ApiError::new(ErrorCode::Unavailable, e.to_string())
                .with_header(header::RETRY_AFTER, "5");
        }
        let Some(code) = e.code() else {
            return ApiError::internal(e);
        };
        match &e {
            NodeError::ManifestBlobUnknown(missing) => ApiError::from_parts(
                status_of(code),
                missing
                    .iter()
                    .map(|d| (code, e.to_string(), Some(json!({ "digest": d }))))
                    .collect(),
            ),
            NodeError::RangeInvalid { offset, .. } => ApiError::new(code, e.to_string())
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::RANGE, &upload_range(*offset)),
            NodeError::SizeInvalid(_) => {
                ApiError::new(code, e.to_string()).with_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            _ => ApiError::new(code, e.to_string()),
        }
    }
}

impl From<ReferenceError> for ApiError {
    fn from(e: ReferenceError) -> ApiError {
        match e {
            ReferenceError::NameInvalid { .. } => {
                ApiError::new(ErrorCode::NameInvalid, e.to_string())
            }
            ReferenceError::TagInvalid(_) => {
                ApiError::new(ErrorCode::ManifestInvalid, e.to_string())
            }
            ReferenceError::Digest(d) => d.into(),
        }
    }
}

impl From<DigestError> for ApiError {
    fn from(e: DigestError) -> ApiError {
        ApiError::new(ErrorCode::DigestInvalid, e.to_string())
    }
}

/// The `Range` header of an upload that holds `offset` bytes, as clients expect it:
/// inclusive end, `0-0` for an empty upload.
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Refusal {
            status,
            errors,
            headers,
        } = *self.0;
        let body: Vec<Value> = errors
            .iter()
            .map(|(code, message, detail)| {
                let mut e = json!({ "code": code.as_str(), "message": message });
                if let Some(d) = detail {
                    e["detail"] = d.clone();
                }
                e
            })
            .collect();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "errors": body }).to_string(),
        )
            .into_response();
        response.headers_mut().extend(headers);
        response
    }
}
