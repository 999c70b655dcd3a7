use super::RaftLog;
use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RawNode, Storage, StorageError};

fn open(dir: &std::path::Path) -> (sled::Db, RaftLog) {
    // sled lets go of its lock from a background thread: wait for it like a restart does.
    let db = crate::open_db(dir).unwrap();
    let disk = crate::log_disk::SledLogDisk::open(&db).unwrap();
    let log = RaftLog::open(std::sync::Arc::new(disk)).unwrap();
    (db, log)
}

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn indexes_terms(log: &RaftLog, low: u64, high: u64) -> Vec<(u64, u64)> {
    log.entries(low, high, None, ctx())
        .unwrap()
        .iter()
        .map(|e| (e.index, e.term))
        .collect()
}

fn compacted<T: std::fmt::Debug>(r: raft::Result<T>) -> bool {
    matches!(r, Err(raft::Error::Store(StorageError::Compacted)))
}

#[test]
fn a_new_log_is_empty_until_given_its_voters() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, log) = open(dir.path());
    assert!(!log.initialized());
    assert!(!log.initial_state().unwrap().initialized());
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (1, 0)
    );
    assert_eq!(log.term(0).unwrap(), 0);
    // A joining node has no voters to start with: it stays empty.
    log.initialize(&[], b"empty").unwrap();
    assert!(!log.initialized());
    log.initialize(&[1, 2, 3], b"empty").unwrap();
    assert_eq!(log.initial_state().unwrap().conf_state.voters, [1, 2, 3]);
    // A second initialisation (a restart with other peers) changes nothing.
    log.initialize(&[9], b"other").unwrap();
    drop(log);
    drop(_db);
    let (_db, log) = open(dir.path());
    assert_eq!(log.initial_state().unwrap().conf_state.voters, [1, 2, 3]);
    // The founding configuration is a snapshot: entries start after it, and a node
    // that joins is sent it, configuration included.
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (2, 1)
    );
    let snap = log.snapshot(0, 4).unwrap();
    assert_eq!(snap.get_metadata().index, super::FOUNDING_INDEX);
    assert_eq!(snap.get_metadata().get_conf_state().voters, [1, 2, 3]);
    assert_eq!(&snap.data[..], b"empty");
    assert_eq!(log.initial_state().unwrap().hard_state.commit, 1);
}

#[test]
fn entries_and_hard_state_survive_a_reopen_and_a_conflict_truncates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_db, log) = open(dir.path());
        let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 1, b"x")).collect();
        let hs = HardState {
            term: 1,
            vote: 2,
            commit: 3,
            ..Default::default()
        };
        log.persist(&ents, Some(&hs)).unwrap();
        log.sync_blocking().unwrap();
        assert_eq!(indexes_terms(&log, 2, 5), [(2, 1), (3, 1), (4, 1)]);
        // A new leader overwrites from index 4: entry 5 of the old term goes.
        log.persist(&[entry(4, 2, b"y")], None).unwrap();
        log.sync_blocking().unwrap();
        assert_eq!(log.last_index().unwrap(), 4);
        assert_eq!(log.term(4).unwrap(), 2);
        assert!(matches!(
            log.term(5),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
    }
    let (_db, log) = open(dir.path());
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (1, 4)
    );
    assert_eq!(indexes_terms(&log, 1, 5), [(1, 1), (2, 1), (3, 1), (4, 2)]);
    let hs = log.initial_state().unwrap().hard_state;
    assert_eq!((hs.term, hs.vote, hs.commit), (1, 2, 3));
    // max_size keeps at least one entry.
    assert_eq!(log.entries(1, 5, Some(0), ctx()).unwrap().len(), 1);
}

#[tokio::test]
async fn a_snapshot_compacts_the_log_before_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_db, log) = open(dir.path());
        log.initialize(&[1], b"empty").unwrap();
        let ents: Vec<Entry> = (2..=6).map(|i| entry(i, 1 + i / 4, b"x")).collect();
        log.persist(&ents, None).unwrap();
        log.save_snapshot(4, 2, conf(&log), b"state at 4".to_vec())
            .await
            .unwrap();
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (5, 6)
        );
        assert_eq!(log.term(4).unwrap(), 2, "the snapshot keeps its term");
        assert!(compacted(log.term(3)));
        assert!(compacted(log.entries(3, 6, None, ctx())));
        assert_eq!(indexes_terms(&log, 5, 7), [(5, 2), (6, 2)]);
    }
    let (_db, log) = open(dir.path());
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (5, 6)
    );
    let snap = log.snapshot(0, 2).unwrap();
    assert_eq!(snap.get_metadata().index, 4);
    assert_eq!(snap.get_metadata().term, 2);
    assert_eq!(snap.get_metadata().get_conf_state().voters, [1]);
    assert_eq!(&snap.data[..], b"state at 4");
    assert!(
        log.snapshot(5, 2).is_err(),
        "a snapshot older than asked is not given"
    );
}

#[tokio::test]
async fn a_snapshot_from_the_leader_replaces_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, log) = open(dir.path());
    log.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b")], None)
        .unwrap();
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 10;
    snap.mut_metadata().term = 3;
    snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    snap.data = b"state at 10".to_vec().into();
    log.install_snapshot(&snap).await.unwrap();
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (11, 10)
    );
    assert_eq!(log.term(10).unwrap(), 3);
    let state = log.initial_state().unwrap();
    assert_eq!(state.hard_state.commit, 10);
    assert_eq!(state.conf_state.voters, [1, 2, 3]);
    assert!(compacted(log.term(2)));
    log.persist(&[entry(11, 3, b"c")], None).unwrap();
    assert_eq!(indexes_terms(&log, 11, 12), [(11, 3)]);
}

/// One node's group over the log: elect, propose, persist, commit; then restart it from
/// the same log and find the same term and commit.
#[test]
fn a_group_of_one_commits_through_the_log_and_restarts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let config = raft::Config {
        id: 1,
        ..Default::default()
    };
    let run = |node: &mut RawNode<RaftLog>, log: &RaftLog, committed: &mut Vec<Vec<u8>>| {
        while node.has_ready() {
            let mut ready = node.ready();
            for e in ready.take_committed_entries() {
                if !e.data.is_empty() {
                    committed.push(e.data.to_vec());
                }
            }
            log.persist(ready.entries(), ready.hs()).unwrap();
            log.sync_blocking().unwrap();
            let mut light = node.advance(ready);
            if let Some(c) = light.commit_index() {
                log.set_commit(c).unwrap();
            }
            for e in light.take_committed_entries() {
                if !e.data.is_empty() {
                    committed.push(e.data.to_vec());
                }
            }
            node.advance_apply();
        }
    };
    let (term, commit) = {
        let (_db, log) = open(dir.path());
        log.initialize(&[1], b"").unwrap();
        let mut node = RawNode::new(&config, log.clone(), &logger).unwrap();
        node.campaign().unwrap();
        let mut committed = Vec::new();
        run(&mut node, &log, &mut committed);
        assert!(node.raft.state == raft::StateRole::Leader);
        for i in 0..3u8 {
            node.propose(vec![], vec![b'p', i]).unwrap();
            run(&mut node, &log, &mut committed);
        }
        assert_eq!(
            committed,
            [b"p\0".to_vec(), b"p\x01".to_vec(), b"p\x02".to_vec()]
        );
        log.sync_blocking().unwrap();
        (node.raft.term, node.raft.raft_log.committed)
    };
    let (_db, log) = open(dir.path());
    let state = log.initial_state().unwrap();
    assert_eq!(
        (state.hard_state.term, state.hard_state.commit),
        (term, commit)
    );
    let node = RawNode::new(&config, log.clone(), &logger).unwrap();
    assert_eq!(node.raft.raft_log.committed, commit);
    assert_eq!(node.raft.raft_log.last_index(), commit);
}

/// A crash after a snapshot is written but before the commit index covering it leaves
/// the hard state behind the snapshot; reopening brings it up to the snapshot, which
/// raft-rs requires.
#[tokio::test]
async fn a_commit_index_behind_the_snapshot_is_brought_up_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_db, log) = open(dir.path());
        log.initialize(&[1], b"empty").unwrap();
        let ents: Vec<Entry> = (2..=6).map(|i| entry(i, 1, b"x")).collect();
        let hs = HardState {
            term: 1,
            commit: 2,
            ..Default::default()
        };
        log.persist(&ents, Some(&hs)).unwrap();
        log.save_snapshot(5, 1, conf(&log), b"state at 5".to_vec())
            .await
            .unwrap();
    }
    let (_db, log) = open(dir.path());
    assert_eq!(log.initial_state().unwrap().hard_state.commit, 5);
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let config = raft::Config {
        id: 1,
        applied: 5,
        ..Default::default()
    };
    let node = RawNode::new(&config, log.clone(), &logger).unwrap();
    assert_eq!(node.raft.raft_log.committed, 5);
}

/// The group's configuration as `log` holds it.
fn conf(log: &RaftLog) -> raft::eraftpb::ConfState {
    raft::Storage::initial_state(log).unwrap().conf_state
}
