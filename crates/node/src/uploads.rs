//! Upload sessions: bytes appended in order to `uploads/<id>`, hashed as they arrive,
//! and turned into a blob only when the whole content has the digest the client gave.
//!
//! Every append is all-or-nothing: if the body is cut, over the limit or out of order,
//! the file is truncated back and the running hash restored, so the session stands
//! exactly where it stood before the request.

use crate::delivery::Deliveries;
use crate::keyspace::UploadRecord;
use crate::sessions::Live;
use crate::sessions::Sessions;
use crate::ByteSource;
use crate::{now_secs, NodeError, Result};
use site_core::{Digest, DigestHasher, Repository};
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Session ids are 32 random hex characters: never a path component but themselves.
fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// OCI upload sessions. Cheap to clone.
#[derive(Clone)]
pub struct Uploads {
    pub(crate) sessions: Sessions,
    /// The sessions' records.
    pub(crate) tree: sled::Tree,
    /// The database the records are flushed in.
    pub(crate) db: sled::Db,
    /// Where a finished upload is committed.
    pub(crate) deliveries: Deliveries,
    /// Largest blob accepted, in bytes.
    pub(crate) max_blob_bytes: u64,
    /// Sessions idle longer than this are dropped.
    pub(crate) ttl: std::time::Duration,
}

impl Uploads {
    /// Opens an upload session for `repo` and returns its id.
    pub async fn start_upload(&self, repo: &Repository) -> Result<String> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
        let id = hex::encode(raw);
        tokio::fs::File::create(self.sessions.path(&id)).await?;
        let record = UploadRecord {
            repo: repo.to_string(),
            started: now_secs(),
        };
        let value = serde_json::to_vec(&record).expect("upload record serialises");
        self.tree.insert(id.as_bytes(), value)?;
        // The client is told the session exists: it must survive a crash.
        self.db.flush_async().await?;
        Ok(id)
    }

    /// Bytes received so far by session `id` of `repo`.
    pub async fn upload_offset(&self, repo: &Repository, id: &str) -> Result<u64> {
        self.check_session(repo, id)?;
        let slot = self.sessions.slot(id);
        let mut live = slot.lock().await;
        // Cancelled, finished or expired while this request waited for the session.
        self.check_session(repo, id)?;
        Ok(self.sessions.hasher(id, &mut live, None).await?.len())
    }

    /// Appends a chunk. `start`, when the client gave a `Content-Range`, must equal the
    /// current offset. Returns the new offset.
    pub async fn append_upload(
        &self,
        repo: &Repository,
        id: &str,
        start: Option<u64>,
        body: &mut impl ByteSource,
    ) -> Result<u64> {
        self.check_session(repo, id)?;
        let slot = self.sessions.slot(id);
        let mut live = slot.lock().await;
        // Cancelled, finished or expired while this request waited for the session.
        self.check_session(repo, id)?;
        let before = self.sessions.hasher(id, &mut live, None).await?.clone();
        if let Some(start) = start {
            if start != before.len() {
                return Err(NodeError::RangeInvalid {
                    start,
                    offset: before.len(),
                });
            }
        }
        let path = self.sessions.path(id);
        match self.write_chunk(&path, before.clone(), body).await {
            Ok(after) => {
                let offset = after.len();
                live.set_hasher(after);
                Ok(offset)
            }
            Err(e) => {
                // Put the session back exactly where it stood.
                live.rewind(&path, before).await?;
                Err(e)
            }
        }
    }

    async fn write_chunk(
        &self,
        path: &Path,
        mut hasher: DigestHasher,
        body: &mut impl ByteSource,
    ) -> Result<DigestHasher> {
        let max = self.max_blob_bytes;
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .await?;
        let result = async {
            while let Some(chunk) = body.next_chunk().await {
                let chunk = chunk.map_err(NodeError::Interrupted)?;
                if hasher.len() + chunk.len() as u64 > max {
                    return Err(NodeError::SizeInvalid(format!(
                        "blob larger than the limit of {max} bytes"
                    )));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            Ok(())
        }
        .await;
        // Always wait for writes in flight, so a rollback truncation comes after them.
        let flushed = file.flush().await;
        result?;
        flushed?;
        Ok(hasher)
    }

    /// Appends the last chunk (possibly empty) and, if the whole content has digest
    /// `expected`, makes it a durable blob linked into `repo`. On a digest mismatch the
    /// session is discarded and nothing is stored.
    pub async fn finish_upload(
        &self,
        repo: &Repository,
        id: &str,
        expected: &Digest,
        start: Option<u64>,
        body: &mut impl ByteSource,
    ) -> Result<u64> {
        self.append_upload(repo, id, start, body).await?;
        let slot = self.sessions.slot(id);
        let mut live = slot.lock().await;
        // The session may have been finished or cancelled while we waited for the lock.
        self.check_session(repo, id)?;
        let hasher = self
            .sessions
            .hasher(id, &mut live, Some(expected.algorithm()))
            .await?
            .clone();
        let size = hasher.len();
        let actual = hasher.finish();
        let path = self.sessions.path(id);
        if actual != *expected {
            self.drop_session(id, &mut live).await?;
            return Err(NodeError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let sync_path = path.clone();
        crate::file_io::blocking(move || std::fs::File::open(sync_path)?.sync_all()).await?;
        self.deliveries
            .commit_blob(path, &actual, size, Some(repo))
            .await?;
        self.tree.remove(id.as_bytes())?;
        live.forget_hasher();
        self.sessions.forget(id);
        self.db.flush_async().await?;
        Ok(size)
    }

    /// Cancels session `id`, dropping its bytes.
    pub async fn cancel_upload(&self, repo: &Repository, id: &str) -> Result<()> {
        self.check_session(repo, id)?;
        let slot = self.sessions.slot(id);
        let mut live = slot.lock().await;
        self.check_session(repo, id)?;
        self.drop_session(id, &mut live).await
    }

    async fn drop_session(&self, id: &str, live: &mut Live) -> Result<()> {
        self.tree.remove(id.as_bytes())?;
        live.forget_hasher();
        self.sessions.forget(id);
        match tokio::fs::remove_file(self.sessions.path(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Drops upload sessions, and partial tower uploads, idle longer than the upload TTL
    /// (idle: since the later of the session's start and its last written byte). A
    /// session with a request in progress is left alone. Returns how many were dropped.
    pub async fn expire_uploads(&self) -> Result<usize> {
        let dir = self.sessions.dir().to_owned();
        let mut stale = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let started = serde_json::from_slice::<UploadRecord>(&v).map_or(0, |r| r.started);
            let id = String::from_utf8_lossy(&k).into_owned();
            if self.idle_past_ttl(started, &dir.join(&id)) {
                stale.push(id);
            }
        }
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with("tower-") && self.idle_past_ttl(0, &dir.join(&name)) {
                stale.push(name);
            }
        }
        let mut dropped = 0;
        for id in stale {
            let slot = self.sessions.slot(&id);
            let Ok(mut live) = slot.try_lock() else {
                continue;
            };
            // Look again under the lock: a request may have just written to it.
            let started = match self.tree.get(id.as_bytes())? {
                Some(v) => serde_json::from_slice::<UploadRecord>(&v).map_or(0, |r| r.started),
                None if id.starts_with("tower-") => 0,
                None => continue,
            };
            if !self.idle_past_ttl(started, &dir.join(&id)) {
                continue;
            }
            tracing::info!(upload = %id, "dropping upload idle past the upload TTL");
            self.drop_session(&id, &mut live).await?;
            dropped += 1;
        }
        if dropped > 0 {
            self.db.flush_async().await?;
        }
        Ok(dropped)
    }

    /// Whether an upload started at `started` with its bytes in `path` has been idle
    /// for longer than the upload TTL (see [`crate::file_ops::idle_past`]).
    pub(crate) fn idle_past_ttl(&self, started: u64, path: &Path) -> bool {
        crate::file_ops::idle_past(self.ttl, started, path)
    }

    fn check_session(&self, repo: &Repository, id: &str) -> Result<()> {
        let unknown = || NodeError::UploadUnknown(id.chars().take(64).collect());
        if !valid_id(id) {
            return Err(unknown());
        }
        let value = self.tree.get(id.as_bytes())?.ok_or_else(unknown)?;
        let record: UploadRecord = serde_json::from_slice(&value).map_err(|_| unknown())?;
        if record.repo != repo.to_string() {
            return Err(unknown());
        }
        Ok(())
    }

    /// Makes the upload files agree with their records (at open, before anything runs).
    pub(crate) fn reconcile(&self) -> Result<()> {
        let t = &self.tree;
        let dir = self.sessions.dir();
        for kv in t.iter() {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&k).into_owned();
            let expired = serde_json::from_slice::<UploadRecord>(&v)
                .map_or(true, |r| self.idle_past_ttl(r.started, &dir.join(&id)));
            if expired || !dir.join(&id).is_file() {
                tracing::info!(upload = %id, expired, "dropping upload session");
                t.remove(&k)?;
                let _ = std::fs::remove_file(dir.join(&id));
            }
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let tower = name
                .to_str()
                .and_then(crate::sessions::tower_file_digest)
                .is_some();
            if !tower && !t.contains_key(name.as_encoded_bytes())? {
                tracing::info!(path = %entry.path().display(), "removing leftover upload file");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "uploads_test.rs"]
mod tests;
