//! The rollouts' background loop: sites that match a rollout's selector join it, due
//! sites get a worker (at most `max_parallel` per rollout).

use crate::tower::{now_ms, Tower};
use site_fleet::schedule::{due, next_due_ms};
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

/// Runs until `shutdown` turns true; then stops every worker.
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
    tower.stop_workers(None);
}

/// One pass over the rollouts; returns when the next failed site becomes due. Sites
/// join and leave rollouts only when the inventory changed since the pass that last read
/// it (`seen`): a pass over a large fleet does not filter every site every second.
async fn pass(
    tower: &Arc<Tower>,
    seen: &mut Option<u64>,
) -> Result<Option<u64>, crate::store::StoreError> {
    let generation = tower.inventory_generation();
    let sites = if *seen == Some(generation) {
        None
    } else {
        let sites = tower.store.sites().await?;
        *seen = Some(generation);
        Some(sites)
    };
    let mut next = None::<u64>;
    for id in tower.active_ids() {
        let now = now_ms();
        // A site in flight whose worker is gone (it panicked) fails, to be tried again.
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
            .filter(|site| !tower.has_worker(&id, site))
            .collect();
        // Images not all in the tower's registry yet: an attempt when it is due; the
        // sites wait (`due` starts none).
        let pull = tower
            .change(&id, |r| {
                (
                    r.pull_due(now),
                    r.pulling.as_ref().map(|p| p.next_attempt_ms),
                )
            })
            .unwrap_or_default();
        if pull.0 {
            tower.spawn_pull(&id);
        }
        if let (false, Some(at)) = pull {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        let backoff = tower.settings.backoff;
        let planned = tower.change(&id, |r| {
            for site in &orphans {
                if r.sites.get(site).is_some_and(|s| s.state.in_flight()) {
                    r.failed(site, "OTHER", "the tower's worker stopped", now, &backoff);
                }
            }
            let (joined, gone) = match &sites {
                Some(sites) => reconcile(r, sites),
                None => (false, Vec::new()),
            };
            let due = due(r, now);
            for site in &due {
                r.start(site, now);
            }
            let room =
                r.sites.values().filter(|s| s.state.in_flight()).count() < r.max_parallel as usize;
            (
                joined || !gone.is_empty(),
                gone,
                due,
                room.then(|| next_due_ms(r)).flatten(),
            )
        });
        let Some((whole, gone, due, wake)) = planned else {
            continue;
        };
        for site in &gone {
            tower.stop_worker(&id, site);
        }
        // The sites just started get their worker whether or not this write lands: a
        // site in flight without one would wait for the next pass to fail it.
        let written = if whole {
            tower.save(&id).await
        } else {
            let changed: Vec<&str> = due.iter().chain(&orphans).map(String::as_str).collect();
            if changed.is_empty() {
                Ok(())
            } else {
                tower.save_sites(&id, &changed).await
            }
        };
        if let Err(e) = written {
            tracing::error!(rollout = %id, error = %e, "cannot write the rollout");
        }
        for site in due {
            tower.spawn_worker(&id, &site);
        }
        next = match (next, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// Sites onboarded since that match the selector join; sites removed from the inventory
/// leave. Returns whether sites joined, and the sites that left.
fn reconcile(rollout: &mut Rollout, sites: &[Site]) -> (bool, Vec<String>) {
    let Ok(filter) = Filter::parse(&rollout.selector) else {
        return (false, Vec::new());
    };
    let matching = sites
        .iter()
        .filter(|s| filter.matches(&s.document()))
        .map(|s| s.id.as_str());
    let joined = rollout.join(matching);
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
    if joined > 0 {
        tracing::info!(rollout = %rollout.id, joined, "sites joined the rollout");
    }
    (joined > 0, gone)
}
