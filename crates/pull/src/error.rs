//! Why a pull failed, in the one taxonomy the enforcer, the HTTP answers and the events
//! share: `NOT_FOUND`, `AUTH_FAILED`, `UNREACHABLE`, `RATE_LIMITED`, `OUT_OF_SPACE`,
//! `NOT_PRESENT`, `INVALID`.

use site_node::NodeError;
use site_upstream::UpstreamError;

/// A failed pull. Cloneable, so that every waiter on a shared fetch gets the same answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// The upstream failed; `retry_after` (seconds) when the node knows when to try again.
    #[error("{registry}: {error}")]
    Upstream {
        /// The registry the image belongs to.
        registry: String,
        /// What the upstream did.
        error: UpstreamError,
        /// Seconds a client should wait before it asks again.
        retry_after: Option<u64>,
    },
    /// The policy is `Never` and the site does not hold it.
    #[error("{0}: not on the site, and the pull policy Never forbids fetching it")]
    NotPresent(String),
    /// The site cannot fit it.
    #[error("site out of space: {0}")]
    OutOfSpace(String),
    /// A malformed request, or content the node refuses (bad digest, over a limit).
    #[error("{0}")]
    Invalid(String),
    /// The site could not store it now (no quorum, shutting down, a disk failure).
    #[error("{0}")]
    Unavailable(String),
}

impl PullError {
    /// The reason of the taxonomy.
    pub fn reason(&self) -> &'static str {
        match self {
            PullError::Upstream { error, .. } => error.reason(),
            PullError::NotPresent(_) => "NOT_PRESENT",
            PullError::OutOfSpace(_) => "OUT_OF_SPACE",
            PullError::Invalid(_) => "INVALID",
            PullError::Unavailable(_) => "UNREACHABLE",
        }
    }

    /// The message without what [`PullError::rebuild`] adds back.
    pub fn detail(&self) -> &str {
        match self {
            PullError::Upstream { error, .. } => error.detail(),
            PullError::NotPresent(m)
            | PullError::OutOfSpace(m)
            | PullError::Invalid(m)
            | PullError::Unavailable(m) => m,
        }
    }

    /// Seconds a client should wait before asking again, when known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            PullError::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error another node reported by `reason` and [`PullError::detail`].
    pub fn rebuild(
        reason: &str,
        registry: &str,
        detail: String,
        retry_after: Option<u64>,
    ) -> PullError {
        let upstream = |error| PullError::Upstream {
            registry: registry.to_owned(),
            error,
            retry_after,
        };
        match reason {
            "NOT_FOUND" => upstream(UpstreamError::NotFound(detail)),
            "AUTH_FAILED" => upstream(UpstreamError::AuthFailed(detail)),
            "RATE_LIMITED" => upstream(UpstreamError::RateLimited {
                message: detail,
                retry_after,
            }),
            "UNREACHABLE" => upstream(UpstreamError::Unreachable(detail)),
            "NOT_PRESENT" => PullError::NotPresent(detail),
            "OUT_OF_SPACE" => PullError::OutOfSpace(detail),
            "INVALID" => PullError::Invalid(detail),
            _ => PullError::Unavailable(detail),
        }
    }

    /// Whether the upstream said the content does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PullError::Upstream {
                error: UpstreamError::NotFound(_),
                ..
            }
        )
    }

    /// A store error met while storing what was fetched.
    pub fn store(e: NodeError) -> PullError {
        if e.is_out_of_space() {
            return PullError::OutOfSpace(e.to_string());
        }
        match e {
            NodeError::DigestMismatch { .. }
            | NodeError::SizeInvalid(_)
            | NodeError::ManifestInvalid(_)
            | NodeError::ManifestBlobUnknown(_)
            | NodeError::Refused(_) => PullError::Invalid(format!("the upstream sent {e}")),
            other => PullError::Unavailable(other.to_string()),
        }
    }
}
