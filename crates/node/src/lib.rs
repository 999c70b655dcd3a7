#![deny(missing_docs)]
//! A site node's runtime: the site's state machine (`site-state`) behind the site's
//! Raft log (in sled), blob files on disk, and the components that carry out what the
//! replication core (`site-replica`) decides.
//!
//! Rule of this crate: sled appears nowhere else. Callers see repositories, digests and
//! manifests; every key is built in [`keyspace`]. Every metadata change is a
//! [`site_state::Command`] that the [`Orderer`] orders through the Raft log. The driver
//! (`raft_driver.rs`) persists, syncs and sends, and its apply task applies committed
//! entries on every node in log order (`applying.rs`), so a restart rebuilds exactly the
//! acknowledged state. A blob becomes visible only once its file is whole, verified and
//! durable on a majority (`delivery.rs`, `majority.rs`, `replication.rs`);
//! [`Node::start`] reconciles the files with the state after a crash so that nothing
//! partial is ever served, and a storage failure stops the node's writes loudly
//! (`failure.rs`). [`Node`] is the set of components, each owning its state; the HTTP,
//! gRPC and peer handlers, the pull-through cache and the collector are given the ones
//! they use.

mod applied_state;
pub mod applying;
mod blob_writer;
pub mod channels;
pub mod collector;
pub mod delivery;
pub mod error;
pub mod events;
pub mod failure;
mod fetches;
mod file_io;
pub mod file_ops;
pub mod file_system;
pub mod files;
mod growing;
pub mod keyspace;
pub mod leadership;
pub mod log_disk;
pub mod majority;
mod manifests;
pub mod membership;
mod metrics;
mod missing_blobs;
pub mod ordering;
mod peer_file;
pub mod pulls;
pub mod raft_driver;
pub mod raft_log;
mod reads;
mod reconcile;
pub mod replication;
pub mod scrub;
pub mod sendfile;
mod sessions;
pub mod site_clock;
pub mod spawn;
mod sweep;
#[cfg(test)]
mod test_kit;
pub mod transport;
pub mod uploads;
mod verify;

pub use applied_state::SiteState;
pub use channels::Ordered;
pub use delivery::{Deliveries, Received};
pub use error::{NodeError, Result};
pub use events::Events;
pub use failure::Failure;
pub use fetches::Fetches;
pub use leadership::Leadership;
pub use leadership::RaftStatus;
pub use log_disk::{LogBatch, LogDisk, LogTree, SledLogDisk};
pub use majority::MajorityHold;
pub use manifests::{ManifestRef, Repositories, StoredManifest};
pub use membership::{Membership, NodeView};
pub use metrics::{NodeCounters, NodeMetrics};
pub use missing_blobs::MissingBlobs;
pub use ordering::Orderer;
pub use peer_file::{PeerFile, PeerFiles, PeerSend};
pub use pulls::Pulls;
pub use raft_driver::RaftSettings;
pub use reads::{BlobBytes, FileRegion, ReadCheck, Reads};
pub use replication::{ByteStream, Fetcher};
pub use scrub::Scrubber;
pub use sessions::ByteSource;
pub use site_clock::{within, Clock, SiteClock, SystemClock};
pub use site_replica::Ask;
pub use site_state::MemberChange;
pub use spawn::{Spawn, TokioSpawn};
pub use transport::{Alone, NodeReport, Transport};
pub use uploads::Uploads;
pub use verify::{ReadChecks, VerifyReads};

use files::BlobFiles;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// Where and within which limits a store keeps its data.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Root of the node's data: `blobs/`, `uploads/`, `meta/`.
    pub data_dir: PathBuf,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// Upload sessions idle longer than this are dropped (at start-up and by
    /// [`Uploads::expire_uploads`]).
    pub upload_ttl: Duration,
    /// Every blob file is checked against its digest once per this interval (`scrub.rs`);
    /// zero turns it off.
    pub scrub_interval: Duration,
    /// Which reads of blob files are checked against their digest.
    pub verify_reads: VerifyReads,
}

/// A running node: its components, each owning its state, built by [`Node::start`].
/// Callers take the components they use (the HTTP registry, the gRPC services, the
/// pull-through cache, the collector); each is cheap to clone and clones share it.
#[derive(Clone)]
pub struct Node {
    /// The site's state as applied here, and how far (`applied_state.rs`).
    pub state: SiteState,
    /// The way into the site's log (`ordering.rs`).
    pub orderer: Orderer,
    /// The site's repositories: manifests and tags (`manifests.rs`).
    pub repositories: Repositories,
    /// Blobs made the site's (`delivery.rs`).
    pub deliveries: Deliveries,
    /// OCI upload sessions (`uploads.rs`).
    pub uploads: Uploads,
    /// Reads of blobs for clients (`reads.rs`).
    pub reads: Reads,
    /// Manifests pulled since the last `Touch` (`pulls.rs`).
    pub pulls: Pulls,
    /// The files peers are sent blob bytes from (`peer_file.rs`).
    pub peer_files: PeerFiles,
    /// Where this node's Raft stands, as the driver last saw it; waiters wake when it
    /// changes (a lost leader, a silent peer) (`leadership.rs`).
    pub leadership: Leadership,
    /// The site's members as this node sees and changes them (`membership.rs`).
    pub membership: Membership,
    /// Committed blobs whose file this node lacks (`missing_blobs.rs`).
    pub missing: MissingBlobs,
    /// Copies of blobs from peers (`replication.rs`).
    pub fetcher: Fetcher,
    /// What failed, once this node's storage has (`failure.rs`).
    pub failure: Failure,
    /// What the node tells its watchers (`events.rs`).
    pub events: Events,
    /// The limits the node was started with.
    pub config: NodeConfig,
    /// The node's id and the way to the other nodes.
    pub(crate) cluster: replication::Cluster,
    pub(crate) db: sled::Db,
    pub(crate) files: BlobFiles,
    /// The apply task's queue, where blob file installs and removals take their turn
    /// (`file_ops.rs`).
    pub(crate) file_queue: file_ops::FileQueue,
    /// Messages from peers to the Raft driver.
    pub(crate) inputs: mpsc::UnboundedSender<channels::Input>,
    /// Checks of blob files against their digests (`scrub.rs`).
    pub(crate) scrubber: Scrubber,
    /// Copies from peers under way (`fetches.rs`).
    pub(crate) fetches: fetches::Fetches,
    /// The Raft log of the site's group.
    pub(crate) raft: raft_log::RaftLog,
    /// Counts for `/metrics` (`metrics.rs`).
    pub(crate) counters: Arc<metrics::NodeCounters>,
    /// Which reads of blob files are hashed (`verify.rs`).
    pub(crate) read_checks: Arc<verify::ReadChecks>,
    /// The log's clock on this node (`site_clock.rs`).
    pub(crate) clock: Arc<SiteClock>,
}

/// The driver's ends of a node's channels.
struct DriverSide {
    proposals: mpsc::UnboundedReceiver<channels::Proposal>,
    inputs: mpsc::UnboundedReceiver<channels::Input>,
    applied: watch::Sender<u64>,
}

/// Opens the sled database at `path`. Another holder of its lock (a previous instance
/// still exiting) is waited for, up to a few seconds.
pub(crate) fn open_db(path: &std::path::Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch by this machine's wall clock. Entries are stamped
/// with the log's time instead ([`SiteClock::now`]).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Opens (creating if needed) the node's data under `config.data_dir`, starts its Raft
    /// driver (which runs until `shutdown` turns true), replays the committed log into the
    /// state, and reconciles the files with the state after a crash. Returns once the
    /// node serves exactly what was acknowledged, with the task of the driver and of the
    /// background blob fetches (`replication.rs`).
    pub async fn start(
        config: NodeConfig,
        raft: RaftSettings,
        transport: Arc<dyn Transport>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Node, tokio::task::JoinHandle<()>)> {
        let alone = raft.voters == [raft.id];
        let cluster = replication::Cluster {
            id: raft.id,
            alone,
            transport: transport.clone(),
            shutdown: shutdown.clone(),
        };
        let voters = raft.voters.clone();
        let (store, driver_side) =
            tokio::task::spawn_blocking(move || Node::open(config, cluster, &voters))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
        // Serve nothing before the state holds every entry committed before the restart.
        // A node alone committed each entry of its log once it was synced, and the commit
        // index on disk may lag behind what it acknowledged (a kill -9 before the next
        // sync): it waits for every entry its log holds, which it commits again as it
        // takes the lead.
        let replay_to = if alone {
            raft::Storage::last_index(&store.raft).map_err(std::io::Error::other)?
        } else {
            store.raft.hard_state().commit
        };
        let applied = *driver_side.applied.borrow();
        let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
        store.file_queue.connect(&jobs);
        let applying = applying::Applying::new(
            raft.id,
            applying::ApplySide {
                file_ops: store.file_ops(),
                missing: store.missing.clone(),
                transport: transport.clone(),
                events: store.events.clone(),
                counters: store.counters.clone(),
                clock: store.clock.clone(),
                driver: store.inputs.clone(),
            },
            driver_side.applied,
        );
        let node = raft_driver::NodeSide {
            leadership: store.leadership.clone(),
            failure: store.failure.clone(),
            clock: store.clock.clone(),
            events: store.events.clone(),
        };
        let log = store.raft.clone();
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
        let seed = u64::from_be_bytes(seed);
        let driver = raft_driver::Driver::new(node, log, raft, transport, applied, jobs, seed)?;
        // The voters and the leader are known before anything is served (a write's
        // majority hold counts the voters).
        driver.publish_status();
        // Fetches and the scrub start once the files are reconciled with the state, so
        // that reconciliation never removes a copy one of them just made.
        let (reconciled, mut files_ready) = watch::channel(false);
        let replication = store.fetcher.clone().run();
        let scrub = store.scrubber.clone().run(shutdown.clone());
        let clock =
            store
                .clock
                .clone()
                .watch(store.cluster.id, store.events.clone(), shutdown.clone());
        let background = async move {
            if files_ready.wait_for(|r| *r).await.is_ok() {
                tokio::join!(replication, scrub, clock);
            }
        };
        let run = driver.run(driver_side.proposals, driver_side.inputs, shutdown);
        // Its own task: applying (and a sweep's file removals) runs beside the driver's
        // ticks; it ends once the driver is gone and the queue is done.
        let apply = tokio::spawn(applying.run(queue));
        let task = tokio::spawn(async move {
            tokio::join!(run, background);
            let _ = apply.await;
        });
        if !store.state.applied_up_to(replay_to).await {
            return Err(NodeError::Unavailable(
                "the raft driver stopped while replaying the log".into(),
            ));
        }
        let cluster = &store.cluster;
        applying::sync_peers(&store.state, cluster.id, cluster.transport.as_ref());
        reconcile::reconcile(&store, alone).await?;
        let _ = reconciled.send(true);
        Ok((store, task))
    }

    /// Opens the node's data (a new site founded with `voters`) and loads the state machine from
    /// the last snapshot; returns the driver's ends of the node's channels. Blocking.
    fn open(
        config: NodeConfig,
        cluster: replication::Cluster,
        voters: &[u64],
    ) -> Result<(Node, DriverSide)> {
        let id = cluster.id;
        files::create_dir_durable(&config.data_dir)?;
        let db = open_db(&config.data_dir.join("meta"))?;
        let disk = Arc::new(log_disk::SledLogDisk::open(&db)?);
        let (raft, state, applied) = applying::open_log(disk, voters)?;
        let system: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let clock = Arc::new(SiteClock::new(system.clone()));
        clock.observe(state.time());
        let uploads_tree = db.open_tree(keyspace::UPLOADS)?;
        let files = BlobFiles::open(config.data_dir.join("blobs"))?;
        let upload_dir = config.data_dir.join("uploads");
        files::create_dir_durable(&upload_dir)?;
        let (proposals, proposals_rx) = mpsc::unbounded_channel();
        let (inputs, inputs_rx) = mpsc::unbounded_channel();
        let (applied_tx, applied_rx) = watch::channel(applied);
        let events = Events::default();
        let failure = Failure::new(id, events.clone());
        let state = SiteState::new(state, applied_rx);
        let missing = MissingBlobs::default();
        let fetches = fetches::Fetches::default();
        let file_queue = file_ops::FileQueue::default();
        let leadership = Leadership::new(id, cluster.alone, failure.clone());
        let orderer = Orderer {
            proposals,
            inputs: inputs.clone(),
            leadership: leadership.clone(),
            state: state.clone(),
            failure: failure.clone(),
            clock: clock.clone(),
            transport: cluster.transport.clone(),
        };
        let membership = Membership::new(
            orderer.clone(),
            leadership.clone(),
            missing.clone(),
            cluster.transport.clone(),
            cluster.alone,
        );
        let majority = MajorityHold::new(id, leadership.clone(), cluster.transport.clone());
        let fetcher = Fetcher {
            id,
            missing: missing.clone(),
            fetches: fetches.clone(),
            queue: file_queue.clone(),
            state: state.clone(),
            leadership: leadership.clone(),
            transport: cluster.transport.clone(),
            events: events.clone(),
            shutdown: cluster.shutdown.clone(),
            scratch: upload_dir.clone(),
            next_tmp: Arc::default(),
            files: files.clone(),
            clock: system.clone(),
        };
        let read_checks = Arc::new(verify::ReadChecks::new(config.verify_reads));
        let counters: Arc<metrics::NodeCounters> = Arc::default();
        let scrubber = Scrubber {
            id,
            files: files.clone(),
            read_checks: read_checks.clone(),
            queue: file_queue.clone(),
            missing: missing.clone(),
            state: state.clone(),
            events: events.clone(),
            counters: counters.clone(),
            interval: config.scrub_interval,
            tasks: Arc::new(TokioSpawn),
        };
        let reads = Reads {
            files: files.clone(),
            state: state.clone(),
            scrubber: scrubber.clone(),
            missing: missing.clone(),
            leadership: leadership.clone(),
            transport: cluster.transport.clone(),
            clock: system,
        };
        let growing = growing::Growing::default();
        let peer_files = PeerFiles {
            files: files.clone(),
            receiving: growing::Receiving {
                growing: growing.clone(),
                fetches: fetches.clone(),
            },
            counters: counters.clone(),
        };
        let pulls = Pulls::new(orderer.clone());
        let repositories = Repositories {
            state: state.clone(),
            orderer: orderer.clone(),
            max_manifest_bytes: config.max_manifest_bytes,
        };
        let sessions = sessions::Sessions::new(upload_dir.clone());
        let deliveries = Deliveries {
            sessions: sessions.clone(),
            files: files.clone(),
            queue: file_queue.clone(),
            state: state.clone(),
            majority: majority.clone(),
            orderer: orderer.clone(),
            leadership: leadership.clone(),
            growing: growing.clone(),
            max_blob_bytes: config.max_blob_bytes,
        };
        let uploads = Uploads {
            sessions: sessions.clone(),
            tree: uploads_tree.clone(),
            db: db.clone(),
            deliveries: deliveries.clone(),
            max_blob_bytes: config.max_blob_bytes,
            ttl: config.upload_ttl,
        };
        let store = Node {
            uploads,
            deliveries,
            read_checks,
            config,
            db,
            files,
            state,
            membership,
            file_queue,
            orderer,
            inputs,
            cluster,
            fetcher,
            reads,
            peer_files,
            scrubber,
            missing,
            fetches,
            leadership,
            failure,
            events,
            pulls,
            repositories,
            raft,
            counters,
            clock,
        };
        store.uploads.reconcile()?;
        Ok((
            store,
            DriverSide {
                proposals: proposals_rx,
                inputs: inputs_rx,
                applied: applied_tx,
            },
        ))
    }

    /// What carries out the blob file operations on the apply task.
    fn file_ops(&self) -> file_ops::FileOps {
        let i = self;
        file_ops::FileOps {
            files: i.files.clone(),
            state: i.state.clone(),
            fetches: i.fetches.clone(),
            read_checks: i.read_checks.clone(),
            failure: i.failure.clone(),
            upload_ttl: i.config.upload_ttl,
        }
    }

    /// The node's families for `/metrics`.
    pub fn metrics(&self) -> NodeMetrics {
        let i = self;
        NodeMetrics {
            id: i.cluster.id,
            leadership: i.leadership.clone(),
            clock: i.clock.clone(),
            counters: i.counters.clone(),
            failure: i.failure.clone(),
            state: i.state.clone(),
            missing: i.missing.clone(),
            read_checks: i.read_checks.clone(),
            data_dir: i.config.data_dir.clone(),
        }
    }
}
