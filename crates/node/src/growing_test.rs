use super::*;
use crate::peer_file::{pace, YIELD_AT_MOST, YIELD_STEP};
use crate::test_kit::open;
use std::time::Duration;

#[test]
fn recent_chunks_are_served_from_memory_while_they_are_kept() {
    let mut r = Recent::default();
    let chunk = |b: u8, n: usize| Bytes::from(vec![b; n]);
    // Two batches: [0, 4 MiB) as two chunks, then [4, 12 MiB) as one.
    r.push(4 << 20, &[chunk(1, 1 << 20), chunk(2, 3 << 20)]);
    assert_eq!(
        r.get(10, 4 << 20, 1 << 20).unwrap(),
        chunk(1, (1 << 20) - 10)
    );
    let part = r.get((1 << 20) + 5, 4 << 20, 100).unwrap();
    assert_eq!(part, chunk(2, 100), "at most what was asked");
    // Only what was reported written is offered.
    assert_eq!(
        r.get((1 << 20) + 5, (1 << 20) + 8, 1 << 20).unwrap().len(),
        3
    );
    r.push(12 << 20, &[chunk(3, 8 << 20)]);
    // Beyond 8 MiB kept, the oldest go: their bytes come from the file.
    assert!(r.get(0, 12 << 20, 1 << 20).is_none());
    assert!(r.get(2 << 20, 12 << 20, 1 << 20).is_none());
    assert_eq!(r.get(5 << 20, 12 << 20, 4).unwrap(), chunk(3, 4));
    assert!(
        r.get(12 << 20, 12 << 20, 4).is_none(),
        "nothing past the end"
    );
}

#[tokio::test]
async fn a_background_copy_waits_while_the_node_receives_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let store = &node.store;
    let d = Digest::of(b"arriving");
    let guard = store
        .deliveries
        .growing
        .begin(&d, dir.path().join("arriving"), 1 << 30, 0);
    let receiving = Receiving {
        growing: store.deliveries.growing.clone(),
        fetches: store.fetches.clone(),
    };
    // Bytes keep arriving (reported every 100 ms) until told to stop.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let report = guard.reporter();
    report(3, &[Bytes::from_static(b"abc")]);
    let arriving = tokio::spawn(async move {
        let mut written = 3;
        while !*stopped.borrow() {
            written += 3;
            report(written, &[Bytes::from_static(b"abc")]);
            let _ = tokio::time::timeout(Duration::from_millis(100), stopped.changed()).await;
        }
    });
    // While the node receives a blob, a background copy's chunk waits the limit...
    let started = tokio::time::Instant::now();
    pace(&receiving).await;
    let waited = started.elapsed();
    assert!(
        waited >= YIELD_AT_MOST,
        "a chunk went out after {waited:?} while the node was receiving"
    );
    assert!(
        waited < YIELD_AT_MOST + Duration::from_secs(1),
        "it waits about the limit, not {waited:?}"
    );
    // ...not once the bytes stop coming (a stalled delivery holds nothing back)...
    stop.send(true).unwrap();
    arriving.await.unwrap();
    tokio::time::timeout(RECEIVING_LATELY + YIELD_STEP * 5, pace(&receiving))
        .await
        .expect("soon");
    // ...nor once the delivery is over.
    drop(guard);
    tokio::time::timeout(YIELD_STEP, pace(&receiving))
        .await
        .expect("at once");
    node.close().await;
}
