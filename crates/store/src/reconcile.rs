//! Start-up reconciliation: after a crash, make the metadata and the files agree so that
//! nothing partial is ever served.
//!
//! - upload files without a session record, and records without a file, are removed;
//!   sessions idle past the upload TTL are dropped;
//! - a blob file without a record was verified and renamed into place just before the
//!   crash: it is adopted (its name is its digest, checked before the rename);
//! - a blob record without its whole file is dropped with its repository links;
//! - a manifest that references a blob the node no longer holds is dropped, with its
//!   links, tags and referrer entries, so that no image is served incomplete.

use crate::keyspace::{self, ManifestRecord, UploadRecord};
use crate::{Result, Store};
use site_core::{Digest, Manifest};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

impl Store {
    pub(crate) fn reconcile(&self) -> Result<()> {
        self.reconcile_uploads()?;
        let blobs = self.reconcile_blobs()?;
        self.reconcile_manifests(&blobs)?;
        self.inner.db.flush()?;
        Ok(())
    }

    fn reconcile_uploads(&self) -> Result<()> {
        let t = &self.inner.trees;
        let dir = self.inner.uploads.dir();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let ttl = self.inner.config.upload_ttl.as_secs();
        for kv in t.uploads.iter() {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&k).into_owned();
            let expired = serde_json::from_slice::<UploadRecord>(&v)
                .map_or(true, |r| now.saturating_sub(r.started) > ttl);
            if expired || !dir.join(&id).is_file() {
                tracing::info!(upload = %id, expired, "dropping upload session");
                t.uploads.remove(&k)?;
                let _ = std::fs::remove_file(dir.join(&id));
            }
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if !t.uploads.contains_key(name.as_encoded_bytes())? {
                tracing::info!(path = %entry.path().display(), "removing leftover upload file");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Returns the blobs the node holds whole, with their sizes.
    fn reconcile_blobs(&self) -> Result<HashMap<Digest, u64>> {
        let t = &self.inner.trees;
        let on_disk: HashMap<Digest, u64> = self.inner.files.scan()?.into_iter().collect();
        let mut dropped = Vec::new();
        for kv in t.blobs.iter() {
            let (k, v) = kv?;
            let digest = Digest::parse(&String::from_utf8_lossy(&k)).ok();
            let whole = digest
                .as_ref()
                .is_some_and(|d| on_disk.get(d).copied() == keyspace::decode_size(&v));
            if !whole {
                tracing::error!(blob = %String::from_utf8_lossy(&k), "blob record without its whole file: dropping it");
                t.blobs.remove(&k)?;
                if let Some(d) = digest {
                    dropped.push(d);
                }
            }
        }
        for (d, size) in &on_disk {
            if !t.blobs.contains_key(keyspace::digest_key(d))? {
                tracing::info!(blob = %d, "adopting blob file written just before a crash");
                t.blobs
                    .insert(keyspace::digest_key(d), &keyspace::encode_size(*size))?;
            }
        }
        if !dropped.is_empty() {
            for kv in t.repo_blobs.iter() {
                let (k, _) = kv?;
                if dropped
                    .iter()
                    .any(|d| keyspace::last_part(&k) == d.as_str().as_bytes())
                {
                    t.repo_blobs.remove(&k)?;
                }
            }
            // A partly written file may be left under the digest's name: remove it.
            for d in &dropped {
                self.inner.files.remove(d)?;
            }
        }
        Ok(on_disk)
    }

    fn reconcile_manifests(&self, blobs: &HashMap<Digest, u64>) -> Result<()> {
        let t = &self.inner.trees;
        let mut broken = Vec::new();
        for kv in t.manifests.iter() {
            let (k, v) = kv?;
            let complete = ManifestRecord::decode(&v)
                .and_then(|r| Manifest::parse(&r.body, Some(&r.media_type)).ok())
                .is_some_and(|m| {
                    m.blob_references()
                        .iter()
                        .all(|d| blobs.contains_key(&d.digest))
                });
            if !complete {
                tracing::error!(manifest = %String::from_utf8_lossy(&k), "manifest incomplete on disk: dropping it");
                t.manifests.remove(&k)?;
                broken.push(k.to_vec());
            }
        }
        if broken.is_empty() {
            return Ok(());
        }
        let is_broken = |v: &[u8]| broken.iter().any(|b| b.as_slice() == v);
        for tree in [&t.repo_manifests, &t.referrers] {
            for kv in tree.iter() {
                let (k, _) = kv?;
                if is_broken(keyspace::last_part(&k)) {
                    tree.remove(&k)?;
                }
            }
        }
        for kv in t.tags.iter() {
            let (k, v) = kv?;
            if is_broken(&v) {
                t.tags.remove(&k)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{keyspace, ByteSource, ManifestRef, Store, StoreConfig, StoreError};
    use bytes::Bytes;
    use site_core::{Digest, Repository};
    use std::time::Duration;

    struct Once(Option<Bytes>);

    impl ByteSource for Once {
        async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
            self.0.take().map(Ok)
        }
    }

    fn open(dir: &std::path::Path) -> Store {
        Store::open(StoreConfig {
            data_dir: dir.to_owned(),
            max_blob_bytes: 1 << 20,
            max_manifest_bytes: 1 << 20,
            upload_ttl: Duration::from_secs(3600),
        })
        .unwrap()
    }

    async fn put_blob(store: &Store, repo: &Repository, data: &'static [u8]) -> Digest {
        let id = store.start_upload(repo).await.unwrap();
        let d = Digest::of(data);
        store
            .finish_upload(
                repo,
                &id,
                &d,
                None,
                &mut Once(Some(Bytes::from_static(data))),
            )
            .await
            .unwrap();
        d
    }

    #[tokio::test]
    async fn restart_drops_what_is_not_whole_and_adopts_what_is() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::parse_normalized("r/app", "docker.io").unwrap();
        let (config, layer, manifest) = {
            let store = open(dir.path());
            let config = put_blob(&store, &repo, b"{}").await;
            let layer = put_blob(&store, &repo, b"layer bytes").await;
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},
                "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":11}}]}}"#
            );
            let tag = ManifestRef::Tag("v1".into());
            let (manifest, _) = store
                .put_manifest(&repo, &tag, None, body.as_bytes())
                .await
                .unwrap();
            // An upload left half done.
            let id = store.start_upload(&repo).await.unwrap();
            store
                .append_upload(
                    &repo,
                    &id,
                    None,
                    &mut Once(Some(Bytes::from_static(b"half"))),
                )
                .await
                .unwrap();
            (config, layer, manifest)
        };
        // The layer's file vanishes; a verified file whose record never made it appears;
        // debris lies among the blobs and the uploads.
        let files = crate::files::BlobFiles::open(dir.path().join("blobs")).unwrap();
        std::fs::remove_file(files.path(&layer)).unwrap();
        let orphan = Digest::of(b"orphan");
        std::fs::create_dir_all(files.path(&orphan).parent().unwrap()).unwrap();
        std::fs::write(files.path(&orphan), b"orphan").unwrap();
        std::fs::write(files.path(&config).with_file_name("not-a-digest"), b"x").unwrap();
        std::fs::write(dir.path().join("uploads/leftover"), b"x").unwrap();

        let store = open(dir.path());
        assert!(matches!(
            store.get_manifest(&repo, &ManifestRef::Tag("v1".into())),
            Err(StoreError::ManifestUnknown(_))
        ));
        assert!(store
            .get_manifest(&repo, &ManifestRef::Digest(manifest))
            .is_err());
        assert!(matches!(
            store.blob_size(&repo, &layer),
            Err(StoreError::BlobUnknown(_))
        ));
        assert_eq!(store.blob_size(&repo, &config).unwrap(), 2);
        let t = &store.inner.trees;
        assert_eq!(
            t.blobs
                .get(keyspace::digest_key(&orphan))
                .unwrap()
                .as_deref(),
            Some(&6u64.to_be_bytes()[..])
        );
        assert!(!files.path(&config).with_file_name("not-a-digest").exists());
        assert!(!dir.path().join("uploads/leftover").exists());
        assert_eq!(t.uploads.len(), 1, "the half-done upload stays resumable");
    }
}
