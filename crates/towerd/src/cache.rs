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
            let mut pulling = self.pulling.lock().unwrap_or_else(|p| p.into_inner());
            // Locks nobody holds or waits for go: the map holds only pulls under way.
            pulling.retain(|_, l| Arc::strong_count(l) > 1);
            pulling.keys().cloned().collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::future::BoxFuture;
    use site_tower::upstream::ByteStream;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A blob served from memory; the first `cuts` opens break after `cut_at` bytes.
    struct Memory {
        data: Vec<u8>,
        opens: AtomicU32,
        cuts: u32,
        cut_at: usize,
    }

    impl Source for Memory {
        fn open(&self, offset: u64) -> BoxFuture<'_, Result<(ByteStream, u64), Error>> {
            let n = self.opens.fetch_add(1, Ordering::SeqCst);
            let rest = self.data[offset as usize..].to_vec();
            let cut = (n < self.cuts).then_some(self.cut_at.saturating_sub(offset as usize));
            Box::pin(async move {
                let mut items: Vec<Result<Bytes, std::io::Error>> = Vec::new();
                match cut {
                    Some(at) => {
                        items.push(Ok(Bytes::copy_from_slice(&rest[..at.min(rest.len())])));
                        items.push(Err(std::io::Error::other("link cut")));
                    }
                    None => items.extend(rest.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c)))),
                }
                Ok((futures_util::stream::iter(items).boxed(), 0))
            })
        }

        fn is_transient(&self, e: &Error) -> bool {
            matches!(e, Error::UpstreamUnreachable(_))
        }

        fn read_error(&self, e: &std::io::Error) -> Error {
            Error::UpstreamUnreachable(e.to_string())
        }

        fn describe(&self) -> String {
            "memory".into()
        }
    }

    fn memory(data: Vec<u8>, cuts: u32, cut_at: usize) -> Memory {
        Memory {
            data,
            opens: AtomicU32::new(0),
            cuts,
            cut_at,
        }
    }

    #[tokio::test]
    async fn a_blob_is_pulled_once_for_every_caller_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let data = vec![7u8; 50_000];
        let digest = Digest::of(&data);
        let source = memory(data.clone(), 0, 0);
        let (a, b) = tokio::join!(
            cache.ensure(&digest, data.len() as u64, &source),
            cache.ensure(&digest, data.len() as u64, &source)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(source.opens.load(Ordering::SeqCst), 1, "one pull");
        assert_eq!(a.0, b.0);
        assert!(a.1 != b.1, "one of the two callers pulled it");
        assert_eq!(std::fs::read(&a.0).unwrap(), data);

        let wrong = Digest::of(b"something else");
        let e = cache.ensure(&wrong, data.len() as u64, &source).await;
        assert!(e.is_err(), "bytes of another digest are refused");
        assert!(!cache.path(&wrong).exists());
        assert!(!cache.partial(&wrong).exists(), "and not kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_pull_resumes_from_what_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::of(&data);
        let source = memory(data.clone(), 2, 30_000);
        let (path, pulled) = cache
            .ensure(&digest, data.len() as u64, &source)
            .await
            .unwrap();
        assert!(pulled);
        assert_eq!(
            source.opens.load(Ordering::SeqCst),
            3,
            "two cuts, then the rest"
        );
        assert_eq!(std::fs::read(path).unwrap(), data);
    }

    #[test]
    fn gc_keeps_running_rollouts_then_spares_while_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let put = |data: &[u8], written: u64| {
            let d = Digest::of(data);
            std::fs::write(cache.path(&d), data).unwrap();
            let when = std::time::UNIX_EPOCH + Duration::from_secs(written);
            std::fs::File::options()
                .write(true)
                .open(cache.path(&d))
                .and_then(|f| f.set_modified(when))
                .unwrap();
            d.to_string()
        };
        let kept = put(&[1u8; 1000], 1000);
        let spare_old = put(&[2u8; 1000], 2000);
        let spare_new = put(&[3u8; 1000], 3000);
        let stray = put(&[4u8; 1000], 4000);
        let keep: HashSet<String> = [kept.clone()].into();
        let spare: HashSet<String> = [spare_old.clone(), spare_new.clone()].into();
        let swept = cache.gc(&keep, &spare, 2500);
        assert_eq!(
            swept,
            Swept {
                blobs: 2,
                bytes: 2000
            }
        );
        let left: HashSet<String> = cache.files().into_iter().map(|f| f.0).collect();
        assert_eq!(
            left,
            [kept, spare_new].into(),
            "the stray and the oldest spare went"
        );
        assert!(!left.contains(&stray) && !left.contains(&spare_old));
    }
}
