use crate::sweep::Strays;
use crate::test_kit::open;
use site_core::Digest;
use std::time::{Duration, SystemTime};

/// Writes `data` as the blob file of its digest, last written `age` ago, unrecorded.
fn old_copy(store: &crate::Node, data: &[u8], age: Duration) -> std::path::PathBuf {
    let path = store.files.path(&Digest::of(data));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
    path
}

#[tokio::test]
async fn a_copy_answered_for_a_hold_is_not_removed_as_a_stray_before_it_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let store = &node.store;
    let ttl = store.config.upload_ttl;
    let strays = Strays {
        files: store.files.clone(),
        state: store.state.clone(),
        fetches: store.fetches.clone(),
        queue: store.file_queue.clone(),
        ttl,
    };
    // Two unrecorded copies older than the upload TTL (deliveries that never completed).
    let held = b"a copy another node asks this one to hold";
    let left = b"a copy nobody asks for";
    let held_path = old_copy(store, held, ttl * 2);
    let left_path = old_copy(store, left, ttl * 2);
    // Another node asks this one to hold the first: the copy here answers for it.
    store
        .fetcher
        .fetch_blob(&Digest::of(held), held.len() as u64, Some(2))
        .await
        .unwrap();
    // A GC pass before the blob is recorded takes the other copy, not the one held.
    assert_eq!(strays.remove().await.unwrap(), 1);
    assert!(held_path.is_file(), "the held copy was removed as a stray");
    assert!(!left_path.exists());
    node.close().await;
}

#[tokio::test]
async fn a_copy_that_rotted_does_not_answer_for_a_hold() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let store = &node.store;
    let data = b"a copy whose bytes rotted on disk after it was written";
    let d = Digest::of(data);
    // An unrecorded copy of the blob, one bit of it flipped since.
    let path = old_copy(store, data, Duration::ZERO);
    let mut rotten = data.to_vec();
    rotten[3] ^= 0x10;
    std::fs::write(&path, &rotten).unwrap();
    // Another node asks this one to hold the blob: the bad copy does not count; this
    // node, alone, has no peer to fetch a good one from.
    let held = store
        .fetcher
        .fetch_blob(&d, data.len() as u64, Some(2))
        .await;
    let e = held.expect_err("a rotten copy answered for a hold");
    assert!(e.to_string().contains("no peer could provide"), "{e}");
    // A whole copy still answers at once.
    std::fs::write(&path, data).unwrap();
    store
        .fetcher
        .fetch_blob(&d, data.len() as u64, Some(2))
        .await
        .unwrap();
    node.close().await;
}
