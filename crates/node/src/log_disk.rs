//! What the Raft log (`raft_log.rs`) keeps its keys in: two ordered key spaces, batches
//! applied atomically, and a sync that makes every write so far durable. sled is the
//! node's ([`SledLogDisk`]); the simulation gives the same log a disk that loses what was
//! not synced when its node crashes.
//!
//! A write is visible to reads at once and survives a crash only once a later
//! [`LogDisk::sync`] has returned; batches survive whole or not at all.

use std::future::Future;
use std::io;
use std::pin::Pin;

/// One of the log's two key spaces (`keyspace.rs` draws their keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogTree {
    /// Entries, hard state, conf state, the catching-up mark.
    Raft,
    /// The state machine's snapshot and its metadata.
    Snapshot,
}

/// Writes applied together: each key set to `Some` value, or removed (`None`).
pub type LogBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A sync under way.
pub type Syncing<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>;

/// The storage under a node's Raft log.
pub trait LogDisk: Send + Sync + 'static {
    /// The value of `key`.
    fn get(&self, tree: LogTree, key: &[u8]) -> io::Result<Option<Vec<u8>>>;

    /// Applies `batch` atomically. Not durable until [`LogDisk::sync`].
    fn apply(&self, tree: LogTree, batch: LogBatch) -> io::Result<()>;

    /// The keys and values from `from` (included) to `to` (excluded), in key order.
    fn range(&self, tree: LogTree, from: &[u8], to: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// The last key from `from` (included) to `to` (excluded).
    fn last_key(&self, tree: LogTree, from: &[u8], to: &[u8]) -> io::Result<Option<Vec<u8>>>;

    /// Makes every write so far durable.
    fn sync(&self) -> Syncing<'_>;

    /// [`LogDisk::sync`], blocking the thread.
    fn sync_blocking(&self) -> io::Result<()>;
}

/// The log in the node's sled database.
pub struct SledLogDisk {
    db: sled::Db,
    raft: sled::Tree,
    snapshot: sled::Tree,
}

impl SledLogDisk {
    /// The log's trees of `db`.
    pub fn open(db: &sled::Db) -> io::Result<SledLogDisk> {
        Ok(SledLogDisk {
            db: db.clone(),
            raft: db.open_tree(crate::keyspace::RAFT)?,
            snapshot: db.open_tree(crate::keyspace::SNAPSHOT)?,
        })
    }

    fn tree(&self, tree: LogTree) -> &sled::Tree {
        match tree {
            LogTree::Raft => &self.raft,
            LogTree::Snapshot => &self.snapshot,
        }
    }
}

impl LogDisk for SledLogDisk {
    fn get(&self, tree: LogTree, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    fn apply(&self, tree: LogTree, batch: LogBatch) -> io::Result<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        Ok(self.tree(tree).apply_batch(b)?)
    }

    fn range(&self, tree: LogTree, from: &[u8], to: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree(tree)
            .range(from..to)
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(Into::into)
            })
            .collect()
    }

    fn last_key(&self, tree: LogTree, from: &[u8], to: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.tree(tree).range(from..to).next_back() {
            Some(kv) => Ok(Some(kv?.0.to_vec())),
            None => Ok(None),
        }
    }

    fn sync(&self) -> Syncing<'_> {
        Box::pin(async move {
            self.db.flush_async().await?;
            Ok(())
        })
    }

    fn sync_blocking(&self) -> io::Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
