//! The directory operations that make a blob file durable, behind a trait: a file is
//! renamed into its shard directory and the directory synced (`files.rs`). The node's
//! file system is [`RealFs`]; the simulation gives `BlobFiles` one whose directory
//! entries, at a crash, are only those its last sync of the directory saw, so that the
//! order of renames and syncs is checked.
//!
//! A peer's copy of a blob is written and synced through it too ([`FileSystem::create`],
//! `replication.rs`; the simulation's loses at a crash the bytes of a file not synced),
//! and a copy is read back against its digest through it ([`FileSystem::hash_file`], a
//! hold's check and the scrub's). Deliveries and uploads write with `blob_writer.rs` on
//! the machine's file system; reads of blob files for clients and peers open them by
//! path (`reads.rs`, `peer_file.rs`).

use crate::blob_writer::BlobWriter;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use site_core::{Algorithm, DigestHasher};
use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A file being written: bytes appended, then synced.
pub trait NewFile: Send {
    /// Appends `chunk`.
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, io::Result<()>>;
    /// Makes every byte written durable.
    fn sync(self: Box<Self>) -> BoxFuture<'static, io::Result<()>>;
}

/// The directory operations of blob files.
pub trait FileSystem: Send + Sync + 'static {
    /// Whether `path` is a file.
    fn is_file(&self, path: &Path) -> bool;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// Creates directory `path` (its parent exists); `AlreadyExists` if it does.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Moves the file at `from` to `to`, replacing any file there.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes directory `path`'s entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Sets the file's last write to now.
    fn touch(&self, path: &Path) -> io::Result<()>;
    /// When the file was last written: milliseconds since the Unix epoch.
    fn modified_ms(&self, path: &Path) -> io::Result<u64>;
    /// The clock file times are read on: milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Creates the file at `path` (replacing one there) to be written through the
    /// writer returned.
    fn create(&self, path: &Path) -> io::Result<Box<dyn NewFile>>;
    /// The running `algorithm` hash of every byte of the file at `path`.
    fn hash_file(&self, path: &Path, algorithm: Algorithm) -> io::Result<DigestHasher>;
    /// Whether its work is done on the caller's task (it never blocks) rather than on
    /// the blocking pool.
    fn inline(&self) -> bool {
        false
    }
}

/// The machine's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn touch(&self, path: &Path) -> io::Result<()> {
        fs::File::options()
            .write(true)
            .open(path)?
            .set_modified(SystemTime::now())
    }

    fn modified_ms(&self, path: &Path) -> io::Result<u64> {
        let t = fs::metadata(path)?.modified()?;
        Ok(t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64))
    }

    fn now_ms(&self) -> u64 {
        crate::now_ms()
    }

    /// Written by a [`BlobWriter`] straight to the disk (`O_DIRECT`): a copy is most of
    /// what a copying node spends, and nobody reads it soon.
    fn create(&self, path: &Path) -> io::Result<Box<dyn NewFile>> {
        Ok(Box::new(
            BlobWriter::new(fs::File::create(path)?, 0).direct(),
        ))
    }

    fn hash_file(&self, path: &Path, algorithm: Algorithm) -> io::Result<DigestHasher> {
        crate::file_io::hash_file(path, algorithm)
    }
}

impl NewFile for BlobWriter {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(BlobWriter::write(self, chunk))
    }

    fn sync(self: Box<Self>) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(async move { BlobWriter::sync(*self).await.map(drop) })
    }
}
