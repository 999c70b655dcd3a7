//! A node's simulated disk: the keys under its Raft log (the node's own `RaftLog` runs
//! over them, as over sled on a node) and its blob files (the node's own apply task and
//! file operations change them, as `BlobFiles` on a node). A crash keeps only what was
//! synced (of the blob files: the installed ones, not the temporary files waiting to
//! be); a wipe keeps nothing; a full disk fails every sync and every temporary file.

use crate::clock::SimClock;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use site_core::{Algorithm, Digest, DigestHasher};
use site_node::file_system::{FileSystem, NewFile};
use site_node::files::BlobFiles;
use site_node::log_disk::{LogBatch, LogDisk, LogTree, Syncing};
use site_node::Clock;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Keys = [BTreeMap<Vec<u8>, Vec<u8>>; 2];

/// What the log's two trees hold: as the node sees them, and as they were at the last
/// sync.
#[derive(Default)]
struct LogKeys {
    live: Keys,
    synced: Keys,
    full: bool,
}

/// The keys under a node's Raft log.
#[derive(Default)]
pub struct SimLogDisk(Mutex<LogKeys>);

fn slot(tree: LogTree) -> usize {
    match tree {
        LogTree::Raft => 0,
        LogTree::Snapshot => 1,
    }
}

impl SimLogDisk {
    fn keys(&self) -> std::sync::MutexGuard<'_, LogKeys> {
        self.0.lock().expect("simulated disk")
    }

    /// A crash: what was not synced is gone.
    pub fn crash(&self) {
        let mut k = self.keys();
        k.live = k.synced.clone();
    }

    /// Whether syncs fail (a full or failing disk).
    pub fn set_full(&self, full: bool) {
        self.keys().full = full;
    }

    fn sync_now(&self) -> io::Result<()> {
        let mut k = self.keys();
        if k.full {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        k.synced = k.live.clone();
        Ok(())
    }
}

impl LogDisk for SimLogDisk {
    fn get(&self, tree: LogTree, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.keys().live[slot(tree)].get(key).cloned())
    }

    fn apply(&self, tree: LogTree, batch: LogBatch) -> io::Result<()> {
        let mut k = self.keys();
        let t = &mut k.live[slot(tree)];
        for (key, value) in batch {
            match value {
                Some(v) => t.insert(key, v),
                None => t.remove(&key),
            };
        }
        Ok(())
    }

    fn range(&self, tree: LogTree, from: &[u8], to: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let k = self.keys();
        Ok(k.live[slot(tree)]
            .range(from.to_vec()..to.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last_key(&self, tree: LogTree, from: &[u8], to: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let k = self.keys();
        Ok(k.live[slot(tree)]
            .range(from.to_vec()..to.to_vec())
            .next_back()
            .map(|(k, _)| k.clone()))
    }

    fn sync(&self) -> Syncing<'_> {
        let done = self.sync_now();
        Box::pin(async move { done })
    }

    fn sync_blocking(&self) -> io::Result<()> {
        self.sync_now()
    }
}

/// A node's file system under its blob files: directories whose entries, at a crash,
/// are those the last sync of the directory saw (a file renamed in and not synced after
/// is gone; one removed and not synced after is back), and files whose bytes, at a
/// crash, are those their last sync saw (a copy installed before its bytes were synced
/// comes back short or empty).
pub struct SimFs {
    state: Arc<Mutex<Tree>>,
    /// The node's clocks: a file's age is read on its wall clock, as on a node.
    clock: Arc<SimClock>,
}

#[derive(Default)]
struct Tree {
    /// Each directory's entries (name -> file id), as seen and as last synced, by the
    /// directory's path.
    dirs: BTreeMap<String, Entries>,
    /// Files by id.
    files: BTreeMap<u64, SimFile>,
    next_file: u64,
    full: bool,
    /// Files whose last entry was removed since the last look: path and bytes.
    removed: Vec<(PathBuf, Vec<u8>)>,
}

/// A file's bytes, as written and as last synced, and its last write.
struct SimFile {
    bytes: Vec<u8>,
    synced: Vec<u8>,
    modified: u64,
}

#[derive(Default, Clone)]
struct Entries {
    live: BTreeMap<String, u64>,
    synced: BTreeMap<String, u64>,
}

fn key(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn split(path: &Path) -> io::Result<(String, String)> {
    let parent = path.parent().ok_or(io::ErrorKind::InvalidInput)?;
    let name = path.file_name().ok_or(io::ErrorKind::InvalidInput)?;
    Ok((key(parent), name.to_string_lossy().into_owned()))
}

impl Tree {
    fn entry(&self, path: &Path) -> Option<u64> {
        let (dir, name) = split(path).ok()?;
        self.dirs.get(&dir)?.live.get(&name).copied()
    }

    fn dir(&mut self, dir: &str) -> io::Result<&mut Entries> {
        self.dirs
            .get_mut(dir)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    /// A new file in directory `dir`, named `name` (its number if none); its number. A
    /// full disk takes none.
    fn add(&mut self, dir: &str, name: Option<String>, file: SimFile) -> io::Result<u64> {
        if self.full {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        self.next_file += 1;
        let id = self.next_file;
        let name = name.unwrap_or_else(|| id.to_string());
        self.dir(dir)?.live.insert(name, id);
        self.files.insert(id, file);
        Ok(id)
    }

    /// Takes the entry at `path` out of its directory: the file it named.
    fn unlink(&mut self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        let id = self.dir(&dir)?.live.remove(&name);
        id.ok_or_else(|| io::ErrorKind::NotFound.into())
    }
}

impl SimFs {
    pub fn new(clock: Arc<SimClock>) -> SimFs {
        let mut tree = Tree::default();
        tree.dirs.insert("/".to_owned(), Entries::default());
        SimFs {
            state: Arc::new(Mutex::new(tree)),
            clock,
        }
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.state.lock().expect("simulated file system")
    }

    /// A crash: each directory holds what its last sync saw; files no entry names are
    /// gone.
    pub fn crash(&self) {
        let mut t = self.tree();
        for e in t.dirs.values_mut() {
            e.live = e.synced.clone();
        }
        let named: BTreeSet<u64> = t
            .dirs
            .values()
            .flat_map(|e| e.live.values().copied())
            .collect();
        t.files.retain(|id, _| named.contains(id));
        for f in t.files.values_mut() {
            f.bytes = f.synced.clone();
        }
    }

    /// Whether writes fail (a full or failing disk).
    pub fn set_full(&self, full: bool) {
        self.tree().full = full;
    }

    /// Writes and syncs a file holding `bytes` under directory `dir`, as a delivery, a
    /// hold or a fetch does before the file is installed (its directory is not synced).
    pub fn write_temp(&self, dir: &Path, bytes: Vec<u8>) -> io::Result<PathBuf> {
        let file = SimFile {
            synced: bytes.clone(),
            bytes,
            modified: self.clock.wall_ms(),
        };
        let id = self.tree().add(&key(dir), None, file)?;
        Ok(dir.join(id.to_string()))
    }

    /// The bytes of the file at `path`.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let t = self.tree();
        let id = t.entry(path)?;
        t.files.get(&id).map(|f| f.bytes.clone())
    }

    /// The bytes a crash now would leave at `path`: the entry its directory's last sync
    /// saw, with the bytes its last sync saw.
    pub fn durable(&self, path: &Path) -> Option<Vec<u8>> {
        let t = self.tree();
        let (dir, name) = split(path).ok()?;
        let id = *t.dirs.get(&dir)?.synced.get(&name)?;
        t.files.get(&id).map(|f| f.synced.clone())
    }

    /// The files under directory `root`, any depth below, by path.
    pub fn files_under(&self, root: &Path) -> Vec<PathBuf> {
        let t = self.tree();
        let root = key(root);
        t.dirs
            .iter()
            .filter(|(dir, _)| dir.starts_with(&root))
            .flat_map(|(dir, e)| {
                e.live
                    .keys()
                    .map(move |n| PathBuf::from(format!("{dir}/{n}")))
            })
            .collect()
    }

    /// Flips a bit of the file at `path`, at byte `at` (modulo its length).
    pub fn flip(&self, path: &Path, at: usize) {
        let mut t = self.tree();
        let Some(id) = t.entry(path) else { return };
        if let Some(f) = t.files.get_mut(&id) {
            let i = at % f.bytes.len().max(1);
            // The bits rot on the disk: in what a crash keeps too.
            for b in [&mut f.bytes, &mut f.synced] {
                if let Some(byte) = b.get_mut(i) {
                    *byte ^= 0x10;
                }
            }
        }
    }

    /// The files removed since the last call: path and bytes.
    pub fn take_removed(&self) -> Vec<(PathBuf, Vec<u8>)> {
        std::mem::take(&mut self.tree().removed)
    }
}

impl FileSystem for SimFs {
    fn is_file(&self, path: &Path) -> bool {
        // Directories are not entries of their parents here: an entry is a file.
        self.tree().entry(path).is_some()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.tree().dirs.contains_key(&key(path))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut t = self.tree();
        let k = key(path);
        if t.dirs.contains_key(&k) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let (parent, _) = split(path)?;
        t.dir(&parent)?;
        // A directory stays once created (its parent is synced after, as the node does).
        t.dirs.insert(k, Entries::default());
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (to_dir, to_name) = split(to)?;
        let mut t = self.tree();
        let id = t.unlink(from)?;
        t.dir(&to_dir)?.live.insert(to_name, id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut t = self.tree();
        let id = t.unlink(path)?;
        let bytes = t
            .files
            .get(&id)
            .map(|f| f.bytes.clone())
            .unwrap_or_default();
        t.removed.push((path.to_owned(), bytes));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut t = self.tree();
        let e = t.dir(&key(path))?;
        e.synced = e.live.clone();
        Ok(())
    }

    fn touch(&self, path: &Path) -> io::Result<()> {
        let now = self.clock.wall_ms();
        let mut t = self.tree();
        let id = t.entry(path).ok_or(io::ErrorKind::NotFound)?;
        if let Some(f) = t.files.get_mut(&id) {
            f.modified = now;
        }
        Ok(())
    }

    fn modified_ms(&self, path: &Path) -> io::Result<u64> {
        let t = self.tree();
        let id = t.entry(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(t.files.get(&id).map_or(0, |f| f.modified))
    }

    fn now_ms(&self) -> u64 {
        self.clock.wall_ms()
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn NewFile>> {
        let (dir, name) = split(path)?;
        let file = SimFile {
            bytes: Vec::new(),
            synced: Vec::new(),
            modified: self.clock.wall_ms(),
        };
        let id = self.tree().add(&dir, Some(name), file)?;
        Ok(Box::new(SimNewFile {
            tree: self.state.clone(),
            id,
        }))
    }

    fn hash_file(&self, path: &Path, algorithm: Algorithm) -> io::Result<DigestHasher> {
        let t = self.tree();
        let id = t.entry(path).ok_or(io::ErrorKind::NotFound)?;
        let mut hasher = DigestHasher::with(algorithm);
        hasher.update(t.files.get(&id).map_or(&[][..], |f| &f.bytes));
        Ok(hasher)
    }

    fn inline(&self) -> bool {
        true
    }
}

/// A file being written on a [`SimFs`].
struct SimNewFile {
    tree: Arc<Mutex<Tree>>,
    id: u64,
}

impl SimNewFile {
    fn with(&self, f: impl FnOnce(&mut SimFile)) -> io::Result<()> {
        let mut t = self.tree.lock().expect("simulated file system");
        if t.full {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        // A file a crash dropped meanwhile takes nothing more.
        t.files
            .get_mut(&self.id)
            .map(f)
            .ok_or(io::ErrorKind::NotFound.into())
    }
}

impl NewFile for SimNewFile {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, io::Result<()>> {
        let done = self.with(|f| f.bytes.extend_from_slice(&chunk));
        Box::pin(async move { done })
    }

    fn sync(self: Box<Self>) -> BoxFuture<'static, io::Result<()>> {
        let done = self.with(|f| f.synced = f.bytes.clone());
        Box::pin(async move { done })
    }
}

/// Where a node's blob files and temporary files live on its simulated file system.
const BLOBS: &str = "/data/blobs";
pub const UPLOADS: &str = "/data/uploads";

/// A node's blob files: the node's own `BlobFiles` over its simulated file system.
pub struct SimBlobs {
    pub fs: Arc<SimFs>,
    pub files: BlobFiles,
}

impl SimBlobs {
    fn new(clock: Arc<SimClock>) -> SimBlobs {
        let fs = Arc::new(SimFs::new(clock));
        let files = BlobFiles::open_on(PathBuf::from(BLOBS), fs.clone()).expect("blob directories");
        site_node::files::create_dir_durable_on(fs.as_ref(), Path::new(UPLOADS))
            .expect("the uploads directory");
        SimBlobs { fs, files }
    }

    /// Whether the node has the file of blob `d`.
    pub fn has(&self, d: &Digest) -> bool {
        self.files.has(d)
    }

    /// Whether a crash now would leave a good copy of blob `d`.
    pub fn durable(&self, d: &Digest) -> bool {
        self.fs
            .durable(&self.files.path(d))
            .is_some_and(|b| Digest::of(&b) == *d)
    }

    /// The bytes of blob `d`'s file.
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        self.fs.read(&self.files.path(d))
    }

    /// The blobs this node has a file of.
    pub fn digests(&self) -> BTreeSet<Digest> {
        self.fs
            .files_under(Path::new(BLOBS))
            .iter()
            .filter_map(|p| digest_of(p))
            .collect()
    }

    /// Flips a bit of blob `d`'s file, at byte `at` (modulo its length).
    pub fn flip(&self, d: &Digest, at: usize) {
        self.fs.flip(&self.files.path(d), at);
    }

    /// Writes and syncs a temporary file holding `bytes`.
    pub fn write_temp(&self, bytes: Vec<u8>) -> io::Result<PathBuf> {
        self.fs.write_temp(Path::new(UPLOADS), bytes)
    }

    /// The blob files removed since the last call, with their bytes.
    pub fn take_removed(&self) -> Vec<(Digest, Vec<u8>)> {
        self.fs
            .take_removed()
            .into_iter()
            .filter_map(|(p, b)| Some((digest_of(&p)?, b)))
            .collect()
    }
}

/// The blob a path under the blob files names (`ALGORITHM/XX/HEX`).
fn digest_of(path: &Path) -> Option<Digest> {
    let rest = path.strip_prefix(BLOBS).ok()?;
    let parts: Vec<&str> = rest.iter().filter_map(|c| c.to_str()).collect();
    match parts.as_slice() {
        [algorithm, _, hex] => Digest::parse(&format!("{algorithm}:{hex}")).ok(),
        _ => None,
    }
}

/// A node's disk.
pub struct Disk {
    /// The keys under its Raft log.
    pub log: Arc<SimLogDisk>,
    /// Its blob files.
    pub blobs: SimBlobs,
}

impl Disk {
    /// An empty disk of the node whose clocks are `clock`.
    pub fn new(clock: Arc<SimClock>) -> Disk {
        Disk {
            log: Arc::default(),
            blobs: SimBlobs::new(clock),
        }
    }

    /// A crash: what was not synced is gone.
    pub fn crash(&self) {
        self.log.crash();
        self.blobs.fs.crash();
    }

    /// Whether writes fail.
    pub fn set_full(&self, full: bool) {
        self.log.set_full(full);
        self.blobs.fs.set_full(full);
    }
}
