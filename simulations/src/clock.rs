//! Each node's clocks: a wall clock with its own offset (days or a year off, or right),
//! drift and jumps (a clock set by hand, NTP coming back), and a monotonic clock with the
//! same drift. Drawn from a stream of their own, so that the rest of a seed's run draws
//! what it drew before clocks were modelled.

use site_replica::Rng;

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
pub struct SimClock {
    clock: std::sync::Mutex<NodeClock>,
    /// The world's real time, in milliseconds.
    real: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stamps: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl SimClock {
    pub fn new(clock: NodeClock, real: std::sync::Arc<std::sync::atomic::AtomicU64>) -> SimClock {
        SimClock {
            clock: std::sync::Mutex::new(clock),
            real,
            stamps: Default::default(),
        }
    }

    fn real(&self) -> u64 {
        self.real.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn node(&self) -> std::sync::MutexGuard<'_, NodeClock> {
        self.clock.lock().expect("clock")
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
}
