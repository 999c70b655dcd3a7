#![deny(missing_docs)]
//! A site node as a library: [`Site::start`] opens the store and serves the registry;
//! the returned [`SiteHandle`] shuts it down gracefully. The `site-agent` binary is a thin
//! wrapper over this, and so is any process that embeds a node.

pub mod config;
mod logging;

pub use config::Config;
pub use logging::init_logging;

use site_http::{PushConfig, Registry, RegistryConfig, User};
use site_store::{Store, StoreConfig};
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running node.
pub struct Site;

/// Handle of a running node: where it listens, and how to stop it.
pub struct SiteHandle {
    registry_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Site {
    /// Opens the node's store (cleaning up after any crash) and starts serving the OCI
    /// Distribution API on `[registry] listen`.
    pub async fn start(config: Config) -> anyhow::Result<SiteHandle> {
        let store_config = StoreConfig {
            data_dir: config.node.data_dir.clone(),
            max_blob_bytes: config.registry.max_blob_size,
            max_manifest_bytes: config.registry.max_manifest_size,
            upload_ttl: config.registry.upload_ttl,
        };
        let data_dir = config.node.data_dir.display().to_string();
        let store = tokio::task::spawn_blocking(move || Store::open(store_config))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot open the store in {data_dir}: {e}"))?;
        let push = PushConfig {
            enabled: config.registry.push.enabled,
            users: config
                .registry
                .push
                .users
                .iter()
                .map(|u| User {
                    name: u.name.clone(),
                    password: u.password.clone(),
                })
                .collect(),
        };
        let registry = Registry::new(
            store,
            RegistryConfig {
                default_upstream: config.registry.default_upstream.clone(),
                push,
            },
        );
        let listener = tokio::net::TcpListener::bind(config.registry.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.registry.listen))?;
        let registry_addr = listener.local_addr()?;
        let (shutdown, mut rx) = watch::channel(false);
        let stop = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let server = tokio::spawn(registry.serve(listener, stop));
        tracing::info!(
            addr = %registry_addr,
            push = config.registry.push.enabled,
            node = config.node.id,
            "registry listening"
        );
        Ok(SiteHandle {
            registry_addr,
            shutdown,
            server,
        })
    }
}

impl SiteHandle {
    /// The address the registry listens on.
    pub fn registry_addr(&self) -> SocketAddr {
        self.registry_addr
    }

    /// Stops accepting connections, lets requests in flight finish, and returns once the
    /// server has stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await??;
        tracing::info!("registry stopped");
        Ok(())
    }
}
