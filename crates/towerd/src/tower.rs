//! The running tower: its store, the client of its registry, and the rollouts as they
//! stand now (in memory, written to the store at each change of a site's state).
//!
//! Towers sharing a store (replicas on one PostgreSQL database) each keep the rollouts in
//! memory too: a site's progress is written by the replica that holds its lease
//! (`leases.rs`), and every pass reads what the others wrote ([`Tower::refresh`]).

use crate::leases::Leases;
use crate::registry::RegistryClient;
use crate::store::{Store, StoreError};
use site_fleet::schedule::Backoff;
use site_fleet::Rollout;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How the tower runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Waits between attempts at a failed site.
    pub backoff: Backoff,
    /// How long an attempt waits while no node of the site knows a leader.
    pub leader_wait: std::time::Duration,
    /// Whether every request needs a user whatever the tokens: clients may present
    /// certificates of a CA, or the API listens beyond loopback (revoking the last token
    /// does not open it).
    pub users_required: bool,
}

/// Shared by the API, the runner and the workers.
pub struct Tower {
    /// Sites, rollouts, manifests.
    pub store: Arc<dyn Store>,
    /// The tower's registry: what rollouts send, fetched into it from upstreams.
    pub registry: RegistryClient,
    /// How it runs.
    pub settings: Settings,
    /// Wakes the runner (a rollout created or cancelled, a site added, a worker done).
    pub wake: Notify,
    /// Inventory writes, one at a time (a name is checked, then taken).
    pub inventory: tokio::sync::Mutex<()>,
    /// The work this tower holds.
    pub leases: Leases,
    rollouts: Mutex<BTreeMap<String, Rollout>>,
    /// Store writes of rollouts, in the order their snapshots were taken.
    writing: tokio::sync::Mutex<()>,
    workers: Mutex<HashMap<(String, String), AbortHandle>>,
}

/// Where a rollout's pull attempt is kept among the workers (no site has an empty id),
/// so that it stops with them.
const PULL: &str = "";

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Tower {
    /// A tower over `store`, working as `holder`; the rollouts it holds are taken up
    /// where they were (sites that had a worker when the tower stopped start again from
    /// waiting; in a shared store, once their lease has expired).
    pub async fn new(
        store: Arc<dyn Store>,
        registry: RegistryClient,
        settings: Settings,
        holder: String,
    ) -> Result<Tower, StoreError> {
        let mut rollouts = BTreeMap::new();
        for mut r in store.rollouts().await? {
            if !store.shared() {
                r.recover();
            }
            rollouts.insert(r.id.clone(), r);
        }
        Ok(Tower {
            store,
            registry,
            settings,
            wake: Notify::new(),
            inventory: tokio::sync::Mutex::new(()),
            leases: Leases::new(holder),
            rollouts: Mutex::new(rollouts),
            writing: tokio::sync::Mutex::new(()),
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// The inventory changed (a site added, changed or removed): the runner reads it
    /// again at its next pass, which it starts now.
    pub fn inventory_changed(&self) {
        self.wake.notify_one();
    }

    fn rollouts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Rollout>> {
        self.rollouts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A rollout as it stands.
    pub fn rollout(&self, id: &str) -> Option<Rollout> {
        self.rollouts().get(id).cloned()
    }

    /// A rollout as it stands, read from the store when this tower does not know it
    /// yet (another replica created it since this one's last pass).
    pub async fn load(&self, id: &str) -> Result<Option<Rollout>, StoreError> {
        if let Some(r) = self.rollout(id) {
            return Ok(Some(r));
        }
        let Some(r) = self.store.rollout(id).await? else {
            return Ok(None);
        };
        Ok(Some(
            self.rollouts().entry(id.to_owned()).or_insert(r).clone(),
        ))
    }

    /// Reads what other towers sharing the store wrote: new rollouts, and the header and
    /// sites of every rollout not cancelled here, except what this tower's own workers
    /// are writing (the sites they work; the header while its images are pulled here).
    /// A rollout another tower cancelled stops its workers here, whose sites go back to
    /// waiting (written: they are this tower's to write).
    ///
    /// What this tower works is taken before the store is read: a worker that ends
    /// after that wrote its last progress before it ended, so the stored row read next
    /// is either its last or older than the local copy kept for it.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        for header in self.store.rollout_headers().await? {
            if self.rollout(&header.id).is_some_and(|r| r.cancelled()) {
                continue;
            }
            let pulling_here = self.has_worker(&header.id, PULL);
            let working = self.working_on(&header.id);
            let Some(stored) = self.store.rollout(&header.id).await? else {
                continue;
            };
            let stopped = {
                let mut rollouts = self.rollouts();
                let r = rollouts
                    .entry(stored.id.clone())
                    .or_insert_with(|| stored.clone());
                // Cancelled here meanwhile: that cancel and its write stand.
                if r.cancelled() {
                    continue;
                }
                let cancelled = stored.cancelled();
                let mut merged = if pulling_here && !cancelled {
                    r.clone()
                } else {
                    Rollout {
                        sites: Default::default(),
                        ..stored.clone()
                    }
                };
                for (site, progress) in stored.sites {
                    let mut p = match r.sites.get(&site) {
                        Some(local) if working.contains(&site) => local.clone(),
                        _ => progress,
                    };
                    if cancelled && working.contains(&site) && p.state.in_flight() {
                        p.state = site_fleet::State::Waiting;
                    }
                    merged.sites.insert(site, p);
                }
                *r = merged;
                cancelled
            };
            if stopped {
                tracing::info!(rollout = %header.id, "rollout cancelled by another tower");
                self.stop_workers(Some(&header.id));
                let sites: Vec<&str> = working.iter().map(String::as_str).collect();
                self.save_sites(&header.id, &sites).await?;
            }
        }
        Ok(())
    }

    /// The sites of rollout `id` this tower's workers are working.
    pub fn working_on(&self, id: &str) -> HashSet<String> {
        self.running()
            .into_iter()
            .filter(|(r, s)| r == id && s != PULL)
            .map(|(_, s)| s)
            .collect()
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

    /// Adds a new rollout, written to the store first; earlier rollouts of the same
    /// application are superseded by it.
    pub async fn add(&self, rollout: Rollout) -> Result<(), StoreError> {
        {
            let _writing = self.writing.lock().await;
            self.store.put_rollout(&rollout).await?;
            self.rollouts().insert(rollout.id.clone(), rollout.clone());
        }
        if rollout.pulling.is_none() {
            self.supersede_older(&rollout).await?;
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Cancels the other rollouts of `rollout`'s application: a site runs one version of
    /// an application. Done once `rollout`'s images are all in the tower's registry, so
    /// that a rollout that cannot get its images does not stop the one that runs.
    pub async fn supersede_older(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let older: Vec<String> = self
            .rollouts()
            .values()
            .filter(|r| {
                r.application == rollout.application
                    && r.id != rollout.id
                    && !r.cancelled()
                    // Older only: two rollouts of one application never cancel each other.
                    && (r.created_ms, &r.id) < (rollout.created_ms, &rollout.id)
            })
            .map(|r| r.id.clone())
            .collect();
        for id in older {
            self.cancel(&id, Some(&rollout.id)).await?;
            tracing::info!(rollout = %id, by = %rollout.id, "rollout superseded");
        }
        Ok(())
    }

    /// Cancels a rollout (superseded by another, or by hand): no site starts again, its
    /// workers stop, and it is written to the store.
    pub async fn cancel(&self, id: &str, superseded_by: Option<&str>) -> Result<(), StoreError> {
        let now = now_ms();
        let working = self.working_on(id);
        // Cancelled first: a worker being spawned now sees it and is not started.
        self.change(id, |r| r.cancel(now, superseded_by));
        self.stop_workers(Some(id));
        if !self.store.shared() {
            return self.save(id).await;
        }
        // Other towers' sites are theirs to write: they put them back to waiting when
        // they read the cancel.
        self.save_header(id).await?;
        let sites: Vec<&str> = working.iter().map(String::as_str).collect();
        self.save_sites(id, &sites).await
    }

    /// Writes a rollout as it stands now to the store, whole.
    pub async fn save(&self, id: &str) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        let Some(snapshot) = self.rollout(id) else {
            return Ok(());
        };
        self.store.put_rollout(&snapshot).await
    }

    /// Writes a rollout's header as it stands now (its sites are written by whoever
    /// works them).
    pub async fn save_header(&self, id: &str) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        let Some(snapshot) = self.rollout(id) else {
            return Ok(());
        };
        self.store.put_rollout_header(&snapshot).await
    }

    /// Writes the sites that joined a rollout, each unless the store has a record of it
    /// (another tower's, written since this one read the store).
    pub async fn save_joined(&self, id: &str, sites: &[String]) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        let Some(joined) = self.change(id, |r| {
            sites
                .iter()
                .filter_map(|s| r.sites.get(s).map(|p| (s.clone(), p.clone())))
                .collect::<Vec<_>>()
        }) else {
            return Ok(());
        };
        self.store.add_sites(id, &joined).await
    }

    /// Writes the progress of some sites of a rollout as they stand now.
    pub async fn save_sites(&self, id: &str, sites: &[&str]) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        let Some(changes) = self.change(id, |r| {
            sites
                .iter()
                .map(|s| (s.to_string(), r.sites.get(*s).cloned()))
                .collect::<Vec<_>>()
        }) else {
            return Ok(());
        };
        self.store.put_sites(id, &changes).await
    }

    /// Starts the worker of a site of a rollout, unless the rollout was cancelled or the
    /// site is not in flight (it changed since it was picked).
    pub fn spawn_worker(self: &Arc<Self>, rollout: &str, site: &str) {
        let mut workers = self.workers();
        let startable = self
            .change(rollout, |r| {
                !r.cancelled() && r.sites.get(site).is_some_and(|s| s.state.in_flight())
            })
            .unwrap_or(false);
        if !startable {
            return;
        }
        let handle = tokio::spawn(crate::worker::run(
            self.clone(),
            rollout.to_owned(),
            site.to_owned(),
        ));
        workers.insert((rollout.to_owned(), site.to_owned()), handle.abort_handle());
    }

    /// Starts an attempt at rollout `rollout`'s images (`pull.rs`) unless one runs.
    pub fn spawn_pull(self: &Arc<Self>, rollout: &str) {
        let mut workers = self.workers();
        let key = (rollout.to_owned(), PULL.to_owned());
        let due = self
            .change(rollout, |r| r.pull_due(now_ms()))
            .unwrap_or(false);
        if !due || workers.get(&key).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let (tower, id) = (self.clone(), rollout.to_owned());
        let handle = tokio::spawn(async move {
            crate::pull::attempt(&tower, &id).await;
            tower.worker_done(&id, PULL);
        });
        workers.insert(key, handle.abort_handle());
    }

    /// Forgets the worker of a site that finished: the calling task's, not a successor's.
    pub fn worker_done(&self, rollout: &str, site: &str) {
        let me = tokio::task::try_id();
        let key = (rollout.to_owned(), site.to_owned());
        let mut workers = self.workers();
        if workers.get(&key).is_some_and(|h| Some(h.id()) == me) {
            workers.remove(&key);
        }
    }

    /// Whether a site has a worker that is still running.
    pub fn has_worker(&self, rollout: &str, site: &str) -> bool {
        self.workers()
            .get(&(rollout.to_owned(), site.to_owned()))
            .is_some_and(|h| !h.is_finished())
    }

    /// The sites with a running worker, by rollout.
    pub fn working(&self) -> Vec<(String, String)> {
        self.running()
            .into_iter()
            .filter(|(_, s)| s != PULL)
            .collect()
    }

    /// The leases the running workers need: their sites, and the pulls.
    pub fn live_leases(&self) -> HashSet<String> {
        self.running()
            .into_iter()
            .map(|(r, s)| {
                if s == PULL {
                    crate::leases::pull_key(&r)
                } else {
                    s
                }
            })
            .collect()
    }

    /// Every running worker, as (rollout, site); a pull's site is [`PULL`].
    fn running(&self) -> Vec<(String, String)> {
        self.workers()
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stops the work of a lease this tower lost.
    pub fn stop_leased(&self, key: &str) {
        if key.starts_with(crate::leases::PRESENCE) {
            return; // Taken again by the next round.
        }
        match key.strip_prefix("pull:") {
            Some(rollout) => self.stop_worker(rollout, PULL),
            None => self.stop_where(|_, s| s == key),
        }
    }

    /// Stops the workers of a rollout (every rollout with `None`).
    pub fn stop_workers(&self, rollout: Option<&str>) {
        self.stop_where(|r, _| rollout.is_none_or(|id| id == r));
    }

    /// Stops the worker of one site of a rollout.
    pub fn stop_worker(&self, rollout: &str, site: &str) {
        self.stop_where(|r, s| r == rollout && s == site);
    }

    fn stop_where(&self, which: impl Fn(&str, &str) -> bool) {
        self.workers().retain(|(r, s), handle| {
            if which(r, s) {
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
