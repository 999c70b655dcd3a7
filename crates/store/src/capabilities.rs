//! What each kind of caller may do with the node, as small handles over the [`Store`]:
//! the OCI API reads blobs and manifests and lets clients push; the tower delivers and
//! administers; peers replicate. A handler holds the handles of its kind and no more,
//! so what it can change is read from its fields. Each is cheap to clone.

use crate::delivery::Received;
use crate::error::Result;
use crate::leadership::RaftStatus;
use crate::manifests::{ManifestRef, StoredManifest};
use crate::membership::NodeView;
use crate::replication::ByteStream;
use crate::sessions::ByteSource;
use crate::transport::NodeReport;
use crate::Store;
use site_core::{Descriptor, Digest, Manifest, Repository};
use site_state::{Command, Event, MemberChange, Outcome, State};
use tokio::sync::broadcast;

/// Reading blobs: their size in a repository and their verified bytes.
#[derive(Clone)]
pub struct BlobReads(Store);

/// Reading manifests, tags, referrers and the catalog.
#[derive(Clone)]
pub struct ManifestReads(Store);

/// What a pushing client does: uploads, mounts, manifests, deletes.
#[derive(Clone)]
pub struct Push(Store);

/// What the tower's delivery does: which blobs are here, blob streams that resume,
/// leases, manifests.
#[derive(Clone)]
pub struct Deliver(Store);

/// What the tower administers: commands (tags, schedules, pins), members, status,
/// events.
#[derive(Clone)]
pub struct Administer(Store);

/// What a peer asks: Raft messages, forwarded commands, blob copies and holds.
#[derive(Clone)]
pub struct Peering(Store);

/// Whether the node is broken, and how the site's nodes stand.
#[derive(Clone)]
pub struct Health(Store);

impl Store {
    /// Reading blobs.
    pub fn blob_reads(&self) -> BlobReads {
        BlobReads(self.clone())
    }
    /// Reading manifests.
    pub fn manifest_reads(&self) -> ManifestReads {
        ManifestReads(self.clone())
    }
    /// Pushing.
    pub fn push(&self) -> Push {
        Push(self.clone())
    }
    /// Delivering.
    pub fn deliver(&self) -> Deliver {
        Deliver(self.clone())
    }
    /// Administering.
    pub fn administer(&self) -> Administer {
        Administer(self.clone())
    }
    /// Answering peers.
    pub fn peering(&self) -> Peering {
        Peering(self.clone())
    }
    /// The node's health.
    pub fn health(&self) -> Health {
        Health(self.clone())
    }
}

impl BlobReads {
    /// See [`crate::Repositories::blob_size`].
    pub fn size(&self, repo: &Repository, d: &Digest) -> Result<u64> {
        self.0.inner.repositories.blob_size(repo, d)
    }
    /// See [`crate::Reads::open_blob`].
    pub async fn read(&self, d: &Digest, start: u64, len: u64) -> Result<crate::BlobBytes> {
        self.0.inner.reads.open_blob(d, start, len).await
    }
}

impl ManifestReads {
    /// See [`crate::Repositories::get_manifest`].
    pub fn get(&self, repo: &Repository, reference: &ManifestRef) -> Result<StoredManifest> {
        self.0.inner.repositories.get_manifest(repo, reference)
    }
    /// See [`crate::Repositories::tags`].
    pub fn tags(&self, repo: &Repository, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        self.0.inner.repositories.tags(repo, last, n)
    }
    /// See [`crate::Repositories::referrers`].
    pub fn referrers(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        self.0
            .inner
            .repositories
            .referrers(repo, subject, artifact_type)
    }
    /// See [`crate::Repositories::catalog`].
    pub fn catalog(
        &self,
        name_of: impl Fn(&Repository) -> String,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        self.0.inner.repositories.catalog(name_of, last, n)
    }
    /// See [`crate::Repositories::repo_exists`].
    pub fn repo_exists(&self, repo: &Repository) -> Result<bool> {
        self.0.inner.repositories.repo_exists(repo)
    }
    /// See [`crate::Pulls::note`].
    pub fn note_pull(&self, d: &Digest) {
        self.0.inner.pulls.note(d)
    }
}

impl Push {
    /// Largest manifest accepted, in bytes.
    pub fn max_manifest_bytes(&self) -> u64 {
        self.0.config().max_manifest_bytes
    }
    /// See [`crate::Uploads::start_upload`].
    pub async fn start_upload(&self, repo: &Repository) -> Result<String> {
        self.0.inner.uploads.start_upload(repo).await
    }
    /// See [`crate::Uploads::upload_offset`].
    pub async fn upload_offset(&self, repo: &Repository, id: &str) -> Result<u64> {
        self.0.inner.uploads.upload_offset(repo, id).await
    }
    /// See [`crate::Uploads::append_upload`].
    pub async fn append_upload(
        &self,
        repo: &Repository,
        id: &str,
        start: Option<u64>,
        body: &mut impl ByteSource,
    ) -> Result<u64> {
        self.0
            .inner
            .uploads
            .append_upload(repo, id, start, body)
            .await
    }
    /// See [`crate::Uploads::finish_upload`].
    pub async fn finish_upload(
        &self,
        repo: &Repository,
        id: &str,
        expected: &Digest,
        start: Option<u64>,
        body: &mut impl ByteSource,
    ) -> Result<u64> {
        self.0
            .inner
            .uploads
            .finish_upload(repo, id, expected, start, body)
            .await
    }
    /// See [`crate::Uploads::cancel_upload`].
    pub async fn cancel_upload(&self, repo: &Repository, id: &str) -> Result<()> {
        self.0.inner.uploads.cancel_upload(repo, id).await
    }
    /// See [`crate::Repositories::mount_blob`].
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        from: &Repository,
        d: &Digest,
    ) -> Result<bool> {
        self.0.inner.repositories.mount_blob(repo, from, d).await
    }
    /// See [`crate::Repositories::put_manifest`].
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Digest, Manifest)> {
        self.0
            .inner
            .repositories
            .put_manifest(repo, reference, content_type, body)
            .await
    }
    /// Points `tag` of `repo` at manifest `d`, which the repository holds.
    pub async fn tag(&self, repo: &Repository, tag: &str, d: &Digest) -> Result<()> {
        self.0
            .execute(Command::Tag {
                repo: repo.clone(),
                tag: tag.to_owned(),
                digest: d.clone(),
            })
            .await?;
        Ok(())
    }
    /// See [`crate::Repositories::delete_manifest`].
    pub async fn delete_manifest(&self, repo: &Repository, d: &Digest) -> Result<()> {
        self.0.inner.repositories.delete_manifest(repo, d).await
    }
    /// See [`crate::Repositories::delete_tag`].
    pub async fn delete_tag(&self, repo: &Repository, tag: &str) -> Result<()> {
        self.0.inner.repositories.delete_tag(repo, tag).await
    }
    /// See [`crate::Repositories::delete_blob`].
    pub async fn delete_blob(&self, repo: &Repository, d: &Digest) -> Result<()> {
        self.0.inner.repositories.delete_blob(repo, d).await
    }
}

impl Deliver {
    /// See [`Store::writable`].
    pub fn writable(&self) -> Result<()> {
        self.0.writable()
    }
    /// Whether the site holds blob `d` (recorded, durable on a majority).
    pub fn holds(&self, d: &Digest) -> bool {
        self.0.read(|s| s.blob(d).is_some())
    }
    /// See [`crate::Deliveries::tower_upload_offset`].
    pub async fn offset(&self, d: &Digest) -> Result<u64> {
        self.0.inner.deliveries.tower_upload_offset(d).await
    }
    /// Keeps `digests` from GC for `for_ms` milliseconds of the log's time, for the
    /// delivery that was told the site holds them.
    pub async fn lease(&self, digests: Vec<Digest>, for_ms: u64) -> Result<Outcome> {
        self.0.execute(Command::lease_for(digests, for_ms)).await
    }
    /// See [`crate::Deliveries::receive_blob`].
    pub async fn receive_blob(
        &self,
        repo: Option<&Repository>,
        d: &Digest,
        size: u64,
        offset: u64,
        source: &mut impl ByteSource,
    ) -> Result<(u64, Received)> {
        self.0
            .inner
            .deliveries
            .receive_blob(repo, d, size, offset, source)
            .await
    }
    /// See [`crate::Repositories::deliver_manifest`].
    pub async fn manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Digest, Manifest)> {
        self.0
            .inner
            .repositories
            .deliver_manifest(repo, reference, content_type, body)
            .await
    }
    /// Tells watchers that a delivery was refused.
    pub fn refused(&self, event: Event) {
        self.0.publish(event)
    }
}

impl Administer {
    /// See [`Store::execute`].
    pub async fn execute(&self, cmd: Command) -> Result<Outcome> {
        self.0.execute(cmd).await
    }
    /// See [`Store::read`].
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.0.read(f)
    }
    /// See [`crate::Membership::change_members`].
    pub async fn change_members(&self, change: MemberChange) -> Result<Vec<u64>> {
        self.0.inner.membership.change_members(change).await
    }
    /// See [`crate::Membership::site_nodes`].
    pub async fn site_nodes(&self) -> Vec<NodeView> {
        self.0.inner.membership.site_nodes().await
    }
    /// See [`Store::raft_status`].
    pub fn raft_status(&self) -> RaftStatus {
        self.0.raft_status()
    }
    /// See [`Store::blobs_missing`].
    pub fn blobs_missing(&self) -> usize {
        self.0.blobs_missing()
    }
    /// See [`Store::failure`].
    pub fn failure(&self) -> Option<String> {
        self.0.failure()
    }
    /// See [`Store::subscribe`].
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}

impl Peering {
    /// See [`Store::receive_raft`].
    pub fn receive_raft(&self, message: &[u8]) -> Result<()> {
        self.0.receive_raft(message)
    }
    /// See [`Store::order_forwarded`].
    pub async fn order_forwarded(&self, ask: crate::Ask) -> Result<crate::Ordered> {
        self.0.order_forwarded(ask).await
    }
    /// See [`crate::PeerFiles::blob_for_peer`].
    pub async fn blob_for_peer(
        &self,
        d: &Digest,
        offset: u64,
        background: bool,
    ) -> Result<ByteStream> {
        self.0
            .inner
            .peer_files
            .blob_for_peer(d, offset, background)
            .await
    }
    /// See [`crate::PeerFiles::peer_file`].
    pub async fn peer_file(
        &self,
        d: &Digest,
        offset: u64,
        background: bool,
    ) -> Result<crate::PeerFile> {
        self.0
            .inner
            .peer_files
            .peer_file(d, offset, background)
            .await
    }
    /// See [`crate::PeerFiles::count_sent`].
    pub fn count_sent(&self, by: crate::PeerSend, n: u64) {
        self.0.inner.peer_files.count_sent(by, n)
    }
    /// See [`Store::fetch_blob`]: holds blob `d` here, from peer `from` first.
    pub async fn hold(&self, d: &Digest, size: u64, from: u64) -> Result<()> {
        self.0.inner.fetcher.fetch_blob(d, size, Some(from)).await
    }
    /// See [`crate::Membership::local_report`].
    pub fn local_report(&self) -> NodeReport {
        self.0.inner.membership.local_report()
    }
}

impl Health {
    /// See [`Store::failure`].
    pub fn failure(&self) -> Option<String> {
        self.0.failure()
    }
    /// See [`crate::Membership::site_nodes`].
    pub async fn site_nodes(&self) -> Vec<NodeView> {
        self.0.inner.membership.site_nodes().await
    }
    /// The node's families for `/metrics`.
    pub fn metrics(&self) -> crate::NodeMetrics {
        crate::NodeMetrics(self.0.clone())
    }
}
