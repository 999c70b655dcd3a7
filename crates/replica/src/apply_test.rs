//! The apply side without a node: what a committed entry does to the state, and what it
//! asks of the node.

use super::*;
use site_core::Repository;
use site_state::{Entry, ImageRef};

fn blob(n: u8) -> (Digest, u64) {
    (Digest::of(&[n]), 1)
}

fn command(index: u64, now: u64, cmd: Command, proposal: Option<u64>) -> Committed {
    Committed::Command {
        index,
        entry: Ok(Entry { now, cmd }),
        proposal,
    }
}

fn add_blob(index: u64, n: u8, proposal: Option<u64>) -> Committed {
    let (digest, size) = blob(n);
    command(
        index,
        1,
        Command::AddBlob {
            repo: None,
            digest,
            size,
            recorded: false,
        },
        proposal,
    )
}

#[test]
fn a_blob_recorded_without_its_file_here_is_fetched_and_the_proposer_answered() {
    let mut a = Applier::new(1);
    let mut s = State::default();
    let (d1, _) = blob(1);
    let effects = a.apply(&mut s, add_blob(5, 1, Some(77)), |d| *d == d1);
    assert!(
        matches!(
            effects.as_slice(),
            [Applied::Answer {
                id: 77,
                result: Ok(_),
                index: 5
            }]
        ),
        "the file is here: nothing to fetch: {effects:?}"
    );
    let effects = a.apply(&mut s, add_blob(6, 2, None), |_| false);
    assert!(
        matches!(effects.as_slice(), [Applied::FetchBlob { size: 1, .. }]),
        "another node's entry answers nobody here: {effects:?}"
    );
    assert!(s.blob(&blob(2).0).is_some());
}

#[test]
fn a_refused_command_changes_nothing_and_answers_its_refusal() {
    let mut a = Applier::new(1);
    let mut s = State::default();
    a.apply(&mut s, add_blob(2, 1, None), |_| true);
    let before = s.clone();
    let image = ImageRef {
        repo: Repository::parse_normalized("app", "docker.io").unwrap(),
        digest: Digest::of(b"no such manifest"),
    };
    let cmd = Command::Schedule {
        app: "pos".into(),
        images: vec![image],
    };
    let effects = a.apply(&mut s, command(3, 2, cmd, Some(9)), |_| true);
    assert_eq!(s, before);
    assert!(matches!(
        effects.as_slice(),
        [Applied::Answer {
            id: 9,
            result: Err(_),
            index: 3
        }]
    ));
    let undecodable = Committed::Command {
        index: 4,
        entry: Err("not json".into()),
        proposal: Some(10),
    };
    let effects = a.apply(&mut s, undecodable, |_| true);
    assert_eq!(s, before);
    assert!(matches!(
        effects.as_slice(),
        [Applied::Answer {
            id: 10,
            result: Err(StateError::Invalid(_)),
            ..
        }]
    ));
}

#[cfg(not(feature = "bug-stale-sweep"))]
#[test]
fn a_sweep_removes_exactly_the_files_of_the_blobs_it_drops() {
    let mut a = Applier::new(1);
    let mut s = State::default();
    a.apply(&mut s, add_blob(2, 1, None), |_| true);
    let sweep = Command::sweep(&site_state::SweepRules {
        grace_ms: 10,
        evict_bytes: 0,
        cache_ttl_ms: u64::MAX,
    });
    let effects = a.apply(&mut s, command(3, 100, sweep, None), |_| true);
    let removed: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Applied::RemoveFiles(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, vec![vec![blob(1).0]]);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Applied::ForgetBlobs(d) if *d == vec![blob(1).0])));
    assert!(s.blob(&blob(1).0).is_none());
}

#[test]
fn a_member_change_records_the_address_and_tells_the_transport_unless_it_is_this_node() {
    let mut a = Applier::new(1);
    let mut s = State::default();
    let add = |id: u64| Committed::Members {
        index: 7,
        change: Ok(Some(MemberChange::Add {
            id,
            address: format!("10.0.0.{id}:7000"),
        })),
        proposal: Some(3),
    };
    let effects = a.apply(&mut s, add(4), |_| true);
    assert!(
        matches!(&effects[0], Applied::SetPeer { id: 4, address: Some(a) } if a == "10.0.0.4:7000")
    );
    assert!(matches!(
        &effects[1],
        Applied::Publish(Event::NodeJoined { node: 4, .. })
    ));
    assert!(matches!(&effects[2], Applied::Answer { id: 3, result: Ok(o), .. } if o.changed));
    assert_eq!(s.nodes().collect::<Vec<_>>(), vec![(4, "10.0.0.4:7000")]);
    let effects = a.apply(&mut s, add(1), |_| true);
    assert!(
        !effects.iter().any(|e| matches!(e, Applied::SetPeer { .. })),
        "a node is not its own peer"
    );
    let refused = Committed::Members {
        index: 8,
        change: Err("bad".into()),
        proposal: Some(5),
    };
    let before = s.clone();
    let effects = a.apply(&mut s, refused, |_| true);
    assert_eq!(s, before);
    assert!(matches!(
        &effects[..],
        [Applied::Answer {
            id: 5,
            result: Err(_),
            ..
        }]
    ));
}

#[test]
fn the_state_keeps_the_time_of_the_latest_entry_that_changed_it() {
    let mut a = Applier::new(1);
    let mut s = State::default();
    let (digest, size) = blob(4);
    let add = Command::AddBlob {
        repo: None,
        digest,
        size,
        recorded: false,
    };
    a.apply(&mut s, command(2, 5_000, add, None), |_| true);
    assert_eq!(s.time(), 5_000);
    // Unpinning what is not pinned changes nothing: the state stays exactly as it was.
    let before = s.clone();
    a.apply(
        &mut s,
        command(3, 9_000, Command::Unpin { image: pinned() }, None),
        |_| true,
    );
    assert_eq!(s, before);
    assert_eq!(s.time(), 5_000);
}

fn pinned() -> ImageRef {
    ImageRef {
        repo: Repository::parse_normalized("app", "docker.io").unwrap(),
        digest: Digest::of(b"pinned"),
    }
}
