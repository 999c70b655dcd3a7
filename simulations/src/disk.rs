//! A node's simulated disk: the keys under its Raft log (the node's own `RaftLog` runs
//! over them, as over sled on a node) and its blob files (the node's own apply task and
//! file operations change them, as `BlobFiles` on a node). A crash keeps only what was
//! synced (of the blob files: the installed ones, not the temporary files waiting to
//! be); a wipe keeps nothing; a full disk fails every sync and every temporary file.

use crate::clock::SimClock;
use site_core::Digest;
use site_node::blob_disk::BlobDisk;
use site_node::log_disk::{LogBatch, LogDisk, LogTree, Syncing};
use site_node::Clock;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// A node's blob files.
pub struct SimBlobDisk {
    files: Mutex<Blobs>,
    /// The node's clocks: a file's age is read on its wall clock, as on a node.
    clock: Arc<SimClock>,
}

#[derive(Default)]
struct Blobs {
    /// Installed files: written, synced, renamed into place, the directory synced.
    installed: BTreeMap<Digest, Vec<u8>>,
    /// When each was last written (the wall clock's milliseconds).
    written: BTreeMap<Digest, u64>,
    /// Files written and synced, not yet installed.
    temps: BTreeMap<PathBuf, Vec<u8>>,
    next_temp: u64,
    full: bool,
    /// Files removed since the last look, with their bytes.
    removed: Vec<(Digest, Vec<u8>)>,
}

impl SimBlobDisk {
    pub fn new(clock: Arc<SimClock>) -> SimBlobDisk {
        SimBlobDisk {
            files: Mutex::default(),
            clock,
        }
    }

    fn blobs(&self) -> std::sync::MutexGuard<'_, Blobs> {
        self.files.lock().expect("simulated blob files")
    }

    /// A crash: the temporary files are gone.
    pub fn crash(&self) {
        self.blobs().temps.clear();
    }

    /// Whether writes fail (a full or failing disk).
    pub fn set_full(&self, full: bool) {
        self.blobs().full = full;
    }

    /// Writes and syncs a temporary file holding `bytes`, as a delivery, a hold or a
    /// fetch does before the file is installed.
    pub fn write_temp(&self, bytes: Vec<u8>) -> io::Result<PathBuf> {
        let mut b = self.blobs();
        if b.full {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        b.next_temp += 1;
        let path = PathBuf::from(format!("uploads/{}", b.next_temp));
        b.temps.insert(path.clone(), bytes);
        Ok(path)
    }

    /// The bytes of blob `d`'s file.
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        self.blobs().installed.get(d).cloned()
    }

    /// The blobs this node has a file of.
    pub fn digests(&self) -> BTreeSet<Digest> {
        self.blobs().installed.keys().cloned().collect()
    }

    /// Flips a bit of blob `d`'s file, at byte `at` (modulo its length).
    pub fn flip(&self, d: &Digest, at: usize) {
        if let Some(b) = self.blobs().installed.get_mut(d) {
            let i = at % b.len().max(1);
            if let Some(byte) = b.get_mut(i) {
                *byte ^= 0x10;
            }
        }
    }

    /// The files removed since the last call, with their bytes.
    pub fn take_removed(&self) -> Vec<(Digest, Vec<u8>)> {
        std::mem::take(&mut self.blobs().removed)
    }
}

impl BlobDisk for SimBlobDisk {
    fn has(&self, d: &Digest) -> bool {
        self.blobs().installed.contains_key(d)
    }

    fn install(&self, src: &Path, d: &Digest) -> io::Result<()> {
        let now = self.clock.wall_ms();
        let mut b = self.blobs();
        let bytes = b.temps.remove(src).ok_or(io::ErrorKind::NotFound)?;
        b.installed.insert(d.clone(), bytes);
        b.written.insert(d.clone(), now);
        Ok(())
    }

    fn discard(&self, src: &Path) -> io::Result<()> {
        self.blobs().temps.remove(src);
        Ok(())
    }

    fn remove(&self, d: &Digest) -> io::Result<()> {
        let mut b = self.blobs();
        if let Some(bytes) = b.installed.remove(d) {
            b.written.remove(d);
            b.removed.push((d.clone(), bytes));
        }
        Ok(())
    }

    fn keep(&self, d: &Digest) -> io::Result<bool> {
        let now = self.clock.wall_ms();
        let mut b = self.blobs();
        if !b.installed.contains_key(d) {
            return Ok(false);
        }
        b.written.insert(d.clone(), now);
        Ok(true)
    }

    fn idle_past(&self, d: &Digest, ttl: Duration) -> bool {
        let now = self.clock.wall_ms();
        self.blobs()
            .written
            .get(d)
            .is_none_or(|w| u128::from(now.saturating_sub(*w)) > ttl.as_millis())
    }

    fn inline(&self) -> bool {
        true
    }
}

/// A node's disk.
pub struct Disk {
    /// The keys under its Raft log.
    pub log: Arc<SimLogDisk>,
    /// Its blob files.
    pub blobs: Arc<SimBlobDisk>,
}

impl Disk {
    /// An empty disk of the node whose clocks are `clock`.
    pub fn new(clock: Arc<SimClock>) -> Disk {
        Disk {
            log: Arc::default(),
            blobs: Arc::new(SimBlobDisk::new(clock)),
        }
    }

    /// A crash: what was not synced is gone.
    pub fn crash(&self) {
        self.log.crash();
        self.blobs.crash();
    }

    /// Whether writes fail.
    pub fn set_full(&self, full: bool) {
        self.log.set_full(full);
        self.blobs.set_full(full);
    }
}
