//! Rollouts' requests and answers: `POST /rollouts`, `GET /rollouts`,
//! `GET /rollouts/{id}`, `DELETE /rollouts/{id}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use site_fleet::schedule::totals;
use site_fleet::{Rollout, State};

/// `POST /rollouts`: an application's images to bring to the sites a selector matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The application the images run as at each site.
    pub application: String,
    /// Its images (1 to 64): `HOST/PATH:TAG` or `@DIGEST`; a name without a host is
    /// the tower registry's `default_upstream`.
    pub images: Vec<String>,
    /// The sites, as a filter of the inventory's language (`{}`: every site; required).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub selector: Value,
    /// Sites served at once (default 10, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// A cap on the bytes per second sent to each site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_second: Option<u64>,
}

/// A rollout as `GET /rollouts/{id}` shows it: its summary, each site, each image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutView {
    /// What `GET /rollouts` lists of it.
    #[serde(flatten)]
    pub summary: RolloutSummary,
    /// Every selected site, by id.
    pub sites: Vec<SiteProgressView>,
    /// Every image, with its manifests and blobs counted.
    pub manifests: Vec<ImageSummary>,
}

/// A rollout without its sites, as `GET /rollouts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutSummary {
    /// Its id.
    pub id: String,
    /// The application.
    pub application: String,
    /// The images as pinned (`REPOSITORY@DIGEST`), once resolved.
    pub images: Vec<String>,
    /// The images as the request named them.
    pub requested: Vec<String>,
    /// While its images are not all in the tower's registry: the last attempt.
    pub pulling: Option<PullingView>,
    /// The selector.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub selector: Value,
    /// Sites served at once.
    pub max_parallel: u32,
    /// The cap on bytes per second to each site, if any.
    pub bandwidth_bytes_per_second: Option<u64>,
    /// When it was created (seconds since the epoch).
    pub created_unix: u64,
    /// When it was cancelled, if it was.
    pub cancelled_unix: Option<u64>,
    /// The rollout that superseded it, if one did.
    pub superseded_by: Option<String>,
    /// `pulling`, `running`, `complete`, `superseded` or `cancelled`.
    pub status: String,
    /// Sites per state, bytes, estimate.
    pub totals: Totals,
}

/// How fetching a rollout's images into the tower's registry goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullingView {
    /// The last failure's reason (the taxonomy's), empty before any.
    pub reason: String,
    /// What it said.
    pub message: String,
    /// Failed attempts.
    pub retries: u32,
    /// When the next attempt is due (seconds since the epoch).
    pub next_attempt_unix: u64,
}

/// A rollout's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Totals {
    /// Sites selected.
    pub selected: usize,
    /// Sites not started yet.
    pub waiting: usize,
    /// Sites being sent what they lack.
    pub delivering: usize,
    /// Sites that hold every image, not scheduled yet.
    pub present: usize,
    /// Sites that run the application.
    pub scheduled: usize,
    /// Sites whose last attempt failed (tried again after a backoff).
    pub failed: usize,
    /// Bytes sent to sites.
    pub bytes_done: u64,
    /// Bytes the sites still lack, as far as known.
    pub bytes_left: u64,
    /// Seconds left at the rate sent so far; none before a byte was sent.
    pub eta_seconds: Option<u64>,
}

/// One site of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteProgressView {
    /// The site's id.
    pub site_id: String,
    /// `waiting`, `delivering`, `present`, `scheduled` or `failed`.
    pub state: String,
    /// Bytes sent to it, over every attempt.
    pub bytes_done: u64,
    /// Bytes it still lacks, as of its last answer.
    pub bytes_left: u64,
    /// Bytes it lacked when first asked (none before).
    pub lacked: Option<u64>,
    /// Why its last attempt failed (the taxonomy's reason); empty otherwise.
    pub reason: String,
    /// The failure's message.
    pub message: String,
    /// Failed attempts so far.
    pub retries: u32,
    /// When a failed site is tried again (seconds since the epoch).
    pub next_attempt_unix: Option<u64>,
}

/// One image of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageSummary {
    /// The image, pinned.
    pub image: String,
    /// Its manifests (an index's too).
    pub manifests: usize,
    /// Its blobs.
    pub blobs: usize,
}

/// `GET /rollouts`: every rollout, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutListing {
    /// How many.
    pub total: usize,
    /// Each, without its sites.
    pub rollouts: Vec<RolloutSummary>,
}

/// The status of a rollout.
fn status(r: &Rollout) -> &'static str {
    if r.superseded_by.is_some() {
        "superseded"
    } else if r.cancelled() {
        "cancelled"
    } else if r.pulling.is_some() {
        "pulling"
    } else if r.complete() {
        "complete"
    } else {
        "running"
    }
}

impl RolloutSummary {
    /// The summary of `r` at `now_ms`.
    pub fn of(r: &Rollout, now_ms: u64) -> RolloutSummary {
        let t = totals(r, now_ms);
        let count = |s: State| t.sites.get(s.name()).copied().unwrap_or(0);
        RolloutSummary {
            id: r.id.clone(),
            application: r.application.clone(),
            images: r.pinned(),
            requested: r.requested(),
            pulling: r.pulling.as_ref().map(|p| PullingView {
                reason: p.reason.clone(),
                message: p.message.clone(),
                retries: p.retries,
                next_attempt_unix: p.next_attempt_ms / 1000,
            }),
            selector: r.selector.clone(),
            max_parallel: r.max_parallel,
            bandwidth_bytes_per_second: r.bandwidth,
            created_unix: r.created_ms / 1000,
            cancelled_unix: r.cancelled_ms.map(|ms| ms / 1000),
            superseded_by: r.superseded_by.clone(),
            status: status(r).to_owned(),
            totals: Totals {
                selected: t.selected,
                waiting: count(State::Waiting),
                delivering: count(State::Delivering),
                present: count(State::Present),
                scheduled: count(State::Scheduled),
                failed: count(State::Failed),
                bytes_done: t.bytes_done,
                bytes_left: t.bytes_left,
                eta_seconds: t.eta_seconds,
            },
        }
    }
}

impl RolloutView {
    /// The whole of `r` at `now_ms`.
    pub fn of(r: &Rollout, now_ms: u64) -> RolloutView {
        RolloutView {
            summary: RolloutSummary::of(r, now_ms),
            sites: r
                .sites
                .iter()
                .map(|(id, s)| SiteProgressView {
                    site_id: id.clone(),
                    state: s.state.name().to_owned(),
                    bytes_done: s.bytes_done,
                    bytes_left: s.bytes_left,
                    lacked: s.lacked,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                    retries: s.retries,
                    next_attempt_unix: (s.state == State::Failed)
                        .then_some(s.next_attempt_ms / 1000),
                })
                .collect(),
            manifests: r
                .images
                .iter()
                .map(|i| ImageSummary {
                    image: i.pinned(),
                    manifests: i.manifests.len(),
                    blobs: i.blobs.len(),
                })
                .collect(),
        }
    }
}
