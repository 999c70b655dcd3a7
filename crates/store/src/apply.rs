//! The apply side of the log on this node: the core's [`Applier`] changes the state
//! machine for each committed entry, in log order, and the effects it returns reach this
//! node's disk (blob files of a sweep removed), its fetches (blobs recorded elsewhere),
//! its transport (members) and its watchers (events).

use crate::{Result, Store};
use site_replica::{Applier, Committed, Effect};
use site_state::State;

impl Store {
    /// Applies one committed entry to the state; returns what follows.
    pub(crate) fn apply_committed(&self, applier: &mut Applier, c: Committed) -> Vec<Effect> {
        let mut state = self.inner.state.write().expect("state lock");
        applier.apply(&mut state, c, |d| self.has_blob_file(d))
    }

    /// Carries out an effect of applying an entry.
    pub(crate) async fn carry_out(&self, effect: Effect) -> Result<()> {
        match effect {
            Effect::Publish(event) => {
                self.inner.counters.count(&event);
                self.publish(event)
            }
            Effect::FetchBlob { digest, size } => self.note_missing(&digest, size),
            Effect::ForgetBlobs(digests) => self.forget_missing(&digests),
            Effect::RemoveFiles(blobs) => {
                // A crash before these files are gone is completed by reconciliation at
                // the next start.
                let files = self.inner.files.clone();
                crate::files::blocking(move || blobs.iter().try_for_each(|d| files.remove(d)))
                    .await?;
            }
            Effect::SetPeer { id, address } => {
                if let Some(c) = self.inner.cluster.get() {
                    c.transport.set_peer(id, address.as_deref());
                }
            }
            other => {
                tracing::error!(effect = ?other, "an effect the apply side does not carry out")
            }
        }
        Ok(())
    }

    /// Replaces the state machine with a snapshot's.
    pub(crate) fn load_snapshot(&self, data: &[u8]) -> Result<()> {
        let state = decode_state(data)?;
        self.inner.clock.observe(state.time());
        *self.inner.state.write().expect("state lock") = state;
        self.sync_peers();
        self.rescan_missing();
        Ok(())
    }

    /// The state machine's bytes, for a snapshot.
    pub(crate) fn state_bytes(&self) -> Vec<u8> {
        encode_state(&self.inner.state.read().expect("state lock"))
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
