//! The replicated command set: every change to the site's metadata is one of these.
//!
//! An [`Entry`] is what a log holds: a command and the time it was proposed. Commands say
//! what the caller wants; [`crate::State::apply`] decides, from the state alone, whether
//! it happens.

use crate::gc::SweepReport;
use crate::ImageRef;
use serde::{Deserialize, Serialize};
use site_core::{Digest, Repository};

/// One log entry: a command and the time (milliseconds since the Unix epoch) it was
/// proposed. The time is the only clock `apply` ever sees.
///
/// It is written as `now_ms`; entries written before times had milliseconds carry
/// `now` in seconds, read as that many thousand milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "EntryWire")]
pub struct Entry {
    /// Milliseconds since the Unix epoch, set by the proposer.
    #[serde(rename = "now_ms")]
    pub now: u64,
    /// The change.
    pub cmd: Command,
}

/// An entry as written, in either unit.
#[derive(Deserialize)]
struct EntryWire {
    now_ms: Option<u64>,
    /// Seconds (entries written before milliseconds).
    now: Option<u64>,
    cmd: Command,
}

impl From<EntryWire> for Entry {
    fn from(w: EntryWire) -> Entry {
        Entry {
            now: w
                .now_ms
                .unwrap_or_else(|| w.now.unwrap_or(0).saturating_mul(1000)),
            cmd: w.cmd,
        }
    }
}

/// Milliseconds from a field written in milliseconds, or else in seconds (entries
/// written before milliseconds).
pub(crate) fn millis(ms: Option<u64>, secs: u64) -> u64 {
    ms.unwrap_or_else(|| secs.saturating_mul(1000))
}

/// A change to the site's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// A blob whose bytes the store has verified and made durable (on a majority of the
    /// site's nodes); linked into `repo` when one is given. Recording it again restarts
    /// its grace period.
    AddBlob {
        /// Repository to link it into.
        repo: Option<Repository>,
        /// Its digest.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// The proposer found the blob recorded and relied on the copies the site has:
        /// refused (the blob unknown) if a sweep dropped it meanwhile, so that a blob is
        /// never recorded again without its bytes on a majority.
        #[serde(default)]
        recorded: bool,
    },
    /// Links a blob the site holds into a repository (cross-repository mount).
    LinkBlob {
        /// The repository.
        repo: Repository,
        /// The blob.
        digest: Digest,
    },
    /// Unlinks a blob from a repository; its bytes stay until GC.
    UnlinkBlob {
        /// The repository.
        repo: Repository,
        /// The blob.
        digest: Digest,
    },
    /// Stores a manifest in a repository, optionally tagging it.
    PutManifest {
        /// The repository.
        repo: Repository,
        /// The exact manifest text; its sha256 is the manifest's digest unless `digest`
        /// says otherwise.
        body: String,
        /// The digest it was pushed by, when of another algorithm than sha256 (it must
        /// match the body).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<Digest>,
        /// The media type the client declared, if any.
        content_type: Option<String>,
        /// Tag to point at it.
        tag: Option<String>,
        /// When true, referenced blobs and child manifests need only be on the site (not
        /// in this repository) and are linked into it: the tower's delivery path. When
        /// false they must already be in the repository: the OCI push path.
        link_references: bool,
        /// Fetched by the node's pull-through cache: kept while it is pulled within the
        /// cache TTL (see [`Command::Sweep`]), and an index may lack the children nobody
        /// pulled. Delivered or pushed again without it, the manifest stops being cache.
        #[serde(default)]
        cached: bool,
    },
    /// Removes a manifest from a repository, with the tags that point at it.
    DeleteManifest {
        /// The repository.
        repo: Repository,
        /// The manifest.
        digest: Digest,
    },
    /// Points a tag at a manifest of the repository.
    Tag {
        /// The repository.
        repo: Repository,
        /// The tag.
        tag: String,
        /// The manifest.
        digest: Digest,
    },
    /// Removes a tag.
    DeleteTag {
        /// The repository.
        repo: Repository,
        /// The tag.
        tag: String,
    },
    /// Schedules an application with exactly this set of images (replacing any earlier
    /// set; the same set again changes nothing).
    Schedule {
        /// Application name.
        app: String,
        /// Digest-pinned images it needs; each must be fully present.
        images: Vec<ImageRef>,
    },
    /// Removes an application; its images lose its reference.
    Unschedule {
        /// Application name.
        app: String,
    },
    /// Pins an image (pre-cache for offline use): live while pinned.
    Pin {
        /// The image.
        image: ImageRef,
    },
    /// Removes a pin.
    Unpin {
        /// The image.
        image: ImageRef,
    },
    /// Protects blobs from GC until `until` (seconds since the epoch): a delivery in
    /// progress holds a lease on the blobs it was told the site already has.
    Lease {
        /// The blobs.
        digests: Vec<Digest>,
        /// End of the lease, in seconds since the Unix epoch (entries written before
        /// milliseconds; see `until_ms`).
        until: u64,
        /// End of the lease, in milliseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
        /// How long the lease lasts from the entry's time, in milliseconds: the log's
        /// clock, not the proposer's, decides when it ends. Set, it replaces `until`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_ms: Option<u64>,
    },
    /// Records that images were pulled (least-recently-used eviction order).
    Touch {
        /// Manifest digests pulled.
        digests: Vec<Digest>,
    },
    /// One GC sweep: deletes images unreferenced for longer than the grace period (cached
    /// images: not pulled for longer than the cache's time to live), and, when
    /// `evict_bytes` > 0, further unreferenced images, least recently used first, until
    /// that many bytes are freed; then every blob no remaining manifest references.
    Sweep {
        /// Grace period in seconds (entries written before milliseconds; see `grace_ms`).
        grace_secs: u64,
        /// Bytes to free beyond the grace rule (disk pressure), 0 for none.
        evict_bytes: u64,
        /// How long an unreferenced cached image is kept after its last pull, in seconds;
        /// `None` (entries written before the cache existed): until disk pressure evicts
        /// it. See `cache_ttl_ms`.
        #[serde(default)]
        cache_ttl_secs: Option<u64>,
        /// Grace period in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_ms: Option<u64>,
        /// The cache's time to live in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_ttl_ms: Option<u64>,
    },
    /// The node lost the bytes of these blobs: forget them and every manifest that
    /// needs them, so nothing incomplete is served.
    ForgetBlobs {
        /// The blobs.
        digests: Vec<Digest>,
    },
}

impl Command {
    /// The sweep of `rules`.
    pub fn sweep(rules: &crate::SweepRules) -> Command {
        Command::Sweep {
            grace_secs: rules.grace_ms / 1000,
            evict_bytes: rules.evict_bytes,
            cache_ttl_secs: Some(rules.cache_ttl_ms / 1000),
            grace_ms: Some(rules.grace_ms),
            cache_ttl_ms: Some(rules.cache_ttl_ms),
        }
    }

    /// A lease of `digests` until `until_ms` (milliseconds since the Unix epoch), as
    /// entries of earlier versions said it.
    pub fn lease(digests: Vec<Digest>, until_ms: u64) -> Command {
        Command::Lease {
            digests,
            until: until_ms / 1000,
            until_ms: Some(until_ms),
            for_ms: None,
        }
    }

    /// A lease of `digests` for `for_ms` milliseconds of the log's time from the entry's.
    pub fn lease_for(digests: Vec<Digest>, for_ms: u64) -> Command {
        Command::Lease {
            digests,
            until: 0,
            until_ms: None,
            for_ms: Some(for_ms),
        }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The digest of the manifest stored, for `PutManifest`.
    pub digest: Option<Digest>,
    /// What a sweep deleted, for `Sweep`.
    pub sweep: Option<SweepReport>,
    /// Whether anything changed (an idempotent repeat changes nothing).
    pub changed: bool,
    /// Events to publish.
    pub events: Vec<Event>,
}

/// Where a pulled image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullSource {
    /// The site held it already.
    Cached,
    /// It was fetched from the upstream now.
    Downloaded,
}

impl PullSource {
    /// As `EnsureImage` and events spell it: `CACHED` or `DOWNLOADED`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullSource::Cached => "CACHED",
            PullSource::Downloaded => "DOWNLOADED",
        }
    }
}

/// Something worth telling the watchers of the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A manifest arrived in a repository.
    ImageReceived {
        /// Where.
        repo: Repository,
        /// Which.
        digest: Digest,
    },
    /// A manifest was deleted by GC.
    ImageRemoved {
        /// Which.
        digest: Digest,
        /// The repositories it was in.
        repos: Vec<Repository>,
    },
    /// A GC sweep ran.
    GcRun {
        /// What it deleted.
        report: SweepReport,
    },
    /// A node joined the site (a membership change was applied).
    NodeJoined {
        /// Its id.
        node: u64,
        /// Its cluster address.
        address: String,
    },
    /// A node left the site (a membership change was applied).
    NodeLeft {
        /// Its id.
        node: u64,
    },
    /// The leader has not heard from a node for a while: writes go on while a majority
    /// answers, but that node falls behind. Published by the leader's driver.
    ReplicationDegraded {
        /// The node.
        node: u64,
        /// What the leader saw.
        reason: String,
    },
    /// The leader hears from a node again.
    ReplicationRestored {
        /// The node.
        node: u64,
    },
    /// A node found that its copy of a blob no longer matches the blob's digest; the copy
    /// is gone and the node fetches the blob again. Published by that node, never by
    /// `apply`.
    BlobCorrupt {
        /// The blob.
        digest: Digest,
        /// The node whose copy was bad.
        node: u64,
        /// What the copy's bytes hash to.
        actual: Digest,
    },
    /// A node that had found a bad copy of a blob holds a verified copy again.
    BlobRepaired {
        /// The blob.
        digest: Digest,
        /// The node.
        node: u64,
        /// The peer the verified copy came from.
        from: u64,
    },
    /// A node began to make an image present (`EnsureImage`, or a miss of an HTTP pull
    /// that the pull-through cache fills). Published by that node, never by `apply`.
    ImagePullStarted {
        /// The image as it was asked for.
        image: String,
        /// The node.
        node: u64,
    },
    /// A node made an image present.
    ImagePullCompleted {
        /// The image as it was asked for.
        image: String,
        /// The manifest (or index) digest now held.
        digest: Digest,
        /// Held already, or fetched now.
        source: PullSource,
        /// Bytes of the image (manifests and blobs).
        bytes: u64,
        /// How long it took.
        millis: u64,
        /// The node.
        node: u64,
    },
    /// A node could not make an image present.
    ImagePullFailed {
        /// The image as it was asked for.
        image: String,
        /// The reason of the taxonomy (`NOT_FOUND`, `AUTH_FAILED`, `UNREACHABLE`,
        /// `RATE_LIMITED`, `OUT_OF_SPACE`, `NOT_PRESENT`, `INVALID`).
        reason: String,
        /// What went wrong.
        message: String,
        /// The node.
        node: u64,
    },
    /// An image the pull-through cache fetched is durable on the site.
    ImageCached {
        /// Where.
        repo: Repository,
        /// Which.
        digest: Digest,
        /// Bytes of the image.
        bytes: u64,
    },
    /// The node's storage failed (its log, its database, its blob directory): it stopped
    /// taking writes and voting; reads of what is intact go on. Published by the node,
    /// never by `apply`.
    NodeFailed {
        /// The node.
        node: u64,
        /// What failed.
        reason: String,
    },
    /// A node's wall clock started (or stopped) disagreeing with the site's log time by
    /// more than a minute. The log's time goes on with elapsed time whatever it says;
    /// published by that node, never by `apply`.
    ClockSkew {
        /// The node.
        node: u64,
        /// How far its wall clock is ahead of the log's time, in milliseconds (behind:
        /// negative).
        skew_ms: i64,
        /// Whether it now disagrees (false: it agrees again).
        disagrees: bool,
    },
    /// A delivery was refused for lack of space. Published by the API, never by `apply`.
    DeliveryRefused {
        /// Bytes the delivery needed.
        needed: u64,
        /// Bytes free on the site.
        free: u64,
        /// The message the tower was given.
        reason: String,
    },
}
