//! The directory operations that make a blob file durable, behind a trait: a file is
//! renamed into its shard directory and the directory synced (`files.rs`). The node's
//! file system is [`RealFs`]; the simulation gives `BlobFiles` one whose directory
//! entries, at a crash, are only those its last sync of the directory saw, so that the
//! order of renames and syncs is checked.
//!
//! File contents are written and synced by their writers (`blob_writer.rs`, a peer's
//! copy) before a file is installed; reads of blob files for clients and peers open them
//! by path (`reads.rs`, `peer_file.rs`, `scrub.rs`) on the node's file system.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

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
}
