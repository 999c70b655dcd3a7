//! Exit codes, in one table, and the error type that carries them.

/// Success.
pub const OK: u8 = 0;
/// Any error not listed below.
pub const OTHER: u8 = 1;
/// Bad command line (clap's own code).
pub const USAGE: u8 = 2;
/// The image (or the manifest for the asked platform) does not exist at the upstream.
pub const IMAGE_NOT_FOUND: u8 = 3;
/// The upstream registry refused the credentials, or asked for some.
pub const UPSTREAM_AUTH: u8 = 4;
/// The upstream registry could not be reached, or timed out.
pub const UPSTREAM_UNREACHABLE: u8 = 5;
/// The upstream registry rate-limited the pulls.
pub const RATE_LIMITED: u8 = 6;
/// The site cannot fit the delivery.
pub const SITE_OUT_OF_SPACE: u8 = 7;
/// The site could not be reached, or stayed unavailable after retries.
pub const SITE_UNREACHABLE: u8 = 8;
/// The site refused the request.
pub const SITE_REFUSED: u8 = 9;
/// The tower service could not be reached.
pub const TOWER_UNREACHABLE: u8 = 10;
/// The tower service refused the request.
pub const TOWER_REFUSED: u8 = 11;

/// Every exit code with its meaning, as `--help` prints it.
pub const TABLE: [(u8, &str); 12] = [
    (OK, "ok"),
    (OTHER, "other error"),
    (USAGE, "usage error"),
    (IMAGE_NOT_FOUND, "image not found at the upstream"),
    (UPSTREAM_AUTH, "authentication failed at the upstream"),
    (UPSTREAM_UNREACHABLE, "upstream unreachable or timed out"),
    (RATE_LIMITED, "upstream rate limited"),
    (SITE_OUT_OF_SPACE, "site out of space"),
    (SITE_UNREACHABLE, "site unreachable"),
    (SITE_REFUSED, "site refused the request"),
    (TOWER_UNREACHABLE, "tower service unreachable"),
    (TOWER_REFUSED, "tower service refused the request"),
];

/// The exit-code section of `--help`; a test keeps it equal to [`TABLE`].
pub const HELP: &str = "\
Exit codes:
  0  ok
  1  other error
  2  usage error
  3  image not found at the upstream
  4  authentication failed at the upstream
  5  upstream unreachable or timed out
  6  upstream rate limited
  7  site out of space
  8  site unreachable
  9  site refused the request
  10  tower service unreachable
  11  tower service refused the request

Errors are one line on stderr. TOWERCTL_SITE is the default of --site,
TOWERCTL_TOWER of --tower.";

/// An error of a towerctl command: its message, and by its variant, its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command line the parser accepted but that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The image is unknown at the upstream.
    #[error("image not found at the upstream: {0}")]
    ImageNotFound(String),
    /// The upstream refused the credentials or wants some.
    #[error("authentication failed at the upstream: {0}")]
    UpstreamAuth(String),
    /// The upstream cannot be reached or timed out.
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The upstream rate-limited us.
    #[error("upstream rate limited: {0}")]
    RateLimited(String),
    /// The site lacks the space for the delivery.
    #[error("site out of space: {0}")]
    SiteOutOfSpace(String),
    /// The site cannot be reached.
    #[error("site unreachable: {0}")]
    SiteUnreachable(String),
    /// The site refused the request.
    #[error("site refused the request: {0}")]
    SiteRefused(String),
    /// The tower service cannot be reached.
    #[error("tower service unreachable: {0}")]
    TowerUnreachable(String),
    /// The tower service refused the request (its code and message).
    #[error("tower service refused the request: {0}")]
    TowerRefused(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => USAGE,
            Error::ImageNotFound(_) => IMAGE_NOT_FOUND,
            Error::UpstreamAuth(_) => UPSTREAM_AUTH,
            Error::UpstreamUnreachable(_) => UPSTREAM_UNREACHABLE,
            Error::RateLimited(_) => RATE_LIMITED,
            Error::SiteOutOfSpace(_) => SITE_OUT_OF_SPACE,
            Error::SiteUnreachable(_) => SITE_UNREACHABLE,
            Error::SiteRefused(_) => SITE_REFUSED,
            Error::TowerUnreachable(_) => TOWER_UNREACHABLE,
            Error::TowerRefused(_) => TOWER_REFUSED,
            Error::Other(_) => OTHER,
        }
    }

    /// The failure's reason as a rollout reports it: the exit code's name.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Usage(_) => "USAGE",
            Error::ImageNotFound(_) => "IMAGE_NOT_FOUND",
            Error::UpstreamAuth(_) => "UPSTREAM_AUTH",
            Error::UpstreamUnreachable(_) => "UPSTREAM_UNREACHABLE",
            Error::RateLimited(_) => "RATE_LIMITED",
            Error::SiteOutOfSpace(_) => "SITE_OUT_OF_SPACE",
            Error::SiteUnreachable(_) => "SITE_UNREACHABLE",
            Error::SiteRefused(_) => "SITE_REFUSED",
            Error::TowerUnreachable(_) => "TOWER_UNREACHABLE",
            Error::TowerRefused(_) => "TOWER_REFUSED",
            Error::Other(_) => "OTHER",
        }
    }
}

pub use site_upstream::error::{chain, chain_from, one_line};

impl From<site_upstream::UpstreamError> for Error {
    fn from(e: site_upstream::UpstreamError) -> Error {
        use site_upstream::UpstreamError as U;
        match e {
            U::NotFound(m) => Error::ImageNotFound(m),
            U::AuthFailed(m) => Error::UpstreamAuth(m),
            U::Unreachable(m) => Error::UpstreamUnreachable(m),
            U::RateLimited { message, .. } => Error::RateLimited(message),
            U::Invalid(m) => Error::Other(format!("the upstream sent invalid content: {m}")),
            U::Other(m) => Error::Other(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_code_of_the_table() {
        let lines: Vec<&str> = HELP.lines().skip(1).take(TABLE.len()).collect();
        for ((code, meaning), line) in TABLE.iter().zip(lines) {
            assert_eq!(line, format!("  {code}  {meaning}"));
        }
    }

    #[test]
    fn variants_carry_their_codes() {
        assert_eq!(Error::Usage(String::new()).exit_code(), 2);
        assert_eq!(Error::ImageNotFound(String::new()).exit_code(), 3);
        assert_eq!(Error::UpstreamAuth(String::new()).exit_code(), 4);
        assert_eq!(Error::UpstreamUnreachable(String::new()).exit_code(), 5);
        assert_eq!(Error::RateLimited(String::new()).exit_code(), 6);
        assert_eq!(Error::SiteOutOfSpace(String::new()).exit_code(), 7);
        assert_eq!(Error::SiteUnreachable(String::new()).exit_code(), 8);
        assert_eq!(Error::SiteRefused(String::new()).exit_code(), 9);
        assert_eq!(Error::TowerUnreachable(String::new()).exit_code(), 10);
        assert_eq!(Error::TowerRefused(String::new()).exit_code(), 11);
        assert_eq!(Error::Other(String::new()).exit_code(), 1);
    }

    #[test]
    fn one_line_joins_and_caps() {
        assert_eq!(one_line("a\n  b\r\nc "), "a b c");
        assert_eq!(one_line(&"x".repeat(1000)).chars().count(), 301);
    }
}
