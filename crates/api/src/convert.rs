//! Conversions between the state's types and the generated protobuf messages.

use crate::pb;
use site_state::{Event, ImageSummary, SweepReport};

/// A sweep report as the wire carries it.
pub fn report(r: &SweepReport) -> pb::GcReport {
    let strings = |ds: &[site_core::Digest]| ds.iter().map(|d| d.to_string()).collect();
    pb::GcReport {
        at_unix: r.at / 1000,
        manifests: strings(&r.manifests),
        evicted: strings(&r.evicted),
        blobs: strings(&r.blobs),
        bytes_freed: r.bytes_freed,
    }
}

/// An image listing entry.
pub fn image(i: ImageSummary) -> pb::Image {
    pb::Image {
        repository: i.image.repo.to_string(),
        digest: i.image.digest.to_string(),
        tags: i.tags,
        media_type: i.media_type,
        size: i.size,
        applications: i.apps,
        pinned: i.pinned,
        live: i.live,
        annotations: i.annotations.into_iter().collect(),
        last_used_unix: i.last_used / 1000,
        unreferenced_since_unix: i.unreferenced_since.map_or(0, |t| t / 1000),
    }
}

/// An event, stamped with the time it is sent.
pub fn event(e: Event, at_unix: u64) -> pb::Event {
    use pb::event::Kind;
    let kind = match e {
        Event::ImageReceived { repo, digest } => Kind::ImageReceived(pb::ImageReceived {
            repository: repo.to_string(),
            digest: digest.to_string(),
        }),
        Event::ImageRemoved { digest, repos } => Kind::ImageRemoved(pb::ImageRemoved {
            digest: digest.to_string(),
            repositories: repos.iter().map(ToString::to_string).collect(),
        }),
        Event::GcRun { report: r } => Kind::GcRun(pb::GcRun {
            report: Some(report(&r)),
        }),
        Event::DeliveryRefused {
            needed,
            free,
            reason,
        } => Kind::DeliveryRefused(pb::DeliveryRefused {
            bytes_needed: needed,
            bytes_free: free,
            reason,
        }),
        Event::NodeJoined { node, address } => Kind::NodeJoined(pb::NodeJoined {
            node_id: node,
            address,
        }),
        Event::NodeLeft { node } => Kind::NodeLeft(pb::NodeLeft { node_id: node }),
        Event::ReplicationDegraded { node, reason } => {
            Kind::ReplicationDegraded(pb::ReplicationDegraded {
                node_id: node,
                reason,
            })
        }
        Event::ReplicationRestored { node } => {
            Kind::ReplicationRestored(pb::ReplicationRestored { node_id: node })
        }
        Event::BlobCorrupt {
            digest,
            node,
            actual,
        } => Kind::BlobCorrupt(pb::BlobCorrupt {
            digest: digest.to_string(),
            node_id: node,
            actual: actual.to_string(),
        }),
        Event::NodeFailed { node, reason } => Kind::NodeFailed(pb::NodeFailed {
            node_id: node,
            reason,
        }),
        Event::ClockSkew {
            node,
            skew_ms,
            disagrees,
        } => Kind::ClockSkew(pb::ClockSkew {
            node_id: node,
            skew_ms,
            disagrees,
        }),
        Event::BlobRepaired { digest, node, from } => Kind::BlobRepaired(pb::BlobRepaired {
            digest: digest.to_string(),
            node_id: node,
            from_node_id: from,
        }),
        Event::ImagePullStarted { image, node } => Kind::ImagePullStarted(pb::ImagePullStarted {
            image,
            node_id: node,
        }),
        Event::ImagePullCompleted {
            image,
            digest,
            source,
            bytes,
            millis,
            node,
        } => Kind::ImagePullCompleted(pb::ImagePullCompleted {
            image,
            digest: digest.to_string(),
            source: source.as_str().to_owned(),
            bytes,
            millis,
            node_id: node,
        }),
        Event::ImagePullFailed {
            image,
            reason,
            message,
            node,
        } => Kind::ImagePullFailed(pb::ImagePullFailed {
            image,
            reason,
            message,
            node_id: node,
        }),
        Event::ImageCached {
            repo,
            digest,
            bytes,
        } => Kind::ImageCached(pb::ImageCached {
            repository: repo.to_string(),
            digest: digest.to_string(),
            bytes,
        }),
    };
    pb::Event {
        at_unix,
        kind: Some(kind),
    }
}
