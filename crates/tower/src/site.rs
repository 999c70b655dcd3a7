//! towerctl's way to a site: the node list and TLS files of `--site`, `--tls-*` and
//! `--leader-wait` over the shared site client (`site_delivery::site`).

pub use site_delivery::site::*;

use crate::cli::SiteArg;
use crate::exit::Error;
use std::future::Future;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The TLS settings `--tls-ca`, `--tls-cert` and `--tls-key` give, if any.
pub fn tls(arg: &SiteArg) -> Result<Option<ClientTlsConfig>, Error> {
    let Some(ca) = &arg.tls_ca else {
        return Ok(None);
    };
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())))
    };
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
    if let (Some(cert), Some(key)) = (&arg.tls_cert, &arg.tls_key) {
        config = config.identity(Identity::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
        ));
    }
    Ok(Some(config))
}

/// Connects to the first of the nodes `arg` names that answers.
pub async fn connect_any(arg: &SiteArg) -> Result<Client, Error> {
    let (sites, tls) = (&arg.site, tls(arg)?);
    let mut last = None;
    for site in sites {
        match connect(site, tls.as_ref()).await {
            Ok(c) => return Ok(c),
            Err(e @ Error::SiteUnreachable(_)) => {
                if sites.len() > 1 {
                    eprintln!("towerctl: {e}; trying another node");
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Usage("no --site given".into())))
}

/// Rounds of the node list [`with_failover`] makes before it gives up.
const FAILOVER_ROUNDS: u32 = 5;

/// Runs `work` against a node of the site; when the node becomes unreachable (its calls
/// already retried) or refuses because it is cut off from its site, runs it again against
/// the next node `arg` names. After a round in which no node could take it (a link
/// down), it pauses (0.5 s, doubling) and goes round again, [`FAILOVER_ROUNDS`] rounds
/// at most. A round in which every node answered that it knows no leader (a site
/// electing one, right after its nodes start) is waited out for up to
/// `--leader-wait`. `work` must be safe to repeat: a delivery is (the site reports what
/// it holds).
pub async fn with_failover<T, F, Fut>(arg: &SiteArg, work: F) -> Result<T, Error>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let tls = tls(arg)?;
    let rounds = if arg.site.len() > 1 {
        FAILOVER_ROUNDS
    } else {
        1
    };
    let note = |line: &str| eprintln!("towerctl: {line}");
    let failover = Failover {
        rounds,
        leader_wait: arg.leader_wait,
    };
    with_failover_among(&arg.site, tls.as_ref(), failover, &note, work).await
}
