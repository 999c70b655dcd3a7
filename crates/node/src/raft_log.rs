//! The Raft log of the site's group: `raft::Storage` for the driver, and the writes the
//! driver makes (entries, hard state, snapshots, compaction), over a [`LogDisk`] (sled on
//! a node, a simulated disk in the simulation).
//!
//! Entries, hard state and conf state live in one tree so that one batch persists a
//! Ready atomically; [`RaftLog::persist`] batches, [`RaftLog::sync`] makes it durable
//! (the driver syncs before it sends the messages that depend on it). The snapshot (the
//! state machine's bytes and the metadata saying which index and term they stand for)
//! lives in the snapshot tree; entries up to it may be compacted away.
//!
//! Crash safety: a snapshot is written (and synced) before the entries it replaces are
//! dropped, and opening ignores entries at or below the snapshot's index, so a crash
//! between the two leaves a consistent log.

use crate::keyspace;
use crate::log_disk::{LogBatch, LogDisk, LogTree};
use crate::Result;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::sync::{Arc, RwLock};

pub use site_replica::FOUNDING_INDEX;

/// The Raft log of this node. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct RaftLog {
    inner: Arc<Inner>,
}

struct Inner {
    disk: Arc<dyn LogDisk>,
    meta: RwLock<Meta>,
}

/// What the log keeps in memory: small, read on every raft step.
#[derive(Clone, Default)]
struct Meta {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term (and conf state) of the snapshot; index 0 when there is none.
    snapshot: SnapshotMetadata,
    /// Index of the last entry (the snapshot's index when there are none after it).
    last: u64,
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M> {
    M::parse_from_bytes(bytes)
        .map_err(|e| std::io::Error::other(format!("raft {what} is damaged: {e}")).into())
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("raft messages encode")
}

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(std::io::Error::other(
        e.to_string(),
    ))))
}

impl RaftLog {
    /// Opens the log kept on `disk`.
    pub fn open(disk: Arc<dyn LogDisk>) -> Result<RaftLog> {
        let mut hard_state: HardState = match disk.get(LogTree::Raft, keyspace::RAFT_HARD_STATE)? {
            Some(v) => decode(&v, "hard state")?,
            None => HardState::default(),
        };
        let conf_state = match disk.get(LogTree::Raft, keyspace::RAFT_CONF_STATE)? {
            Some(v) => decode(&v, "conf state")?,
            None => ConfState::default(),
        };
        let snap: SnapshotMetadata = match disk.get(LogTree::Snapshot, keyspace::SNAPSHOT_META)? {
            Some(v) => decode(&v, "snapshot metadata")?,
            None => SnapshotMetadata::default(),
        };
        // A snapshot holds only committed entries; a crash between writing it and
        // writing the commit index that covers it leaves the hard state behind it.
        hard_state.commit = hard_state.commit.max(snap.index);
        // Entries a crash left below the snapshot are covered by it.
        let stale: LogBatch = disk
            .range(
                LogTree::Raft,
                &keyspace::raft_entry_key(0),
                &keyspace::raft_entry_key(snap.index + 1),
            )?
            .into_iter()
            .map(|(k, _)| (k, None))
            .collect();
        if !stale.is_empty() {
            disk.apply(LogTree::Raft, stale)?;
        }
        let last = disk
            .last_key(
                LogTree::Raft,
                &keyspace::raft_entry_key(0),
                &keyspace::RAFT_ENTRY_END,
            )?
            .and_then(|k| keyspace::decode_raft_entry_key(&k))
            .unwrap_or(snap.index);
        Ok(RaftLog {
            inner: Arc::new(Inner {
                disk,
                meta: RwLock::new(Meta {
                    hard_state,
                    conf_state,
                    snapshot: snap,
                    last,
                }),
            }),
        })
    }

    fn meta(&self) -> std::sync::RwLockReadGuard<'_, Meta> {
        self.inner.meta.read().expect("raft meta lock")
    }

    fn meta_mut(&self) -> std::sync::RwLockWriteGuard<'_, Meta> {
        self.inner.meta.write().expect("raft meta lock")
    }

    /// Whether the log has ever been given a configuration (or a snapshot).
    pub fn initialized(&self) -> bool {
        let m = self.meta();
        !m.conf_state.voters.is_empty() || m.snapshot.index > 0
    }

    /// Gives a new log its founding configuration: `voters` (every founding node is given
    /// the same), as a snapshot of the empty state machine `state` at index
    /// [`FOUNDING_INDEX`]. Entries start after it, so a node that joins later (or lost its
    /// disk) is sent a snapshot carrying the configuration rather than a log without it.
    /// Does nothing to a log already initialized, or when `voters` is empty (a joining
    /// node waits for the leader's snapshot). Durable on return.
    pub fn initialize(&self, voters: &[u64], state: &[u8]) -> Result<()> {
        if self.initialized() || voters.is_empty() {
            return Ok(());
        }
        let cs = ConfState::from((voters.to_vec(), Vec::<u64>::new()));
        let mut snap = SnapshotMetadata {
            index: FOUNDING_INDEX,
            term: FOUNDING_INDEX,
            ..Default::default()
        };
        snap.set_conf_state(cs.clone());
        let hs = HardState {
            term: FOUNDING_INDEX,
            commit: FOUNDING_INDEX,
            ..Default::default()
        };
        let disk = &self.inner.disk;
        disk.apply(
            LogTree::Snapshot,
            vec![
                (keyspace::SNAPSHOT_STATE.to_vec(), Some(state.to_vec())),
                (keyspace::SNAPSHOT_META.to_vec(), Some(encode(&snap))),
            ],
        )?;
        disk.apply(
            LogTree::Raft,
            vec![
                (keyspace::RAFT_CONF_STATE.to_vec(), Some(encode(&cs))),
                (keyspace::RAFT_HARD_STATE.to_vec(), Some(encode(&hs))),
            ],
        )?;
        disk.sync_blocking()?;
        let mut m = self.meta_mut();
        m.conf_state = cs;
        m.hard_state = hs;
        m.snapshot = snap;
        m.last = FOUNDING_INDEX;
        Ok(())
    }

    /// Writes `entries` (replacing any the log holds from the first one's index on) and
    /// `hard_state` in one batch. Not durable until [`RaftLog::sync`].
    pub fn persist(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<()> {
        let mut batch = LogBatch::new();
        let mut meta = self.meta_mut();
        if let Some(first) = entries.first() {
            assert!(
                first.index > meta.snapshot.index,
                "raft entry {} is covered by the snapshot at {}",
                first.index,
                meta.snapshot.index
            );
            assert!(
                first.index <= meta.last + 1,
                "raft entry {} leaves a gap after {}",
                first.index,
                meta.last
            );
            let new_last = entries.last().map_or(meta.last, |e| e.index);
            for index in new_last + 1..=meta.last {
                batch.push((keyspace::raft_entry_key(index).to_vec(), None));
            }
            for e in entries {
                batch.push((keyspace::raft_entry_key(e.index).to_vec(), Some(encode(e))));
            }
            meta.last = new_last;
        }
        if let Some(hs) = hard_state {
            #[cfg(not(feature = "bug-node-lost-vote"))]
            batch.push((keyspace::RAFT_HARD_STATE.to_vec(), Some(encode(hs))));
            meta.hard_state = hs.clone();
        }
        self.inner.disk.apply(LogTree::Raft, batch)?;
        Ok(())
    }

    /// Sets the commit index of the hard state (a light Ready's commit).
    pub fn set_commit(&self, commit: u64) -> Result<()> {
        let mut hs = self.meta().hard_state.clone();
        hs.commit = commit;
        self.persist(&[], Some(&hs))
    }

    /// Records a new configuration (after a conf change is applied).
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<()> {
        self.inner.disk.apply(
            LogTree::Raft,
            vec![(keyspace::RAFT_CONF_STATE.to_vec(), Some(encode(cs)))],
        )?;
        self.meta_mut().conf_state = cs.clone();
        Ok(())
    }

    /// Makes everything written so far durable.
    pub async fn sync(&self) -> Result<()> {
        Ok(self.inner.disk.sync().await?)
    }

    /// Blocking [`RaftLog::sync`].
    pub fn sync_blocking(&self) -> Result<()> {
        Ok(self.inner.disk.sync_blocking()?)
    }

    /// Saves the state machine at `index` (whose entry has `term`, the group's
    /// configuration then `conf_state`) as the snapshot, then drops the entries it covers.
    /// Durable on return.
    pub async fn save_snapshot(
        &self,
        index: u64,
        term: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<()> {
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(conf_state);
        let first = self.first();
        self.write_snapshot(&meta, &data).await?;
        let last = self.meta().last;
        let batch = (first..=index.min(last))
            .map(|i| (keyspace::raft_entry_key(i).to_vec(), None))
            .collect();
        self.inner.disk.apply(LogTree::Raft, batch)?;
        Ok(())
    }

    /// Installs a snapshot received from the leader: its data replaces the state machine's
    /// (the caller loads it), and the whole log before and at it is dropped. Durable on
    /// return.
    pub async fn install_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        let (first, last) = (self.first(), self.meta().last);
        self.write_snapshot(meta, &snapshot.data).await?;
        let mut batch: LogBatch = (first..=last)
            .map(|i| (keyspace::raft_entry_key(i).to_vec(), None))
            .collect();
        let mut hs = self.meta().hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        batch.push((keyspace::RAFT_HARD_STATE.to_vec(), Some(encode(&hs))));
        batch.push((
            keyspace::RAFT_CONF_STATE.to_vec(),
            Some(encode(meta.get_conf_state())),
        ));
        self.inner.disk.apply(LogTree::Raft, batch)?;
        self.sync().await?;
        let mut m = self.meta_mut();
        m.hard_state = hs;
        m.conf_state = meta.get_conf_state().clone();
        m.last = meta.index;
        Ok(())
    }

    async fn write_snapshot(&self, meta: &SnapshotMetadata, data: &[u8]) -> Result<()> {
        self.inner.disk.apply(
            LogTree::Snapshot,
            vec![
                (keyspace::SNAPSHOT_STATE.to_vec(), Some(data.to_vec())),
                (keyspace::SNAPSHOT_META.to_vec(), Some(encode(meta))),
            ],
        )?;
        self.sync().await?;
        self.meta_mut().snapshot = meta.clone();
        Ok(())
    }

    /// The snapshot's state machine bytes and metadata, if there is a snapshot.
    pub fn snapshot_data(&self) -> Result<Option<(SnapshotMetadata, Vec<u8>)>> {
        let meta = self.meta().snapshot.clone();
        if meta.index == 0 {
            return Ok(None);
        }
        let data = self
            .inner
            .disk
            .get(LogTree::Snapshot, keyspace::SNAPSHOT_STATE)?
            .unwrap_or_default();
        Ok(Some((meta, data)))
    }

    /// The term of entry `index`, if the log (or its snapshot) still knows it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        raft::Storage::term(self, index).ok()
    }

    /// Whether this node started with an empty log (it is new, or its data directory was
    /// wiped) and has not yet caught up with the group: its votes count only beside
    /// enough votes of whole nodes, and it does not lead (see the replication core's
    /// `ballot.rs`). Kept on disk so that a restart halfway through catching up does not
    /// end it.
    pub fn catching_up(&self) -> Result<bool> {
        Ok(self
            .inner
            .disk
            .get(LogTree::Raft, keyspace::RAFT_CATCHING_UP)?
            .is_some())
    }

    /// Marks this node as catching up when its log holds nothing past the founding
    /// snapshot. Durable on return. Blocking.
    pub fn mark_catching_up_if_empty(&self) -> Result<()> {
        if self.meta().last > FOUNDING_INDEX || cfg!(feature = "bug-node-no-catch-up-mark") {
            return Ok(());
        }
        self.inner.disk.apply(
            LogTree::Raft,
            vec![(keyspace::RAFT_CATCHING_UP.to_vec(), Some(Vec::new()))],
        )?;
        self.sync_blocking()
    }

    /// Ends catching up: from now on this node votes. Durable on return.
    pub async fn end_catching_up(&self) -> Result<()> {
        self.inner.disk.apply(
            LogTree::Raft,
            vec![(keyspace::RAFT_CATCHING_UP.to_vec(), None)],
        )?;
        self.sync().await
    }

    /// The hard state as last persisted.
    pub fn hard_state(&self) -> HardState {
        self.meta().hard_state.clone()
    }

    /// Index of the snapshot the log starts from (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.meta().snapshot.index
    }

    /// Index of the first entry the log holds.
    fn first(&self) -> u64 {
        self.meta().snapshot.index + 1
    }

    fn entry(&self, index: u64) -> raft::Result<Entry> {
        let v = self
            .inner
            .disk
            .get(LogTree::Raft, &keyspace::raft_entry_key(index))
            .map_err(store_err)?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        Entry::parse_from_bytes(&v).map_err(store_err)
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let m = self.meta();
        Ok(RaftState::new(m.hard_state.clone(), m.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let (first, last) = {
            let m = self.meta();
            (m.snapshot.index + 1, m.last)
        };
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= last + 1,
            "entries up to {high} asked of a log ending at {last}"
        );
        let mut out = Vec::with_capacity((high - low) as usize);
        let found = self
            .inner
            .disk
            .range(
                LogTree::Raft,
                &keyspace::raft_entry_key(low),
                &keyspace::raft_entry_key(high),
            )
            .map_err(store_err)?;
        for (_, v) in found {
            out.push(Entry::parse_from_bytes(&v).map_err(store_err)?);
        }
        if out.len() as u64 != high - low {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (snap, last) = {
            let m = self.meta();
            (m.snapshot.clone(), m.last)
        };
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entry(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.meta().last)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let Some((meta, data)) = self.snapshot_data().map_err(store_err)? else {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        if meta.index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta);
        snapshot.data = data.into();
        Ok(snapshot)
    }
}

#[cfg(test)]
#[path = "raft_log_test.rs"]
mod tests;
