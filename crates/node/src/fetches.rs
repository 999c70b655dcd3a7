//! The copies of blobs from peers under way on this node, one per digest and first peer
//! asked: concurrent callers share one fetch, which runs to its end even if every caller
//! gives up waiting. The file operations ask whether a blob is being fetched before they
//! remove a stray file of it, and background copies yield while a hold is under way.

use crate::spawn::{Spawn, TokioSpawn};
use crate::{NodeError, Result};
use site_core::Digest;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A fetch: the blob, and the peer asked first (`None`: any, a background copy).
type Key = (Digest, Option<u64>);

/// The answer of one fetch, shared by everyone waiting for it.
type Answer = Option<std::result::Result<(), String>>;

/// The fetches under way. Cheap to clone; clones share them.
#[derive(Clone)]
pub struct Fetches {
    under_way: Arc<Mutex<HashMap<Key, watch::Receiver<Answer>>>>,
    /// Where each fetch runs.
    tasks: Arc<dyn Spawn>,
}

impl Default for Fetches {
    /// Fetches run on the tokio runtime.
    fn default() -> Fetches {
        Fetches::on(Arc::new(TokioSpawn))
    }
}

impl Fetches {
    /// Fetches that run on `tasks`.
    pub fn on(tasks: Arc<dyn Spawn>) -> Fetches {
        Fetches {
            under_way: Arc::default(),
            tasks,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Receiver<Answer>>> {
        self.under_way.lock().expect("fetches")
    }

    /// Whether a fetch for a majority hold (one with a first peer) is under way.
    pub fn holding(&self) -> bool {
        self.lock().keys().any(|(_, first)| first.is_some())
    }

    /// Whether a fetch of blob `d` is under way.
    pub fn fetching(&self, d: &Digest) -> bool {
        self.lock().keys().any(|(x, _)| x == d)
    }

    /// The answer of the fetch of `d` from `first`: the one under way, or `start()`'s,
    /// run on a task of its own.
    pub async fn share<F>(
        &self,
        d: &Digest,
        first: Option<u64>,
        start: impl FnOnce() -> F,
    ) -> Result<()>
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let mut rx = {
            let mut fetches = self.lock();
            let key = (d.clone(), first);
            match fetches.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    fetches.insert(key.clone(), rx.clone());
                    let fetch = start();
                    let this = self.clone();
                    self.tasks.spawn(Box::pin(async move {
                        let result = fetch.await;
                        this.lock().remove(&key);
                        let _ = tx.send(Some(result.map_err(|e| e.to_string())));
                    }));
                    rx
                }
            }
        };
        let answer = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| NodeError::Unavailable("the fetch was dropped".into()))?
            .clone();
        match answer {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(NodeError::Unavailable(e)),
            None => unreachable!("waited for an answer"),
        }
    }
}
