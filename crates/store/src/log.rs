//! The local command log: every metadata change is an [`Entry`] appended to sled and made
//! durable before it is applied, so a restart replays exactly what was acknowledged.
//! Every [`SNAPSHOT_EVERY`] entries the whole state is written as a snapshot and the log
//! before it dropped.
//!
//! This is the seam where the Raft log goes: proposing an entry and applying it once
//! committed replaces `append` and the apply that follows it.

use crate::keyspace;
use crate::Result;
use site_state::{Entry, State};

/// Entries between snapshots.
pub const SNAPSHOT_EVERY: u64 = 1000;

/// The log's sled trees and its next index.
pub(crate) struct Log {
    db: sled::Db,
    log: sled::Tree,
    snapshot: sled::Tree,
    /// Index the next entry gets.
    pub(crate) next: u64,
    /// Index of the last snapshot.
    snapshot_index: u64,
}

impl Log {
    /// Opens the log and rebuilds the state: snapshot, then the entries after it.
    pub(crate) fn open(db: &sled::Db) -> Result<(Log, State)> {
        let log = db.open_tree(keyspace::LOG)?;
        let snapshot = db.open_tree(keyspace::SNAPSHOT)?;
        let snapshot_index = snapshot
            .get(keyspace::SNAPSHOT_INDEX)?
            .and_then(|v| keyspace::decode_index(&v))
            .unwrap_or(0);
        let mut state: State = match snapshot.get(keyspace::SNAPSHOT_STATE)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| {
                std::io::Error::other(format!("the state snapshot is damaged: {e}"))
            })?,
            None => State::default(),
        };
        let mut next = snapshot_index + 1;
        for kv in log.range(keyspace::log_key(next)..) {
            let (k, v) = kv?;
            let index = keyspace::decode_index(&k).unwrap_or(0);
            let entry: Entry = serde_json::from_slice(&v)
                .map_err(|e| std::io::Error::other(format!("log entry {index} is damaged: {e}")))?;
            // Refused commands were refused the first time too: same state, same result.
            let _ = state.apply(&entry);
            next = index + 1;
        }
        Ok((
            Log {
                db: db.clone(),
                log,
                snapshot,
                next,
                snapshot_index,
            },
            state,
        ))
    }

    /// Appends an entry and makes it durable. Returns its index.
    pub(crate) async fn append(&mut self, entry: &Entry) -> Result<u64> {
        let index = self.insert(entry)?;
        self.db.flush_async().await?;
        Ok(index)
    }

    /// [`Log::append`] for callers outside the runtime (opening the store). Blocking.
    pub(crate) fn append_blocking(&mut self, entry: &Entry) -> Result<u64> {
        let index = self.insert(entry)?;
        self.db.flush()?;
        Ok(index)
    }

    fn insert(&mut self, entry: &Entry) -> Result<u64> {
        let index = self.next;
        let value = serde_json::to_vec(entry).expect("entries serialise");
        self.log.insert(keyspace::log_key(index), value)?;
        self.next += 1;
        Ok(index)
    }

    /// Whether enough entries have accumulated for a snapshot.
    pub(crate) fn wants_snapshot(&self) -> bool {
        self.next - 1 - self.snapshot_index >= SNAPSHOT_EVERY
    }

    /// Writes `state` (which holds every entry so far) as the snapshot, then drops the
    /// log before it. A crash between the two leaves entries the snapshot already holds;
    /// they are skipped on open because they precede the snapshot's index.
    pub(crate) async fn snapshot(&mut self, state: &State) -> Result<()> {
        let index = self.next - 1;
        let json = serde_json::to_vec(state).expect("state serialises");
        let mut batch = sled::Batch::default();
        batch.insert(keyspace::SNAPSHOT_STATE, json);
        batch.insert(keyspace::SNAPSHOT_INDEX, &keyspace::log_key(index));
        self.snapshot.apply_batch(batch)?;
        self.db.flush_async().await?;
        let mut batch = sled::Batch::default();
        for k in self.log.range(..=keyspace::log_key(index)).keys() {
            batch.remove(k?);
        }
        self.log.apply_batch(batch)?;
        self.snapshot_index = index;
        tracing::debug!(index, "state snapshot written, log compacted");
        Ok(())
    }
}
