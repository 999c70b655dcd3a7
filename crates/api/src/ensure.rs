//! `EnsureImage`: the pull-through cache's answer as the enforcer reads it, and the one
//! table from the pull taxonomy to gRPC statuses. A failure's message starts with its
//! reason, and its details carry a `google.rpc.ErrorInfo` with that reason.

use crate::pb;
use site_pull::{PullError, Puller};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of the `ErrorInfo` of every failure.
pub const DOMAIN: &str = "site.v1";

/// Makes the image of `request` present.
pub async fn ensure_image(
    puller: &Puller,
    request: pb::EnsureImageRequest,
) -> Result<pb::EnsureImageResponse, Status> {
    let policy = Some(request.policy.as_str()).filter(|p| !p.is_empty());
    let platform = Some(request.platform.as_str()).filter(|p| !p.is_empty());
    let ensured = puller
        .ensure(&request.image, policy, platform)
        .await
        .map_err(|e| pull_status(&e))?;
    Ok(pb::EnsureImageResponse {
        digest: ensured.digest.to_string(),
        size: ensured.size,
        source: ensured.source.as_str().to_owned(),
    })
}

/// The gRPC status of a failed pull.
pub fn pull_status(e: &PullError) -> Status {
    let reason = e.reason();
    let code = match reason {
        "NOT_FOUND" => Code::NotFound,
        "AUTH_FAILED" => Code::PermissionDenied,
        "RATE_LIMITED" | "OUT_OF_SPACE" => Code::ResourceExhausted,
        "NOT_PRESENT" => Code::FailedPrecondition,
        "INVALID" => Code::InvalidArgument,
        _ => Code::Unavailable,
    };
    let message = crate::status::bounded(e.to_string());
    let details =
        ErrorDetails::with_error_info(reason, DOMAIN, [("message".to_owned(), message.clone())]);
    Status::with_error_details(code, format!("{reason}: {message}"), details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use site_upstream::UpstreamError;

    #[test]
    fn every_reason_has_its_code_and_error_info() {
        let upstream = |error| PullError::Upstream {
            registry: "r".into(),
            error,
            retry_after: None,
        };
        for (e, code, reason) in [
            (
                upstream(UpstreamError::NotFound("x".into())),
                Code::NotFound,
                "NOT_FOUND",
            ),
            (
                upstream(UpstreamError::AuthFailed("x".into())),
                Code::PermissionDenied,
                "AUTH_FAILED",
            ),
            (
                upstream(UpstreamError::Unreachable("x".into())),
                Code::Unavailable,
                "UNREACHABLE",
            ),
            (
                upstream(UpstreamError::rate_limited("x".into())),
                Code::ResourceExhausted,
                "RATE_LIMITED",
            ),
            (
                PullError::OutOfSpace("x".into()),
                Code::ResourceExhausted,
                "OUT_OF_SPACE",
            ),
            (
                PullError::NotPresent("x".into()),
                Code::FailedPrecondition,
                "NOT_PRESENT",
            ),
            (
                PullError::Invalid("x".into()),
                Code::InvalidArgument,
                "INVALID",
            ),
        ] {
            let s = pull_status(&e);
            assert_eq!(s.code(), code, "{reason}");
            assert!(s.message().starts_with(reason), "{}", s.message());
            let info = s.get_details_error_info().expect("ErrorInfo");
            assert_eq!(info.reason, reason);
            assert_eq!(info.domain, DOMAIN);
        }
    }
}
