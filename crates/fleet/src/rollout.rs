//! A rollout: an application's images, resolved to digests once, and each selected
//! site's way from `waiting` to `scheduled`.
//!
//! ```text
//! waiting ──start──▶ delivering ──present──▶ present ──scheduled──▶ scheduled
//!    ▲                   │                      │
//!    │ (tower restart)   └──────failed──────────┴──▶ failed ──(backoff due)──▶ delivering
//! ```
//!
//! A site is scheduled only from `present`: every image of the application is whole on
//! it. `failed` keeps the reason, from the towerctl taxonomy (`SITE_UNREACHABLE`,
//! `SITE_OUT_OF_SPACE`, `UPSTREAM_UNREACHABLE`, ...), and counts the retries.

use crate::missing::{self, Blob};
use crate::schedule::Backoff;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One manifest of an image, as the rollout delivers it (children before their index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Digest of its bytes.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One image of a rollout, resolved at the upstream when the rollout was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// As the request named it.
    pub requested: String,
    /// Canonical repository (`docker.io/library/nginx`).
    pub repository: String,
    /// The tag it was asked by, set on the site too.
    pub tag: Option<String>,
    /// The digest every site gets.
    pub digest: String,
    /// Its manifests, children first, the image's own last.
    pub manifests: Vec<Manifest>,
    /// Its blobs (configs and layers), each once.
    pub blobs: Vec<Blob>,
}

impl Image {
    /// `REPOSITORY@DIGEST`, as a site schedules it.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

/// Where one site of a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not started yet.
    Waiting,
    /// Being sent what it lacks.
    Delivering,
    /// Holds every image; the application is being scheduled.
    Present,
    /// Holds every image and runs the application.
    Scheduled,
    /// The last attempt failed; retried when its backoff is over.
    Failed,
}

impl State {
    /// Every state, in the order totals list them.
    pub const ALL: [State; 5] = [
        State::Waiting,
        State::Delivering,
        State::Present,
        State::Scheduled,
        State::Failed,
    ];

    /// Its name in the API.
    pub fn name(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Delivering => "delivering",
            State::Present => "present",
            State::Scheduled => "scheduled",
            State::Failed => "failed",
        }
    }

    /// Whether a worker is on the site.
    pub fn in_flight(self) -> bool {
        matches!(self, State::Delivering | State::Present)
    }
}

/// One site's progress in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteProgress {
    /// Its state.
    pub state: State,
    /// Bytes sent to it by this rollout, over every attempt.
    pub bytes_done: u64,
    /// Bytes it still lacks, as of its last answer and what was sent since.
    pub bytes_left: u64,
    /// Bytes it lacked when first asked (`None` before): what the rollout owed it.
    pub lacked: Option<u64>,
    /// Why the last attempt failed (the taxonomy's reason); empty otherwise.
    pub reason: String,
    /// The failure's message.
    pub message: String,
    /// Failed attempts so far.
    pub retries: u32,
    /// When a failed site is tried again (ms since the epoch).
    pub next_attempt_ms: u64,
    /// When the first attempt started.
    pub started_ms: Option<u64>,
    /// When it was scheduled.
    pub finished_ms: Option<u64>,
}

impl SiteProgress {
    fn new() -> SiteProgress {
        SiteProgress {
            state: State::Waiting,
            bytes_done: 0,
            bytes_left: 0,
            lacked: None,
            reason: String::new(),
            message: String::new(),
            retries: 0,
            next_attempt_ms: 0,
            started_ms: None,
            finished_ms: None,
        }
    }
}

/// How fetching a rollout's images into the tower's registry goes, until every one is
/// held there. No site is worked meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pulling {
    /// The images as the request named them.
    pub requested: Vec<String>,
    /// The last attempt's failure (the taxonomy's reason), empty before any.
    pub reason: String,
    /// What it said.
    pub message: String,
    /// Failed attempts.
    pub retries: u32,
    /// When the next attempt is due (ms since the epoch).
    pub next_attempt_ms: u64,
}

/// A rollout as the tower keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Its id.
    pub id: String,
    /// The application scheduled on each site.
    pub application: String,
    /// Its images, resolved.
    pub images: Vec<Image>,
    /// Which sites it is for: a filter (`crate::Filter`) over the inventory; sites added
    /// later that match it join.
    pub selector: Value,
    /// Most sites delivered to at once.
    pub max_parallel: u32,
    /// Bytes per second sent to one site at most (`None`: as fast as the link goes).
    pub bandwidth: Option<u64>,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
    /// When it was cancelled (or superseded).
    pub cancelled_ms: Option<u64>,
    /// The newer rollout of the same application that took its place: a site runs one
    /// version of an application, so the older rollout stops where it stands.
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// Each selected site's progress, by site id.
    pub sites: BTreeMap<String, SiteProgress>,
    /// While its images are fetched into the tower's registry (`images` holds them once
    /// every one is there).
    #[serde(default)]
    pub pulling: Option<Pulling>,
}

impl Rollout {
    /// Every blob of the rollout, each once.
    pub fn blobs(&self) -> Vec<Blob> {
        missing::union(self.images.iter().map(|i| i.blobs.as_slice()))
    }

    /// The images as the site schedules them.
    pub fn pinned(&self) -> Vec<String> {
        self.images.iter().map(Image::pinned).collect()
    }

    /// Whether it was cancelled (or superseded).
    pub fn cancelled(&self) -> bool {
        self.cancelled_ms.is_some()
    }

    /// Stops it where it stands: no site is started again, and the sites in flight go
    /// back to waiting (they keep what they hold). Cancelling again changes nothing.
    pub fn cancel(&mut self, now_ms: u64, superseded_by: Option<&str>) {
        if self.cancelled_ms.is_none() {
            self.cancelled_ms = Some(now_ms);
            self.superseded_by = superseded_by.map(str::to_owned);
            self.recover();
        }
    }

    /// Whether every selected site runs the application.
    pub fn complete(&self) -> bool {
        self.pulling.is_none()
            && !self.sites.is_empty()
            && self.sites.values().all(|s| s.state == State::Scheduled)
    }

    /// The images as the request named them.
    pub fn requested(&self) -> Vec<String> {
        match &self.pulling {
            Some(p) => p.requested.clone(),
            None => self.images.iter().map(|i| i.requested.clone()).collect(),
        }
    }

    /// Whether an attempt at fetching its images is due.
    pub fn pull_due(&self, now_ms: u64) -> bool {
        !self.cancelled()
            && self
                .pulling
                .as_ref()
                .is_some_and(|p| p.next_attempt_ms <= now_ms)
    }

    /// Every image is held in the tower's registry: the sites may be worked.
    pub fn pulled(&mut self, images: Vec<Image>) {
        self.images = images;
        self.pulling = None;
    }

    /// An attempt at fetching its images failed; the next one follows the backoff.
    pub fn pull_failed(&mut self, reason: &str, message: &str, now_ms: u64, backoff: &Backoff) {
        let id = self.id.clone();
        if let Some(p) = &mut self.pulling {
            p.retries += 1;
            p.reason = reason.to_owned();
            p.message = message.to_owned();
            p.next_attempt_ms = now_ms + backoff.delay_ms(&id, p.retries);
        }
    }

    /// Adds the sites not in it yet (a site onboarded later that matches the selector);
    /// returns how many joined.
    pub fn join<'a>(&mut self, site_ids: impl IntoIterator<Item = &'a str>) -> usize {
        let mut joined = 0;
        for id in site_ids {
            if !self.sites.contains_key(id) {
                self.sites.insert(id.to_owned(), SiteProgress::new());
                joined += 1;
            }
        }
        joined
    }

    /// Drops a site removed from the inventory.
    pub fn forget(&mut self, site_id: &str) -> bool {
        self.sites.remove(site_id).is_some()
    }

    /// After a tower restart: sites that had a worker start again from waiting (no retry
    /// counted; the site's partial copies make it a resume).
    pub fn recover(&mut self) {
        for site in self.sites.values_mut() {
            if site.state.in_flight() {
                site.state = State::Waiting;
            }
        }
    }

    fn site(&mut self, id: &str) -> Option<&mut SiteProgress> {
        self.sites.get_mut(id)
    }

    /// A worker starts on the site.
    pub fn start(&mut self, id: &str, now_ms: u64) {
        if let Some(s) = self.site(id) {
            s.state = State::Delivering;
            s.started_ms.get_or_insert(now_ms);
        }
    }

    /// The site answered what it lacks: `(size, bytes held of a partial copy)` per
    /// missing blob.
    pub fn asked(&mut self, id: &str, missing: &[(u64, u64)]) {
        if let Some(s) = self.site(id) {
            s.bytes_left = missing::bytes_to_send(missing);
            s.lacked
                .get_or_insert(missing.iter().map(|(size, _)| size).sum());
        }
    }

    /// `bytes` more reached the site.
    pub fn sent(&mut self, id: &str, bytes: u64) {
        if let Some(s) = self.site(id) {
            s.bytes_done += bytes;
            s.bytes_left = s.bytes_left.saturating_sub(bytes);
        }
    }

    /// Every image is whole on the site.
    pub fn present(&mut self, id: &str) {
        if let Some(s) = self.site(id) {
            s.state = State::Present;
            s.bytes_left = 0;
        }
    }

    /// The site schedules the application: done.
    pub fn scheduled(&mut self, id: &str, now_ms: u64) {
        if let Some(s) = self.site(id) {
            s.state = State::Scheduled;
            s.finished_ms = Some(now_ms);
            s.reason.clear();
            s.message.clear();
        }
    }

    /// The attempt failed; the site is tried again after its backoff.
    pub fn failed(
        &mut self,
        id: &str,
        reason: &str,
        message: &str,
        now_ms: u64,
        backoff: &Backoff,
    ) {
        if let Some(s) = self.site(id) {
            s.state = State::Failed;
            s.retries += 1;
            s.reason = reason.to_owned();
            s.message = message.to_owned();
            s.next_attempt_ms = now_ms + backoff.delay_ms(id, s.retries);
        }
    }
}

/// Refuses an application name sites would refuse.
pub fn check_application(name: &str) -> Result<(), crate::Error> {
    site_core::check_application_name(name).map_err(crate::Error::bad)
}
