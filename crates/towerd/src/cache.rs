//! The tower's blob cache: each blob a rollout needs is pulled from its upstream once,
//! verified, and kept in the data directory (`cache/blobs/ALGORITHM/HEX`), and every
//! site is served from there.
//!
//! One pull per blob at a time: sites that need a blob being pulled wait for it. A pull
//! cut short keeps what arrived (`cache/partial/ALGORITHM-HEX`) and resumes from there.
//! A blob becomes visible only whole and verified: fsync, rename, fsync the directory.

use futures_util::StreamExt;
use site_core::{Digest, DigestHasher};
use site_tower::exit::Error;
use site_tower::transfer::Source;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Attempts of one pull from the upstream, the first included.
const ATTEMPTS: u32 = 4;

/// The cache in `DIR/cache`.
pub struct Cache {
    dir: PathBuf,
    pulling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What a GC pass of the cache removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Blob files removed.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Other(format!("tower cache: {what} {}: {e}", path.display()))
}

impl Cache {
    /// Opens the cache under `data`, creating its directories.
    pub fn open(data: &Path) -> Result<Cache, Error> {
        let dir = data.join("cache");
        for sub in ["blobs/sha256", "blobs/sha512", "partial"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| io("cannot create", &path, e))?;
        }
        Ok(Cache {
            dir,
            pulling: Mutex::new(HashMap::new()),
        })
    }

    /// Where a whole blob lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn partial(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("partial")
            .join(format!("{}-{}", digest.algorithm().name(), digest.hex()))
    }

    fn lock_of(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut pulling = self.pulling.lock().unwrap_or_else(|p| p.into_inner());
        pulling.entry(digest.to_string()).or_default().clone()
    }

    /// The path of the whole, verified blob; pulled from `source` first unless held.
    /// Returns whether this call pulled it.
    pub async fn ensure(
        &self,
        digest: &Digest,
        size: u64,
        source: &dyn Source,
    ) -> Result<(PathBuf, bool), Error> {
        let lock = self.lock_of(digest);
        let _pulling = lock.lock().await;
        let path = self.path(digest);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
            return Ok((path, false));
        }
        let mut pause = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            match self.pull(digest, size, source).await {
                Ok(()) => return Ok((path, true)),
                Err(e) if attempt < ATTEMPTS && source.is_transient(&e) => {
                    tracing::warn!(blob = %digest, error = %e, attempt, "pull into the cache broke; resuming");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Other(format!("{digest}: gave up")))
    }

    /// One attempt: resume the partial copy from where it stands, verify, publish.
    async fn pull(&self, digest: &Digest, size: u64, source: &dyn Source) -> Result<(), Error> {
        let partial = self.partial(digest);
        let (mut file, mut hasher, held) = resume(&partial, digest, size)?;
        let (mut stream, mut skip) = if held == size {
            (futures_util::stream::empty().boxed(), 0)
        } else {
            source.open(held).await?
        };
        let mut position = held;
        while let Some(item) = stream.next().await {
            let mut bytes = match item {
                Ok(b) => b,
                Err(e) => {
                    file.sync_data()
                        .map_err(|e| io("cannot sync", &partial, e))?;
                    return Err(source.read_error(&e));
                }
            };
            if skip > 0 {
                let drop = skip.min(bytes.len() as u64);
                skip -= drop;
                let _ = bytes.split_to(drop as usize);
            }
            position += bytes.len() as u64;
            if position > size {
                let _ = std::fs::remove_file(&partial);
                return Err(Error::Other(format!(
                    "{}: the upstream sent more than the {size} bytes of the blob",
                    source.describe()
                )));
            }
            hasher.update(&bytes);
            file.write_all(&bytes)
                .map_err(|e| io("cannot write", &partial, e))?;
        }
        if position != size {
            file.sync_data()
                .map_err(|e| io("cannot sync", &partial, e))?;
            return Err(Error::UpstreamUnreachable(format!(
                "{}: the upstream stream ended at byte {position} of {size}",
                source.describe()
            )));
        }
        let got = hasher.finish();
        if &got != digest {
            let _ = std::fs::remove_file(&partial);
            return Err(Error::Other(format!(
                "{}: the upstream sent bytes of digest {got}",
                source.describe()
            )));
        }
        file.sync_all()
            .map_err(|e| io("cannot sync", &partial, e))?;
        drop(file);
        let path = self.path(digest);
        std::fs::rename(&partial, &path).map_err(|e| io("cannot rename into", &path, e))?;
        for dir in [path.parent(), partial.parent()].into_iter().flatten() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("cannot sync", dir, e))?;
        }
        Ok(())
    }

    /// Removes every blob that is in neither `keep` nor `spare`, then blobs of `spare`,
    /// least recently written first, while the cache holds more than `max_bytes`. Blobs
    /// being pulled are left alone, and so are partial copies of kept blobs.
    pub fn gc(&self, keep: &HashSet<String>, spare: &HashSet<String>, max_bytes: u64) -> Swept {
        let busy: HashSet<String> = {
            let pulling = self.pulling.lock().unwrap_or_else(|p| p.into_inner());
            pulling
                .iter()
                .filter(|(_, l)| l.try_lock().is_err())
                .map(|(d, _)| d.clone())
                .collect()
        };
        let mut swept = Swept::default();
        let mut remove = |path: &Path, size: u64| {
            if std::fs::remove_file(path).is_ok() {
                swept.blobs += 1;
                swept.bytes += size;
            }
        };
        let mut held = 0;
        let mut spares = Vec::new();
        for (digest, path, size, modified) in self.files() {
            if busy.contains(&digest) || keep.contains(&digest) {
                held += size;
            } else if spare.contains(&digest) {
                held += size;
                spares.push((modified, path, size));
            } else {
                remove(&path, size);
            }
        }
        spares.sort();
        for (_, path, size) in spares {
            if held <= max_bytes {
                break;
            }
            remove(&path, size);
            held -= size;
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("partial")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().replacen('-', ":", 1);
                if !keep.contains(&name) && !busy.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        swept
    }

    /// Every whole blob: digest, path, size, last written.
    fn files(&self) -> Vec<(String, PathBuf, u64, std::time::SystemTime)> {
        let mut out = Vec::new();
        for algorithm in ["sha256", "sha512"] {
            let dir = self.dir.join("blobs").join(algorithm);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let digest = format!("{algorithm}:{}", entry.file_name().to_string_lossy());
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((digest, entry.path(), meta.len(), modified));
            }
        }
        out
    }
}

/// The partial copy opened for appending, its bytes hashed, and its length; a copy
/// longer than the blob starts over.
fn resume(
    path: &Path,
    digest: &Digest,
    size: u64,
) -> Result<(std::fs::File, DigestHasher, u64), Error> {
    let mut hasher = DigestHasher::for_digest(digest);
    let mut held = 0;
    if let Ok(mut file) = std::fs::File::open(path) {
        let mut buf = vec![0; 1 << 20];
        loop {
            let n =
                std::io::Read::read(&mut file, &mut buf).map_err(|e| io("cannot read", path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            held += n as u64;
        }
    }
    if held > size {
        let _ = std::fs::remove_file(path);
        hasher = DigestHasher::for_digest(digest);
        held = 0;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io("cannot open", path, e))?;
    Ok((file, hasher, held))
}
