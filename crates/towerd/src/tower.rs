//! The running tower: its store, cache and upstream client, and the rollouts as they
//! stand now (in memory, written to the store at each change of a site's state).

use crate::cache::Cache;
use crate::store::{Store, StoreError};
use site_fleet::schedule::Backoff;
use site_fleet::Rollout;
use site_upstream::auth::DockerConfig;
use site_upstream::client::Upstream;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How the tower runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Waits between attempts at a failed site.
    pub backoff: Backoff,
    /// The cache's size beyond which blobs of finished rollouts go.
    pub cache_max_bytes: u64,
}

/// Shared by the API, the runner and the workers.
pub struct Tower {
    /// Sites, rollouts, manifests.
    pub store: Arc<dyn Store>,
    /// Blobs pulled from upstreams.
    pub cache: Cache,
    /// The upstream registries' client.
    pub upstream: Upstream,
    /// Upstream credentials.
    pub auth: DockerConfig,
    /// How it runs.
    pub settings: Settings,
    /// Wakes the runner (a rollout created or cancelled, a site added, a worker done).
    pub wake: Notify,
    /// Inventory writes, one at a time (a name is checked, then taken).
    pub inventory: tokio::sync::Mutex<()>,
    rollouts: Mutex<BTreeMap<String, Rollout>>,
    /// Store writes of rollouts, in the order their snapshots were taken.
    writing: tokio::sync::Mutex<()>,
    workers: Mutex<HashMap<(String, String), AbortHandle>>,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Tower {
    /// A tower over `store`; the rollouts it holds are taken up where they were (sites
    /// that had a worker when the tower stopped start again from waiting).
    pub fn new(
        store: Arc<dyn Store>,
        cache: Cache,
        upstream: Upstream,
        auth: DockerConfig,
        settings: Settings,
    ) -> Result<Tower, StoreError> {
        let mut rollouts = BTreeMap::new();
        for mut r in store.rollouts()? {
            r.recover();
            rollouts.insert(r.id.clone(), r);
        }
        Ok(Tower {
            store,
            cache,
            upstream,
            auth,
            settings,
            wake: Notify::new(),
            inventory: tokio::sync::Mutex::new(()),
            rollouts: Mutex::new(rollouts),
            writing: tokio::sync::Mutex::new(()),
            workers: Mutex::new(HashMap::new()),
        })
    }

    fn rollouts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Rollout>> {
        self.rollouts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A rollout as it stands.
    pub fn rollout(&self, id: &str) -> Option<Rollout> {
        self.rollouts().get(id).cloned()
    }

    /// Every rollout, by id.
    pub fn all_rollouts(&self) -> Vec<Rollout> {
        self.rollouts().values().cloned().collect()
    }

    /// Ids of the rollouts not cancelled.
    pub fn active_ids(&self) -> Vec<String> {
        self.rollouts()
            .values()
            .filter(|r| !r.cancelled())
            .map(|r| r.id.clone())
            .collect()
    }

    /// Changes a rollout in memory; returns what `change` returned, `None` when there is
    /// no such rollout.
    pub fn change<T>(&self, id: &str, change: impl FnOnce(&mut Rollout) -> T) -> Option<T> {
        self.rollouts().get_mut(id).map(change)
    }

    /// Adds a new rollout, written to the store first.
    pub async fn add(&self, rollout: Rollout) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        self.store.put_rollout(&rollout)?;
        self.rollouts().insert(rollout.id.clone(), rollout);
        self.wake.notify_one();
        Ok(())
    }

    /// Writes a rollout as it stands now to the store.
    pub async fn save(&self, id: &str) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        let Some(snapshot) = self.rollout(id) else {
            return Ok(());
        };
        self.store.put_rollout(&snapshot)
    }

    /// Records a worker on a site of a rollout.
    pub fn worker_started(&self, rollout: &str, site: &str, handle: AbortHandle) {
        self.workers()
            .insert((rollout.to_owned(), site.to_owned()), handle);
    }

    /// Forgets the worker of a site that finished.
    pub fn worker_done(&self, rollout: &str, site: &str) {
        self.workers()
            .remove(&(rollout.to_owned(), site.to_owned()));
    }

    /// Stops the workers of a rollout (every rollout with `None`).
    pub fn stop_workers(&self, rollout: Option<&str>) {
        let mut workers = self.workers();
        workers.retain(|(r, _), handle| {
            if rollout.is_none_or(|id| id == r) {
                handle.abort();
                false
            } else {
                true
            }
        });
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), AbortHandle>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
