//! Which sites a rollout works on next, how long a failed one waits, and the totals and
//! estimate `GET /rollouts/{id}` shows.

use crate::rollout::{Rollout, SiteProgress, State};
use serde::Serialize;
use std::collections::BTreeMap;

/// How long a failed site waits before its next attempt: `first`, doubling with each
/// retry up to `max`, spread by ±20% (fixed per site and retry, so that sites that failed
/// together do not come back together, and a run is reproducible).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub first_ms: u64,
    /// Longest wait: a site offline for days is tried this often.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first_ms: 5_000,
            max_ms: 15 * 60_000,
        }
    }
}

impl Backoff {
    /// The wait after the `retries`-th failure of `site`.
    pub fn delay_ms(&self, site: &str, retries: u32) -> u64 {
        let doublings = retries.saturating_sub(1).min(40);
        let base = self
            .first_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms);
        // FNV-1a of the site and the retry: a spread in [0.8, 1.2).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in site.bytes().chain(retries.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let spread = 800 + h % 400;
        (base.saturating_mul(spread) / 1000).max(1)
    }
}

/// Whether a site may start now: waiting, or failed and its backoff over.
pub fn ready_at(site: &SiteProgress, now_ms: u64) -> bool {
    match site.state {
        State::Waiting => true,
        State::Failed => site.next_attempt_ms <= now_ms,
        _ => false,
    }
}

/// The sites to start now: waiting ones, then failed ones whose backoff is over (the
/// longest-due first), as many as `max_parallel` leaves room for beside the sites in
/// flight. None once the rollout is cancelled, nor while its images are pulled.
pub fn due(rollout: &Rollout, now_ms: u64) -> Vec<String> {
    // Cancelled, or its images not all in the tower's registry yet.
    if rollout.cancelled() || rollout.pulling.is_some() {
        return Vec::new();
    }
    let in_flight = rollout
        .sites
        .values()
        .filter(|s| s.state.in_flight())
        .count();
    let room = (rollout.max_parallel.max(1) as usize).saturating_sub(in_flight);
    if room == 0 {
        return Vec::new();
    }
    let mut ready: Vec<(u64, u32, &String)> = rollout
        .sites
        .iter()
        .filter(|(_, s)| ready_at(s, now_ms))
        .map(|(id, s)| (s.next_attempt_ms, s.retries, id))
        .collect();
    ready.sort();
    ready
        .into_iter()
        .take(room)
        .map(|(_, _, id)| id.clone())
        .collect()
}

/// When the next failed site becomes due, if one waits.
pub fn next_due_ms(rollout: &Rollout) -> Option<u64> {
    rollout
        .sites
        .values()
        .filter(|s| s.state == State::Failed)
        .map(|s| s.next_attempt_ms)
        .min()
}

/// A rollout's totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// Sites per state, every state listed.
    pub sites: BTreeMap<&'static str, usize>,
    /// Sites selected.
    pub selected: usize,
    /// Bytes sent to sites.
    pub bytes_done: u64,
    /// Bytes the sites still lack, as far as known (sites not asked yet are counted as
    /// lacking what the asked ones lacked on average, or every blob when none was asked).
    pub bytes_left: u64,
    /// Seconds left at the rate sent so far; `None` before any byte was sent.
    pub eta_seconds: Option<u64>,
}

/// The totals of `rollout` at `now_ms`.
pub fn totals(rollout: &Rollout, now_ms: u64) -> Totals {
    let mut sites: BTreeMap<&'static str, usize> =
        State::ALL.iter().map(|s| (s.name(), 0)).collect();
    for s in rollout.sites.values() {
        *sites.entry(s.state.name()).or_default() += 1;
    }
    let bytes_done: u64 = rollout.sites.values().map(|s| s.bytes_done).sum();
    let asked: Vec<u64> = rollout.sites.values().filter_map(|s| s.lacked).collect();
    let guess = if asked.is_empty() {
        rollout.blobs().iter().map(|b| b.size).sum()
    } else {
        asked.iter().sum::<u64>() / asked.len() as u64
    };
    let bytes_left: u64 = rollout
        .sites
        .values()
        .map(|s| match (s.state, s.lacked) {
            (State::Scheduled | State::Present, _) => 0,
            (_, Some(_)) => s.bytes_left,
            (_, None) => guess,
        })
        .sum();
    let first_start = rollout.sites.values().filter_map(|s| s.started_ms).min();
    let eta_seconds = match first_start {
        Some(start) if bytes_done > 0 && now_ms > start => {
            let rate = bytes_done as f64 / ((now_ms - start) as f64 / 1000.0);
            Some((bytes_left as f64 / rate).ceil() as u64)
        }
        _ if bytes_left == 0 && rollout.complete() => Some(0),
        _ => None,
    };
    Totals {
        sites,
        selected: rollout.sites.len(),
        bytes_done,
        bytes_left,
        eta_seconds,
    }
}
