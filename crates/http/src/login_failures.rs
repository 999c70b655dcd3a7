//! Failed logins by client address: counted (for the log and the metrics), and answered
//! ever more slowly once an address has failed a few times in a row, so guessing
//! passwords over the network takes years rather than hours. A login that succeeds, or
//! a quarter of an hour without failures, clears an address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row an address may have before its answers slow down.
const FREE: u32 = 5;
/// The delay of the first slowed answer; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest an answer is held back.
const MAX_DELAY: Duration = Duration::from_secs(15);
/// An address without a failure for this long starts afresh.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (the oldest go first).
const TRACKED: usize = 10_000;

/// Failures by address, and how many there were in all.
#[derive(Default)]
pub(crate) struct LoginFailures {
    by_addr: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    total: AtomicU64,
}

/// How long an address that failed `failures` times in a row waits for its next answer.
pub(crate) fn delay(failures: u32) -> Duration {
    if failures < FREE {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

impl LoginFailures {
    /// How long `addr`'s next answer is held back.
    pub fn delay_for(&self, addr: Option<IpAddr>) -> Duration {
        let Some(addr) = addr else {
            return Duration::ZERO;
        };
        let map = self.by_addr.lock().expect("failures lock");
        match map.get(&addr) {
            Some((n, last)) if last.elapsed() < FORGOTTEN_AFTER => delay(*n),
            _ => Duration::ZERO,
        }
    }

    /// Records a failure; returns how many in a row `addr` has now.
    pub fn failed(&self, addr: Option<IpAddr>) -> u32 {
        self.total.fetch_add(1, Ordering::Relaxed);
        let Some(addr) = addr else { return 1 };
        let mut map = self.by_addr.lock().expect("failures lock");
        if map.len() >= TRACKED && !map.contains_key(&addr) {
            map.retain(|_, (_, last)| last.elapsed() < FORGOTTEN_AFTER);
            if map.len() >= TRACKED {
                let oldest = map.iter().min_by_key(|(_, (_, t))| *t).map(|(a, _)| *a);
                if let Some(a) = oldest {
                    map.remove(&a);
                }
            }
        }
        let entry = map.entry(addr).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FORGOTTEN_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        entry.0
    }

    /// A login from `addr` succeeded: it starts afresh.
    pub fn succeeded(&self, addr: Option<IpAddr>) {
        if let Some(addr) = addr {
            self.by_addr.lock().expect("failures lock").remove(&addr);
        }
    }

    /// Failed logins since the node started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_slow_down_after_a_few_failures_and_a_success_clears_them() {
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(FREE - 1), Duration::ZERO);
        assert_eq!(delay(FREE), FIRST_DELAY);
        assert_eq!(delay(FREE + 2), FIRST_DELAY * 4);
        assert_eq!(delay(FREE + 40), MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);

        let f = LoginFailures::default();
        let a: Option<IpAddr> = Some([10, 0, 0, 7].into());
        let b: Option<IpAddr> = Some([10, 0, 0, 8].into());
        for n in 1..=FREE + 1 {
            assert_eq!(f.failed(a), n);
        }
        assert_eq!(f.delay_for(a), delay(FREE + 1));
        assert_eq!(
            f.delay_for(b),
            Duration::ZERO,
            "other addresses are not slowed"
        );
        f.succeeded(a);
        assert_eq!(f.delay_for(a), Duration::ZERO);
        assert_eq!(f.total(), u64::from(FREE + 1));
    }
}
