//! `towerctl deliver`: resolve at the upstream, send what the site lacks, put manifests.

use crate::auth;
use crate::cli::{ImageArg, SiteArg};
use crate::exit::Error;
use crate::output::{human_bytes, line};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::resolve::{resolve, Resolved};
use crate::site::{self, Client};
use crate::transfer::{send_blob, Blob, UpstreamBlob};
use crate::upstream::{self, Upstream};
use futures_util::StreamExt;
use site_core::Digest;
use site_proto::pb::{BlobRef, FindMissingBlobsRequest};

pub use site_delivery::manifest::{put_manifest, Manifest};
use std::path::Path;

/// Blobs of one image sent at once.
const BLOBS_IN_FLIGHT: usize = 2;

/// Options of a delivery.
pub struct Options<'a> {
    /// Docker config.json with upstream credentials, instead of the default one.
    pub auth_file: Option<&'a Path>,
    /// Upstream hosts spoken to in plain HTTP.
    pub insecure_registries: &'a [String],
    /// Deliver only this platform's manifest of an index.
    pub platform: Option<&'a Platform>,
}

/// Delivers each image in turn; stops at the first failure. Each image is resolved
/// once, then sent to a node of the site, and to the next of `sites` if that node
/// becomes unreachable.
pub async fn deliver(
    sites: &SiteArg,
    images: &[ImageArg],
    options: &Options<'_>,
) -> Result<(), Error> {
    let config = auth::load(options.auth_file)?;
    let up = Upstream::new(options.insecure_registries)?;
    for image in images {
        let credentials = config.lookup(image.reference.repository.host()).await?;
        let auth = upstream::registry_auth(credentials);
        let resolved = resolve(&up, &auth, &image.reference, options.platform).await?;
        line(format_args!(
            "{} -> {}@{}",
            image.text, image.reference.repository, resolved.digest
        ))?;
        let (up, resolved) = (&up, &resolved);
        site::with_failover(sites, |site| async move {
            send_image(&site, up, image, resolved).await
        })
        .await?;
    }
    Ok(())
}

/// Sends the blobs of a resolved image that the site lacks, then its manifests.
async fn send_image(
    site: &Client,
    up: &Upstream,
    image: &ImageArg,
    resolved: &Resolved,
) -> Result<(), Error> {
    let reference = &image.reference;
    let repository = reference.repository.to_string();
    let blobs: Vec<BlobRef> = resolved
        .blobs
        .iter()
        .map(|d| BlobRef {
            digest: d.digest.to_string(),
            size: d.size,
        })
        .collect();
    let missing = site::retry(|| {
        let mut c = site.clone();
        let request = FindMissingBlobsRequest {
            blobs: blobs.clone(),
            lease_seconds: 0,
        };
        async move { c.find_missing_blobs(request).await }
    })
    .await?
    .missing;
    let missing = our_descriptors(resolved, &missing)?;
    let skipped = resolved.blobs.len() - missing.len();
    let total: u64 = missing.iter().map(|(_, size)| size).sum();

    let progress = Progress::new(total);
    let source = upstream::reference(&reference.repository, None, Some(&resolved.digest));
    progress.message(format!("{} blob(s)", missing.len()));
    // A few blobs at once: while the site verifies and fsyncs one, the next keeps flowing.
    let sends = missing.iter().map(|(digest, size)| {
        let progress = &progress;
        let (repository, source) = (&repository, &source);
        async move {
            let from = UpstreamBlob {
                upstream: up,
                reference: source,
                digest,
            };
            let blob = Blob {
                repository,
                source: &from,
                digest,
                size: *size,
            };
            send_blob(site, &blob, &progress.blob()).await
        }
    });
    let mut sends = futures_util::stream::iter(sends).buffer_unordered(BLOBS_IN_FLIGHT);
    let mut sent = 0;
    while let Some(result) = sends.next().await {
        match result {
            Ok(n) => sent += n,
            Err(e) => {
                progress.finish();
                return Err(e);
            }
        }
    }
    drop(sends);
    progress.finish();

    let count = resolved.manifests.len();
    for (i, node) in resolved.manifests.iter().enumerate() {
        let tag = match (i + 1 == count, &reference.tag) {
            (true, Some(t)) => t.clone(),
            _ => String::new(),
        };
        let manifest = Manifest {
            repository: &repository,
            digest: node.digest.as_str(),
            media_type: &node.media_type,
            body: &node.body,
            tag: &tag,
        };
        put_manifest(site, &manifest).await?;
    }
    let tagged = reference
        .tag
        .as_deref()
        .map(|t| format!(", tagged {t}"))
        .unwrap_or_default();
    line(format_args!(
        "delivered {repository}@{}{tagged}: {count} manifest(s), sent {} in {} blob(s), {skipped} blob(s) already on the site",
        resolved.digest,
        human_bytes(sent),
        missing.len(),
    ))
}

/// The digests and sizes of the blobs the site says it lacks, as the manifests give them
/// (the site may only name blobs it was asked about).
fn our_descriptors(resolved: &Resolved, missing: &[BlobRef]) -> Result<Vec<(Digest, u64)>, Error> {
    missing
        .iter()
        .map(|m| {
            resolved
                .blobs
                .iter()
                .find(|d| d.digest.as_str() == m.digest)
                .map(|d| (d.digest.clone(), d.size))
                .ok_or_else(|| {
                    Error::Other(format!(
                        "the site reports missing blob {:?}, which the image does not reference",
                        crate::exit::one_line(&m.digest)
                    ))
                })
        })
        .collect()
}
