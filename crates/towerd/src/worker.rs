//! One site of one rollout: ask what it lacks, send that from the tower's registry (resuming from
//! the site's offsets), put the manifests, and schedule the application once every
//! image is present. Any failure ends the attempt with the taxonomy's reason; the
//! runner tries again after the backoff.

use crate::source::RegistryBlob;
use crate::tower::{now_ms, Tower};
use futures_util::StreamExt;
use site_core::Digest;
use site_delivery::exit::Error;
use site_delivery::manifest as deliver;
use site_delivery::site::{self, Client};
use site_delivery::transfer::{self, Meter};
use site_fleet::missing::{self, Blob};
use site_fleet::rollout::Image;
use site_fleet::Site;
use site_proto::pb::{BlobRef, BlobStatusRequest, FindMissingBlobsRequest, ScheduleRequest};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Blobs sent to one site at once.
const BLOBS_IN_FLIGHT: usize = 2;
/// How long a site keeps the blobs it was asked about for the manifests to come.
const LEASE_SECONDS: u64 = 3600;

/// What a worker needs of its rollout, taken once at its start.
struct Plan {
    application: String,
    images: Vec<Image>,
    blobs: Vec<Blob>,
    rate: Option<u64>,
}

/// Runs one attempt at `site_id` and records how it ended.
pub async fn run(tower: Arc<Tower>, rollout_id: String, site_id: String) {
    let outcome = attempt(&tower, &rollout_id, &site_id).await;
    let now = now_ms();
    let backoff = tower.settings.backoff;
    let recorded = tower.change(&rollout_id, |r| {
        // A cancelled rollout put its sites back to waiting: nothing more to record.
        if r.cancelled() {
            return false;
        }
        match &outcome {
            Ok(()) => r.scheduled(&site_id, now),
            Err(e) => r.failed(&site_id, e.reason(), &e.to_string(), now, &backoff),
        }
        true
    });
    match &outcome {
        Ok(()) => tracing::info!(rollout = %rollout_id, site = %site_id, "site scheduled"),
        Err(e) => {
            tracing::warn!(rollout = %rollout_id, site = %site_id, reason = e.reason(), error = %e, "site attempt failed")
        }
    }
    if recorded == Some(true) {
        if let Err(e) = tower.save_sites(&rollout_id, &[site_id.as_str()]).await {
            tracing::error!(rollout = %rollout_id, error = %e, "cannot write the rollout");
        }
    }
    tower.worker_done(&rollout_id, &site_id);
    tower.wake.notify_one();
}

async fn attempt(tower: &Arc<Tower>, rollout_id: &str, site_id: &str) -> Result<(), Error> {
    let store = |e: crate::store::StoreError| Error::Other(e.to_string());
    let site = tower
        .store
        .site(site_id)
        .await
        .map_err(store)?
        .ok_or_else(|| Error::Other(format!("site {site_id} left the inventory")))?;
    let plan = tower
        .change(rollout_id, |r| Plan {
            application: r.application.clone(),
            images: r.images.clone(),
            blobs: r.blobs(),
            rate: r.bandwidth,
        })
        .ok_or_else(|| Error::Other(format!("rollout {rollout_id} is gone")))?;
    let tls = client_tls(&site);
    let note = |line: &str| tracing::info!(site = %site.id, "{line}");
    let work = Work {
        tower,
        rollout_id,
        site_id,
        plan: &plan,
    };
    let failover = site::Failover {
        rounds: 1,
        leader_wait: tower.settings.leader_wait,
    };
    site::with_failover_among(&site.nodes, tls.as_ref(), failover, &note, |client| {
        work.deliver(client)
    })
    .await
}

/// The TLS settings that reach `site`, if it has any.
pub fn client_tls(site: &Site) -> Option<ClientTlsConfig> {
    site.tls.as_ref().map(|tls| {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let (Some(cert), Some(key)) = (&tls.cert_pem, &tls.key_pem) {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    })
}

struct Work<'a> {
    tower: &'a Arc<Tower>,
    rollout_id: &'a str,
    site_id: &'a str,
    plan: &'a Plan,
}

impl Work<'_> {
    /// Writes this site's progress; a failed write is logged (the next one may land).
    async fn save(&self) {
        if let Err(e) = self
            .tower
            .save_sites(self.rollout_id, &[self.site_id])
            .await
        {
            tracing::error!(rollout = %self.rollout_id, error = %e, "cannot write the rollout");
        }
    }

    async fn deliver(&self, client: Client) -> Result<(), Error> {
        let wanted: Vec<BlobRef> = self
            .plan
            .blobs
            .iter()
            .map(|b| BlobRef {
                digest: b.digest.clone(),
                size: b.size,
            })
            .collect();
        let answer = site::retry(|| {
            let mut c = client.clone();
            let request = FindMissingBlobsRequest {
                blobs: wanted.clone(),
                lease_seconds: LEASE_SECONDS,
            };
            async move { c.find_missing_blobs(request).await }
        })
        .await?;
        let named: Vec<String> = answer.missing.into_iter().map(|b| b.digest).collect();
        let missing = missing::to_send(&self.plan.blobs, &named).map_err(Error::Other)?;
        let mut held = Vec::with_capacity(missing.len());
        for blob in &missing {
            let status = site::retry(|| {
                let mut c = client.clone();
                let digest = blob.digest.clone();
                async move { c.blob_status(BlobStatusRequest { digest }).await }
            })
            .await?;
            held.push((
                blob.size,
                if status.present {
                    blob.size
                } else {
                    status.offset
                },
            ));
        }
        self.tower
            .change(self.rollout_id, |r| r.asked(self.site_id, &held));
        self.save().await;

        // Collected first: a lazy map in the stream trips the spawned future's lifetimes.
        let sends: Vec<_> = missing
            .iter()
            .map(|blob| self.send(&client, blob))
            .collect();
        let mut sends = futures_util::stream::iter(sends).buffer_unordered(BLOBS_IN_FLIGHT);
        while let Some(sent) = sends.next().await {
            sent?;
        }
        drop(sends);

        for image in &self.plan.images {
            self.put_manifests(&client, image).await?;
        }
        // Scheduled only while the rollout stands: a cancelled one schedules nothing more.
        let standing = self
            .tower
            .change(self.rollout_id, |r| {
                if !r.cancelled() {
                    r.present(self.site_id);
                }
                !r.cancelled()
            })
            .unwrap_or(false);
        if !standing {
            return Err(Error::Other("the rollout was cancelled".into()));
        }
        self.save().await;
        let request = ScheduleRequest {
            application: self.plan.application.clone(),
            images: self.plan.images.iter().map(Image::pinned).collect(),
        };
        site::retry(|| {
            let mut c = client.clone();
            let request = request.clone();
            async move { c.schedule(request).await }
        })
        .await?;
        Ok(())
    }

    /// Sends the blob from the tower's registry (which fetches it from the upstream
    /// first, once, if it lacks it).
    async fn send(&self, client: &Client, blob: &Blob) -> Result<(), Error> {
        let digest = Digest::parse(&blob.digest)
            .map_err(|e| Error::Other(format!("blob {:?}: {e}", blob.digest)))?;
        let image = self
            .plan
            .images
            .iter()
            .find(|i| i.blobs.iter().any(|b| b.digest == blob.digest))
            .ok_or_else(|| Error::Other(format!("no image has blob {digest}")))?;
        let reference = site_core::ImageReference::parse(&image.pinned())
            .map_err(|e| Error::Other(format!("{}: {e}", image.pinned())))?;
        let registry = &self.tower.registry;
        let at = registry.location(&reference);
        let source = RegistryBlob {
            client: &registry.client,
            reference: at.reference(None, reference.digest.as_ref()),
            digest: &digest,
            rate: self.plan.rate,
        };
        let meter = SiteMeter {
            tower: self.tower,
            rollout_id: self.rollout_id,
            site_id: self.site_id,
            last: AtomicU64::new(u64::MAX),
        };
        let transfer = transfer::Blob {
            repository: &image.repository,
            source: &source,
            digest: &digest,
            size: blob.size,
        };
        transfer::send_blob(client, &transfer, &meter).await?;
        Ok(())
    }

    async fn put_manifests(&self, client: &Client, image: &Image) -> Result<(), Error> {
        let count = image.manifests.len();
        for (i, manifest) in image.manifests.iter().enumerate() {
            let body = self
                .tower
                .store
                .manifest(&manifest.digest)
                .await
                .map_err(|e| Error::Other(e.to_string()))?
                .ok_or_else(|| Error::Other(format!("manifest {} is not kept", manifest.digest)))?;
            let tag = match (i + 1 == count, &image.tag) {
                (true, Some(t)) => t.clone(),
                _ => String::new(),
            };
            let put = deliver::Manifest {
                repository: &image.repository,
                digest: &manifest.digest,
                media_type: &manifest.media_type,
                body: &body,
                tag: &tag,
            };
            deliver::put_manifest(client, &put).await?;
        }
        Ok(())
    }
}

/// Counts the bytes a send adds at the site into the rollout.
struct SiteMeter<'a> {
    tower: &'a Arc<Tower>,
    rollout_id: &'a str,
    site_id: &'a str,
    /// Bytes the site held of the blob at the last report; `u64::MAX` before the first.
    last: AtomicU64,
}

impl Meter for SiteMeter<'_> {
    fn set(&self, bytes: u64) {
        let before = self.last.swap(bytes, Ordering::Relaxed);
        if before != u64::MAX && bytes > before {
            self.tower
                .change(self.rollout_id, |r| r.sent(self.site_id, bytes - before));
        }
    }

    fn note(&self, line: &str) {
        tracing::info!(rollout = %self.rollout_id, site = %self.site_id, "{line}");
    }
}
