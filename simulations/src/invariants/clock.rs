//! Time that a bad clock cannot bend: a grace period (or a cached image's time to live)
//! never ends before that much real time has passed, whatever the nodes' wall clocks say
//! (each has its own offset, drift and jumps: `clock.rs`). The log's time is what the
//! leaders stamped; the oracle keeps, for each time stamped, the real times it was
//! stamped at, so that a sweep's end of a period is measured in real time.

use crate::clock::MAX_DRIFT_PPM;
use crate::oracle::Oracle;
use site_core::Digest;
use site_state::{Command, Entry, State, SweepReport};

/// The state a sweep was applied to, and its periods.
pub struct Before {
    state: State,
    grace_ms: u64,
    ttl_ms: u64,
}

/// A period a sweep ended: image `digest`'s, which began at log time `since`, lasted
/// `length` ms of the log's time and ended at the sweep's time `at`.
#[derive(Debug, Clone)]
pub struct Ended {
    pub digest: Digest,
    pub since: u64,
    pub at: u64,
    pub length: u64,
}

/// What a check of a sweep needs from before `entry` is applied to `state` (nothing for
/// another command).
pub fn before(state: &State, entry: &Entry) -> Option<Before> {
    let Command::Sweep {
        grace_secs,
        cache_ttl_secs,
        grace_ms,
        cache_ttl_ms,
        ..
    } = &entry.cmd
    else {
        return None;
    };
    Some(Before {
        state: state.clone(),
        grace_ms: grace_ms.unwrap_or(grace_secs.saturating_mul(1000)),
        ttl_ms: cache_ttl_ms
            .or(cache_ttl_secs.map(|s| s.saturating_mul(1000)))
            .unwrap_or(u64::MAX),
    })
}

/// The periods `report`'s sweep ended (an image evicted for space ends none).
pub fn ended(before: &Before, report: &SweepReport) -> Vec<Ended> {
    report
        .manifests
        .iter()
        .filter(|d| !report.evicted.contains(d))
        .filter_map(|d| {
            let m = before.state.manifest(d)?;
            let (since, length) = if m.cached {
                (m.last_used, before.ttl_ms)
            } else {
                (m.unreferenced_since?, before.grace_ms)
            };
            (length > 0 && length < u64::MAX).then(|| Ended {
                digest: d.clone(),
                since,
                at: report.at,
                length,
            })
        })
        .collect()
}

/// A leader stamped log time `log` at real time `real` (kept: the earliest and the
/// latest).
pub fn stamped(oracle: &mut Oracle, log: u64, real: u64) {
    let e = oracle.stamps.entry(log).or_insert((real, real));
    e.0 = e.0.min(real);
    e.1 = e.1.max(real);
}

/// A violation if `e` ended before its length had passed in real time (less what the
/// clocks' drift allows).
pub fn check(oracle: &Oracle, node: u64, e: &Ended) -> Option<String> {
    // The latest real times they were stamped at so far: a time stamped before a crash
    // lost its entry is stamped again after it (the log's time resumes from the last
    // entry kept), and only the later stamp can be the entry applied.
    let began = oracle.stamps.get(&e.since)?.1;
    let ended = oracle.stamps.get(&e.at)?.1;
    let passed = ended.saturating_sub(began);
    let least = e.length - e.length * 2 * MAX_DRIFT_PPM / 1_000_000;
    (passed < least).then(|| {
        format!(
            "node {node}: a sweep ended the {} ms period of image {} after {passed} ms of real time (log times {} to {})",
            e.length, e.digest, e.since, e.at
        )
    })
}

/// The log's time never goes back: an entry applied at `index` is stamped no earlier
/// than every entry before it (the state's time). A leader that stamps before it holds
/// every entry of the terms before its own could.
pub fn went_back(node: u64, index: u64, state: &State, entry: &Entry) -> Option<String> {
    let before = state.time();
    (entry.now > 0 && entry.now < before).then(|| {
        format!(
            "node {node}: the log's time went back at index {index}: {} after {before}",
            entry.now
        )
    })
}
