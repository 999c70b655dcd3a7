#![deny(missing_docs)]
//! Node-local store of the site registry: blob files on disk, metadata in sled.
//!
//! Rule of this crate: sled appears nowhere else. Callers see repositories, digests and
//! manifests; every key is built in [`keyspace`]. A blob or manifest is visible only once
//! it is whole, verified and durable; [`Store::open`] reconciles the metadata with the
//! files after a crash so that nothing partial is ever served.

pub mod error;
pub mod files;
pub mod keyspace;
mod manifests;
mod reconcile;
mod uploads;

pub use error::{Result, StoreError};
pub use manifests::{ManifestRef, StoredManifest};
pub use uploads::ByteSource;

use files::BlobFiles;
use site_core::{Digest, Repository};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where and within which limits a store keeps its data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Root of the node's data: `blobs/`, `uploads/`, `meta/`.
    pub data_dir: PathBuf,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// Upload sessions idle longer than this are dropped at start-up.
    pub upload_ttl: Duration,
}

/// The node-local store. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    db: sled::Db,
    trees: Trees,
    files: BlobFiles,
    uploads: uploads::Sessions,
}

/// The open sled trees, one per line of the keyspace table.
struct Trees {
    blobs: sled::Tree,
    repo_blobs: sled::Tree,
    manifests: sled::Tree,
    repo_manifests: sled::Tree,
    tags: sled::Tree,
    referrers: sled::Tree,
    repos: sled::Tree,
    uploads: sled::Tree,
}

impl Store {
    /// Opens (creating if needed) the store under `config.data_dir`, cleans up what an
    /// interrupted run left behind and reconciles the metadata with the files. Blocking.
    pub fn open(config: StoreConfig) -> Result<Store> {
        files::create_dir_durable(&config.data_dir)?;
        let db = sled::Config::new()
            .path(config.data_dir.join("meta"))
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let trees = Trees {
            blobs: db.open_tree(keyspace::BLOBS)?,
            repo_blobs: db.open_tree(keyspace::REPO_BLOBS)?,
            manifests: db.open_tree(keyspace::MANIFESTS)?,
            repo_manifests: db.open_tree(keyspace::REPO_MANIFESTS)?,
            tags: db.open_tree(keyspace::TAGS)?,
            referrers: db.open_tree(keyspace::REFERRERS)?,
            repos: db.open_tree(keyspace::REPOS)?,
            uploads: db.open_tree(keyspace::UPLOADS)?,
        };
        let files = BlobFiles::open(config.data_dir.join("blobs"))?;
        let upload_dir = config.data_dir.join("uploads");
        files::create_dir_durable(&upload_dir)?;
        let store = Store {
            inner: Arc::new(Inner {
                uploads: uploads::Sessions::new(upload_dir),
                config,
                db,
                trees,
                files,
            }),
        };
        store.reconcile()?;
        Ok(store)
    }

    /// The limits the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Size of blob `d` if it is linked into `repo`.
    pub fn blob_size(&self, repo: &Repository, d: &Digest) -> Result<u64> {
        let t = &self.inner.trees;
        if !t
            .repo_blobs
            .contains_key(keyspace::repo_digest_key(repo, d))?
        {
            return Err(StoreError::BlobUnknown(d.clone()));
        }
        t.blobs
            .get(keyspace::digest_key(d))?
            .and_then(|v| keyspace::decode_size(&v))
            .ok_or_else(|| StoreError::BlobUnknown(d.clone()))
    }

    /// Opens blob `d` of `repo` for reading, with its size.
    pub async fn open_blob(&self, repo: &Repository, d: &Digest) -> Result<(tokio::fs::File, u64)> {
        let size = self.blob_size(repo, d)?;
        match tokio::fs::File::open(self.inner.files.path(d)).await {
            Ok(f) => Ok((f, size)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(digest = %d, "blob recorded but its file is missing");
                Err(StoreError::BlobUnknown(d.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Links blob `d`, already held by the node, into `repo` (cross-repository mount).
    /// Returns false when the node does not hold it or `from` does not have it.
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        from: &Repository,
        d: &Digest,
    ) -> Result<bool> {
        if self.blob_size(from, d).is_err() {
            return Ok(false);
        }
        self.link_blob(repo, d)?;
        self.inner.db.flush_async().await?;
        Ok(true)
    }

    /// Unlinks blob `d` from `repo`. The bytes stay until garbage collection.
    pub async fn delete_blob(&self, repo: &Repository, d: &Digest) -> Result<()> {
        let t = &self.inner.trees;
        if t.repo_blobs
            .remove(keyspace::repo_digest_key(repo, d))?
            .is_none()
        {
            return Err(StoreError::BlobUnknown(d.clone()));
        }
        self.inner.db.flush_async().await?;
        Ok(())
    }

    fn link_blob(&self, repo: &Repository, d: &Digest) -> Result<()> {
        let t = &self.inner.trees;
        t.repo_blobs
            .insert(keyspace::repo_digest_key(repo, d), &[])?;
        t.repos.insert(keyspace::repo_key(repo), &[])?;
        Ok(())
    }

    /// Repository names, as `name_of` spells them, sorted, after `last`, at most `n`.
    pub fn catalog(
        &self,
        name_of: impl Fn(&Repository) -> String,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for kv in self.inner.trees.repos.iter() {
            let (k, _) = kv?;
            let text = String::from_utf8_lossy(&k);
            if let Ok(r) = Repository::parse_normalized(&text, site_core::reference::DOCKER_HUB) {
                names.push(name_of(&r));
            }
        }
        names.sort();
        Ok(names
            .into_iter()
            .filter(|name| last.is_none_or(|l| name.as_str() > l))
            .take(n)
            .collect())
    }

    /// Whether `repo` holds any content.
    pub fn repo_exists(&self, repo: &Repository) -> Result<bool> {
        Ok(self
            .inner
            .trees
            .repos
            .contains_key(keyspace::repo_key(repo))?)
    }

    /// Makes every metadata change so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.inner.db.flush_async().await?;
        Ok(())
    }
}
