//! Each node's clocks: a wall clock with its own offset (days or a year off, or right),
//! drift and jumps (a clock set by hand, NTP coming back), and a monotonic clock with the
//! same drift. Drawn from a stream of their own, so that the rest of a seed's run draws
//! what it drew before clocks were modelled.

use site_replica::Rng;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The wall clock's reading at real time 0 (milliseconds since the Unix epoch).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// The fastest or slowest a node's clocks run, in parts per million.
pub const MAX_DRIFT_PPM: u64 = 500;
const DAY_MS: i64 = 86_400_000;

/// One node's clocks.
#[derive(Debug, Clone)]
pub struct NodeClock {
    /// How far the wall clock is off the real time, in milliseconds.
    offset_ms: i64,
    /// How much faster (or slower: negative) both clocks run, in parts per million.
    drift_ppm: i64,
}

impl NodeClock {
    /// A node's clocks as `rng` draws them: a third right, the others off by up to a
    /// year either way; every one drifting a little.
    pub fn draw(rng: &mut Rng) -> NodeClock {
        let offset_ms = match rng.below(3) {
            0 => 0,
            1 => rng.below(2 * DAY_MS as u64) as i64 - DAY_MS,
            _ => rng.below(2 * 365 * DAY_MS as u64) as i64 - 365 * DAY_MS,
        };
        NodeClock {
            offset_ms,
            drift_ppm: rng.below(2 * MAX_DRIFT_PPM + 1) as i64 - MAX_DRIFT_PPM as i64,
        }
    }

    /// `real` with this node's drift.
    fn drifted(&self, real: u64) -> u64 {
        (real as i64 + real as i64 * self.drift_ppm / 1_000_000) as u64
    }

    /// The monotonic clock at real time `real` (its origin does not matter).
    pub fn mono(&self, real: u64) -> u64 {
        self.drifted(real)
    }

    /// The wall clock at real time `real`.
    pub fn wall(&self, real: u64) -> u64 {
        (EPOCH_MS as i64 + self.drifted(real) as i64 + self.offset_ms).max(0) as u64
    }

    /// The wall clock is set `by` milliseconds forward (backward: negative).
    pub fn jump(&mut self, by: i64) {
        self.offset_ms += by;
    }

    /// A jump as `rng` draws it: a minute to a year, either way.
    pub fn draw_jump(rng: &mut Rng) -> i64 {
        let by = match rng.below(3) {
            0 => 60_000 + rng.below(3_600_000),
            1 => rng.below(7 * DAY_MS as u64),
            _ => rng.below(365 * DAY_MS as u64),
        } as i64;
        if rng.below(2) == 0 {
            by
        } else {
            -by
        }
    }
}

/// A node's clocks at the world's real time, as the node reads them (`site-node`'s
/// `Clock`); the log times it stamps are kept, with the real time, for `invariants/clock.rs`.
/// Its timers end when the node's monotonic clock, as last read by [`SimClock::fire_due`]
/// (at each of the node's steps, a tick at least every tenth of a second), has passed
/// their deadline.
pub struct SimClock {
    clock: Mutex<NodeClock>,
    /// The world's real time, in milliseconds.
    real: Arc<AtomicU64>,
    stamps: Mutex<Vec<(u64, u64)>>,
    timers: Arc<Timers>,
}

/// The timers waited on, and the monotonic time they were last fired at.
#[derive(Default)]
struct Timers {
    now: AtomicU64,
    waiting: Mutex<Vec<(u64, Waker)>>,
}

/// A wait until the monotonic clock reads `deadline`.
struct SimSleep {
    deadline: u64,
    timers: Arc<Timers>,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.timers.now.load(Ordering::Relaxed) >= self.deadline {
            return Poll::Ready(());
        }
        let mut waiting = self.timers.waiting.lock().expect("timers");
        waiting.push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl SimClock {
    pub fn new(clock: NodeClock, real: Arc<AtomicU64>) -> SimClock {
        SimClock {
            clock: Mutex::new(clock),
            real,
            stamps: Default::default(),
            timers: Arc::default(),
        }
    }

    fn real(&self) -> u64 {
        self.real.load(Ordering::Relaxed)
    }

    /// The world's real time (for the invariants, never for the node).
    pub fn real_ms(&self) -> u64 {
        self.real()
    }

    fn node(&self) -> std::sync::MutexGuard<'_, NodeClock> {
        self.clock.lock().expect("clock")
    }

    /// Ends the timers whose deadline the monotonic clock has passed.
    pub fn fire_due(&self) {
        let now = site_node::Clock::monotonic_ms(self);
        self.timers.now.store(now, Ordering::Relaxed);
        let due: Vec<Waker> = {
            let mut waiting = self.timers.waiting.lock().expect("timers");
            let (due, later) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= now);
            *waiting = later;
            due.into_iter().map(|(_, w): (u64, Waker)| w).collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// Drops every timer (the node crashed; its tasks are gone).
    pub fn drop_timers(&self) {
        self.timers.waiting.lock().expect("timers").clear();
    }

    /// The wall clock is set `by` milliseconds forward (backward: negative).
    pub fn jump(&self, by: i64) {
        self.node().jump(by);
    }

    /// The log times stamped since the last call, with the real time of each.
    pub fn take_stamps(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.stamps.lock().expect("stamps"))
    }
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.node().fmt(f)
    }
}

impl site_node::Clock for SimClock {
    fn monotonic_ms(&self) -> u64 {
        self.node().mono(self.real())
    }

    fn wall_ms(&self) -> u64 {
        self.node().wall(self.real())
    }

    fn stamped(&self, log_ms: u64) {
        let real = self.real();
        self.stamps.lock().expect("stamps").push((log_ms, real));
    }

    fn sleep(&self, d: Duration) -> site_node::site_clock::Sleep {
        Box::pin(SimSleep {
            deadline: site_node::Clock::monotonic_ms(self) + d.as_millis() as u64,
            timers: self.timers.clone(),
        })
    }
}
