//! The apply side of the log on this node: the core's [`Applier`] changes the state
//! machine for each committed entry, in log order, and the effects it returns reach this
//! node's disk (blob files of a sweep removed), its fetches (blobs recorded elsewhere),
//! its transport (members) and its watchers (events).

use crate::{Result, Store};
use site_core::Digest;
use site_replica::{Applied, Applier, Committed};
use site_state::Event;
use site_state::State;

impl Store {
    /// Applies one committed entry to the state; returns what follows.
    pub(crate) fn apply_committed(&self, applier: &mut Applier, c: Committed) -> Vec<Applied> {
        let mut state = self.inner.state.write();
        applier.apply(&mut state, c, |d| self.inner.files.has(d))
    }

    /// Tells watchers what an applied entry did (and counts it for `/metrics`).
    pub(crate) fn announce(&self, event: Event) {
        self.inner.counters.count(&event);
        self.publish(event)
    }

    /// Removes the files of blobs a sweep dropped from the state. A crash before they
    /// are gone is completed by reconciliation at the next start.
    pub(crate) async fn remove_files(&self, blobs: Vec<Digest>) -> Result<()> {
        Ok(self.inner.files.remove_all(blobs).await?)
    }

    /// Node `id` is reachable at `address` (`None`: no longer a peer).
    pub(crate) fn set_peer(&self, id: u64, address: Option<&str>) {
        self.inner.cluster.transport.set_peer(id, address);
    }

    /// Replaces the state machine with a snapshot's.
    pub(crate) fn load_snapshot(&self, data: &[u8]) -> Result<()> {
        let state = decode_state(data)?;
        self.inner.clock.observe(state.time());
        *self.inner.state.write() = state;
        self.sync_peers();
        self.rescan_missing();
        Ok(())
    }

    /// Hands the driver the state as applied up to `index`, for the snapshot it writes.
    pub(crate) fn snapshot_taken(
        &self,
        index: u64,
        term: u64,
        conf_state: raft::eraftpb::ConfState,
        data: Vec<u8>,
    ) {
        let _ = self.inner.inputs.send(crate::channels::Input::Snapshot {
            index,
            term,
            conf_state,
            data,
        });
    }

    /// The state machine's bytes, for a snapshot.
    pub(crate) fn state_bytes(&self) -> Vec<u8> {
        self.inner.state.read(encode_state)
    }
}

/// A state machine's bytes.
pub(crate) fn encode_state(state: &State) -> Vec<u8> {
    serde_json::to_vec(state).expect("state serialises")
}

/// Reads a snapshot's state machine.
pub(crate) fn decode_state(data: &[u8]) -> Result<State> {
    State::decode(data)
        .map_err(|e| std::io::Error::other(format!("the state snapshot is damaged: {e}")).into())
}
