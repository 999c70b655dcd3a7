//! Manifests, tags and referrers of repositories, read from the applied state and
//! changed through commands.

use crate::applied_state::SiteState;
use crate::ordering::Orderer;
use crate::{NodeError, Result};
use site_core::manifest::Descriptor;
use site_core::{Digest, Manifest, Repository};
use site_state::Command;

/// How a request names a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    /// By tag.
    Tag(String),
    /// By digest.
    Digest(Digest),
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes.
    pub body: Vec<u8>,
}

/// The site's repositories: their manifests, tags, referrers and blob links, read from
/// the applied state and changed through the log. Cheap to clone.
#[derive(Clone)]
pub struct Repositories {
    pub(crate) state: SiteState,
    pub(crate) orderer: Orderer,
    /// Largest manifest accepted, in bytes.
    pub(crate) max_manifest_bytes: u64,
}

impl Repositories {
    /// The manifest `reference` names in `repo`.
    pub fn get_manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
    ) -> Result<StoredManifest> {
        self.state
            .read(|s| {
                let digest = match reference {
                    ManifestRef::Digest(d) => d,
                    ManifestRef::Tag(tag) => s.tag(repo, tag)?,
                };
                let m = s.repo_manifest(repo, digest)?;
                Some(StoredManifest {
                    digest: digest.clone(),
                    media_type: m.media_type.clone(),
                    body: m.body.as_bytes().to_vec(),
                })
            })
            .ok_or_else(|| NodeError::ManifestUnknown(display(reference)))
    }

    /// Stores a manifest pushed as `reference` with the declared `content_type`. Refused
    /// when it does not parse, when a digest reference does not match its bytes, or when
    /// it references blobs or manifests the repository lacks. Returns its digest and the
    /// parsed manifest.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Digest, Manifest)> {
        self.store_manifest(repo, reference, content_type, body, Via::Push)
            .await
    }

    /// Stores a manifest delivered by the tower: what it references need only be on the
    /// site, and is linked into `repo`.
    pub async fn deliver_manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Digest, Manifest)> {
        self.store_manifest(repo, reference, content_type, body, Via::Delivery)
            .await
    }

    /// Stores a manifest the pull-through cache fetched: as a delivery, but kept as
    /// cache (see [`site_state::Command::PutManifest`]).
    pub async fn cache_manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Digest, Manifest)> {
        self.store_manifest(repo, reference, content_type, body, Via::Cache)
            .await
    }

    async fn store_manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
        content_type: Option<&str>,
        body: &[u8],
        via: Via,
    ) -> Result<(Digest, Manifest)> {
        let max = self.max_manifest_bytes;
        if body.len() as u64 > max {
            return Err(NodeError::SizeInvalid(format!(
                "manifest larger than the limit of {max} bytes"
            )));
        }
        // Its digest in the algorithm it is asked by (sha256 by tag).
        let algorithm = match reference {
            ManifestRef::Digest(d) => d.algorithm(),
            ManifestRef::Tag(_) => site_core::Algorithm::Sha256,
        };
        let digest = Digest::of_with(algorithm, body);
        if let ManifestRef::Digest(expected) = reference {
            if *expected != digest {
                return Err(NodeError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        // Checked here too, so a refused manifest never reaches the log.
        let manifest = Manifest::parse(body, content_type)?;
        let body = String::from_utf8(body.to_vec())
            .map_err(|_| site_core::ManifestError::NotJson("manifest is not UTF-8".into()))?;
        let tag = match reference {
            ManifestRef::Tag(t) => Some(t.clone()),
            ManifestRef::Digest(_) => None,
        };
        self.orderer
            .execute(Command::PutManifest {
                repo: repo.clone(),
                body,
                digest: (algorithm != site_core::Algorithm::Sha256).then(|| digest.clone()),
                content_type: content_type.map(str::to_owned),
                tag,
                link_references: via != Via::Push,
                cached: via == Via::Cache,
            })
            .await?;
        Ok((digest, manifest))
    }

    /// Deletes manifest `d` from `repo`, with the tags that point at it. The bytes of
    /// what it referenced stay until garbage collection.
    pub async fn delete_manifest(&self, repo: &Repository, d: &Digest) -> Result<()> {
        self.orderer
            .execute(Command::DeleteManifest {
                repo: repo.clone(),
                digest: d.clone(),
            })
            .await?;
        Ok(())
    }

    /// Removes tag `tag` from `repo`.
    pub async fn delete_tag(&self, repo: &Repository, tag: &str) -> Result<()> {
        self.orderer
            .execute(Command::DeleteTag {
                repo: repo.clone(),
                tag: tag.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n`.
    pub fn tags(&self, repo: &Repository, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        Ok(self.state.read(|s| {
            s.repo(repo).map_or_else(Vec::new, |r| {
                r.tags
                    .keys()
                    .filter(|t| last.is_none_or(|l| t.as_str() > l))
                    .take(n)
                    .cloned()
                    .collect()
            })
        }))
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, filtered by
    /// artifact type when one is given.
    pub fn referrers(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut out = self.state.read(|s| s.referrers(repo, subject));
        out.retain(|d| artifact_type.is_none_or(|a| d.artifact_type.as_deref() == Some(a)));
        Ok(out)
    }

    /// Size of blob `d` if it is linked into `repo`.
    pub fn blob_size(&self, repo: &Repository, d: &Digest) -> Result<u64> {
        self.state
            .read(|s| s.repo_blob(repo, d))
            .ok_or_else(|| NodeError::BlobUnknown(d.clone()))
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
        self.orderer
            .execute(Command::LinkBlob {
                repo: repo.clone(),
                digest: d.clone(),
            })
            .await?;
        Ok(true)
    }

    /// Unlinks blob `d` from `repo`. The bytes stay until garbage collection.
    pub async fn delete_blob(&self, repo: &Repository, d: &Digest) -> Result<()> {
        self.orderer
            .execute(Command::UnlinkBlob {
                repo: repo.clone(),
                digest: d.clone(),
            })
            .await?;
        Ok(())
    }

    /// Repository names, as `name_of` spells them, sorted, after `last`, at most `n`.
    pub fn catalog(
        &self,
        name_of: impl Fn(&Repository) -> String,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .state
            .read(|s| s.repos().map(|(r, _)| name_of(r)).collect());
        names.sort();
        Ok(names
            .into_iter()
            .filter(|name| last.is_none_or(|l| name.as_str() > l))
            .take(n)
            .collect())
    }

    /// Points `tag` of `repo` at manifest `d`, which the repository holds.
    pub async fn tag(&self, repo: &Repository, tag: &str, d: &Digest) -> Result<()> {
        self.orderer
            .execute(Command::Tag {
                repo: repo.clone(),
                tag: tag.to_owned(),
                digest: d.clone(),
            })
            .await?;
        Ok(())
    }

    /// Largest manifest accepted, in bytes.
    pub fn max_manifest_bytes(&self) -> u64 {
        self.max_manifest_bytes
    }

    /// Links blob `d`, which the site holds, into `repo` (the pull-through cache's link of
    /// a blob held for another repository).
    pub async fn link_blob(&self, repo: &Repository, d: &Digest) -> Result<()> {
        self.orderer
            .execute(Command::LinkBlob {
                repo: repo.clone(),
                digest: d.clone(),
            })
            .await?;
        Ok(())
    }

    /// Whether `repo` holds any content.
    pub fn repo_exists(&self, repo: &Repository) -> Result<bool> {
        Ok(self.state.read(|s| s.repo(repo).is_some()))
    }
}

/// How a manifest arrives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// An OCI push: what it references must be in the repository.
    Push,
    /// The tower's delivery: what it references need only be on the site.
    Delivery,
    /// The pull-through cache: as a delivery, kept as cache.
    Cache,
}

fn display(r: &ManifestRef) -> String {
    match r {
        ManifestRef::Tag(t) => t.clone(),
        ManifestRef::Digest(d) => d.to_string(),
    }
}
