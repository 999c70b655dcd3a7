//! The node's families for `/metrics`: where its Raft stands, the blobs and bytes it
//! holds and lacks, the site's images by what GC makes of them, its disk, and the scrub.
//! Read from the node's own state when scraped; nothing here asks a peer.

use crate::files::disk_usage;
use site_core::metrics::{Counter, Counters, Exposition, Kind, Source};
use site_state::Event;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts kept as the node runs.
#[derive(Default)]
pub struct NodeCounters {
    /// Blob files the scrub read back and found whole.
    pub scrub_checked: Counter,
    /// Copies the scrub found not matching their digest.
    pub scrub_corrupt: Counter,
    /// Blobs of the scrub's current (or last) pass, and how many it has looked at.
    pub scrub_pass_blobs: AtomicU64,
    /// Blobs of the scrub's pass looked at so far.
    pub scrub_pass_done: AtomicU64,
    /// GC sweeps applied here.
    pub gc_runs: Counter,
    /// Bytes they freed.
    pub gc_bytes_freed: Counter,
    /// Manifests they deleted.
    pub gc_manifests_deleted: Counter,
    /// Cached images they evicted for space.
    pub gc_evicted: Counter,
    /// Blobs they deleted.
    pub gc_blobs_deleted: Counter,
    /// Blob bytes sent to peers, by the way they left (`PeerSend`).
    pub peer_sent: Counters,
}

impl NodeCounters {
    /// Counts what an applied entry tells.
    pub fn count(&self, event: &Event) {
        if let Event::GcRun { report } = event {
            self.gc_runs.inc();
            self.gc_bytes_freed.add(report.bytes_freed);
            self.gc_manifests_deleted.add(report.manifests.len() as u64);
            self.gc_evicted.add(report.evicted.len() as u64);
            self.gc_blobs_deleted.add(report.blobs.len() as u64);
        }
    }
}

/// The node's families, as a [`Source`] for `/metrics`: what it reads them from.
#[derive(Clone)]
pub struct NodeMetrics {
    pub(crate) id: u64,
    pub(crate) leadership: crate::Leadership,
    pub(crate) clock: std::sync::Arc<crate::SiteClock>,
    pub(crate) counters: std::sync::Arc<NodeCounters>,
    pub(crate) failure: crate::Failure,
    pub(crate) state: crate::SiteState,
    pub(crate) missing: crate::MissingBlobs,
    pub(crate) read_checks: std::sync::Arc<crate::verify::ReadChecks>,
    /// The data directory, whose file system's space is shown.
    pub(crate) data_dir: std::path::PathBuf,
}

impl Source for NodeMetrics {
    fn expose(&self, out: &mut Exposition) {
        let store = self;
        let raft = store.leadership.get();
        let id = store.id;
        let gauge = |out: &mut Exposition, name: &str, help: &str, v: f64| {
            out.single(name, help, Kind::Gauge, v);
        };
        gauge(
            out,
            "site_raft_term",
            "The Raft term this node is in.",
            raft.term as f64,
        );
        gauge(
            out,
            "site_raft_commit_index",
            "The last log index this node knows committed.",
            raft.commit as f64,
        );
        gauge(
            out,
            "site_raft_applied_index",
            "The last log index applied to this node's state.",
            raft.applied as f64,
        );
        gauge(
            out,
            "site_raft_leader",
            "Whether this node leads its site (1) or not (0).",
            f64::from(u8::from(raft.leader != 0 && raft.leader == id)),
        );
        gauge(
            out,
            "site_raft_has_leader",
            "Whether this node knows a leader of its site (1) or not (0).",
            f64::from(u8::from(raft.leader != 0)),
        );
        if let Some(skew) = store.clock.skew_ms() {
            gauge(
                out,
                "site_clock_skew_seconds",
                "How far this node's wall clock is ahead of the site's log time (behind: negative). The log's time goes on with elapsed time whatever a wall clock says.",
                skew as f64 / 1000.0,
            );
            gauge(
                out,
                "site_clock_disagrees",
                "Whether this node's wall clock disagrees with the site's log time by more than a minute (1) or not (0).",
                f64::from(u8::from(site_replica::LogClock::disagrees(skew))),
            );
        }
        let c = &store.counters;
        out.single(
            "site_raft_leader_changes_total",
            "Times this node saw its site's leader change.",
            Kind::Counter,
            store.leadership.leader_changes() as f64,
        );
        gauge(
            out,
            "site_node_failed",
            "Whether this node's storage failed (1): it takes no writes and does not vote.",
            f64::from(u8::from(store.failure.get().is_some())),
        );

        let (recorded, recorded_bytes, images) = store.state.read(|s| {
            let (n, bytes) = s
                .blobs()
                .fold((0u64, 0u64), |(n, b), (_, i)| (n + 1, b + i.size));
            (n, bytes, s.image_counts())
        });
        let (missing, missing_bytes) = store.missing.totals();
        gauge(
            out,
            "site_blobs_held",
            "Blobs of the site this node holds a verified file of.",
            recorded.saturating_sub(missing) as f64,
        );
        gauge(
            out,
            "site_blob_bytes_held",
            "Bytes of the blobs this node holds.",
            recorded_bytes.saturating_sub(missing_bytes) as f64,
        );
        gauge(
            out,
            "site_blobs_missing",
            "Blobs the site records that this node still has to fetch.",
            missing as f64,
        );
        out.family(
            "site_images",
            "Manifests the site holds, by state: live (referenced), eligible (for GC after the grace period), cached (pull-through, kept for its time to live).",
            Kind::Gauge,
        );
        for (state, n) in [
            ("live", images.live),
            ("eligible", images.eligible),
            ("cached", images.cached),
        ] {
            out.sample("site_images", &[("state", state)], n as f64);
        }
        if let Ok(disk) = disk_usage(&store.data_dir, recorded_bytes) {
            gauge(
                out,
                "site_disk_capacity_bytes",
                "Capacity of the file system holding the data directory.",
                disk.capacity as f64,
            );
            gauge(
                out,
                "site_disk_free_bytes",
                "Bytes of that file system available to the node.",
                disk.free as f64,
            );
        }

        for (name, help, counter) in [
            (
                "site_gc_runs_total",
                "GC sweeps applied on this node.",
                &c.gc_runs,
            ),
            (
                "site_gc_bytes_freed_total",
                "Blob bytes GC deleted.",
                &c.gc_bytes_freed,
            ),
            (
                "site_gc_manifests_deleted_total",
                "Manifests GC deleted (grace period over, cache expired, or evicted).",
                &c.gc_manifests_deleted,
            ),
            (
                "site_gc_evictions_total",
                "Manifests GC evicted under disk pressure (least recently used first).",
                &c.gc_evicted,
            ),
            (
                "site_gc_blobs_deleted_total",
                "Blobs GC deleted.",
                &c.gc_blobs_deleted,
            ),
        ] {
            out.single(name, help, Kind::Counter, counter.get() as f64);
        }
        out.single(
            "site_scrub_blobs_checked_total",
            "Blob files the scrub read back and found matching their digest.",
            Kind::Counter,
            c.scrub_checked.get() as f64,
        );
        out.single(
            "site_blob_read_bytes_hashed_total",
            "Bytes of blob files hashed to check reads for clients ([node] verify_reads).",
            Kind::Counter,
            store.read_checks.hashed.get() as f64,
        );
        c.peer_sent.expose(
            out,
            "site_peer_blob_bytes_sent_total",
            "Blob bytes this node sent to its peers, by the way they left: sendfile (from the page cache, on a cluster link without TLS) or grpc.",
            &["way"],
        );
        out.single(
            "site_scrub_corrupt_copies_total",
            "Blob copies the scrub found not matching their digest (removed and fetched again).",
            Kind::Counter,
            c.scrub_corrupt.get() as f64,
        );
        gauge(
            out,
            "site_scrub_pass_blobs",
            "Blobs in the scrub's current or last pass.",
            c.scrub_pass_blobs.load(Ordering::Relaxed) as f64,
        );
        gauge(
            out,
            "site_scrub_pass_done_blobs",
            "Blobs of that pass the scrub has looked at.",
            c.scrub_pass_done.load(Ordering::Relaxed) as f64,
        );
    }
}
