//! Commands both ways between site-state's [`Command`] and the `Command` message of
//! `proto/entry.proto`. Names are parsed again on the way in.

use crate::pb;
use pb::command::Op;
use site_core::{Digest, Repository};
use site_state::{Command, ImageRef};

/// A repository as the log writes it: `host/path`, the host always first.
fn repo(s: &str) -> Result<Repository, String> {
    Repository::parse_canonical(s).map_err(|e| format!("repository {s:?}: {e}"))
}

fn digest(s: &str) -> Result<Digest, String> {
    Digest::parse(s).map_err(|e| format!("digest {s:?}: {e}"))
}

fn digests(v: Vec<String>) -> Result<Vec<Digest>, String> {
    v.iter().map(|s| digest(s)).collect()
}

fn image(s: &str) -> Result<ImageRef, String> {
    ImageRef::parse_canonical(s).map_err(|e| format!("image {s:?}: {e}"))
}

fn texts<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(T::to_string).collect()
}

/// `cmd` as a message.
pub fn command_to_wire(cmd: &Command) -> pb::Command {
    pb::Command { op: Some(op(cmd)) }
}

/// The command a message says, or why it says none.
pub fn command_from_wire(c: pb::Command) -> Result<Command, String> {
    command(c.op.ok_or("no command")?)
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
            digest,
            content_type,
            tag,
            link_references,
            cached,
        } => Op::PutManifest(pb::PutManifest {
            repository: repo.to_string(),
            body: body.clone(),
            digest: digest.as_ref().map(Digest::to_string),
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
            for_ms,
        } => Op::Lease(pb::Lease {
            digests: texts(digests),
            until_ms: until_ms.unwrap_or(until.saturating_mul(1000)),
            for_ms: *for_ms,
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
            digest: m.digest.as_deref().map(digest).transpose()?,
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
        Op::Lease(l) => match l.for_ms {
            Some(d) => Command::lease_for(digests(l.digests)?, d),
            None => Command::lease(digests(l.digests)?, l.until_ms),
        },
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
