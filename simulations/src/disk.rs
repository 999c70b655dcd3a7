//! A node's simulated disk: the keys under its Raft log (the node's own `RaftLog` runs
//! over them, as over sled on a node) and its blob files. A crash keeps only what was
//! synced; a wipe keeps nothing; a full disk fails every sync.

use site_core::Digest;
use site_node::log_disk::{LogBatch, LogDisk, LogTree, Syncing};
use std::collections::BTreeMap;
use std::io;
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

/// A node's disk.
#[derive(Default)]
pub struct Disk {
    /// The keys under its Raft log.
    pub log: Arc<SimLogDisk>,
    /// Blob files (installed durably: written, synced, renamed).
    pub blobs: BTreeMap<Digest, Vec<u8>>,
}
