//! The site's metadata and the read-only questions asked of it.

use crate::ImageRef;
use serde::{Deserialize, Serialize};
use site_core::manifest::Descriptor;
use site_core::{Digest, Repository};
use std::collections::{BTreeMap, BTreeSet};

/// All of the site's metadata. Serialisable whole: that is a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub(crate) blobs: BTreeMap<Digest, BlobInfo>,
    pub(crate) manifests: BTreeMap<Digest, ManifestInfo>,
    pub(crate) repos: BTreeMap<Repository, Repo>,
    pub(crate) apps: BTreeMap<String, BTreeSet<ImageRef>>,
    pub(crate) pins: BTreeSet<ImageRef>,
    /// Blob leases: digest -> end of lease.
    pub(crate) leases: BTreeMap<Digest, u64>,
    pub(crate) last_sweep: Option<crate::SweepReport>,
    /// Cluster addresses of the nodes added to the site at run time (the founding nodes'
    /// come from their configuration).
    #[serde(default)]
    pub(crate) nodes: BTreeMap<u64, String>,
    /// The unit of the times held: milliseconds, or seconds in a state saved before
    /// times had milliseconds (see [`State::decode`]).
    #[serde(default = "Clock::seconds")]
    pub(crate) clock: Clock,
    /// The time of the latest entry applied (0: none since this was recorded), so that
    /// a node that loads this state knows where the log's clock stands.
    #[serde(default)]
    pub(crate) time: u64,
}

/// The unit of a state's times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// Seconds since the Unix epoch (states saved before milliseconds).
    Seconds,
    /// Milliseconds since the Unix epoch.
    #[default]
    Milliseconds,
}

impl Clock {
    fn seconds() -> Clock {
        Clock::Seconds
    }
}

/// A blob the site holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// Size in bytes.
    pub size: u64,
    /// When it was added (entry time, milliseconds).
    pub added: u64,
}

/// A manifest the site holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestInfo {
    /// Its media type.
    pub media_type: String,
    /// Its exact text.
    pub body: String,
    /// Blobs it needs (config and non-foreign layers).
    pub blobs: Vec<Digest>,
    /// Child manifests (index entries).
    pub children: Vec<Digest>,
    /// The manifest it refers to, and how the referrers API lists it.
    pub subject: Option<(Digest, Descriptor)>,
    /// Top-level annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it arrived (milliseconds since the Unix epoch, as every time here).
    pub added: u64,
    /// When it was last pulled or delivered.
    pub last_used: u64,
    /// Since when no application or pin references it (`None` while live).
    pub unreferenced_since: Option<u64>,
    /// Fetched by the pull-through cache (see [`crate::Command::PutManifest`]).
    #[serde(default)]
    pub cached: bool,
}

/// A repository: its blob links, manifests and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    /// Blobs linked into it.
    pub blobs: BTreeSet<Digest>,
    /// Manifests in it.
    pub manifests: BTreeSet<Digest>,
    /// Tags: name -> manifest.
    pub tags: BTreeMap<String, Digest>,
}

impl Repo {
    pub(crate) fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.manifests.is_empty() && self.tags.is_empty()
    }
}

/// One image (a manifest in a repository) as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The image.
    pub image: ImageRef,
    /// Tags in its repository that point at it.
    pub tags: Vec<String>,
    /// Its media type.
    pub media_type: String,
    /// Bytes of the manifest, its blobs and its children's blobs.
    pub size: u64,
    /// Applications that reference it.
    pub apps: Vec<String>,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Whether it is live (referenced directly or through an index or subject).
    pub live: bool,
    /// Top-level annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it was last pulled or delivered.
    pub last_used: u64,
    /// Since when it is unreferenced.
    pub unreferenced_since: Option<u64>,
}

impl State {
    /// A state from its JSON (a snapshot), its times in milliseconds: a state saved in
    /// seconds has them converted, the same way on every node.
    pub fn decode(json: &[u8]) -> serde_json::Result<State> {
        let mut state: State = serde_json::from_slice(json)?;
        if state.clock == Clock::Seconds {
            let ms = |t: &mut u64| *t = t.saturating_mul(1000);
            for b in state.blobs.values_mut() {
                ms(&mut b.added);
            }
            for m in state.manifests.values_mut() {
                ms(&mut m.added);
                ms(&mut m.last_used);
                if let Some(t) = &mut m.unreferenced_since {
                    ms(t);
                }
            }
            state.leases.values_mut().for_each(ms);
            if let Some(r) = &mut state.last_sweep {
                ms(&mut r.at);
            }
            state.clock = Clock::Milliseconds;
        }
        Ok(state)
    }

    /// The time of the latest entry that changed the state (milliseconds since the Unix
    /// epoch; 0: none): where the log's clock stood. A state saved before that was kept
    /// answers the latest time it holds.
    pub fn time(&self) -> u64 {
        if self.time > 0 {
            return self.time;
        }
        let blobs = self.blobs.values().map(|b| b.added);
        let manifests = self.manifests.values().map(|m| m.added.max(m.last_used));
        let sweep = self.last_sweep.iter().map(|r| r.at);
        blobs.chain(manifests).chain(sweep).max().unwrap_or(0)
    }

    /// [`State::time`] of a state's JSON without decoding the rest (0 when it does not
    /// say: a state saved before it was kept, or bytes that are no state).
    pub fn time_of(json: &[u8]) -> u64 {
        #[derive(Deserialize)]
        struct TimeOnly {
            #[serde(default)]
            time: u64,
        }
        serde_json::from_slice::<TimeOnly>(json).map_or(0, |t| t.time)
    }

    /// Records that an entry stamped `time` changed the state (by the log's apply side,
    /// in log order on every node).
    pub fn note_time(&mut self, time: u64) {
        self.time = self.time.max(time);
    }

    /// Records a membership change the log applied: node `id` added at `address`, or
    /// removed (`None`). Called by the log's apply side for its configuration entries,
    /// in log order on every node, like [`State::apply`].
    pub fn record_node(&mut self, id: u64, address: Option<&str>) {
        match address {
            Some(a) => {
                self.nodes.insert(id, a.to_owned());
            }
            None => {
                self.nodes.remove(&id);
            }
        }
    }

    /// Cluster addresses of the nodes added at run time.
    pub fn nodes(&self) -> impl Iterator<Item = (u64, &str)> {
        self.nodes.iter().map(|(id, a)| (*id, a.as_str()))
    }

    /// Size of blob `d` if the site holds it.
    pub fn blob(&self, d: &Digest) -> Option<&BlobInfo> {
        self.blobs.get(d)
    }

    /// Size of blob `d` if it is linked into `repo`.
    pub fn repo_blob(&self, repo: &Repository, d: &Digest) -> Option<u64> {
        self.repos.get(repo)?.blobs.get(d)?;
        Some(self.blobs.get(d)?.size)
    }

    /// Every blob with its size.
    pub fn blobs(&self) -> impl Iterator<Item = (&Digest, &BlobInfo)> {
        self.blobs.iter()
    }

    /// Manifest `d`, wherever it is.
    pub fn manifest(&self, d: &Digest) -> Option<&ManifestInfo> {
        self.manifests.get(d)
    }

    /// Manifest `d` if it is in `repo`.
    pub fn repo_manifest(&self, repo: &Repository, d: &Digest) -> Option<&ManifestInfo> {
        self.repos.get(repo)?.manifests.get(d)?;
        self.manifests.get(d)
    }

    /// The manifest a tag of `repo` points at.
    pub fn tag(&self, repo: &Repository, tag: &str) -> Option<&Digest> {
        self.repos.get(repo)?.tags.get(tag)
    }

    /// A repository.
    pub fn repo(&self, repo: &Repository) -> Option<&Repo> {
        self.repos.get(repo)
    }

    /// Every repository.
    pub fn repos(&self) -> impl Iterator<Item = (&Repository, &Repo)> {
        self.repos.iter()
    }

    /// Descriptors of the manifests of `repo` whose subject is `subject`.
    pub fn referrers(&self, repo: &Repository, subject: &Digest) -> Vec<Descriptor> {
        let Some(r) = self.repos.get(repo) else {
            return Vec::new();
        };
        r.manifests
            .iter()
            .filter_map(|d| self.manifests.get(d)?.subject.as_ref())
            .filter(|(s, _)| s == subject)
            .map(|(_, desc)| desc.clone())
            .collect()
    }

    /// Applications and their images.
    pub fn apps(&self) -> &BTreeMap<String, BTreeSet<ImageRef>> {
        &self.apps
    }

    /// Pinned images.
    pub fn pins(&self) -> &BTreeSet<ImageRef> {
        &self.pins
    }

    /// The last sweep, if any.
    pub fn last_sweep(&self) -> Option<&crate::SweepReport> {
        self.last_sweep.as_ref()
    }

    /// Bytes of all blobs the site holds.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.values().map(|b| b.size).sum()
    }

    /// Blobs and child manifests `d` needs that the site lacks, recursively; empty when
    /// the image is whole. A cached index needs only the children the site holds (the
    /// platforms that were pulled).
    pub fn missing_parts(&self, d: &Digest) -> Vec<Digest> {
        let mut missing = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![d.clone()];
        while let Some(d) = todo.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            let Some(m) = self.manifests.get(&d) else {
                missing.push(d);
                continue;
            };
            missing.extend(
                m.blobs
                    .iter()
                    .filter(|b| !self.blobs.contains_key(b))
                    .cloned(),
            );
            todo.extend(
                m.children
                    .iter()
                    .filter(|c| !m.cached || self.manifests.contains_key(*c))
                    .cloned(),
            );
        }
        missing
    }

    /// Bytes of manifest `d`, its blobs and its children's blobs (each blob once).
    pub fn image_size(&self, d: &Digest) -> u64 {
        let mut blobs = BTreeSet::new();
        let mut total = 0;
        let mut todo = vec![d];
        let mut seen = BTreeSet::new();
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(m) = self.manifests.get(d) {
                total += m.body.len() as u64;
                blobs.extend(m.blobs.iter());
                todo.extend(m.children.iter());
            }
        }
        total
            + blobs
                .iter()
                .filter_map(|b| self.blobs.get(*b))
                .map(|b| b.size)
                .sum::<u64>()
    }

    /// Every image (manifest in a repository), in repository and digest order.
    pub fn images(&self) -> Vec<ImageSummary> {
        let live = self.live_manifests();
        let mut out = Vec::new();
        for (repo, r) in &self.repos {
            for d in &r.manifests {
                let Some(m) = self.manifests.get(d) else {
                    continue;
                };
                let image = ImageRef {
                    repo: repo.clone(),
                    digest: d.clone(),
                };
                out.push(ImageSummary {
                    tags: r
                        .tags
                        .iter()
                        .filter(|(_, t)| *t == d)
                        .map(|(n, _)| n.clone())
                        .collect(),
                    media_type: m.media_type.clone(),
                    size: self.image_size(d),
                    apps: self
                        .apps
                        .iter()
                        .filter(|(_, imgs)| imgs.contains(&image))
                        .map(|(a, _)| a.clone())
                        .collect(),
                    pinned: self.pins.contains(&image),
                    live: live.contains(d),
                    annotations: m.annotations.clone(),
                    last_used: m.last_used,
                    unreferenced_since: m.unreferenced_since,
                    image,
                });
            }
        }
        out
    }
}
