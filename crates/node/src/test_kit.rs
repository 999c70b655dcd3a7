//! Fixtures of the node crate's own tests: a node with its Raft driver running on a
//! directory, and request bodies.

use crate::{ByteSource, Node, NodeConfig};
use bytes::Bytes;
use std::time::Duration;

/// A body of these chunks, in order.
pub(crate) struct Chunks(pub(crate) Vec<Result<Bytes, String>>);

impl ByteSource for Chunks {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.remove(0))
        }
    }
}

pub(crate) fn once(data: &'static [u8]) -> Chunks {
    Chunks(vec![Ok(Bytes::from_static(data))])
}

/// A store with its Raft driver (a group of one) running.
pub(crate) struct Open {
    pub(crate) store: Node,
    stop: tokio::sync::watch::Sender<bool>,
    driver: tokio::task::JoinHandle<()>,
}

impl Open {
    /// Stops the driver and lets go of the database, as a process exit would.
    pub(crate) async fn close(self) {
        let Open {
            store,
            stop,
            driver,
        } = self;
        drop(store);
        stop.send(true).unwrap();
        driver.await.unwrap();
    }
}

pub(crate) async fn open(dir: &std::path::Path) -> Open {
    open_with(dir, crate::RaftSettings::single(1)).await
}

pub(crate) async fn open_with(dir: &std::path::Path, raft: crate::RaftSettings) -> Open {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (store, driver) = Node::start(
        NodeConfig {
            data_dir: dir.to_owned(),
            max_blob_bytes: 1 << 20,
            max_manifest_bytes: 1 << 20,
            upload_ttl: Duration::from_secs(3600),
            scrub_interval: Duration::ZERO,
            verify_reads: Default::default(),
        },
        raft,
        std::sync::Arc::new(crate::Alone),
        shutdown,
    )
    .await
    .unwrap();
    Open {
        store,
        stop,
        driver,
    }
}
