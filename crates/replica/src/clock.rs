//! The log's clock: the time a leader stamps on each entry, which is the only clock the
//! state machine sees (grace periods, cache TTLs, leases).
//!
//! Edge hardware keeps bad time (no RTC battery, no NTP while offline, a clock set by
//! hand), so a node's wall clock never sets the log's time once the site has one. A node
//! continues from the latest entry another leader stamped, plus what its own monotonic
//! clock measured since it applied that entry: a new leader whose wall clock runs a day
//! ahead, or a year behind, stamps what a leader with the right time would have, and a
//! wall clock corrected by a jump moves nothing. The wall clock only seeds a new site
//! (no entry ever stamped) and is otherwise compared with the log's time, so that a node
//! can report how far it disagrees ([`LogClock::skew`]).
//!
//! What this gives: the log's time never runs faster than the monotonic clocks of the
//! nodes that led, so a grace period or TTL never ends before that much time has passed
//! on them. What it costs: time in which no node of the site ran is not counted (a site
//! switched off for a night resumes where it stopped), and each change of leader loses
//! the few milliseconds between an entry's stamp and its apply; both make periods end
//! later, never sooner.
//!
//! Times are milliseconds: `mono` from the node's monotonic clock (any origin, fixed
//! while the process lives), `wall` since the Unix epoch.

/// The log's clock as one node sees it.
#[derive(Debug, Clone, Default)]
pub struct LogClock {
    /// The latest entry time applied that this node did not stamp itself, and the
    /// monotonic reading when it was applied (or when this node stamped a new site's
    /// first time).
    base: Option<(u64, u64)>,
    /// The latest entry time applied.
    floor: u64,
    /// The latest time this node stamped.
    stamped: u64,
}

/// How far a wall clock may disagree with the log's time before it is reported.
pub const DISAGREEMENT_MS: u64 = 60_000;

impl LogClock {
    /// A clock that has seen no entry: it follows the wall clock until the first.
    pub fn new() -> LogClock {
        LogClock::default()
    }

    /// An entry stamped `time` was applied (or a state holding entries up to `time` was
    /// loaded) when the monotonic clock read `mono`. Entries this node stamped itself
    /// move only the floor, so that their way through the log (ms) does not hold its
    /// clock back.
    pub fn observe(&mut self, time: u64, mono: u64) {
        if time == 0 {
            return;
        }
        self.floor = self.floor.max(time);
        if time > self.stamped {
            self.base = Some((time, mono));
        }
    }

    /// The log's time now: the base plus the monotonic time since, never below an
    /// entry applied or stamped; a site with no entry yet reads the wall clock.
    pub fn now(&self, mono: u64, wall: u64) -> u64 {
        let t = match self.base {
            Some((time, at)) => time.saturating_add(mono.saturating_sub(at)),
            None => wall,
        };
        t.max(self.floor).max(self.stamped)
    }

    /// The time for an entry this node proposes as the leader: [`Self::now`], never
    /// below what it stamped before. The first stamp of a new site fixes the base.
    pub fn stamp(&mut self, mono: u64, wall: u64) -> u64 {
        let t = self.now(mono, wall);
        if self.base.is_none() {
            self.base = Some((t, mono));
        }
        self.stamped = t;
        t
    }

    /// How far the wall clock is ahead of the log's time (behind: negative), once the
    /// site has a time.
    pub fn skew(&self, mono: u64, wall: u64) -> Option<i64> {
        self.base?;
        let log = self.now(mono, wall);
        Some(wall as i64 - log as i64)
    }

    /// Whether `skew` is a disagreement worth reporting ([`DISAGREEMENT_MS`]).
    pub fn disagrees(skew: i64) -> bool {
        skew.unsigned_abs() > DISAGREEMENT_MS
    }
}

#[cfg(test)]
#[path = "clock_test.rs"]
mod tests;
