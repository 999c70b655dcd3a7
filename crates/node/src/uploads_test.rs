use crate::test_kit::{once, open};
use crate::{ByteSource, NodeError};
use bytes::Bytes;
use site_core::Repository;
use tokio::sync::oneshot;

/// A PATCH whose client pauses: 50 bytes, then 50 more once told to go on. It says when
/// it is asked for the second chunk (its first is taken, the session held).
struct Paused {
    sent: usize,
    paused: Option<oneshot::Sender<()>>,
    go: Option<oneshot::Receiver<()>>,
}

impl ByteSource for Paused {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        self.sent += 1;
        match self.sent {
            1 => Some(Ok(Bytes::from(vec![1u8; 50]))),
            2 => {
                let _ = self.paused.take()?.send(());
                self.go.take()?.await.ok()?;
                Some(Ok(Bytes::from(vec![2u8; 50])))
            }
            _ => None,
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn requests_queued_behind_a_patch_find_the_session_cancelled_meanwhile_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let open = open(dir.path()).await;
    let store = open.store.clone();
    let repo = Repository::parse_normalized("team/app", "docker.io").unwrap();
    let id = store.uploads.start_upload(&repo).await.unwrap();
    let (paused_tx, paused) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    let patch = tokio::spawn({
        let (store, repo, id) = (store.clone(), repo.clone(), id.clone());
        async move {
            let mut body = Paused {
                sent: 0,
                paused: Some(paused_tx),
                go: Some(go_rx),
            };
            store
                .uploads
                .append_upload(&repo, &id, None, &mut body)
                .await
        }
    });
    paused.await.unwrap();
    // While the PATCH streams: a DELETE, then a status GET and another PATCH, each
    // checking the session before it waits for it.
    let cancel = tokio::spawn({
        let (store, repo, id) = (store.clone(), repo.clone(), id.clone());
        async move { store.uploads.cancel_upload(&repo, &id).await }
    });
    let status = tokio::spawn({
        let (store, repo, id) = (store.clone(), repo.clone(), id.clone());
        async move { store.uploads.upload_offset(&repo, &id).await }
    });
    let append = tokio::spawn({
        let (store, repo, id) = (store.clone(), repo.clone(), id.clone());
        async move {
            store
                .uploads
                .append_upload(&repo, &id, None, &mut once(b"x"))
                .await
        }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !cancel.is_finished() && !status.is_finished() && !append.is_finished(),
        "the three wait for the session the PATCH holds"
    );
    go.send(()).unwrap();
    assert_eq!(patch.await.unwrap().unwrap(), 100, "the PATCH came first");
    cancel.await.unwrap().unwrap();
    let status = status.await.unwrap();
    assert!(
        matches!(status, Err(NodeError::UploadUnknown(_))),
        "{status:?}"
    );
    let append = append.await.unwrap();
    assert!(
        matches!(append, Err(NodeError::UploadUnknown(_))),
        "{append:?}"
    );
    assert!(!dir.path().join("uploads").join(&id).exists());
    drop(store);
    open.close().await;
}
