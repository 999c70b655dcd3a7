//! The steps [`crate::Site::start`] takes, each turning part of the configuration into
//! what the node's components and servers are given.

use crate::Config;
use site_api::peer::PeerTransport;
use site_api::tls::NodeTls;
use site_api::GcConfig;
use site_http::Certificates;
use site_node::{Alone, NodeConfig, RaftSettings, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The node's gRPC TLS (`[tls]`), refused at start when unusable rather than failing
/// later.
pub(crate) fn grpc_tls(config: &Config) -> anyhow::Result<Option<NodeTls>> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let node_tls = t.load().map_err(anyhow::Error::msg)?;
    tonic::transport::Server::builder()
        .tls_config(node_tls.server.clone())
        .map_err(|e| anyhow::Error::new(e).context("[tls]"))?;
    Ok(Some(node_tls))
}

/// The registry's HTTPS certificates (`[registry.tls]`), refused at start when unusable
/// rather than failing every client.
pub(crate) fn registry_certificates(config: &Config) -> anyhow::Result<Option<Arc<Certificates>>> {
    config
        .registry
        .tls
        .as_ref()
        .map(|t| Certificates::load(t.files()).map(Arc::new))
        .transpose()
        .map_err(anyhow::Error::msg)
}

/// Where and within which limits the node keeps its data.
pub(crate) fn node_config(config: &Config) -> NodeConfig {
    NodeConfig {
        data_dir: config.node.data_dir.clone(),
        max_blob_bytes: config.registry.max_blob_size,
        max_manifest_bytes: config.registry.max_manifest_size,
        upload_ttl: config.registry.upload_ttl,
        scrub_interval: config.node.scrub_interval,
        verify_reads: config.node.verify_reads,
    }
}

/// The collector's settings (`[gc]`).
pub(crate) fn gc_config(config: &Config) -> GcConfig {
    GcConfig {
        grace: config.gc.grace_period,
        cache_ttl: config.gc.cache_ttl,
        high_watermark: config.gc.high_watermark,
        low_watermark: config.gc.low_watermark,
        capacity: config.gc.capacity,
        interval: config.gc.interval,
    }
}

/// How the node takes part in its site's group.
pub(crate) struct Cluster {
    pub(crate) raft: RaftSettings,
    /// The way to the peers; `None` for a node alone.
    pub(crate) peers: Option<Arc<PeerTransport>>,
    /// Where peers reach this node; `None` for a node alone, which opens no such port.
    pub(crate) listener: Option<TcpListener>,
}

impl Cluster {
    /// The transport the node's components are given.
    pub(crate) fn transport(&self) -> Arc<dyn Transport> {
        match &self.peers {
            Some(t) => t.clone(),
            None => Arc::new(Alone),
        }
    }
}

/// The node's group (`[cluster]`): alone, or one of a site's nodes listening for its
/// peers on `[cluster] listen`.
pub(crate) async fn cluster(config: &Config, tls: Option<&NodeTls>) -> anyhow::Result<Cluster> {
    let id = config.node.id;
    let peers: Vec<(u64, String)> = config
        .cluster
        .peers
        .iter()
        .map(|p| (p.id, p.address.clone()))
        .collect();
    let raft = RaftSettings {
        snapshot_every: config.cluster.snapshot_entries,
        ..RaftSettings::single(id)
    };
    if peers.is_empty() {
        return Ok(Cluster {
            raft,
            peers: None,
            listener: None,
        });
    }
    let listener = bind(config.cluster.listen, "[cluster]").await?;
    // A joining node founds nothing: it waits for the site to add it.
    let mut voters: Vec<u64> = Vec::new();
    if !config.cluster.join {
        voters = peers.iter().map(|(p, _)| *p).collect();
        voters.push(id);
        voters.sort_unstable();
    }
    let transport = PeerTransport::new(id, &peers, tls.map(|t| t.client.clone()))
        .map_err(|e| anyhow::anyhow!("[cluster] {e}"))?;
    Ok(Cluster {
        raft: RaftSettings { voters, ..raft },
        peers: Some(Arc::new(transport)),
        listener: Some(listener),
    })
}

/// Listens on `addr` (named in errors by its config `section`).
pub(crate) async fn bind(addr: SocketAddr, section: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if section.is_empty() {
            anyhow::anyhow!("cannot listen on {addr}: {e}")
        } else {
            anyhow::anyhow!("cannot listen on {addr} ({section}): {e}")
        }
    })
}
