//! `site-agent ensure IMAGE`: the operator's way to the node's `EnsureImage`, with the
//! node's own `[api]` address and `[tls]` identity. Exit codes tell the reasons apart.

use crate::Config;
use site_api::pb::site_client::SiteClient;
use site_api::pb::EnsureImageRequest;
use std::process::ExitCode;
use tonic_types::StatusExt;

/// The exit code of each failure reason (3 to 7 as towerctl's).
pub const EXIT_CODES: [(&str, u8); 8] = [
    ("NOT_FOUND", 3),
    ("AUTH_FAILED", 4),
    ("UNREACHABLE", 5),
    ("RATE_LIMITED", 6),
    ("OUT_OF_SPACE", 7),
    ("NOT_PRESENT", 10),
    ("INVALID", 2),
    ("NODE_UNREACHABLE", 8),
];

fn code_of(reason: &str) -> u8 {
    EXIT_CODES
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(1, |(_, c)| *c)
}

/// Asks the node of `config` to make `image` present; prints `DIGEST SIZE SOURCE`.
pub async fn ensure(
    config: &Config,
    image: &str,
    policy: Option<&str>,
    platform: Option<&str>,
) -> ExitCode {
    let mut addr = config.api.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let failed = |reason: &str, message: String| {
        eprintln!("site-agent ensure: {message}");
        ExitCode::from(code_of(reason))
    };
    let channel = match endpoint(config, addr) {
        Ok(e) => e.connect().await,
        Err(e) => return failed("INVALID", e),
    };
    let channel = match channel {
        Ok(c) => c,
        Err(e) => return failed("NODE_UNREACHABLE", format!("node at {addr}: {e}")),
    };
    let request = EnsureImageRequest {
        image: image.to_owned(),
        policy: policy.unwrap_or_default().to_owned(),
        platform: platform.unwrap_or_default().to_owned(),
    };
    match SiteClient::new(channel).ensure_image(request).await {
        Ok(r) => {
            let r = r.into_inner();
            println!("{} {} {}", r.digest, r.size, r.source);
            ExitCode::SUCCESS
        }
        Err(status) => {
            let reason = status
                .get_details_error_info()
                .map_or_else(|| "OTHER".to_owned(), |i| i.reason);
            failed(&reason, status.message().to_owned())
        }
    }
}

fn endpoint(
    config: &Config,
    addr: std::net::SocketAddr,
) -> Result<tonic::transport::Endpoint, String> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| e.to_string())?;
    let Some(t) = &config.tls else {
        return Ok(endpoint);
    };
    endpoint
        .tls_config(t.load()?.client)
        .map_err(|e| e.to_string())
}
