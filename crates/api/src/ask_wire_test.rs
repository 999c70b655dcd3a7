use super::*;
use prost::Message;
use site_core::reference::DOCKER_HUB;
use site_core::Repository;
use site_entry::pb as entry_pb;
use site_state::{Command, MemberChange, SweepRules};

fn d(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

fn r(s: &str) -> Repository {
    Repository::parse_normalized(s, DOCKER_HUB).unwrap()
}

/// A few commands: every command's own conversion is `site-entry`'s to test.
fn some_commands() -> Vec<Command> {
    vec![
        Command::AddBlob {
            repo: Some(r("team/app")),
            digest: d("a"),
            size: 7,
            recorded: true,
        },
        Command::Unschedule { app: "pos".into() },
        Command::sweep(&SweepRules {
            grace_ms: 1500,
            cache_ttl_ms: 3_600_000,
            evict_bytes: 99,
        }),
    ]
}

/// Through the wire: encoded and decoded as bytes too, as the peer sees them.
fn across(ask: &Ask) -> Ask {
    let bytes = ask_to_wire(ask).encode_to_vec();
    ask_from_wire(pb::Ask::decode(bytes.as_slice()).unwrap()).unwrap()
}

#[test]
fn every_command_crosses_unchanged_but_for_its_time() {
    for cmd in some_commands() {
        let ask = Ask::Command(Entry {
            now: 123,
            cmd: cmd.clone(),
        });
        let back = across(&ask);
        assert_eq!(back, Ask::Command(Entry { now: 0, cmd }), "{ask:?}");
    }
}

#[test]
fn member_changes_cross() {
    for change in [
        MemberChange::Add {
            id: 4,
            address: "10.0.0.4:50052".into(),
        },
        MemberChange::Remove { id: 2 },
    ] {
        let ask = Ask::Members(change);
        assert_eq!(across(&ask), ask);
    }
}

#[test]
fn outcomes_and_every_refusal_cross() {
    let outcome = Outcome {
        digest: Some(d("m")),
        sweep: Some(SweepReport {
            at: 5,
            manifests: vec![d("m")],
            evicted: vec![],
            blobs: vec![d("a"), d("b")],
            bytes_freed: 42,
        }),
        changed: true,
        events: vec![],
    };
    let refusals = vec![
        StateError::Invalid("empty name".into()),
        StateError::BlobUnknown(d("a")),
        StateError::ManifestUnknown("v9".into()),
        StateError::ManifestBlobUnknown(vec![d("a"), d("b")]),
        StateError::ManifestInvalid(ManifestError::NotJson("eof".into())),
        StateError::ManifestInvalid(ManifestError::Invalid("no config".into())),
        StateError::ManifestInvalid(ManifestError::UnsupportedMediaType("v1".into())),
        StateError::ImagesNotReady(vec!["a@sha256:1".into(), "b".into()]),
        StateError::InUse("pinned".into()),
        StateError::NotFound("pos".into()),
    ];
    let mut all: Vec<Ordered> = vec![(Ok(outcome), 17), (Ok(Outcome::default()), 1)];
    all.extend(refusals.into_iter().map(|e| (Err(e), 9)));
    for ordered in all {
        let bytes = ordered_to_wire(&ordered).encode_to_vec();
        let back = ordered_from_wire(pb::Ordered::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(back, ordered);
    }
}

#[test]
fn garbage_from_a_peer_is_an_error() {
    let bad_digest = pb::Ask {
        change: Some(pb::ask::Change::Command(entry_pb::Command {
            op: Some(entry_pb::command::Op::Touch(entry_pb::Digests {
                digests: vec!["sha256:nothex".into()],
            })),
        })),
    };
    assert!(ask_from_wire(bad_digest).is_err());
    let bad_repo = pb::Ask {
        change: Some(pb::ask::Change::Command(entry_pb::Command {
            op: Some(entry_pb::command::Op::LinkBlob(entry_pb::RepoBlob {
                repository: "UPPER/Case!".into(),
                digest: d("a").to_string(),
            })),
        })),
    };
    assert!(ask_from_wire(bad_repo).is_err());
    let unpinned = pb::Ask {
        change: Some(pb::ask::Change::Command(entry_pb::Command {
            op: Some(entry_pb::command::Op::Pin("nginx:1".into())),
        })),
    };
    assert!(ask_from_wire(unpinned).is_err());
    assert!(ask_from_wire(pb::Ask { change: None }).is_err());
    assert!(ordered_from_wire(pb::Ordered {
        index: 1,
        result: None
    })
    .is_err());
    let unknown_kind = pb::Ordered {
        index: 1,
        result: Some(pb::ordered::Result::Refused(pb::StateRefusal {
            kind: 99,
            detail: String::new(),
            items: vec![],
        })),
    };
    assert!(ordered_from_wire(unknown_kind).is_err());
}
