//! The apply side of the log: a committed entry changes the state machine, and then its
//! effects reach this node's disk (blob files of a sweep removed) and its watchers
//! (events). Called by the Raft driver, in log order, on every node.

use crate::{Result, Store};
use site_state::{Command, Entry, Outcome, State, StateError};

impl Store {
    /// Applies one committed entry. A refused command changes nothing (and is refused
    /// alike on every node).
    pub(crate) async fn apply_entry(
        &self,
        entry: &Entry,
    ) -> Result<std::result::Result<Outcome, StateError>> {
        let result = self.inner.state.write().expect("state lock").apply(entry);
        let Ok(outcome) = &result else {
            return Ok(result);
        };
        match &entry.cmd {
            // Recorded without its bytes here (another node received it): fetch it.
            Command::AddBlob { digest, size, .. } if !self.has_blob_file(digest) => {
                self.note_missing(digest, *size);
            }
            Command::ForgetBlobs { digests } => self.forget_missing(digests),
            _ => {}
        }
        if let Some(report) = &outcome.sweep {
            self.forget_missing(&report.blobs);
            // The state no longer holds these blobs; a crash before their files are gone
            // is completed by reconciliation at the next start.
            let files = self.inner.files.clone();
            let blobs = report.blobs.clone();
            crate::files::blocking(move || blobs.iter().try_for_each(|d| files.remove(d))).await?;
        }
        for event in &outcome.events {
            self.publish(event.clone());
        }
        Ok(result)
    }

    /// Replaces the state machine with a snapshot's.
    pub(crate) fn load_snapshot(&self, data: &[u8]) -> Result<()> {
        let state = decode_state(data)?;
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
    serde_json::from_slice(data)
        .map_err(|e| std::io::Error::other(format!("the state snapshot is damaged: {e}")).into())
}
