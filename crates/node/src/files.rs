//! Blob bytes on disk, and the one durable way a file becomes a blob.
//!
//! ```text
//! data_dir/blobs/<algorithm>/<hex[..2]>/<hex>   complete, verified blobs (read-only once there;
//!                                             algorithm sha256 or sha512)
//! data_dir/uploads/<id>                    bytes of an upload session in progress
//! ```
//!
//! A blob appears under `blobs/` only by [`BlobFiles::install`]: the upload file is
//! fsynced and its digest verified by the caller, then renamed into place and the
//! directory fsynced. A `kill -9` at any point leaves either no blob file or a whole one.
//! The renames, removals and directory syncs go through a [`FileSystem`] (the machine's,
//! or the simulation's, which keeps at a crash only the entries a directory sync saw).

use crate::file_io::blocking;
use crate::file_system::{FileSystem, RealFs};
use site_core::{Algorithm, Digest};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Runs blob file work `f` on the blocking pool, or at once on a file system that never
/// blocks (the simulation's).
pub(crate) async fn on_disk<T: Send + 'static>(
    files: &BlobFiles,
    f: impl FnOnce(&BlobFiles) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if files.fs.inline() {
        return f(files);
    }
    let files = files.clone();
    blocking(move || f(&files)).await
}

/// The directory tree of blob files.
#[derive(Clone)]
pub struct BlobFiles {
    root: PathBuf,
    fs: Arc<dyn FileSystem>,
}

impl BlobFiles {
    /// Blob files under `root` (`data_dir/blobs`) on the machine's file system, created
    /// if missing.
    pub fn open(root: PathBuf) -> io::Result<BlobFiles> {
        BlobFiles::open_on(root, Arc::new(RealFs))
    }

    /// Blob files under `root` on `fs`, created if missing.
    pub fn open_on(root: PathBuf, fs: Arc<dyn FileSystem>) -> io::Result<BlobFiles> {
        for a in Algorithm::ALL {
            create_dir_durable_on(fs.as_ref(), &root.join(a.name()))?;
        }
        Ok(BlobFiles { root, fs })
    }

    /// The file system they are on.
    pub fn file_system(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// Where the blob of `d` lives: `ALGORITHM/XX/HEX`.
    pub fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join(d.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// Whether this node has the file of blob `d`.
    pub fn has(&self, d: &Digest) -> bool {
        self.fs.is_file(&self.path(d))
    }

    /// Opens the file of blob `d`; `None` if there is none. Opened on the caller's
    /// thread: an open of a blob file is a lookup in a directory the node keeps using,
    /// cheaper than a hand-off to the blocking pool.
    pub fn open_blob(&self, d: &Digest) -> io::Result<Option<fs::File>> {
        match fs::File::open(self.path(d)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the files of `blobs` (each fsynced away) on the blocking pool.
    pub async fn remove_all(&self, blobs: Vec<Digest>) -> io::Result<()> {
        let files = self.clone();
        blocking(move || blobs.iter().try_for_each(|d| files.remove(d))).await
    }

    /// Makes the fsynced, verified file at `src` the blob `d`. Blocking.
    pub fn install(&self, src: &Path, d: &Digest) -> io::Result<()> {
        let dst = self.path(d);
        let shard = dst.parent().expect("blob path has a shard directory");
        create_dir_durable_on(self.fs.as_ref(), shard)?;
        self.fs.rename(src, &dst)?;
        if cfg!(feature = "bug-node-no-dir-sync") {
            return Ok(());
        }
        self.fs.sync_dir(shard)
    }

    /// Drops the file at `src`, not needed (the site's copy stands for it). Blocking.
    pub fn discard(&self, src: &Path) -> io::Result<()> {
        self.fs.remove_file(src)
    }

    /// Removes the blob file of `d`, if any. Blocking.
    pub fn remove(&self, d: &Digest) -> io::Result<()> {
        let path = self.path(d);
        match self.fs.remove_file(&path) {
            Ok(()) => self.fs.sync_dir(path.parent().expect("shard")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes the age of the file of blob `d` count from now; `false`: there is none.
    /// Blocking.
    pub fn keep(&self, d: &Digest) -> io::Result<bool> {
        match self.fs.touch(&self.path(d)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the file of blob `d` was last written longer than `ttl` ago (to the
    /// millisecond), or is gone.
    pub fn idle_past(&self, d: &Digest, ttl: Duration) -> bool {
        let written = self.fs.modified_ms(&self.path(d)).unwrap_or(0);
        u128::from(self.fs.now_ms().saturating_sub(written)) > ttl.as_millis()
    }

    /// Every blob file with its size. Files whose name is not a digest are removed (they
    /// can only be debris). Blocking.
    pub fn scan(&self) -> io::Result<Vec<(Digest, u64)>> {
        let mut found = Vec::new();
        for a in Algorithm::ALL {
            self.scan_algorithm(a, &mut found)?;
        }
        Ok(found)
    }

    fn scan_algorithm(&self, a: Algorithm, found: &mut Vec<(Digest, u64)>) -> io::Result<()> {
        for shard in fs::read_dir(self.root.join(a.name()))? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                fs::remove_file(shard.path())?;
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let digest = name
                    .to_str()
                    .and_then(|n| Digest::parse(&format!("{}:{n}", a.name())).ok())
                    .filter(|d| d.hex()[..2] == *shard.file_name());
                match digest {
                    Some(d) if entry.file_type()?.is_file() => {
                        found.push((d, entry.metadata()?.len()));
                    }
                    _ => {
                        tracing::warn!(path = %entry.path().display(), "removing stray file among blobs");
                        fs::remove_file(entry.path())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    create_dir_durable_on(&RealFs, dir)
}

/// [`create_dir_durable`] on `fs`.
pub fn create_dir_durable_on(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    if fs.is_dir(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_durable_on(fs, parent)?;
        }
    }
    match fs.create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => fs.sync_dir(p),
        _ => Ok(()),
    }
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Space on the data disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of the blobs the site holds.
    pub blob_bytes: u64,
    /// Capacity of the file system.
    pub capacity: u64,
    /// Bytes available to this process on it.
    pub free: u64,
}

/// Reads the capacity and free space of the file system holding `dir`.
pub fn disk_usage(dir: &Path, blob_bytes: u64) -> io::Result<DiskUsage> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("data directory path contains a NUL byte"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a valid out-pointer for the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(DiskUsage {
        blob_bytes,
        capacity: st.f_blocks as u64 * frsize,
        free: st.f_bavail as u64 * frsize,
    })
}
