use crate::test_kit::open_with;
use site_core::{Digest, Repository};
use site_state::{Command, ImageRef};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_waits_for_the_apply_task_without_holding_up_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::RaftSettings {
        snapshot_every: 2,
        ..crate::RaftSettings::single(1)
    };
    let node = open_with(dir.path(), settings).await;
    let store = node.store.clone();
    let before = store.leadership.get().commit;
    let snapshot_before = store.raft.clone().snapshot_index();
    // The apply task stalls (as behind a long install or removal of files): the state's
    // lock is held, by a thread of its own until told.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (taken, is_taken) = std::sync::mpsc::channel();
    let holder = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.state.read(|_| {
                taken.send(()).unwrap();
                let _ = released.recv();
            });
        })
    };
    is_taken.recv().unwrap();
    let asks: Vec<_> = (0..6u8)
        .map(|i| {
            let store = store.clone();
            let image = ImageRef {
                repo: Repository::parse_normalized("app", "docker.io").unwrap(),
                digest: Digest::of(&[i]),
            };
            tokio::spawn(async move { store.orderer.execute(Command::Unpin { image }).await })
        })
        .collect();
    // The driver orders all six, though the snapshot due after the second waits for the
    // apply task.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.leadership.get().commit < before + 6 {
        assert!(
            Instant::now() < deadline,
            "the driver stopped at {} of {}",
            store.leadership.get().commit,
            before + 6
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.raft.clone().snapshot_index(), snapshot_before);
    release.send(()).unwrap();
    holder.join().unwrap();
    for ask in asks {
        // Ordered and answered (an unpin of what is not pinned is refused).
        let answer = ask.await.unwrap();
        assert!(
            matches!(answer, Err(crate::NodeError::Refused(_))),
            "{answer:?}"
        );
    }
    // Once the apply task got there, the driver wrote the snapshot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.raft.clone().snapshot_index() <= snapshot_before {
        assert!(Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(store);
    node.close().await;
}
