//! What the apply task and the blob file operations (`file_ops.rs`, `applying.rs`) do to
//! blob files, behind a trait: the node's [`BlobFiles`] on its file system, or the
//! simulation's disk (`simulations/`), which runs the same apply task and operations.

use crate::files::BlobFiles;
use site_core::Digest;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The blob files as the apply task changes them.
pub trait BlobDisk: Send + Sync + 'static {
    /// Whether this node has the file of blob `d`.
    fn has(&self, d: &Digest) -> bool;

    /// Makes the synced, verified file at `src` the blob `d`, durably.
    fn install(&self, src: &Path, d: &Digest) -> io::Result<()>;

    /// Drops the file at `src`, not needed (the site's copy stands for it).
    fn discard(&self, src: &Path) -> io::Result<()>;

    /// Removes the file of blob `d`, if any, durably.
    fn remove(&self, d: &Digest) -> io::Result<()>;

    /// Makes the age of the file of blob `d` count from now; `false`: there is none.
    fn keep(&self, d: &Digest) -> io::Result<bool>;

    /// Whether the file of blob `d` was last written longer than `ttl` ago (or is gone).
    fn idle_past(&self, d: &Digest, ttl: Duration) -> bool;

    /// Whether the work is done on the caller's task (a disk that never blocks) rather
    /// than on the blocking pool.
    fn inline(&self) -> bool {
        false
    }
}

/// Runs blob file work `f` on `disk`: on the blocking pool, or at once for a disk that
/// never blocks.
pub(crate) async fn on_disk<T: Send + 'static>(
    disk: &Arc<dyn BlobDisk>,
    f: impl FnOnce(&dyn BlobDisk) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if disk.inline() {
        return f(disk.as_ref());
    }
    let disk = disk.clone();
    crate::files::blocking(move || f(disk.as_ref())).await
}

impl BlobDisk for BlobFiles {
    fn has(&self, d: &Digest) -> bool {
        BlobFiles::has(self, d)
    }

    fn install(&self, src: &Path, d: &Digest) -> io::Result<()> {
        BlobFiles::install(self, src, d)
    }

    fn discard(&self, src: &Path) -> io::Result<()> {
        std::fs::remove_file(src)
    }

    fn remove(&self, d: &Digest) -> io::Result<()> {
        BlobFiles::remove(self, d)
    }

    fn keep(&self, d: &Digest) -> io::Result<bool> {
        match std::fs::File::options().write(true).open(self.path(d)) {
            Ok(f) => f.set_modified(std::time::SystemTime::now()).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn idle_past(&self, d: &Digest, ttl: Duration) -> bool {
        crate::file_ops::idle_past(ttl, 0, &self.path(d))
    }
}
