//! The rollouts' background loop: sites that match a rollout's selector join it, due
//! sites get a worker (at most `max_parallel` per rollout).

use crate::leases::pull_key;
use crate::tower::{now_ms, Tower};
use site_fleet::schedule::{due, next_due_ms, ready_at};
use site_fleet::{Filter, Rollout, Site};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest sleep between two passes (sites onboarded, rollouts changed by another way).
const PASS: Duration = Duration::from_secs(1);
/// Shortest sleep between two passes: due sites are started in batches, not one pass each
/// (a pass walks every site of every running rollout).
const SHORTEST: Duration = Duration::from_millis(250);

/// Runs until `shutdown` turns true (the workers it started keep running: see `serve`).
pub async fn run(tower: Arc<Tower>, mut shutdown: watch::Receiver<bool>) {
    // The inventory as of the last pass that read it (none yet).
    let mut seen = None;
    loop {
        let wake_at = match pass(&tower, &mut seen).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "rollout pass failed");
                None
            }
        };
        let sleep = wake_at
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
            .unwrap_or(PASS)
            .clamp(SHORTEST, PASS);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = tower.wake.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    // The workers are stopped by the caller, once it has noted what they were working.
}

/// One pass over the rollouts; returns when the next failed site becomes due. Sites
/// join and leave rollouts only when the inventory changed since the pass that last read
/// it (`seen`): a pass over a large fleet does not filter every site every second.
///
/// With a shared store the pass first reads what other towers wrote, and a site is
/// started only under its lease: a site in flight whose lease is another tower's is
/// that tower's work, not an orphan.
async fn pass(
    tower: &Arc<Tower>,
    seen: &mut Option<u64>,
) -> Result<Option<u64>, crate::store::StoreError> {
    let store = tower.store.clone();
    if store.shared() {
        tower.refresh().await?;
    }
    let version = store.inventory_version().await?;
    let sites = if *seen == Some(version) {
        None
    } else {
        let sites = store.sites().await?;
        *seen = Some(version);
        Some(sites)
    };
    // Sites other towers work now.
    let leases = if store.shared() {
        store.leases().await?
    } else {
        Vec::new()
    };
    let elsewhere: HashSet<String> = leases
        .iter()
        .filter(|(_, holder)| *holder != tower.leases.holder)
        .map(|(key, _)| key.clone())
        .collect();
    // Towers alive (this one included): each starts at most its share of a rollout's
    // parallel sites, so that they share the work.
    let towers = leases
        .iter()
        .filter(|(key, holder)| {
            key.starts_with(crate::leases::PRESENCE) && *holder != tower.leases.holder
        })
        .count()
        + 1;
    let mut next = None::<u64>;
    for id in tower.active_ids() {
        let now = now_ms();
        // A site in flight whose worker is gone (it panicked, or the tower that ran it
        // died and its lease expired) fails, to be tried again.
        let orphans: Vec<String> = tower
            .change(&id, |r| {
                r.sites
                    .iter()
                    .filter(|(_, s)| s.state.in_flight())
                    .map(|(site, _)| site.clone())
                    .collect()
            })
            .unwrap_or_default();
        let orphans: Vec<String> = orphans
            .into_iter()
            .filter(|site| !tower.has_worker(&id, site) && !elsewhere.contains(site))
            .collect();
        // In a shared store, a site is failed only under its lease (another tower may
        // have just started it).
        let mut claimed = Vec::with_capacity(orphans.len());
        for site in orphans {
            if !store.shared() || tower.leases.take(store.as_ref(), &site).await? {
                claimed.push(site);
            }
        }
        let orphans = claimed;
        // Images not all in the tower's registry yet: an attempt when it is due (under
        // its lease); the sites wait (`due` starts none).
        let pull = tower
            .change(&id, |r| {
                (
                    r.pull_due(now),
                    r.pulling.as_ref().map(|p| p.next_attempt_ms),
                )
            })
            .unwrap_or_default();
        if pull.0 && tower.leases.take(store.as_ref(), &pull_key(&id)).await? {
            tower.spawn_pull(&id);
        }
        if let (false, Some(at)) = pull {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        let backoff = tower.settings.backoff;
        let mine = tower.working_on(&id).len();
        let planned = tower.change(&id, |r| {
            for site in &orphans {
                if r.sites.get(site).is_some_and(|s| s.state.in_flight()) {
                    r.failed(site, "OTHER", "the tower's worker stopped", now, &backoff);
                }
            }
            let (joined, gone) = match &sites {
                Some(sites) => reconcile(r, sites),
                None => (Vec::new(), Vec::new()),
            };
            let share = (r.max_parallel.max(1) as usize).div_ceil(towers);
            let mut due = due(r, now);
            due.truncate(share.saturating_sub(mine));
            (joined, gone, due)
        });
        let Some((joined, gone, due)) = planned else {
            continue;
        };
        for site in &gone {
            tower.stop_worker(&id, site);
        }
        let started = start(tower, &id, due, now).await;
        // The sites just started get their worker whether or not this write lands: a
        // site in flight without one would wait for the next pass to fail it.
        let changed: Vec<&str> = gone
            .iter()
            .chain(&started)
            .chain(&orphans)
            .map(String::as_str)
            .collect();
        if !changed.is_empty() {
            if let Err(e) = tower.save_sites(&id, &changed).await {
                tracing::error!(rollout = %id, error = %e, "cannot write the rollout");
            }
        }
        if !joined.is_empty() {
            if let Err(e) = tower.save_joined(&id, &joined).await {
                tracing::error!(rollout = %id, error = %e, "cannot write the sites that joined");
            }
        }
        for site in started {
            tower.spawn_worker(&id, &site);
        }
        let wake = tower
            .change(&id, |r| {
                let room = r.sites.values().filter(|s| s.state.in_flight()).count()
                    < r.max_parallel as usize;
                room.then(|| next_due_ms(r)).flatten()
            })
            .flatten();
        next = match (next, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// Starts the sites of rollout `id` that are due, each under its lease: a site whose
/// lease another tower holds is left to it, and one that tower finished meanwhile (read
/// again once the lease is taken) is not started again. Returns the sites started.
async fn start(tower: &Arc<Tower>, id: &str, due: Vec<String>, now: u64) -> Vec<String> {
    let store = tower.store.as_ref();
    let mut started = Vec::with_capacity(due.len());
    for site in due {
        // A store that fails here fails this site's start only: it stays due.
        let fresh = async {
            if !tower.leases.take(store, &site).await? {
                return Ok(None);
            }
            let fresh = if store.shared() {
                store.site_progress(id, &site).await?
            } else {
                None
            };
            Ok::<_, crate::store::StoreError>(Some(fresh))
        };
        let fresh = match fresh.await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(rollout = %id, %site, error = %e, "cannot start a site");
                continue;
            }
        };
        let go = tower
            .change(id, |r| {
                if let Some(p) = fresh {
                    r.sites.insert(site.clone(), p);
                }
                let go = !r.cancelled() && r.sites.get(&site).is_some_and(|s| ready_at(s, now));
                if go {
                    r.start(&site, now);
                }
                go
            })
            .unwrap_or(false);
        if go {
            started.push(site);
        } else if !tower.live_leases().contains(&site) {
            // No worker here needs it (another rollout's may: then it stays).
            tower.leases.give_back(store, &site).await;
        }
    }
    started
}

/// Sites onboarded since that match the selector join; sites removed from the inventory
/// leave. Returns the sites that joined, and those that left.
fn reconcile(rollout: &mut Rollout, sites: &[Site]) -> (Vec<String>, Vec<String>) {
    let Ok(filter) = Filter::parse(&rollout.selector) else {
        return (Vec::new(), Vec::new());
    };
    let joined: Vec<String> = sites
        .iter()
        .filter(|s| filter.matches(&s.document()) && !rollout.sites.contains_key(&s.id))
        .map(|s| s.id.clone())
        .collect();
    rollout.join(joined.iter().map(String::as_str));
    let known: HashSet<&str> = sites.iter().map(|s| s.id.as_str()).collect();
    let gone: Vec<String> = rollout
        .sites
        .keys()
        .filter(|id| !known.contains(id.as_str()))
        .cloned()
        .collect();
    for id in &gone {
        rollout.forget(id);
    }
    if !joined.is_empty() {
        tracing::info!(rollout = %rollout.id, joined = joined.len(), "sites joined the rollout");
    }
    (joined, gone)
}
