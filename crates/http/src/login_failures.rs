//! Failed logins by client address (an IPv6 client by its /64): counted (for the log
//! and the metrics), and, once an address has failed a few times in a row, each of its
//! next attempts waits its turn: attempts are spaced by a delay that doubles with every
//! failure, parallel ones queue behind each other, and those that would queue longer
//! than [`MAX_QUEUE`] are refused without their password being checked. A login that
//! succeeds, or a quarter of an hour without failures, clears an address.

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
/// The longest an attempt waits for its turn; later ones are refused at once.
pub(crate) const MAX_QUEUE: Duration = Duration::from_secs(30);

/// Failures in a row, the last one's time, and when the address may next be checked.
#[derive(Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    next: Option<Instant>,
}

/// Failures by address, and how many there were in all.
#[derive(Default)]
pub(crate) struct LoginFailures {
    by_addr: Mutex<HashMap<IpAddr, Record>>,
    total: AtomicU64,
}

/// What failures count by: the address, an IPv6 one by its /64 (a client holds the
/// whole prefix), an IPv4-mapped one as IPv4.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
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
    /// Takes `addr`'s turn: how long this attempt waits before its password is checked,
    /// or `None` when it would wait longer than [`MAX_QUEUE`] (refuse it unchecked).
    pub fn turn(&self, addr: Option<IpAddr>) -> Option<Duration> {
        let Some(addr) = addr.map(key) else {
            return Some(Duration::ZERO);
        };
        let mut map = self.by_addr.lock().expect("failures lock");
        let Some(r) = map.get_mut(&addr) else {
            return Some(Duration::ZERO);
        };
        if r.last.elapsed() >= FORGOTTEN_AFTER || r.failures < FREE {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let at = r.next.map_or(now, |n| n.max(now)) + delay(r.failures);
        let wait = at - now;
        if wait > MAX_QUEUE {
            return None;
        }
        r.next = Some(at);
        Some(wait)
    }

    /// Records a failure; returns how many in a row `addr` has now.
    pub fn failed(&self, addr: Option<IpAddr>) -> u32 {
        self.total.fetch_add(1, Ordering::Relaxed);
        let Some(addr) = addr.map(key) else { return 1 };
        let mut map = self.by_addr.lock().expect("failures lock");
        if map.len() >= TRACKED && !map.contains_key(&addr) {
            map.retain(|_, r| r.last.elapsed() < FORGOTTEN_AFTER);
            if map.len() >= TRACKED {
                let oldest = map.iter().min_by_key(|(_, r)| r.last).map(|(a, _)| *a);
                if let Some(a) = oldest {
                    map.remove(&a);
                }
            }
        }
        let now = Instant::now();
        let r = map.entry(addr).or_insert(Record {
            failures: 0,
            last: now,
            next: None,
        });
        if r.last.elapsed() >= FORGOTTEN_AFTER {
            *r = Record {
                failures: 0,
                last: now,
                next: None,
            };
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        r.failures
    }

    /// A login from `addr` succeeded: it starts afresh.
    pub fn succeeded(&self, addr: Option<IpAddr>) {
        if let Some(addr) = addr {
            self.by_addr
                .lock()
                .expect("failures lock")
                .remove(&key(addr));
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
        for n in 1..=FREE {
            assert_eq!(f.turn(a), Some(Duration::ZERO));
            assert_eq!(f.failed(a), n);
        }
        // Attempts from then on wait their turn, in parallel as one after another.
        let first = f.turn(a).unwrap();
        let second = f.turn(a).unwrap();
        assert!(first >= FIRST_DELAY - Duration::from_millis(50) && first <= FIRST_DELAY);
        assert!(
            second >= first + FIRST_DELAY - Duration::from_millis(50),
            "{second:?}"
        );
        // Too many queued: refused without a check.
        while f.turn(a).is_some() {}
        assert_eq!(
            f.turn(b),
            Some(Duration::ZERO),
            "other addresses wait for nothing"
        );
        f.succeeded(a);
        assert_eq!(f.turn(a), Some(Duration::ZERO));
        assert_eq!(f.total(), u64::from(FREE));
    }

    #[test]
    fn an_ipv6_client_counts_by_its_prefix() {
        let f = LoginFailures::default();
        for i in 0..FREE {
            let addr: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            f.failed(Some(addr));
        }
        let other_in_prefix: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(f.turn(Some(other_in_prefix)).unwrap() > Duration::ZERO);
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(f.turn(Some(elsewhere)), Some(Duration::ZERO));
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(key(mapped), IpAddr::from([10, 0, 0, 9]));
    }
}
