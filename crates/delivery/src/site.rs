//! The site's gRPC API (proto/site.proto): connection, retries, error classification.

use crate::exit::{chain, chain_from, one_line, Error};
use site_proto::pb::site_client::SiteClient;
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

/// A client of one site node.
pub type Client = SiteClient<Channel>;

/// Attempts of a call that meets a broken link, the first included.
pub const ATTEMPTS: u32 = 6;
/// Pause before the first retry; it doubles at each retry.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Largest message accepted from the site (image lists of big sites).
const MAX_DECODING: usize = 64 << 20;

/// Connects to `HOST:PORT` over HTTP/2, with TLS when `tls` is given; failure to reach it
/// (or a failed TLS handshake) is [`Error::SiteUnreachable`].
pub async fn connect(site: &str, tls: Option<&ClientTlsConfig>) -> Result<Client, Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{site}"))
        .map_err(|e| Error::Usage(format!("--site {site:?}: {e}")))?;
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| Error::Usage(format!("TLS settings: {}", chain(&e))))?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Error::SiteUnreachable(format!("{site}: {}", chain(&e))))?;
    Ok(SiteClient::new(channel).max_decoding_message_size(MAX_DECODING))
}

/// Longest pause between two rounds while every node knows no leader.
const LEADER_PAUSE_MAX: Duration = Duration::from_secs(2);

/// How long [`with_failover_among`] keeps trying.
#[derive(Debug, Clone, Copy)]
pub struct Failover {
    /// Rounds of the node list after failures other than a missing leader.
    pub rounds: u32,
    /// How long rounds in which every node knows no leader are waited out.
    pub leader_wait: Duration,
}

/// Runs `work` against a node of `nodes` (reached with `tls`) as long as `failover` says; `note`
/// is told of each node given up and of each wait. A round in which some node answered
/// that it knows no leader, and every other node said the same or could not be reached,
/// is waited out for up to `leader_wait`.
pub async fn with_failover_among<T, F, Fut>(
    nodes: &[String],
    tls: Option<&ClientTlsConfig>,
    failover: Failover,
    note: &(dyn Fn(&str) + Sync),
    mut work: F,
) -> Result<T, Error>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    if nodes.is_empty() {
        return Err(Error::Usage("no site node given".into()));
    }
    let mut pause = Duration::from_millis(500);
    let mut leader_pause = Duration::from_millis(100);
    let mut leaderless_since: Option<Instant> = None;
    let mut last = None;
    let mut round = 1;
    loop {
        let started = Instant::now();
        // A round is leaderless when some node answered that it knows no leader and
        // every other one said the same or could not be reached (a node still starting).
        let (mut no_leader, mut other) = (false, false);
        for (i, node) in nodes.iter().enumerate() {
            let (outcome, reached) = match connect(node, tls).await {
                Ok(client) => (work(client).await, true),
                Err(e) => (Err(e), false),
            };
            match outcome {
                Err(e @ Error::SiteUnreachable(_)) if nodes.len() > 1 || knows_no_leader(&e) => {
                    if knows_no_leader(&e) {
                        no_leader = true;
                    } else if reached {
                        other = true;
                    }
                    if i + 1 < nodes.len() {
                        note(&format!("{e}; going on with another node"));
                    }
                    last = Some(e);
                }
                other => return other,
            }
        }
        let e = last.as_ref().expect("a failure per node");
        if no_leader && !other {
            let since = *leaderless_since.get_or_insert(started);
            let left = failover.leader_wait.saturating_sub(since.elapsed());
            if !left.is_zero() {
                let wait = leader_pause.min(left);
                note(&format!(
                    "{e}; no node knows a leader of the site (an election?): asking again in {} ms (waiting up to {} in all)",
                    wait.as_millis(),
                    humantime::format_duration(failover.leader_wait)
                ));
                tokio::time::sleep(wait).await;
                leader_pause = (leader_pause * 2).min(LEADER_PAUSE_MAX);
                continue;
            }
            note(&format!(
                "{e}; no node knew a leader of the site for {}: giving up",
                humantime::format_duration(failover.leader_wait)
            ));
            break;
        }
        leaderless_since = None;
        leader_pause = Duration::from_millis(100);
        if round >= failover.rounds {
            if nodes.len() > 1 {
                note(&format!("{e}; no node could take it: giving up"));
            }
            break;
        }
        note(&format!(
            "{e}; no node could take it: trying again in {} ms",
            pause.as_millis()
        ));
        tokio::time::sleep(pause).await;
        pause *= 2;
        round += 1;
    }
    Err(last.unwrap_or_else(|| Error::Usage("no site node given".into())))
}

/// Whether a node answered that it knows no leader of its site (`NO_QUORUM`): every
/// node says so for the moment before a site's first election. A node that knows the
/// leader but cannot reach it says otherwise.
pub fn knows_no_leader(e: &Error) -> bool {
    matches!(e, Error::SiteUnreachable(m) if m.starts_with("NO_QUORUM"))
}

/// Whether the node refused because it is cut off from its site (`NO_QUORUM`: it knows
/// no leader) or its storage failed (`NODE_FAILED`): not worth a retry on that node, but
/// another node may take the write.
pub fn is_cut_off(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && ["NO_QUORUM", "NODE_FAILED"]
            .iter()
            .any(|r| status.message().starts_with(r))
}

/// Whether a status means the link broke (or the node is restarting) rather than that the
/// site refused: worth a retry. tonic gives the statuses it builds from a transport error
/// (connection reset, h2 error, timeout) a source; statuses the site sent never have one.
pub fn is_broken_link(status: &Status) -> bool {
    is_transport(status)
        || matches!(
            status.code(),
            Code::Unavailable | Code::DataLoss | Code::DeadlineExceeded
        )
}

fn is_transport(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        || (matches!(
            status.code(),
            Code::Unknown | Code::Cancelled | Code::Internal
        ) && (status.message().starts_with("h2 protocol error")
            || status.message().contains("transport error")))
}

/// The error, and so the exit code, a status from the site means.
pub fn status_error(status: &Status) -> Error {
    if is_transport(status) {
        return Error::SiteUnreachable(describe(status));
    }
    let message = match status.message() {
        "" => format!("{:?}", status.code()),
        m => one_line(m),
    };
    match status.code() {
        Code::ResourceExhausted => Error::SiteOutOfSpace(message),
        Code::Unavailable | Code::DeadlineExceeded => Error::SiteUnreachable(message),
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange
        | Code::Aborted
        | Code::Unimplemented
        | Code::DataLoss => Error::SiteRefused(message),
        _ => Error::Other(format!("site error: {message}")),
    }
}

/// A transport status as one line: its message, then its sources.
fn describe(status: &Status) -> String {
    chain_from(
        status.message().to_owned(),
        std::error::Error::source(status),
    )
}

/// Runs a unary call, retrying with exponential backoff while the link is broken (not on
/// `DATA_LOSS`, which unary calls do not return for a broken link).
pub async fn retry<T, F, Fut>(mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(response) => return Ok(response.into_inner()),
            Err(s)
                if attempt < ATTEMPTS
                    && is_broken_link(&s)
                    && s.code() != Code::DataLoss
                    && !is_cut_off(&s) =>
            {
                tracing::debug!(code = ?s.code(), attempt, "site call failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(s) => return Err(status_error(&s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::*;

    fn code_of(code: Code) -> u8 {
        status_error(&Status::new(code, "m")).exit_code()
    }

    #[test]
    fn site_statuses_map_to_exit_codes() {
        assert_eq!(code_of(Code::ResourceExhausted), SITE_OUT_OF_SPACE);
        assert_eq!(code_of(Code::Unavailable), SITE_UNREACHABLE);
        assert_eq!(code_of(Code::DeadlineExceeded), SITE_UNREACHABLE);
        for c in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::OutOfRange,
            Code::Aborted,
            Code::Unimplemented,
            Code::DataLoss,
        ] {
            assert_eq!(code_of(c), SITE_REFUSED, "{c:?}");
        }
        for c in [Code::Unknown, Code::Internal, Code::Cancelled] {
            assert_eq!(code_of(c), OTHER, "{c:?}");
        }
    }

    #[test]
    fn the_sites_message_is_kept() {
        let e = status_error(&Status::resource_exhausted(
            "delivery needs 5368709120 bytes, 1073741824 free",
        ));
        assert_eq!(e.exit_code(), SITE_OUT_OF_SPACE);
        assert!(e
            .to_string()
            .contains("needs 5368709120 bytes, 1073741824 free"));
        let e = status_error(&Status::failed_precondition("wrong offset: expected 1024"));
        assert!(e.to_string().contains("expected 1024"));
    }

    #[test]
    fn transport_failures_are_broken_links() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let s = Status::from_error(Box::new(reset));
        assert_eq!(s.code(), Code::Unknown);
        assert!(is_broken_link(&s));
        assert_eq!(status_error(&s).exit_code(), SITE_UNREACHABLE);
        assert!(is_broken_link(&Status::unavailable("shutting down")));
        assert!(is_broken_link(&Status::data_loss("digest mismatch")));
        assert!(!is_broken_link(&Status::unknown("site bug")));
        // As tonic sees a hyper "operation was canceled" under its transport error.
        #[derive(Debug)]
        struct Wrapper(Status);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let cancelled =
            Status::from_error(Box::new(Wrapper(Status::cancelled("connection closed"))));
        assert_eq!(cancelled.code(), Code::Cancelled);
        assert!(is_broken_link(&cancelled));
        assert_eq!(status_error(&cancelled).exit_code(), SITE_UNREACHABLE);
        assert!(!is_broken_link(&Status::failed_precondition("offset")));
        assert!(!is_broken_link(&Status::resource_exhausted("full")));
    }

    #[tokio::test]
    async fn retry_gives_up_on_refusals_at_once() {
        let mut calls = 0;
        let r: Result<(), Error> = retry(|| {
            calls += 1;
            async { Err(Status::not_found("no such app")) }
        })
        .await;
        assert_eq!(r.unwrap_err().exit_code(), SITE_REFUSED);
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn a_node_cut_off_from_its_site_is_left_at_once_for_another() {
        let mut calls = 0;
        let r: Result<(), Error> = retry(|| {
            calls += 1;
            async {
                Err(Status::unavailable(
                    "NO_QUORUM: node 1 knows no leader of its site",
                ))
            }
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(
            e.exit_code(),
            SITE_UNREACHABLE,
            "with_failover goes on with the next node"
        );
        assert_eq!(calls, 1, "not retried on the same node");
        assert!(!is_cut_off(&Status::unavailable(
            "the change was not committed"
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_retries_broken_links_then_reports_unreachable() {
        let mut calls = 0;
        let r: Result<(), Error> = retry(|| {
            calls += 1;
            async { Err(Status::unavailable("connection refused")) }
        })
        .await;
        assert_eq!(r.unwrap_err().exit_code(), SITE_UNREACHABLE);
        assert_eq!(calls, ATTEMPTS);
    }
}
