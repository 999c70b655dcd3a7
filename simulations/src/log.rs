//! A node's simulated disk: the Raft log (what is written, and what of it is synced)
//! and the blob files. A crash keeps only what was synced; a wipe keeps nothing.
//! The log answers raft-rs as the node's sled log does (`site-store`'s `raft_log.rs`):
//! a founding snapshot at index 1, entries after the snapshot, compaction behind it.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use site_core::Digest;
use site_replica::FOUNDING_INDEX;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// What a log holds at one moment.
#[derive(Clone, Default)]
pub struct Image {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub snapshot: SnapshotMetadata,
    pub state: Vec<u8>,
    /// Entries after the snapshot.
    pub entries: Vec<Entry>,
    pub catching_up: bool,
}

impl Image {
    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }
}

/// A node's disk.
#[derive(Default)]
pub struct Disk {
    /// What the node sees.
    pub live: Image,
    /// What survives a crash.
    pub synced: Image,
    /// Blob files (installed durably: written, synced, renamed).
    pub blobs: BTreeMap<Digest, Vec<u8>>,
}

/// The log as the engine reads it; the node writes through the same disk.
#[derive(Clone)]
pub struct SimLog(pub Rc<RefCell<Disk>>);

impl SimLog {
    /// Gives an empty log the founding configuration, as a founding node does.
    pub fn initialize(&self, voters: &[u64], state: Vec<u8>) {
        let mut d = self.0.borrow_mut();
        let initialized = !d.live.conf_state.voters.is_empty() || d.live.snapshot.index > 0;
        if !initialized && !voters.is_empty() {
            let cs = ConfState::from((voters.to_vec(), Vec::<u64>::new()));
            let mut meta = SnapshotMetadata {
                index: FOUNDING_INDEX,
                term: FOUNDING_INDEX,
                ..Default::default()
            };
            meta.set_conf_state(cs.clone());
            d.live.snapshot = meta;
            d.live.state = state;
            d.live.conf_state = cs;
            d.live.hard_state = HardState {
                term: FOUNDING_INDEX,
                commit: FOUNDING_INDEX,
                ..Default::default()
            };
        }
        // As the node's log opens: a snapshot holds only committed entries, and a crash
        // between writing it and the commit index that covers it leaves the hard state
        // behind it.
        d.live.hard_state.commit = d.live.hard_state.commit.max(d.live.snapshot.index);
        if d.live.last() <= FOUNDING_INDEX {
            d.live.catching_up = true;
        }
        d.synced = d.live.clone();
    }

    pub fn persist(&self, entries: &[Entry], hs: Option<&HardState>) {
        let mut d = self.0.borrow_mut();
        if let Some(first) = entries.first() {
            let keep = (first.index - d.live.snapshot.index - 1) as usize;
            d.live.entries.truncate(keep);
            d.live.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hs {
            d.live.hard_state = hs.clone();
        }
    }

    pub fn sync(&self) {
        let mut d = self.0.borrow_mut();
        d.synced = d.live.clone();
    }

    pub fn set_commit(&self, commit: u64) {
        self.0.borrow_mut().live.hard_state.commit = commit;
    }

    pub fn set_conf_state(&self, cs: &ConfState) {
        self.0.borrow_mut().live.conf_state = cs.clone();
    }

    pub fn save_snapshot(&self, index: u64, term: u64, conf_state: ConfState, state: Vec<u8>) {
        {
            let mut d = self.0.borrow_mut();
            let mut meta = SnapshotMetadata {
                index,
                term,
                ..Default::default()
            };
            meta.set_conf_state(conf_state);
            let drop = (index.min(d.live.last()) - d.live.snapshot.index) as usize;
            d.live.entries.drain(..drop);
            d.live.snapshot = meta;
            d.live.state = state;
        }
        self.sync();
    }

    pub fn install_snapshot(&self, s: &Snapshot) {
        {
            let mut d = self.0.borrow_mut();
            let meta = s.get_metadata().clone();
            d.live.entries.clear();
            d.live.hard_state.term = d.live.hard_state.term.max(meta.term);
            d.live.hard_state.commit = meta.index;
            d.live.conf_state = meta.get_conf_state().clone();
            d.live.state = s.data.to_vec();
            d.live.snapshot = meta;
        }
        self.sync();
    }

    pub fn end_catching_up(&self) {
        self.0.borrow_mut().live.catching_up = false;
        self.sync();
    }
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::Unavailable)
}

impl raft::Storage for SimLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let d = self.0.borrow();
        Ok(RaftState::new(
            d.live.hard_state.clone(),
            d.live.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let d = self.0.borrow();
        let first = d.live.snapshot.index + 1;
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > d.live.last() + 1 {
            return Err(unavailable());
        }
        let mut out = d.live.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let d = self.0.borrow();
        let snap = &d.live.snapshot;
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        d.live
            .entries
            .get((idx - snap.index - 1) as usize)
            .map(|e| e.term)
            .ok_or_else(unavailable)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().live.snapshot.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().live.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let d = self.0.borrow();
        if d.live.snapshot.index < request_index || d.live.snapshot.index == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut s = Snapshot::default();
        s.set_metadata(d.live.snapshot.clone());
        s.data = d.live.state.clone().into();
        Ok(s)
    }
}
