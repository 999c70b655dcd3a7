//! Manifests, tags and referrers of repositories.
//!
//! A manifest is stored only when everything it references is already in the
//! repository, in one sled transaction with its tag and referrer entries, and the call
//! returns only once that transaction is durable.

use crate::keyspace::{self, ManifestRecord};
use crate::{Result, Store, StoreError};
use site_core::manifest::Descriptor;
use site_core::{Digest, Manifest, Repository};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

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

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl Store {
    /// Resolves `reference` in `repo` to a digest.
    pub fn resolve_manifest(&self, repo: &Repository, reference: &ManifestRef) -> Result<Digest> {
        let t = &self.inner.trees;
        let unknown = || StoreError::ManifestUnknown(display(reference));
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(tag) => {
                let v = t
                    .tags
                    .get(keyspace::tag_key(repo, tag))?
                    .ok_or_else(unknown)?;
                Digest::parse(&String::from_utf8_lossy(&v)).map_err(|_| unknown())?
            }
        };
        if !t
            .repo_manifests
            .contains_key(keyspace::repo_digest_key(repo, &digest))?
        {
            return Err(unknown());
        }
        Ok(digest)
    }

    /// The manifest `reference` names in `repo`.
    pub fn get_manifest(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
    ) -> Result<StoredManifest> {
        let digest = self.resolve_manifest(repo, reference)?;
        let record = self
            .inner
            .trees
            .manifests
            .get(keyspace::digest_key(&digest))?
            .and_then(|v| ManifestRecord::decode(&v))
            .ok_or_else(|| StoreError::ManifestUnknown(display(reference)))?;
        Ok(StoredManifest {
            digest,
            media_type: record.media_type,
            body: record.body,
        })
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
        let max = self.inner.config.max_manifest_bytes;
        if body.len() as u64 > max {
            return Err(StoreError::SizeInvalid(format!(
                "manifest larger than the limit of {max} bytes"
            )));
        }
        let digest = Digest::of(body);
        if let ManifestRef::Digest(expected) = reference {
            if *expected != digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let manifest = Manifest::parse(body, content_type)?;
        let record = ManifestRecord {
            media_type: manifest.media_type.clone(),
            body: body.to_vec(),
        }
        .encode();
        let referrer = manifest.subject.as_ref().map(|s| {
            (
                s.digest.clone(),
                manifest.referrer_descriptor(digest.clone(), body.len() as u64),
            )
        });
        let t = &self.inner.trees;
        (
            &t.repo_blobs,
            &t.repo_manifests,
            &t.manifests,
            &t.tags,
            &t.referrers,
            &t.repos,
        )
            .transaction(
                |(repo_blobs, repo_manifests, manifests, tags, referrers, repos)| {
                    let missing = missing_references(repo, &manifest, repo_blobs, repo_manifests)?;
                    if !missing.is_empty() {
                        return Err(abort(StoreError::ManifestBlobUnknown(missing)));
                    }
                    manifests.insert(keyspace::digest_key(&digest), record.as_slice())?;
                    repo_manifests.insert(keyspace::repo_digest_key(repo, &digest), &[])?;
                    repos.insert(keyspace::repo_key(repo), &[])?;
                    if let ManifestRef::Tag(tag) = reference {
                        tags.insert(keyspace::tag_key(repo, tag), digest.as_str().as_bytes())?;
                    }
                    if let Some((subject, descriptor)) = &referrer {
                        let json = serde_json::to_vec(descriptor).expect("descriptor serialises");
                        referrers.insert(keyspace::referrer_key(repo, subject, &digest), json)?;
                    }
                    Ok(())
                },
            )?;
        self.inner.db.flush_async().await?;
        Ok((digest, manifest))
    }

    /// Deletes manifest `d` from `repo`, with the tags that point at it and its referrer
    /// entry. The bytes of what it referenced stay until garbage collection.
    pub async fn delete_manifest(&self, repo: &Repository, d: &Digest) -> Result<()> {
        let stored = self.get_manifest(repo, &ManifestRef::Digest(d.clone()))?;
        let subject = Manifest::parse(&stored.body, Some(&stored.media_type))
            .ok()
            .and_then(|m| m.subject);
        let t = &self.inner.trees;
        let tag_keys: Vec<_> = t
            .tags
            .scan_prefix(keyspace::repo_prefix(repo))
            .filter_map(|kv| kv.ok())
            .filter(|(_, v)| v.as_ref() == d.as_str().as_bytes())
            .map(|(k, _)| k)
            .collect();
        (&t.repo_manifests, &t.tags, &t.referrers).transaction(
            |(repo_manifests, tags, referrers)| {
                repo_manifests.remove(keyspace::repo_digest_key(repo, d))?;
                for k in &tag_keys {
                    tags.remove(k)?;
                }
                if let Some(s) = &subject {
                    referrers.remove(keyspace::referrer_key(repo, &s.digest, d))?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            },
        )?;
        self.inner.db.flush_async().await?;
        Ok(())
    }

    /// Removes tag `tag` from `repo`.
    pub async fn delete_tag(&self, repo: &Repository, tag: &str) -> Result<()> {
        if self
            .inner
            .trees
            .tags
            .remove(keyspace::tag_key(repo, tag))?
            .is_none()
        {
            return Err(StoreError::ManifestUnknown(tag.to_owned()));
        }
        self.inner.db.flush_async().await?;
        Ok(())
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n`.
    pub fn tags(&self, repo: &Repository, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for kv in self
            .inner
            .trees
            .tags
            .scan_prefix(keyspace::repo_prefix(repo))
        {
            let (k, _) = kv?;
            let tag = String::from_utf8_lossy(keyspace::last_part(&k)).into_owned();
            if last.is_some_and(|l| tag.as_str() <= l) {
                continue;
            }
            if out.len() == n {
                break;
            }
            out.push(tag);
        }
        Ok(out)
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, filtered by
    /// artifact type when one is given.
    pub fn referrers(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        for kv in self
            .inner
            .trees
            .referrers
            .scan_prefix(keyspace::referrers_prefix(repo, subject))
        {
            let (_, v) = kv?;
            let Ok(d) = serde_json::from_slice::<Descriptor>(&v) else {
                continue;
            };
            if artifact_type.is_none_or(|a| d.artifact_type.as_deref() == Some(a)) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

fn missing_references(
    repo: &Repository,
    manifest: &Manifest,
    repo_blobs: &TransactionalTree,
    repo_manifests: &TransactionalTree,
) -> std::result::Result<Vec<Digest>, ConflictableTransactionError<StoreError>> {
    let mut missing = Vec::new();
    for d in manifest.blob_references() {
        if repo_blobs
            .get(keyspace::repo_digest_key(repo, &d.digest))?
            .is_none()
        {
            missing.push(d.digest.clone());
        }
    }
    for d in manifest.manifest_references() {
        if repo_manifests
            .get(keyspace::repo_digest_key(repo, &d.digest))?
            .is_none()
        {
            missing.push(d.digest.clone());
        }
    }
    missing.dedup();
    Ok(missing)
}

fn display(r: &ManifestRef) -> String {
    match r {
        ManifestRef::Tag(t) => t.clone(),
        ManifestRef::Digest(d) => d.to_string(),
    }
}
