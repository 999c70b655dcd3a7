#![deny(missing_docs)]
//! A site node as a library: [`Site::start`] starts the node and serves the registry;
//! the returned [`SiteHandle`] shuts it down gracefully. The `site-agent` binary is a thin
//! wrapper over this, and so is any process that embeds a node.

pub mod config;
pub mod ensure;
mod logging;
mod wiring;

pub use config::Config;
pub use logging::init_logging;

use site_api::peer::PeerService;
use site_api::{Collector, SiteService};
use site_http::{Certificates, Registry, RegistryConfig};
use site_node::Node;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running node.
pub struct Site;

/// The applications scheduled on a node's site, as an embedder changes them (the tower
/// keeps the images of its rollouts live in its registry so).
#[derive(Clone)]
pub struct Applications(site_node::Orderer);

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
    /// The way into the site's log (the embedder's applications).
    orderer: site_node::Orderer,
    /// Whether the node's storage failed.
    failure: site_node::Failure,
    /// The registry's HTTPS certificates, when `[registry.tls]` is set.
    certificates: Option<Arc<Certificates>>,
}

impl Site {
    /// Starts the node (cleaning up after any crash), serves the OCI Distribution API on
    /// `[registry] listen` and the tower's gRPC API on `[api] listen`, and runs garbage
    /// collection on its schedule.
    pub async fn start(config: Config) -> anyhow::Result<SiteHandle> {
        let tls = wiring::grpc_tls(&config)?;
        let certificates = wiring::registry_certificates(&config)?;
        let (shutdown, rx) = watch::channel(false);
        // The driver stops on its own signal, after the servers: requests in flight may
        // still have changes to commit.
        let (raft_stop, raft_rx) = watch::channel(false);
        let cluster = wiring::cluster(&config, tls.as_ref()).await?;
        let cluster_addr = cluster
            .listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        let transport = cluster.transport();
        let (node, raft) = Node::start(
            wiring::node_config(&config),
            cluster.raft.clone(),
            transport.clone(),
            raft_rx,
        )
        .await
        .map_err(|e| {
            let dir = config.node.data_dir.display();
            anyhow::anyhow!("cannot open the node's data in {dir}: {e}")
        })?;
        let collector = Collector::new(&node, wiring::gc_config(&config));
        let puller = site_pull::Puller::new(
            site_pull::Holdings::of(&node),
            config.pull.settings().map_err(anyhow::Error::msg)?,
            site_pull::NodeSide {
                node: config.node.id,
                default_registry: config.registry.default_upstream.clone(),
                room: Arc::new(collector.clone()),
                peers: cluster
                    .peers
                    .clone()
                    .map(|t| t as Arc<dyn site_pull::Peers>),
            },
        );
        let parts = site_api::NodeParts::of(&node);
        let peer_server = cluster.listener.map(|l| {
            let service = PeerService::new(
                parts.clone(),
                puller.clone(),
                tls.as_ref().map(|t| t.peers.clone()),
                transport.clone(),
            );
            // Peers keep being answered until the driver stops.
            let until = raft_stop.subscribe();
            let server_tls = tls.as_ref().map(|t| t.server.clone());
            tokio::spawn(site_api::serve_peers(l, service, server_tls, until))
        });
        let service = SiteService::new(
            parts,
            collector.clone(),
            puller.clone(),
            config.node.id,
            config.registry.default_upstream.clone(),
            rx.clone(),
        );
        if !config.registry.push.users.is_empty() {
            tracing::warn!(
                "[registry.push] users hold plain-text passwords and are deprecated: move them to an htpasswd file of bcrypt entries (htpasswd -B) named by [registry.auth] htpasswd"
            );
        }
        let registry = Registry::new(
            site_http::NodeParts::of(&node),
            RegistryConfig {
                default_upstream: config.registry.default_upstream.clone(),
                access: config.registry.access(),
            },
        )
        .map_err(|e| anyhow::anyhow!("[registry.auth] {e}"))?
        // HTTP misses go outside only where `[pull]` says so (the puller logs a miss its
        // policy refused); `EnsureImage` names its policy itself.
        .with_puller(puller.clone())
        .with_metrics(vec![
            Arc::new(node.metrics()),
            Arc::new(puller.clone()),
            Arc::new(collector.clone()),
            service.delivery_metrics(),
        ]);
        let listener = wiring::bind(config.registry.listen, "").await?;
        let api_listener = wiring::bind(config.api.listen, "[api]").await?;
        let registry_addr = listener.local_addr()?;
        let api_addr = api_listener.local_addr()?;
        let server = serve_registry(registry, listener, &certificates, &config, &rx);
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
            orderer: node.orderer,
            failure: node.failure,
            certificates,
        })
    }
}

/// Serves the registry on `listener` until `stop` turns true: over HTTPS when
/// `[registry.tls]` gave certificates (read again on their interval), else plain.
fn serve_registry(
    registry: Registry,
    listener: tokio::net::TcpListener,
    certificates: &Option<Arc<Certificates>>,
    config: &Config,
    stop: &watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    match (certificates, &config.registry.tls) {
        (Some(c), Some(t)) => {
            if !t.reload_interval.is_zero() {
                tokio::spawn(c.clone().watch(t.reload_interval, until(stop.clone())));
            }
            tokio::spawn(registry.serve_https(listener, c.clone(), until(stop.clone())))
        }
        _ => tokio::spawn(registry.serve(listener, until(stop.clone()))),
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
        Applications(self.orderer.clone())
    }

    /// The node's pull-through cache (to make images present from an embedder, as
    /// [`SiteHandle::ensure_image`] does, from tasks of its own).
    pub fn puller(&self) -> site_pull::Puller {
        self.puller.clone()
    }

    /// Resolves once the node's storage has failed (see [`NodeFailed`]): an embedder
    /// waits on it beside its own work, to treat the node as broken.
    pub async fn failed(&self) -> NodeFailed {
        NodeFailed(self.failure.failed().await)
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
        if let Some(failure) = self.failure.get() {
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
