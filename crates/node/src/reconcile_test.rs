use crate::test_kit::{once, open, open_with, Chunks};
use crate::{ManifestRef, Node, NodeError, Received};
use bytes::Bytes;
use site_core::{Digest, Repository};
use std::time::Duration;

async fn put_blob(store: &Node, repo: &Repository, data: &'static [u8]) -> Digest {
    let id = store.uploads.start_upload(repo).await.unwrap();
    let d = Digest::of(data);
    store
        .uploads
        .finish_upload(repo, &id, &d, None, &mut once(data))
        .await
        .unwrap();
    d
}

#[tokio::test]
async fn restart_drops_what_is_not_whole_and_keeps_what_is() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::parse_normalized("r/app", "docker.io").unwrap();
    let (config, layer, manifest) = {
        let node = open(dir.path()).await;
        let store = &node.store;
        let config = put_blob(store, &repo, b"{}").await;
        let layer = put_blob(store, &repo, b"layer bytes").await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":11}}]}}"#
        );
        let tag = ManifestRef::Tag("v1".into());
        let (manifest, _) = store
            .repositories
            .put_manifest(&repo, &tag, None, body.as_bytes())
            .await
            .unwrap();
        // An upload left half done.
        let id = store.uploads.start_upload(&repo).await.unwrap();
        store
            .uploads
            .append_upload(&repo, &id, None, &mut once(b"half"))
            .await
            .unwrap();
        let out = (config, layer, manifest);
        node.close().await;
        out
    };
    // The layer's file vanishes; a file whose record never became durable appears;
    // debris lies among the blobs and the uploads.
    let files = crate::files::BlobFiles::open(dir.path().join("blobs")).unwrap();
    std::fs::remove_file(files.path(&layer)).unwrap();
    let orphan = Digest::of(b"orphan");
    std::fs::create_dir_all(files.path(&orphan).parent().unwrap()).unwrap();
    std::fs::write(files.path(&orphan), b"orphan").unwrap();
    std::fs::write(files.path(&config).with_file_name("not-a-digest"), b"x").unwrap();
    std::fs::write(dir.path().join("uploads/leftover"), b"x").unwrap();

    let node = open(dir.path()).await;
    let store = &node.store;
    assert!(matches!(
        store
            .repositories
            .get_manifest(&repo, &ManifestRef::Tag("v1".into())),
        Err(NodeError::ManifestUnknown(_))
    ));
    assert!(store
        .repositories
        .get_manifest(&repo, &ManifestRef::Digest(manifest))
        .is_err());
    assert!(matches!(
        store.repositories.blob_size(&repo, &layer),
        Err(NodeError::BlobUnknown(_))
    ));
    assert_eq!(store.repositories.blob_size(&repo, &config).unwrap(), 2);
    assert!(!files.path(&orphan).exists(), "unacknowledged file removed");
    assert!(store.state.read(|s| s.blob(&orphan).is_none()));
    assert!(!files.path(&config).with_file_name("not-a-digest").exists());
    assert!(!dir.path().join("uploads/leftover").exists());
    assert_eq!(
        store.uploads.tree.len(),
        1,
        "the half-done upload stays resumable"
    );
    node.close().await;
    // The forgetting was logged: a second restart agrees.
    let node = open(dir.path()).await;
    let store = &node.store;
    assert!(store.state.read(|s| s.blob(&layer).is_none()));
    assert_eq!(store.repositories.blob_size(&repo, &config).unwrap(), 2);
}

#[tokio::test]
async fn tower_stream_resumes_refuses_lies_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let store = &node.store;
    let repo = Repository::parse_normalized("t/app", "docker.io").unwrap();
    let data: &'static [u8] = b"0123456789abcdefghij";
    let d = Digest::of(data);
    // A stream that breaks after 8 bytes keeps them.
    let mut broken = Chunks(vec![Ok(Bytes::from_static(&data[..8])), Err("cut".into())]);
    let (got, at) = store
        .deliveries
        .receive_blob(Some(&repo), &d, 20, 0, &mut broken)
        .await
        .unwrap();
    assert_eq!((got, at), (8, Received::Partial(8)));
    assert_eq!(store.deliveries.tower_upload_offset(&d).await.unwrap(), 8);
    // Resuming from the wrong offset is refused.
    assert!(matches!(
        store
            .deliveries
            .receive_blob(Some(&repo), &d, 20, 0, &mut once(data))
            .await,
        Err(NodeError::RangeInvalid {
            start: 0,
            offset: 8
        })
    ));
    // More bytes than declared: refused, and the partial copy is as it was.
    let mut lie = Chunks(vec![
        Ok(Bytes::from_static(&data[8..])),
        Ok(Bytes::from_static(b"extra")),
    ]);
    assert!(matches!(
        store
            .deliveries
            .receive_blob(Some(&repo), &d, 20, 8, &mut lie)
            .await,
        Err(NodeError::SizeInvalid(_))
    ));
    assert_eq!(store.deliveries.tower_upload_offset(&d).await.unwrap(), 8);
    // Survives a restart.
    node.close().await;
    let node = open(dir.path()).await;
    let store = &node.store;
    let mut rest = Chunks(vec![Ok(Bytes::from_static(&data[8..]))]);
    let (got, at) = store
        .deliveries
        .receive_blob(Some(&repo), &d, 20, 8, &mut rest)
        .await
        .unwrap();
    assert_eq!((got, at), (12, Received::Complete));
    assert_eq!(store.repositories.blob_size(&repo, &d).unwrap(), 20);
    assert_eq!(store.deliveries.tower_upload_offset(&d).await.unwrap(), 0);
    // Bytes that do not match the digest are discarded.
    let wrong = Digest::of(b"something else");
    assert!(matches!(
        store
            .deliveries
            .receive_blob(None, &wrong, 20, 0, &mut once(data))
            .await,
        Err(NodeError::DigestMismatch { .. })
    ));
    assert!(store.state.read(|s| s.blob(&wrong).is_none()));
    assert_eq!(
        store.deliveries.tower_upload_offset(&wrong).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn interrupted_sweep_is_completed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::parse_normalized("g/app", "docker.io").unwrap();
    let node = open(dir.path()).await;
    let store = &node.store;
    let d = put_blob(store, &repo, b"garbage").await;
    let files = crate::files::BlobFiles::open(dir.path().join("blobs")).unwrap();
    // The sweep entry is applied, but the process dies before the file is removed:
    // simulate by sweeping and putting the file back.
    let report = crate::sweep::sweep(
        &store.orderer,
        &site_state::SweepRules {
            grace_ms: 0,
            cache_ttl_ms: 0,
            evict_bytes: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.blobs, vec![d.clone()]);
    assert!(!files.path(&d).exists());
    std::fs::create_dir_all(files.path(&d).parent().unwrap()).unwrap();
    std::fs::write(files.path(&d), b"garbage").unwrap();
    node.close().await;
    let node = open(dir.path()).await;
    let store = &node.store;
    assert!(!files.path(&d).exists());
    assert!(store.repositories.blob_size(&repo, &d).is_err());
}

#[tokio::test]
async fn a_restart_loads_the_snapshot_and_replays_the_log_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::parse_normalized("s/app", "docker.io").unwrap();
    let settings = crate::RaftSettings {
        snapshot_every: 4,
        ..crate::RaftSettings::single(1)
    };
    // A leader's empty entry, then one entry per blob: 10 entries, snapshots at 4 and 8.
    let data: Vec<&'static [u8]> = vec![
        b"b0", b"b1", b"b2", b"b3", b"b4", b"b5", b"b6", b"b7", b"b8",
    ];
    let node = open_with(dir.path(), settings.clone()).await;
    for d in &data {
        put_blob(&node.store, &repo, d).await;
    }
    let log = node.store.raft.clone();
    let first = raft::Storage::first_index(&log).unwrap();
    let last = raft::Storage::last_index(&log).unwrap();
    assert!(
        first > 4,
        "the log was compacted to a snapshot: first index {first}"
    );
    assert!(
        last >= first,
        "entries after the snapshot remain: {first}..={last}"
    );
    drop(log);
    node.close().await;
    let node = open_with(dir.path(), settings).await;
    for d in &data {
        assert_eq!(
            node.store
                .repositories
                .blob_size(&repo, &Digest::of(d))
                .unwrap(),
            2,
            "{d:?} survives the restart"
        );
    }
    node.close().await;
}

#[tokio::test]
async fn a_whole_blob_read_is_cut_short_when_the_file_no_longer_matches() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::parse_normalized("v/app", "docker.io").unwrap();
    let node = open(dir.path()).await;
    let d = put_blob(&node.store, &repo, b"the bytes of a blob").await;
    let files = crate::files::BlobFiles::open(dir.path().join("blobs")).unwrap();
    let size = b"the bytes of a blob".len() as u64;
    // A good copy reads whole, as it is.
    let read: Vec<_> = node
        .store
        .reads
        .read_blob(&d, 0, size)
        .await
        .unwrap()
        .collect()
        .await;
    let bytes: Vec<u8> = read.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
    assert_eq!(bytes, b"the bytes of a blob");
    // Bit rot while the node is down; its first read after the start is checked.
    node.close().await;
    std::fs::write(files.path(&d), b"the bytes of a blub").unwrap();
    let node = open(dir.path()).await;
    let store = &node.store;
    let mut events = store.events.subscribe();
    let read: Vec<_> = store
        .reads
        .read_blob(&d, 0, size)
        .await
        .unwrap()
        .collect()
        .await;
    let served: usize = read
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .map(|c| c.len())
        .sum();
    assert!((served as u64) < size, "the wrong copy was served whole");
    let err = read
        .into_iter()
        .find_map(|c| c.err())
        .expect("the read ends in an error");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    // The copy is checked again, removed and reported.
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event, site_state::Event::BlobCorrupt { digest, .. } if *digest == d),
        "{event:?}"
    );
    assert!(!files.path(&d).exists());
    assert_eq!(store.missing.count(), 1);
    node.close().await;
}

#[tokio::test]
async fn a_node_alone_serves_every_entry_its_log_holds_past_the_commit_index_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::parse_normalized("r/app", "docker.io").unwrap();
    let node = open(dir.path()).await;
    let blobs = [
        put_blob(&node.store, &repo, b"first").await,
        put_blob(&node.store, &repo, b"second").await,
    ];
    node.close().await;
    // A kill -9 after the entries were synced but before a commit index covering them
    // was: the log on disk says only the founding snapshot is committed.
    {
        let db = crate::open_db(&dir.path().join("meta")).unwrap();
        let disk = crate::log_disk::SledLogDisk::open(&db).unwrap();
        let log = crate::raft_log::RaftLog::open(std::sync::Arc::new(disk)).unwrap();
        let mut hs = log.hard_state();
        hs.commit = crate::raft_log::FOUNDING_INDEX;
        log.persist(&[], Some(&hs)).unwrap();
        log.sync_blocking().unwrap();
    }
    // Both were acknowledged: they are there as soon as the node serves.
    let node = open(dir.path()).await;
    for d in &blobs {
        assert!(
            node.store.state.read(|s| s.blob(d).is_some()),
            "acknowledged blob {d} missing when the node started serving"
        );
    }
    node.close().await;
}
