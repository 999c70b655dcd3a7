#![deny(missing_docs)]
//! A site node as a library: [`Site::start`] opens the store and serves the registry;
//! the returned [`SiteHandle`] shuts it down gracefully. The `site-agent` binary is a thin
//! wrapper over this, and so is any process that embeds a node.

pub mod config;
pub mod ensure;
mod logging;

pub use config::Config;
pub use logging::init_logging;

use site_api::peer::{PeerService, PeerTransport};
use site_api::{Collector, GcConfig, SiteService};
use site_http::{Certificates, Registry, RegistryConfig};
use site_store::{Alone, RaftSettings, Store, StoreConfig, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running node.
pub struct Site;

/// The applications scheduled on a node's site, as an embedder changes them (the tower
/// keeps the images of its rollouts live in its registry so).
#[derive(Clone)]
pub struct Applications(site_store::Orderer);

impl Applications {
    /// Schedules `app` with `images` (`HOST/PATH@DIGEST`, each fully present): they are
    /// live (kept by GC) until the application is scheduled with others or unscheduled.
    /// Returns whether anything changed.
    pub async fn schedule(&self, app: &str, images: &[String]) -> anyhow::Result<bool> {
        let images = images
            .iter()
            .map(|i| site_state::ImageRef::parse(i, "docker.io"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let out = self
            .0
            .execute(site_state::Command::Schedule {
                app: app.to_owned(),
                images,
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(out.changed)
    }
}

/// Handle of a running node: where it listens, and how to stop it.
pub struct SiteHandle {
    registry_addr: SocketAddr,
    api_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    api: JoinHandle<Result<(), tonic::transport::Error>>,
    gc: JoinHandle<()>,
    puller: site_pull::Puller,
    raft_stop: watch::Sender<bool>,
    raft: JoinHandle<()>,
    cluster_addr: Option<SocketAddr>,
    peer_server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    store: Store,
    /// The registry's HTTPS certificates, when `[registry.tls]` is set.
    certificates: Option<Arc<Certificates>>,
}

impl Site {
    /// Opens the node's store (cleaning up after any crash), starts serving the OCI
    /// Distribution API on `[registry] listen` and the tower's gRPC API on `[api] listen`,
    /// and runs garbage collection on its schedule.
    pub async fn start(config: Config) -> anyhow::Result<SiteHandle> {
        let tls = match &config.tls {
            Some(t) => {
                let node_tls = t.load().map_err(anyhow::Error::msg)?;
                // Refuse to start on unusable certificates rather than fail later.
                tonic::transport::Server::builder()
                    .tls_config(node_tls.server.clone())
                    .map_err(|e| anyhow::Error::new(e).context("[tls]"))?;
                Some(node_tls)
            }
            None => None,
        };
        // Refuse to start on an unusable certificate rather than fail every client.
        let certificates = match &config.registry.tls {
            Some(t) => Some(Arc::new(
                Certificates::load(t.files()).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        };
        let store_config = StoreConfig {
            data_dir: config.node.data_dir.clone(),
            max_blob_bytes: config.registry.max_blob_size,
            max_manifest_bytes: config.registry.max_manifest_size,
            upload_ttl: config.registry.upload_ttl,
            scrub_interval: config.node.scrub_interval,
            verify_reads: config.node.verify_reads,
        };
        let data_dir = config.node.data_dir.display().to_string();
        let (shutdown, rx) = watch::channel(false);
        // The driver stops on its own signal, after the servers: requests in flight may
        // still have changes to commit.
        let (raft_stop, raft_rx) = watch::channel(false);
        // A node with peers is one of a site's group: it listens for them on
        // `[cluster] listen`. Alone, it opens no such port.
        let id = config.node.id;
        let peers: Vec<(u64, String)> = config
            .cluster
            .peers
            .iter()
            .map(|p| (p.id, p.address.clone()))
            .collect();
        let base = RaftSettings {
            snapshot_every: config.cluster.snapshot_entries,
            ..RaftSettings::single(id)
        };
        let (raft_settings, peer_transport, cluster_listener) = if peers.is_empty() {
            (base, None, None)
        } else {
            let listener = tokio::net::TcpListener::bind(config.cluster.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {} ([cluster]): {e}",
                        config.cluster.listen
                    )
                })?;
            // A joining node founds nothing: it waits for the site to add it.
            let mut voters: Vec<u64> = Vec::new();
            if !config.cluster.join {
                voters = peers.iter().map(|(p, _)| *p).collect();
                voters.push(id);
                voters.sort_unstable();
            }
            let transport = PeerTransport::new(id, &peers, tls.as_ref().map(|t| t.client.clone()))
                .map_err(|e| anyhow::anyhow!("[cluster] {e}"))?;
            (
                RaftSettings { voters, ..base },
                Some(Arc::new(transport)),
                Some(listener),
            )
        };
        let transport: Arc<dyn Transport> = match &peer_transport {
            Some(t) => t.clone(),
            None => Arc::new(Alone),
        };
        let peers_transport = transport.clone();
        let (store, raft) = Store::start(store_config, raft_settings, transport, raft_rx)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the store in {data_dir}: {e}"))?;
        let node_parts = site_api::NodeParts {
            state: store.state().clone(),
            orderer: store.orderer().clone(),
            repositories: store.repositories().clone(),
            deliveries: store.deliveries().clone(),
            leadership: store.leadership().clone(),
            membership: store.membership().clone(),
            missing: store.missing().clone(),
            failure: store.failure_watch().clone(),
            events: store.events().clone(),
            fetcher: store.fetcher().clone(),
            peer_files: store.peer_files().clone(),
        };
        let cluster_addr = cluster_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        let collector = Collector::new(
            &store,
            GcConfig {
                grace: config.gc.grace_period,
                cache_ttl: config.gc.cache_ttl,
                high_watermark: config.gc.high_watermark,
                low_watermark: config.gc.low_watermark,
                capacity: config.gc.capacity,
                interval: config.gc.interval,
            },
        );
        let pull_settings = config.pull.settings().map_err(anyhow::Error::msg)?;
        let puller = site_pull::Puller::new(
            site_pull::Holdings {
                state: store.state().clone(),
                repositories: store.repositories().clone(),
                reads: store.reads().clone(),
                peer_files: store.peer_files().clone(),
                deliveries: store.deliveries().clone(),
                leadership: store.leadership().clone(),
                events: store.events().clone(),
                max_manifest_bytes: store.config().max_manifest_bytes,
                max_blob_bytes: store.config().max_blob_bytes,
            },
            pull_settings,
            site_pull::NodeSide {
                node: config.node.id,
                default_registry: config.registry.default_upstream.clone(),
                room: Arc::new(collector.clone()),
                peers: peer_transport.map(|t| t as Arc<dyn site_pull::Peers>),
            },
        );
        let peer_server = cluster_listener.map(|l| {
            tokio::spawn(site_api::serve_peers(
                l,
                PeerService::new(
                    node_parts.clone(),
                    puller.clone(),
                    tls.as_ref().map(|t| t.peers.clone()),
                    peers_transport,
                ),
                tls.as_ref().map(|t| t.server.clone()),
                // Peers keep being answered until the driver stops.
                raft_stop.subscribe(),
            ))
        });
        if !config.registry.push.users.is_empty() {
            tracing::warn!(
                "[registry.push] users hold plain-text passwords and are deprecated: move them to an htpasswd file of bcrypt entries (htpasswd -B) named by [registry.auth] htpasswd"
            );
        }
        let mut registry = Registry::new(
            site_http::NodeParts {
                reads: store.reads().clone(),
                repositories: store.repositories().clone(),
                pulls: store.pulls().clone(),
                uploads: store.uploads().clone(),
                failure: store.failure_watch().clone(),
                membership: store.membership().clone(),
            },
            RegistryConfig {
                default_upstream: config.registry.default_upstream.clone(),
                access: config.registry.access(),
            },
        )
        .map_err(|e| anyhow::anyhow!("[registry.auth] {e}"))?;
        // HTTP misses go outside only where `[pull]` says so (the puller logs a miss its
        // policy refused); `EnsureImage` names its policy itself.
        registry = registry.with_puller(puller.clone());
        let listener = tokio::net::TcpListener::bind(config.registry.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.registry.listen))?;
        let api_listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} ([api]): {e}", config.api.listen))?;
        let registry_addr = listener.local_addr()?;
        let api_addr = api_listener.local_addr()?;
        let mut stop_rx = rx.clone();
        let stop = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        let node_store = store.clone();
        let service = SiteService::new(
            node_parts.clone(),
            collector.clone(),
            puller.clone(),
            config.node.id,
            config.registry.default_upstream.clone(),
            rx.clone(),
        );
        let registry = registry.with_metrics(vec![
            Arc::new(node_store.metrics()),
            Arc::new(puller.clone()),
            Arc::new(collector.clone()),
            service.delivery_metrics(),
        ]);
        let server = match (&certificates, &config.registry.tls) {
            (Some(c), Some(t)) => {
                if !t.reload_interval.is_zero() {
                    let mut stop_rx = rx.clone();
                    tokio::spawn(c.clone().watch(t.reload_interval, async move {
                        let _ = stop_rx.wait_for(|stop| *stop).await;
                    }));
                }
                tokio::spawn(registry.serve_https(listener, c.clone(), stop))
            }
            _ => tokio::spawn(registry.serve(listener, stop)),
        };
        let max_message = usize::try_from(config.registry.max_manifest_size)
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20);
        let api = tokio::spawn(site_api::serve(
            api_listener,
            service,
            max_message,
            tls.as_ref().map(|t| t.server.clone()),
            rx.clone(),
        ));
        let gc = tokio::spawn(collector.run_periodic(rx));
        tracing::info!(
            addr = %registry_addr,
            api = %api_addr,
            cluster = ?cluster_addr,
            https = certificates.is_some(),
            push = config.registry.push.enabled,
            pull = config.pull.policy.to_string(),
            grpc_tls = tls.is_some(),
            node = config.node.id,
            "registry listening"
        );
        Ok(SiteHandle {
            registry_addr,
            api_addr,
            shutdown,
            server,
            api,
            gc,
            puller,
            raft_stop,
            raft,
            cluster_addr,
            peer_server,
            store: node_store,
            certificates,
        })
    }
}

/// The distinct error a node's handle ends with when its storage failed (its log, its
/// database, its blob directory): the node took no writes and did not vote from then
/// on; reads of what was intact went on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the node's storage failed: {0}")]
pub struct NodeFailed(pub String);

impl SiteHandle {
    /// Reads the registry's certificate files again (SIGHUP); whether new connections get
    /// a new certificate. The files are also checked every few seconds.
    pub fn reload_certificates(&self) -> bool {
        self.certificates
            .as_ref()
            .is_some_and(|c| c.reload_if_changed())
    }

    /// The address the registry listens on.
    pub fn registry_addr(&self) -> SocketAddr {
        self.registry_addr
    }

    /// The address the gRPC API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The address peers reach this node on, when it has peers.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster_addr
    }

    /// Makes `image` present as `EnsureImage` does (`proto/site.proto`): under `policy`
    /// (`Always`, `IfNotPresent`, `Never`; the node's for the registry when `None`), an
    /// index with its `platform` child (`os/arch[/variant]`; the node's when `None`).
    /// The error's [`site_pull::PullError::reason`] is the taxonomy's.
    pub async fn ensure_image(
        &self,
        image: &str,
        policy: Option<&str>,
        platform: Option<&str>,
    ) -> Result<site_pull::Ensured, site_pull::PullError> {
        self.puller.ensure(image, policy, platform).await
    }

    /// The node's applications, for an embedder that schedules them.
    pub fn applications(&self) -> Applications {
        Applications(self.store.orderer().clone())
    }

    /// The node's pull-through cache (to make images present from an embedder, as
    /// [`SiteHandle::ensure_image`] does, from tasks of its own).
    pub fn puller(&self) -> site_pull::Puller {
        self.puller.clone()
    }

    /// Resolves once the node's storage has failed (see [`NodeFailed`]): an embedder
    /// waits on it beside its own work, to treat the node as broken.
    pub async fn failed(&self) -> NodeFailed {
        NodeFailed(self.store.failed().await)
    }

    /// Stops accepting connections, lets requests in flight finish, and returns once the
    /// servers, the collector and the Raft driver have stopped. A node whose storage
    /// failed ends with [`NodeFailed`] (`anyhow::Error::downcast_ref`).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await??;
        self.api.await??;
        self.gc.await?;
        self.puller.shutdown().await;
        let _ = self.raft_stop.send(true);
        self.raft.await?;
        if let Some(p) = self.peer_server {
            p.await??;
        }
        tracing::info!("registry stopped");
        if let Some(failure) = self.store.failure() {
            return Err(NodeFailed(failure).into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_handle_ensures_images_as_the_api_does() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[node]\ndata_dir = \"{}\"\n[registry]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("data").display()
        );
        let site = Site::start(Config::parse(&text).unwrap()).await.unwrap();
        let e = site
            .ensure_image("team/app:v1", Some("Never"), None)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "NOT_PRESENT");
        let e = site.ensure_image("../x", None, None).await.unwrap_err();
        assert_eq!(e.reason(), "INVALID");
        site.shutdown().await.unwrap();
    }
}
