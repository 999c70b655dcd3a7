//! The one taxonomy of upstream failures, shared by towerctl (exit codes) and the node
//! (`EnsureImage` reasons, HTTP answers), and the helpers that make any error one line.

/// Why talking to an upstream registry failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The image, manifest or blob does not exist there.
    #[error("image not found at the upstream: {0}")]
    NotFound(String),
    /// The upstream refused the credentials or wants some; or a credential helper failed.
    #[error("authentication failed at the upstream: {0}")]
    AuthFailed(String),
    /// The upstream could not be reached, timed out, or broke the connection.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The upstream rate-limited the pulls; `retry_after` is when it said to come back
    /// (seconds), when it said so.
    #[error("upstream rate limited: {message}")]
    RateLimited {
        /// What it said.
        message: String,
        /// Its `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// The upstream sent what is refused: bytes not matching their digest, a manifest
    /// over the size limit.
    #[error("the upstream sent invalid content: {0}")]
    Invalid(String),
    /// Anything else: bad bytes, a protocol violation, an unreadable auth file.
    #[error("{0}")]
    Other(String),
}

impl UpstreamError {
    /// A rate limit that gave no time to wait.
    pub fn rate_limited(message: String) -> UpstreamError {
        UpstreamError::RateLimited {
            message,
            retry_after: None,
        }
    }

    /// The reason of the taxonomy (`NOT_FOUND`, `AUTH_FAILED`, `UNREACHABLE`,
    /// `RATE_LIMITED`, `INVALID`); anything else is `UNREACHABLE` too: the upstream did not
    /// give what was asked.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::NotFound(_) => "NOT_FOUND",
            UpstreamError::AuthFailed(_) => "AUTH_FAILED",
            UpstreamError::RateLimited { .. } => "RATE_LIMITED",
            UpstreamError::Invalid(_) => "INVALID",
            UpstreamError::Unreachable(_) | UpstreamError::Other(_) => "UNREACHABLE",
        }
    }

    /// The message without the variant's prefix.
    pub fn detail(&self) -> &str {
        match self {
            UpstreamError::NotFound(m)
            | UpstreamError::AuthFailed(m)
            | UpstreamError::Unreachable(m)
            | UpstreamError::RateLimited { message: m, .. }
            | UpstreamError::Invalid(m)
            | UpstreamError::Other(m) => m,
        }
    }
}

/// Makes a message one short line: joins lines, trims, caps the length.
pub fn one_line(s: &str) -> String {
    const MAX: usize = 300;
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= MAX {
        joined
    } else {
        let mut cut: String = joined.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

/// An error and its sources, as one line (`outer: inner: innermost`).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    chain_from(err.to_string(), err.source())
}

/// `first`, then the sources from `source` on that it does not already say, as one line.
pub fn chain_from(first: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = vec![first];
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    one_line(&parts.join(": "))
}
