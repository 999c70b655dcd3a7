//! A forwarded change and its answer as the typed messages of `proto/peer.proto`: the
//! replication core's `Ask` (its command or member change as `proto/entry.proto` writes
//! them, see `site-entry`) and the node's `Ordered`, both ways, so a follower's write
//! reaches the leader, and its outcome or refusal comes back, without JSON. Names travel
//! as text and are parsed again on arrival: a peer's garbage is an error, never a
//! command. The time of a command does not travel: the leader stamps its own.

use crate::peer_pb as pb;
use pb::state_refusal::Kind;
use site_core::{Digest, ManifestError};
use site_node::{Ask, Ordered};
use site_state::{Entry, Outcome, StateError, SweepReport};

fn digest(s: &str) -> Result<Digest, String> {
    Digest::parse(s).map_err(|e| format!("digest {s:?}: {e}"))
}

fn digests(v: Vec<String>) -> Result<Vec<Digest>, String> {
    v.iter().map(|s| digest(s)).collect()
}

fn texts<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(T::to_string).collect()
}

/// `ask` as sent to the leader.
pub fn ask_to_wire(ask: &Ask) -> pb::Ask {
    let change = match ask {
        Ask::Command(entry) => pb::ask::Change::Command(site_entry::command_to_wire(&entry.cmd)),
        Ask::Members(change) => pb::ask::Change::Members(site_entry::member_change_to_wire(change)),
    };
    pb::Ask {
        change: Some(change),
    }
}

/// The change a follower sent, or why it is not one.
pub fn ask_from_wire(ask: pb::Ask) -> Result<Ask, String> {
    Ok(match ask.change.ok_or("no change")? {
        pb::ask::Change::Command(c) => Ask::Command(Entry {
            now: 0,
            cmd: site_entry::command_from_wire(c)?,
        }),
        pb::ask::Change::Members(m) => Ask::Members(site_entry::member_change_from_wire(m)),
    })
}

/// The leader's answer. The outcome's events are not sent: every node publishes the
/// events of what it applies.
pub fn ordered_to_wire((result, index): &Ordered) -> pb::Ordered {
    let result = match result {
        Ok(o) => pb::ordered::Result::Outcome(pb::Outcome {
            digest: o.digest.as_ref().map(Digest::to_string),
            sweep: o.sweep.as_ref().map(|s| pb::SweepReport {
                at_ms: s.at,
                manifests: texts(&s.manifests),
                evicted: texts(&s.evicted),
                blobs: texts(&s.blobs),
                bytes_freed: s.bytes_freed,
            }),
            changed: o.changed,
        }),
        Err(e) => pb::ordered::Result::Refused(refusal(e)),
    };
    pb::Ordered {
        index: *index,
        result: Some(result),
    }
}

fn refusal(e: &StateError) -> pb::StateRefusal {
    let (kind, detail, items) = match e {
        StateError::Invalid(m) => (Kind::Invalid, m.clone(), vec![]),
        StateError::BlobUnknown(d) => (Kind::BlobUnknown, d.to_string(), vec![]),
        StateError::ManifestUnknown(m) => (Kind::ManifestUnknown, m.clone(), vec![]),
        StateError::ManifestBlobUnknown(ds) => {
            (Kind::ManifestBlobUnknown, String::new(), texts(ds))
        }
        StateError::ManifestInvalid(ManifestError::NotJson(m)) => {
            (Kind::ManifestNotJson, m.clone(), vec![])
        }
        StateError::ManifestInvalid(ManifestError::Invalid(m)) => {
            (Kind::ManifestInvalid, m.clone(), vec![])
        }
        StateError::ManifestInvalid(ManifestError::UnsupportedMediaType(m)) => {
            (Kind::ManifestUnsupportedMediaType, m.clone(), vec![])
        }
        StateError::ImagesNotReady(v) => (Kind::ImagesNotReady, String::new(), v.clone()),
        StateError::InUse(m) => (Kind::InUse, m.clone(), vec![]),
        StateError::NotFound(m) => (Kind::NotFound, m.clone(), vec![]),
    };
    pb::StateRefusal {
        kind: kind as i32,
        detail,
        items,
    }
}

/// The leader's answer as the node reads it, or why it is not one.
pub fn ordered_from_wire(o: pb::Ordered) -> Result<Ordered, String> {
    let result = match o.result.ok_or("no result")? {
        pb::ordered::Result::Outcome(out) => Ok(Outcome {
            digest: out.digest.as_deref().map(digest).transpose()?,
            sweep: out
                .sweep
                .map(|s| -> Result<SweepReport, String> {
                    Ok(SweepReport {
                        at: s.at_ms,
                        manifests: digests(s.manifests)?,
                        evicted: digests(s.evicted)?,
                        blobs: digests(s.blobs)?,
                        bytes_freed: s.bytes_freed,
                    })
                })
                .transpose()?,
            changed: out.changed,
            events: Vec::new(),
        }),
        pb::ordered::Result::Refused(r) => Err(state_error(r)?),
    };
    Ok((result, o.index))
}

fn state_error(r: pb::StateRefusal) -> Result<StateError, String> {
    let kind = Kind::try_from(r.kind).map_err(|_| format!("refusal kind {}", r.kind))?;
    Ok(match kind {
        Kind::Invalid => StateError::Invalid(r.detail),
        Kind::BlobUnknown => StateError::BlobUnknown(digest(&r.detail)?),
        Kind::ManifestUnknown => StateError::ManifestUnknown(r.detail),
        Kind::ManifestBlobUnknown => StateError::ManifestBlobUnknown(digests(r.items)?),
        Kind::ManifestNotJson => StateError::ManifestInvalid(ManifestError::NotJson(r.detail)),
        Kind::ManifestInvalid => StateError::ManifestInvalid(ManifestError::Invalid(r.detail)),
        Kind::ManifestUnsupportedMediaType => {
            StateError::ManifestInvalid(ManifestError::UnsupportedMediaType(r.detail))
        }
        Kind::ImagesNotReady => StateError::ImagesNotReady(r.items),
        Kind::InUse => StateError::InUse(r.detail),
        Kind::NotFound => StateError::NotFound(r.detail),
    })
}

#[cfg(test)]
#[path = "ask_wire_test.rs"]
mod tests;
