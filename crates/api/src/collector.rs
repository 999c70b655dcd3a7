//! Garbage collection policy: the grace period, disk watermarks and space admission.
//! [`Collector::run_once`] is one decision; [`Collector::run_periodic`] is the schedule.

use site_state::{SweepReport, SweepRules};
use site_store::{now_secs, Result, Store};
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
    store: Store,
    config: GcConfig,
}

impl Collector {
    /// A collector for `store`.
    pub fn new(store: Store, config: GcConfig) -> Collector {
        Collector { store, config }
    }

    /// The settings.
    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Space now. Without a capacity the whole disk counts, as kubelet's image GC does.
    pub fn space(&self) -> Result<Space> {
        let disk = self.store.disk_usage()?;
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
            grace_secs: self.config.grace.as_secs(),
            cache_ttl_secs: self.config.cache_ttl.as_secs(),
            evict_bytes,
        }
    }

    /// Bytes to evict now so usage falls to the low watermark, when above the high one.
    fn pressure(&self) -> Result<u64> {
        let s = self.space()?;
        let share = |w: f64| (s.capacity as f64 * w) as u64;
        Ok(if s.used > share(self.config.high_watermark) {
            s.used - share(self.config.low_watermark)
        } else {
            0
        })
    }

    /// One sweep: grace-expired images, plus LRU eviction under disk pressure (pulls noted
    /// since the last run are recorded first); upload sessions idle past their TTL are
    /// dropped. A dry run reports what the sweep would delete and deletes nothing.
    pub async fn run_once(&self, dry_run: bool) -> Result<SweepReport> {
        // Pulls since the last run move their images up the LRU order first.
        self.store.record_pulls().await?;
        if !dry_run {
            self.store.expire_uploads().await?;
        }
        let evict = self.pressure()?;
        if dry_run {
            return Ok(self.store.plan_sweep(&self.rules(evict)));
        }
        if evict > 0 {
            tracing::warn!(
                evict_bytes = evict,
                "disk above the high watermark: evicting unreferenced images"
            );
        }
        self.store.sweep(&self.rules(evict)).await
    }

    /// Makes room for `needed` more bytes: `Ok` when they fit now or after evicting
    /// unreferenced images (which it then does), `Err((needed, free, reclaimable))` when
    /// they cannot fit at all.
    pub async fn admit(&self, needed: u64) -> Result<std::result::Result<(), (u64, u64, u64)>> {
        let space = self.space()?;
        if needed <= space.free {
            return Ok(Ok(()));
        }
        let reclaimable = self.store.read(|s| s.reclaimable_bytes(now_secs()));
        if needed > space.free.saturating_add(reclaimable) {
            return Ok(Err((needed, space.free, reclaimable)));
        }
        self.store.record_pulls().await?;
        let report = self.store.sweep(&self.rules(needed - space.free)).await?;
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
        if self.store.is_leader() {
            return self.run_once(false).await.map(|_| ());
        }
        self.store.record_pulls().await?;
        self.store.expire_uploads().await.map(|_| ())
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

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
