#![deny(missing_docs)]
//! The node's pull-through cache: on a miss for an image whose registry is known, a node
//! fetches it from that registry (or the mirror endpoint configured for it) as the pull
//! policy allows, and the site keeps it.
//!
//! Rule of this crate: what is fetched enters the node only the ways a delivery does
//! (`Deliveries::receive_blob`, then the manifest once its blobs are recorded), so cached
//! content is site content: verified, durable on a majority, replicated, served offline.
//! What the site holds is never made unavailable by an upstream: `Always` falls back to
//! it. One upstream transfer per digest on a node; clients wait on it, never poll.

mod blobs;
mod ensure;
pub mod error;
mod manifests;
pub mod peers;
pub mod policy;
mod stream;
mod upstreams;

pub use blobs::BlobFill;
pub use ensure::Ensured;
pub use error::PullError;
pub use peers::{FillUpdate, FillWatch, Peers};
pub use policy::{Endpoint, Policy, PullConfig, RegistryRule};

use futures_util::future::BoxFuture;
use site_core::{Digest, Repository};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Room on the site for what a pull brings: made by evicting unreferenced images when
/// needed (the GC policy's admission), never anything live.
pub trait Room: Send + Sync + 'static {
    /// Makes room for `bytes` more bytes, or fails with [`PullError::OutOfSpace`] (having
    /// evicted nothing) when they cannot fit even after evicting every unreferenced image.
    fn make_room(&self, bytes: u64) -> BoxFuture<'_, Result<(), PullError>>;
}

/// What a node's pull-through cache knows of the node.
pub struct NodeSide {
    /// The node's id, in events.
    pub node: u64,
    /// The registry of names without a host (`[registry] default_upstream`).
    pub default_registry: String,
    /// Space admission.
    pub room: Arc<dyn Room>,
    /// The other nodes of the site; `None` for a node alone.
    pub peers: Option<Arc<dyn Peers>>,
}

/// The parts of the node the cache reads from and fills.
#[derive(Clone)]
pub struct Holdings {
    /// The site's state as applied here.
    pub state: site_node::SiteState,
    /// Manifests, tags and blob links.
    pub repositories: site_node::Repositories,
    /// Reads of blobs the site holds.
    pub reads: site_node::Reads,
    /// Blob files for a peer (a fetch under way on another node).
    pub peer_files: site_node::PeerFiles,
    /// Where fetched blobs become the site's.
    pub deliveries: site_node::Deliveries,
    /// Who leads the site (fetches go through the leader's node).
    pub leadership: site_node::Leadership,
    /// The node's events.
    pub events: site_node::Events,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
}

impl Holdings {
    /// The parts of `node` the cache reads from and fills.
    pub fn of(node: &site_node::Node) -> Holdings {
        Holdings {
            state: node.state.clone(),
            repositories: node.repositories.clone(),
            reads: node.reads.clone(),
            peer_files: node.peer_files.clone(),
            deliveries: node.deliveries.clone(),
            leadership: node.leadership.clone(),
            events: node.events.clone(),
            max_manifest_bytes: node.config.max_manifest_bytes,
            max_blob_bytes: node.config.max_blob_bytes,
        }
    }
}

/// A manifest pull clients wait on: its manifest, once fetched (or why not).
type ManifestPull = watch::Receiver<Option<Result<site_node::StoredManifest, PullError>>>;

/// The pull-through cache of a node. Cheap to clone.
#[derive(Clone)]
pub struct Puller {
    inner: Arc<Inner>,
}

struct Inner {
    store: Holdings,
    node: NodeSide,
    upstreams: upstreams::Upstreams,
    /// Blob fetches under way on this node.
    blobs: Mutex<HashMap<Digest, watch::Receiver<blobs::Fetch>>>,
    /// Manifest pulls of HTTP clients under way on this node, by the image asked for.
    manifests: Mutex<HashMap<String, ManifestPull>>,
    /// Fetches and image completions running in the background.
    tasks: TaskTracker,
    /// Cancels them at shutdown (an interrupted fetch resumes from its bytes later).
    stop: CancellationToken,
    /// Fetches from upstreams by kind (manifest, blob) and outcome, for `/metrics`.
    fetches: site_core::metrics::Counters,
}

impl site_core::metrics::Source for Puller {
    fn expose(&self, out: &mut site_core::metrics::Exposition) {
        self.inner.fetches.expose(
            out,
            "site_pull_fetches_total",
            "Pull-through fetches from upstreams, by kind (manifest, blob) and outcome (ok, or the failure's reason).",
            &["kind", "outcome"],
        );
        self.inner.upstreams.requests.expose(
            out,
            "site_upstream_requests_total",
            "Requests to upstream registries, by registry and outcome (ok, or the failure's reason).",
            &["registry", "outcome"],
        );
    }
}

impl Puller {
    /// The pull-through cache over `store`'s parts with these settings.
    pub fn new(store: Holdings, config: PullConfig, node: NodeSide) -> Puller {
        Puller {
            inner: Arc::new(Inner {
                store,
                node,
                upstreams: upstreams::Upstreams::new(config),
                blobs: Mutex::new(HashMap::new()),
                manifests: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
                fetches: Default::default(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PullConfig {
        self.inner.upstreams.config()
    }

    /// The policy for `repo`'s registry.
    pub fn policy_for(&self, repo: &Repository) -> Policy {
        self.config().policy_for(repo.host())
    }

    /// Publishes a pull event (see [`site_state::Event`]).
    fn publish(&self, event: site_state::Event) {
        self.inner.store.events.publish(event);
    }

    /// Upstreams not asked now because they failed to answer: the host, why, and for how
    /// long still.
    pub fn backed_off(&self) -> Vec<(String, String, std::time::Duration)> {
        self.inner.upstreams.backed_off_all()
    }

    /// Stops the background fetches and waits until they have stopped. A fetch stopped
    /// halfway keeps its bytes; the next one resumes after them.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Runs `work` in the background until it ends or the node shuts down.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let stop = self.inner.stop.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The node's GC policy admits what a fetch is about to write (evicting unreferenced
/// images when that makes room).
impl Room for site_node::collector::Collector {
    fn make_room(&self, bytes: u64) -> BoxFuture<'_, Result<(), PullError>> {
        Box::pin(async move {
            match self.admit(bytes).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err((needed, free, reclaimable))) => Err(PullError::OutOfSpace(format!(
                    "{needed} bytes needed, {free} free, {reclaimable} more could be freed by evicting every unreferenced image"
                ))),
                Err(e) => Err(PullError::store(e)),
            }
        })
    }
}
