//! A forwarded change and its answer as the typed messages of `proto/peer.proto`: the
//! replication core's `Ask` and the store's `Ordered`, both ways, so a follower's write
//! reaches the leader, and its outcome or refusal comes back, without JSON. Names travel
//! as text and are parsed again on arrival: a peer's garbage is an error, never a
//! command. The time of a command does not travel: the leader stamps its own.

use crate::peer_pb as pb;
use pb::command::Op;
use pb::state_refusal::Kind;
use site_core::reference::DOCKER_HUB;
use site_core::{Digest, ManifestError, Repository};
use site_state::{Command, Entry, ImageRef, MemberChange, Outcome, StateError, SweepReport};
use site_store::{Ask, Ordered};

fn repo(s: &str) -> Result<Repository, String> {
    Repository::parse_normalized(s, DOCKER_HUB).map_err(|e| format!("repository {s:?}: {e}"))
}

fn digest(s: &str) -> Result<Digest, String> {
    Digest::parse(s).map_err(|e| format!("digest {s:?}: {e}"))
}

fn digests(v: Vec<String>) -> Result<Vec<Digest>, String> {
    v.iter().map(|s| digest(s)).collect()
}

fn image(s: &str) -> Result<ImageRef, String> {
    ImageRef::parse(s, DOCKER_HUB).map_err(|e| format!("image {s:?}: {e}"))
}

fn texts<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(T::to_string).collect()
}

/// `ask` as sent to the leader.
pub(crate) fn ask_to_wire(ask: &Ask) -> pb::Ask {
    let change = match ask {
        Ask::Command(entry) => pb::ask::Change::Command(pb::Command {
            op: Some(op(&entry.cmd)),
        }),
        Ask::Members(MemberChange::Add { id, address }) => {
            pb::ask::Change::Members(pb::MemberChange {
                id: *id,
                address: address.clone(),
            })
        }
        Ask::Members(MemberChange::Remove { id }) => pb::ask::Change::Members(pb::MemberChange {
            id: *id,
            address: String::new(),
        }),
    };
    pb::Ask {
        change: Some(change),
    }
}

fn op(cmd: &Command) -> Op {
    let repo_blob = |repo: &Repository, d: &Digest| pb::RepoBlob {
        repository: repo.to_string(),
        digest: d.to_string(),
    };
    match cmd {
        Command::AddBlob {
            repo,
            digest,
            size,
            recorded,
        } => Op::AddBlob(pb::AddBlob {
            repository: repo.as_ref().map(Repository::to_string),
            digest: digest.to_string(),
            size: *size,
            recorded: *recorded,
        }),
        Command::LinkBlob { repo, digest } => Op::LinkBlob(repo_blob(repo, digest)),
        Command::UnlinkBlob { repo, digest } => Op::UnlinkBlob(repo_blob(repo, digest)),
        Command::PutManifest {
            repo,
            body,
            content_type,
            tag,
            link_references,
            cached,
        } => Op::PutManifest(pb::PutManifest {
            repository: repo.to_string(),
            body: body.clone(),
            content_type: content_type.clone(),
            tag: tag.clone(),
            link_references: *link_references,
            cached: *cached,
        }),
        Command::DeleteManifest { repo, digest } => Op::DeleteManifest(repo_blob(repo, digest)),
        Command::Tag { repo, tag, digest } => Op::Tag(pb::Tag {
            repository: repo.to_string(),
            tag: tag.clone(),
            digest: digest.to_string(),
        }),
        Command::DeleteTag { repo, tag } => Op::DeleteTag(pb::Tag {
            repository: repo.to_string(),
            tag: tag.clone(),
            digest: String::new(),
        }),
        Command::Schedule { app, images } => Op::Schedule(pb::Schedule {
            application: app.clone(),
            images: texts(images),
        }),
        Command::Unschedule { app } => Op::Unschedule(app.clone()),
        Command::Pin { image } => Op::Pin(image.to_string()),
        Command::Unpin { image } => Op::Unpin(image.to_string()),
        Command::Lease {
            digests,
            until,
            until_ms,
        } => Op::Lease(pb::Lease {
            digests: texts(digests),
            until_ms: until_ms.unwrap_or(until.saturating_mul(1000)),
        }),
        Command::Touch { digests } => Op::Touch(pb::Digests {
            digests: texts(digests),
        }),
        Command::Sweep {
            grace_secs,
            evict_bytes,
            cache_ttl_secs,
            grace_ms,
            cache_ttl_ms,
        } => Op::Sweep(pb::Sweep {
            grace_ms: grace_ms.unwrap_or(grace_secs.saturating_mul(1000)),
            evict_bytes: *evict_bytes,
            cache_ttl_ms: cache_ttl_ms.or(cache_ttl_secs.map(|s| s.saturating_mul(1000))),
        }),
        Command::ForgetBlobs { digests } => Op::ForgetBlobs(pb::Digests {
            digests: texts(digests),
        }),
    }
}

/// The change a follower sent, or why it is not one.
pub(crate) fn ask_from_wire(ask: pb::Ask) -> Result<Ask, String> {
    match ask.change.ok_or("no change")? {
        pb::ask::Change::Command(c) => Ok(Ask::Command(Entry {
            now: 0,
            cmd: command(c.op.ok_or("no command")?)?,
        })),
        pb::ask::Change::Members(m) if m.address.is_empty() => {
            Ok(Ask::Members(MemberChange::Remove { id: m.id }))
        }
        pb::ask::Change::Members(m) => Ok(Ask::Members(MemberChange::Add {
            id: m.id,
            address: m.address,
        })),
    }
}

fn command(op: Op) -> Result<Command, String> {
    Ok(match op {
        Op::AddBlob(b) => Command::AddBlob {
            repo: b.repository.as_deref().map(repo).transpose()?,
            digest: digest(&b.digest)?,
            size: b.size,
            recorded: b.recorded,
        },
        Op::LinkBlob(b) => Command::LinkBlob {
            repo: repo(&b.repository)?,
            digest: digest(&b.digest)?,
        },
        Op::UnlinkBlob(b) => Command::UnlinkBlob {
            repo: repo(&b.repository)?,
            digest: digest(&b.digest)?,
        },
        Op::PutManifest(m) => Command::PutManifest {
            repo: repo(&m.repository)?,
            body: m.body,
            content_type: m.content_type,
            tag: m.tag,
            link_references: m.link_references,
            cached: m.cached,
        },
        Op::DeleteManifest(b) => Command::DeleteManifest {
            repo: repo(&b.repository)?,
            digest: digest(&b.digest)?,
        },
        Op::Tag(t) => Command::Tag {
            repo: repo(&t.repository)?,
            tag: t.tag,
            digest: digest(&t.digest)?,
        },
        Op::DeleteTag(t) => Command::DeleteTag {
            repo: repo(&t.repository)?,
            tag: t.tag,
        },
        Op::Schedule(s) => Command::Schedule {
            app: s.application,
            images: s
                .images
                .iter()
                .map(|i| image(i))
                .collect::<Result<_, _>>()?,
        },
        Op::Unschedule(app) => Command::Unschedule { app },
        Op::Pin(i) => Command::Pin { image: image(&i)? },
        Op::Unpin(i) => Command::Unpin { image: image(&i)? },
        Op::Lease(l) => Command::lease(digests(l.digests)?, l.until_ms),
        Op::Touch(t) => Command::Touch {
            digests: digests(t.digests)?,
        },
        Op::Sweep(s) => Command::Sweep {
            grace_secs: s.grace_ms / 1000,
            evict_bytes: s.evict_bytes,
            cache_ttl_secs: s.cache_ttl_ms.map(|ms| ms / 1000),
            grace_ms: Some(s.grace_ms),
            cache_ttl_ms: s.cache_ttl_ms,
        },
        Op::ForgetBlobs(f) => Command::ForgetBlobs {
            digests: digests(f.digests)?,
        },
    })
}

/// The leader's answer. The outcome's events are not sent: every node publishes the
/// events of what it applies.
pub(crate) fn ordered_to_wire((result, index): &Ordered) -> pb::Ordered {
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

/// The leader's answer as the store reads it, or why it is not one.
pub(crate) fn ordered_from_wire(o: pb::Ordered) -> Result<Ordered, String> {
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
