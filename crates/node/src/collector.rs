//! Garbage collection policy, beside the state machine's sweep (`site_state`'s
//! `SweepRules`): the grace period, disk watermarks and space admission.
//! [`Collector::run_once`] is one decision, at the log's time and a disk space given;
//! [`Collector::run_periodic`] is the schedule, beside it.

use crate::applied_state::SiteState;
use crate::leadership::Leadership;
use crate::ordering::Orderer;
use crate::pulls::Pulls;
use crate::site_clock::SiteClock;
use crate::sweep::{sweep, Strays};
use crate::uploads::Uploads;
use crate::{Node, Result};
use site_state::{SweepReport, SweepRules};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// GC settings.
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// How long an unreferenced image is kept.
    pub grace: Duration,
    /// How long an unreferenced cached image is kept after its last pull.
    pub cache_ttl: Duration,
    /// Share of capacity above which unreferenced images are evicted.
    pub high_watermark: f64,
    /// Share of capacity eviction brings usage down to.
    pub low_watermark: f64,
    /// Bytes of blobs the site may hold, when smaller than the disk.
    pub capacity: Option<u64>,
    /// Time between sweeps.
    pub interval: Duration,
}

impl GcConfig {
    /// Bytes to evict so usage falls to the low watermark, when `space` is above the
    /// high one.
    pub fn pressure(&self, space: Space) -> u64 {
        let share = |w: f64| (space.capacity as f64 * w) as u64;
        if space.used > share(self.high_watermark) {
            space.used - share(self.low_watermark)
        } else {
            0
        }
    }
}

/// Space as GC and admission see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Capacity: of the disk, or `[gc] capacity` when set and smaller.
    pub capacity: u64,
    /// Bytes used of that capacity.
    pub used: u64,
    /// Bytes that can still be written.
    pub free: u64,
}

/// Runs sweeps by the policy.
#[derive(Clone)]
pub struct Collector {
    state: SiteState,
    orderer: Orderer,
    leadership: Leadership,
    clock: Arc<SiteClock>,
    pulls: Pulls,
    uploads: Uploads,
    strays: Strays,
    /// The data directory, whose file system's space counts.
    data_dir: PathBuf,
    config: GcConfig,
}

impl Collector {
    /// A collector for `node`.
    pub fn new(node: &Node, config: GcConfig) -> Collector {
        let i = node;
        Collector {
            state: i.state.clone(),
            orderer: i.orderer.clone(),
            leadership: i.leadership.clone(),
            clock: i.clock.clone(),
            pulls: i.pulls.clone(),
            uploads: i.uploads.clone(),
            strays: Strays {
                files: i.files.clone(),
                state: i.state.clone(),
                fetches: i.fetches.clone(),
                queue: i.file_queue.clone(),
                ttl: i.config.upload_ttl,
            },
            data_dir: i.config.data_dir.clone(),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Space now. Without a capacity the whole disk counts, as kubelet's image GC does.
    pub fn space(&self) -> Result<Space> {
        let blob_bytes = self.state.read(site_state::State::blob_bytes);
        let disk = crate::files::disk_usage(&self.data_dir, blob_bytes)?;
        Ok(match self.config.capacity {
            Some(cap) if cap < disk.capacity => Space {
                capacity: cap,
                used: disk.blob_bytes,
                free: cap.saturating_sub(disk.blob_bytes).min(disk.free),
            },
            _ => Space {
                capacity: disk.capacity,
                used: disk.capacity.saturating_sub(disk.free),
                free: disk.free,
            },
        })
    }

    /// The sweep rules of this policy, evicting `evict_bytes` beyond them.
    fn rules(&self, evict_bytes: u64) -> SweepRules {
        SweepRules {
            grace_ms: millis(self.config.grace),
            cache_ttl_ms: millis(self.config.cache_ttl),
            evict_bytes,
        }
    }

    /// One sweep at the log's time with the disk at `space`: grace-expired images, plus
    /// LRU eviction when `space` is above the high watermark (pulls noted since the last
    /// run are recorded first); upload sessions idle past their TTL are dropped. A dry
    /// run reports what the sweep would delete and deletes nothing. [`Self::run_now`]
    /// passes the disk as it is; tests pass their own.
    pub async fn run_once(&self, space: Space, dry_run: bool) -> Result<SweepReport> {
        self.pulls.record().await?;
        if !dry_run {
            self.uploads.expire_uploads().await?;
            self.strays.remove().await?;
        }
        let evict = self.config.pressure(space);
        if dry_run {
            let now = self.clock.now();
            return Ok(self.state.read(|s| s.plan_sweep(now, &self.rules(evict))));
        }
        if evict > 0 {
            tracing::warn!(
                evict_bytes = evict,
                "disk above the high watermark: evicting unreferenced images"
            );
        }
        sweep(&self.orderer, &self.rules(evict)).await
    }

    /// [`Self::run_once`] now, on the disk as it is.
    pub async fn run_now(&self, dry_run: bool) -> Result<SweepReport> {
        self.run_once(self.space()?, dry_run).await
    }

    /// Makes room for `needed` more bytes: `Ok` when they fit now or after evicting
    /// unreferenced images (which it then does), `Err((needed, free, reclaimable))` when
    /// they cannot fit at all.
    pub async fn admit(&self, needed: u64) -> Result<std::result::Result<(), (u64, u64, u64)>> {
        let space = self.space()?;
        if needed <= space.free {
            return Ok(Ok(()));
        }
        let now = self.clock.now();
        let reclaimable = self.state.read(|s| s.reclaimable_bytes(now));
        if needed > space.free.saturating_add(reclaimable) {
            return Ok(Err((needed, space.free, reclaimable)));
        }
        self.pulls.record().await?;
        let report = sweep(&self.orderer, &self.rules(needed - space.free)).await?;
        tracing::info!(
            needed,
            freed = report.bytes_freed,
            "evicted unreferenced images to admit a delivery"
        );
        Ok(Ok(()))
    }

    /// What runs every `interval`. GC is decided once for the site, in the log: only the
    /// leader proposes the sweep (stamped with its time), and every node applies it alike.
    /// Every node records its own pulls and drops its own idle uploads.
    async fn run_scheduled(&self) -> Result<()> {
        if self.leadership.is_leader() {
            return self.run_now(false).await.map(|_| ());
        }
        self.pulls.record().await?;
        self.uploads.expire_uploads().await?;
        self.strays.remove().await.map(|_| ())
    }

    /// Runs [`Self::run_scheduled`] every `interval` until `shutdown` turns true.
    pub async fn run_periodic(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.run_scheduled().await {
                        tracing::error!(error = %e, "gc sweep failed");
                    }
                }
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}

impl site_core::metrics::Source for Collector {
    fn expose(&self, out: &mut site_core::metrics::Exposition) {
        use site_core::metrics::Kind::Gauge;
        let c = &self.config;
        out.single(
            "site_gc_high_watermark_ratio",
            "Share of the capacity above which GC evicts unreferenced images.",
            Gauge,
            c.high_watermark,
        );
        out.single(
            "site_gc_low_watermark_ratio",
            "Share of the capacity eviction brings usage down to.",
            Gauge,
            c.low_watermark,
        );
        if let Ok(space) = self.space() {
            out.single(
                "site_gc_capacity_bytes",
                "The capacity GC keeps usage under: the disk's, or [gc] capacity when smaller.",
                Gauge,
                space.capacity as f64,
            );
            out.single(
                "site_gc_used_ratio",
                "Share of that capacity in use.",
                Gauge,
                space.used as f64 / space.capacity.max(1) as f64,
            );
        }
    }
}

/// Milliseconds of `d`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_evicts_down_to_the_low_watermark_once_above_the_high_one() {
        let config = GcConfig {
            grace: Duration::from_millis(300),
            cache_ttl: Duration::from_secs(60),
            high_watermark: 0.85,
            low_watermark: 0.70,
            capacity: None,
            interval: Duration::from_secs(60),
        };
        let space = |used| Space {
            capacity: 1000,
            used,
            free: 1000 - used,
        };
        assert_eq!(config.pressure(space(850)), 0, "at the high watermark");
        assert_eq!(config.pressure(space(900)), 200, "down to 700");
        assert_eq!(config.pressure(space(1000)), 300);
        assert_eq!(millis(config.grace), 300);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
