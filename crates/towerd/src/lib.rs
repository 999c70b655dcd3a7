#![deny(missing_docs)]
//! `towerd`, the Control Tower's fleet service: an inventory of site registries (labels,
//! metadata, TLS material, health from every node), and rollouts that bring an
//! application's images to every selected site over days of broken links, sent from the
//! tower's own OCI registry (an embedded site node, `registry.rs`, which fetches what it
//! lacks from upstreams once). A JSON HTTP API and a status page; `towerctl sites ...`
//! and `towerctl rollout ...` are its client.
//!
//! The fleet's rules (filters, the rollout state machine, the scheduler) are the I/O-free
//! `site-fleet`; this crate is the adapters around it: the store, the registry, the site
//! client, and the HTTP API.

pub mod access;
pub mod api;
pub mod cli;
pub mod create;
pub mod health;
pub mod leases;
pub mod pull;
pub mod registry;
pub mod runner;
pub mod source;
pub mod store;
pub mod tower;
pub mod worker;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use tokio::sync::watch;

/// Runs the tower until `shutdown` turns true: the API on `listen`, the rollouts in the
/// background. Returns the address the API listens on through `bound` once it does.
pub async fn serve(
    config: cli::Config,
    shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), String> {
    // The data directory holds the sites' TLS keys: the tower's user alone reads it.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data)
        .map_err(|e| format!("cannot create {}: {e}", config.data.display()))?;
    let store = store::open(&config).await.map_err(|e| e.to_string())?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(access::tls::server_config(
            cert,
            key,
            config.client_ca.as_deref(),
        )?),
        _ => None,
    };
    // The API steers every site: on a network only with users.
    if !config.listen.ip().is_loopback()
        && config.client_ca.is_none()
        && store.tokens().await.map_err(|e| e.to_string())?.is_empty()
    {
        return Err(format!(
            "refusing to listen on {}, which is not loopback, with no user: the API steers every site. Create a token first (towerd token create NAME --role write, with this --data or --database) or give --client-ca",
            config.listen
        ));
    }
    if !config.listen.ip().is_loopback() && tls.is_none() {
        tracing::warn!(listen = %config.listen, "the API listens beyond loopback over plain HTTP: its tokens cross the network in clear (give --tls-cert and --tls-key)");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let (registry, client) = registry::start(&config).await?;
    let holder = format!("{}/{}", hostname(), api::new_id("t"));
    let tower = match tower::Tower::new(store, client, config.settings(), holder).await {
        Ok(t) => Arc::new(t),
        Err(e) => {
            let _ = registry.shutdown().await;
            return Err(e.to_string());
        }
    };
    tracing::info!(%address, https = config.tls_cert.is_some(), client_ca = config.client_ca.is_some(), data = %config.data.display(), holder = %tower.leases.holder, shared = tower.store.shared(), "tower listening");
    if let Some(bound) = bound {
        let _ = bound.send(address);
    }
    let runner = tokio::spawn(runner::run(tower.clone(), shutdown.clone()));
    let leases = tokio::spawn(leases::run(tower.clone(), shutdown.clone()));
    let mut stop = shutdown.clone();
    let app = api::router(tower.clone()).into_make_service_with_connect_info::<access::Peer>();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = match tls {
        Some(tls) => {
            let listener = access::tls::listener(listener, tls)
                .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
    .map_err(|e| format!("API server: {e}"));
    let _ = runner.await;
    // What the stopped workers had done is written (other sites are as written).
    let working = tower.working();
    tower.stop_workers(None);
    for (id, site) in &working {
        let _ = tower.save_sites(id, &[site.as_str()]).await;
    }
    let _ = leases.await;
    if let Err(e) = registry.shutdown().await {
        tracing::error!(error = %e, "the tower's registry stopped with an error");
    }
    tracing::info!("tower stopped");
    result
}

/// This machine's name, to tell replicas apart in the leases they hold.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tower".into())
}
