//! The work this tower holds, when towers share a store (`--database`): a lease per site
//! it delivers to and per rollout whose images it pulls, taken before the worker starts,
//! renewed while it runs, and given back once it has ended. Another replica takes up a site
//! whose lease expired (its holder died or lost the database) at its next pass.
//!
//! What is held follows the workers: every [`RENEW`] the leases of the running workers
//! are renewed, those with no worker for a whole round given back, and a worker whose
//! lease could not be renewed (it expired, and may be another's now) is stopped. A site
//! in two rollouts at once has one lease, kept while either worker runs.

use crate::store::{Store, StoreError};
use crate::tower::Tower;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a lease lasts unless renewed: a dead replica's sites are taken up after this.
pub const TTL: Duration = Duration::from_secs(10);
/// How often the leases of running workers are renewed.
pub const RENEW: Duration = Duration::from_secs(2);

/// The lease of a rollout's image pull (site ids never hold a `:`).
pub fn pull_key(rollout: &str) -> String {
    format!("pull:{rollout}")
}

/// The lease that says a tower is alive: towers count each other by it, and share each
/// rollout's parallel work among those alive.
pub fn presence_key(holder: &str) -> String {
    format!("{PRESENCE}{holder}")
}

/// What presence leases' keys begin with.
pub const PRESENCE: &str = "tower:";

/// The leases this tower holds.
pub struct Leases {
    /// This tower, as the store names the holder.
    pub holder: String,
    held: Mutex<HashSet<String>>,
    /// Held with no running worker at the last round: given back if still so at the next
    /// (a lease is taken just before its worker starts; one round lets it start).
    idle: Mutex<HashSet<String>>,
    /// When the leases were last renewed.
    renewed: Mutex<std::time::Instant>,
    /// Takes and gives back one at a time: a lease taken again is never given back by a
    /// round that decided before.
    gate: tokio::sync::Mutex<()>,
}

impl Leases {
    /// No lease yet, held as `holder`.
    pub fn new(holder: String) -> Leases {
        Leases {
            holder,
            held: Mutex::new(HashSet::new()),
            idle: Mutex::new(HashSet::new()),
            renewed: Mutex::new(std::time::Instant::now()),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes (or keeps) lease `key`; `false` when another tower holds it.
    pub async fn take(&self, store: &dyn Store, key: &str) -> Result<bool, StoreError> {
        let _gate = self.gate.lock().await;
        let taken = within(store.claim(key, &self.holder, TTL)).await?;
        if taken {
            self.held().insert(key.to_owned());
            self.idle().remove(key);
        }
        Ok(taken)
    }

    /// Gives lease `key` up now (its work ended and nothing else here uses it).
    pub async fn give_back(&self, store: &dyn Store, key: &str) {
        let _gate = self.gate.lock().await;
        self.release(store, &[key.to_owned()]).await;
    }

    async fn release(&self, store: &dyn Store, keys: &[String]) {
        {
            let mut held = self.held();
            for key in keys {
                held.remove(key);
            }
        }
        if let Err(e) = within(store.release(keys, &self.holder)).await {
            tracing::warn!(leases = keys.len(), error = %e, "cannot give leases back (they expire)");
        }
    }

    /// Renews the leases in `live` (first, within what is left of their time), then gives
    /// back those held with no worker since the last round; returns those of `live` that
    /// could not be renewed.
    pub async fn renew(&self, store: &dyn Store, live: HashSet<String>) -> Vec<String> {
        let keys: Vec<String> = live.iter().cloned().collect();
        let last = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        // Renewed before they expire, or counted lost: another tower may take them then.
        let left = TTL.saturating_sub(last.elapsed() + RENEW / 2);
        let answer = tokio::time::timeout(left, store.renew(&keys, &self.holder, TTL)).await;
        let renewed: HashSet<String> = match answer {
            Ok(Ok(r)) => {
                *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
                r.into_iter().collect()
            }
            // Not renewed, maybe not lost: tried again at the next round, unless they
            // expire before it.
            Ok(Err(e)) if last.elapsed() + RENEW < TTL => {
                tracing::warn!(error = %e, "cannot renew leases: trying again");
                return Vec::new();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew leases before they expire");
                HashSet::new()
            }
            Err(_) => {
                tracing::warn!("the store did not renew the leases before they expire");
                HashSet::new()
            }
        };
        let lost: Vec<String> = keys.into_iter().filter(|k| !renewed.contains(k)).collect();
        {
            let mut held = self.held();
            for key in &lost {
                held.remove(key);
            }
        }
        let _gate = self.gate.lock().await;
        let unused: HashSet<String> = self.held().difference(&live).cloned().collect();
        let ended: Vec<String> = {
            let mut idle = self.idle();
            let ended = unused.intersection(&idle).cloned().collect();
            *idle = unused;
            ended
        };
        if !ended.is_empty() {
            self.release(store, &ended).await;
        }
        lost
    }
}

/// A store call that gives up after [`TTL`] (a stalled database must not hold a round).
async fn within<T>(call: crate::store::Pending<'_, T>) -> Result<T, StoreError> {
    tokio::time::timeout(TTL, call)
        .await
        .map_err(|_| StoreError("the store did not answer within 10 s".into()))?
}

/// Renews the leases of `tower`'s running workers until `shutdown`, then gives them
/// back; stops a worker whose lease was lost.
pub async fn run(tower: Arc<Tower>, mut shutdown: watch::Receiver<bool>) {
    let presence = presence_key(&tower.leases.holder);
    loop {
        // This tower's presence, taken again if it was lost (a stalled database).
        if !tower.leases.held().contains(&presence) {
            if let Err(e) = tower.leases.take(tower.store.as_ref(), &presence).await {
                tracing::warn!(error = %e, "cannot tell the store this tower is alive");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RENEW) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let mut live = tower.live_leases();
        live.insert(presence.clone());
        for key in tower.leases.renew(tower.store.as_ref(), live).await {
            tracing::warn!(lease = %key, "lease lost: another tower may work this now; stopping its work here");
            tower.stop_leased(&key);
        }
    }
    let held: Vec<String> = tower.leases.held().iter().cloned().collect();
    let _gate = tower.leases.gate.lock().await;
    tower.leases.release(tower.store.as_ref(), &held).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[tokio::test]
    async fn a_lease_without_a_worker_is_given_back_a_round_later_and_one_in_use_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let leases = Leases::new("me".into());
        assert!(leases.take(&store, "s-1").await.unwrap());
        assert!(leases.take(&store, "s-2").await.unwrap());
        let live: HashSet<String> = ["s-2".to_owned()].into();
        // s-1's worker has not started yet: kept through one round...
        assert!(leases.renew(&store, live.clone()).await.is_empty());
        assert!(!store.claim("s-1", "other", TTL).await.unwrap());
        // ...and given back at the next, while s-2's is kept.
        assert!(leases.renew(&store, live.clone()).await.is_empty());
        assert!(store.claim("s-1", "other", TTL).await.unwrap());
        assert!(!store.claim("s-2", "other", TTL).await.unwrap());
        // A lease another holder took meanwhile is lost: its worker is to stop.
        store.release(&["s-2".to_owned()], "me").await.unwrap();
        assert!(store.claim("s-2", "other", TTL).await.unwrap());
        assert_eq!(leases.renew(&store, live).await, ["s-2"]);
    }
}
