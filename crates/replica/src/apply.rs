//! The apply side of the log: a committed entry changes the state machine, on every node
//! in log order, and then says what follows on this node (blob files to remove or fetch,
//! events to publish, the proposer to answer). A refused command changes nothing and is
//! refused alike on every node.

use crate::{Applied, Committed};
use site_core::Digest;
use site_state::{Command, Event, MemberChange, Outcome, State, StateError};

/// Applies committed entries to a node's state.
#[derive(Debug, Clone)]
pub struct Applier {
    me: u64,
    /// The state as of the last sweep: the broken variant sweeps with its counts.
    #[cfg(feature = "bug-stale-sweep")]
    stale: Option<State>,
}

impl Applier {
    /// The applier of node `me`.
    pub fn new(me: u64) -> Applier {
        Applier {
            me,
            #[cfg(feature = "bug-stale-sweep")]
            stale: None,
        }
    }

    /// Applies `c` to `state`; `has_file` says whether this node holds a blob's file.
    pub fn apply(
        &mut self,
        state: &mut State,
        c: Committed,
        has_file: impl Fn(&Digest) -> bool,
    ) -> Vec<Applied> {
        let mut effects = Vec::new();
        let (index, result, proposal) = match c {
            Committed::Empty { .. } => return effects,
            Committed::Command {
                index,
                entry,
                proposal,
            } => {
                let result = match entry {
                    Ok(entry) => self.command(state, &entry, &has_file, &mut effects),
                    Err(err) => {
                        tracing::error!(index, error = %err, "raft entry is not a command; skipped");
                        Err(StateError::Invalid(format!("undecodable entry: {err}")))
                    }
                };
                (index, result, proposal)
            }
            Committed::Members {
                index,
                change,
                proposal,
            } => {
                let result = match change {
                    Ok(change) => {
                        if let Some(change) = change {
                            self.member(state, &change, &mut effects);
                        }
                        Ok(Outcome {
                            changed: true,
                            ..Default::default()
                        })
                    }
                    Err(err) => {
                        tracing::warn!(index, error = %err, "conf change refused");
                        Err(StateError::Invalid(format!(
                            "membership change refused: {err}"
                        )))
                    }
                };
                (index, result, proposal)
            }
        };
        if let Some(id) = proposal {
            effects.push(Applied::Answer { id, result, index });
        }
        effects
    }

    fn command(
        &mut self,
        state: &mut State,
        entry: &site_state::Entry,
        has_file: &impl Fn(&Digest) -> bool,
        effects: &mut Vec<Applied>,
    ) -> Result<Outcome, StateError> {
        let outcome = state.apply(entry)?;
        if outcome.changed {
            // Where the log's clock stood, for a node that loads this state; an entry
            // that changed nothing leaves the state exactly as it was.
            state.note_time(entry.now);
        }
        match &entry.cmd {
            // Recorded without its bytes here (another node received it): fetch it.
            Command::AddBlob { digest, size, .. } if !has_file(digest) => {
                effects.push(Applied::FetchBlob {
                    digest: digest.clone(),
                    size: *size,
                });
            }
            Command::ForgetBlobs { digests } => effects.push(Applied::ForgetBlobs(digests.clone())),
            _ => {}
        }
        if let Some(report) = &outcome.sweep {
            // The state no longer holds these blobs; a crash before their files are gone
            // is completed by reconciliation at the next start.
            effects.push(Applied::ForgetBlobs(report.blobs.clone()));
            effects.push(Applied::RemoveFiles(self.swept(
                state,
                entry,
                &report.blobs,
            )));
        }
        effects.extend(outcome.events.iter().cloned().map(Applied::Publish));
        Ok(outcome)
    }

    /// The blob files a sweep removes: the ones its report names.
    #[cfg(not(feature = "bug-stale-sweep"))]
    fn swept(&mut self, _: &State, _: &site_state::Entry, blobs: &[Digest]) -> Vec<Digest> {
        blobs.to_vec()
    }

    /// The broken variant: the files a sweep would remove by the counts of the last
    /// sweep's state.
    #[cfg(feature = "bug-stale-sweep")]
    fn swept(&mut self, state: &State, entry: &site_state::Entry, blobs: &[Digest]) -> Vec<Digest> {
        let mut removed = blobs.to_vec();
        if let Some(mut stale) = self.stale.take() {
            if let Ok(o) = stale.apply(entry) {
                removed.extend(o.sweep.map(|r| r.blobs).unwrap_or_default());
            }
        }
        self.stale = Some(state.clone());
        removed.sort();
        removed.dedup();
        removed
    }

    fn member(&self, state: &mut State, change: &MemberChange, effects: &mut Vec<Applied>) {
        let (id, address) = match change {
            MemberChange::Add { id, address } => (*id, Some(address.clone())),
            MemberChange::Remove { id } => (*id, None),
        };
        tracing::info!(change = ?change, "site membership changed");
        state.record_node(id, address.as_deref());
        if id != self.me {
            effects.push(Applied::SetPeer {
                id,
                address: address.clone(),
            });
        }
        effects.push(Applied::Publish(match address {
            Some(address) => Event::NodeJoined { node: id, address },
            None => Event::NodeLeft { node: id },
        }));
    }
}

#[cfg(test)]
#[path = "apply_test.rs"]
mod tests;
