//! This node's reading of the log's clock (`site_replica::LogClock`): the leader stamps
//! each entry it orders with it ([`SiteClock::stamp`], in the Raft driver, once settled:
//! `Engine::settled`), every node carries it on from the entries committed as the driver
//! hands them to the apply task, and from a snapshot's state ([`SiteClock::observe`]),
//! and what a node
//! decides in the log's time (a sweep's plan, the space it may reclaim) reads it
//! ([`SiteClock::now`]). A node's wall clock seeds a new site and is otherwise only
//! compared with it: a disagreement over a minute is a metric and an event
//! ([`SiteClock::watch`]).
//!
//! The two clocks it reads, and the timers the node's background work waits on
//! ([`Clock::sleep`], [`within`]), are behind [`Clock`], so that a simulation can give
//! each node its own.

use site_replica::LogClock;
use site_state::Event;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// A node's clocks, in milliseconds.
pub trait Clock: Send + Sync + 'static {
    /// A monotonic reading (any origin, never going back while the process lives).
    fn monotonic_ms(&self) -> u64;
    /// The wall clock: milliseconds since the Unix epoch, as this machine believes.
    fn wall_ms(&self) -> u64;
    /// The log's time `log_ms` was just stamped on an entry this node orders (a
    /// simulation keeps it, to measure periods in real time). Nothing by default.
    fn stamped(&self, log_ms: u64) {
        let _ = log_ms;
    }
    /// Ends once `d` has passed on the monotonic clock: the runtime's timer by default.
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A wait on a [`Clock`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// `f`'s output, or `None` if `d` passes on `clock` first.
pub async fn within<F: Future>(clock: &dyn Clock, d: Duration, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = f => Some(out),
        () = clock.sleep(d) => None,
    }
}

/// The operating system's clocks.
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn monotonic_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// How often [`SiteClock::watch`] compares the clocks.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// The log's clock on this node.
pub struct SiteClock {
    clock: Arc<dyn Clock>,
    log: Mutex<LogClock>,
    /// Whether the last comparison found the wall clock disagreeing.
    disagreeing: AtomicBool,
}

impl SiteClock {
    /// The log's clock over `clock`, before any entry is seen.
    pub fn new(clock: Arc<dyn Clock>) -> SiteClock {
        SiteClock {
            clock,
            log: Mutex::new(LogClock::new()),
            disagreeing: AtomicBool::new(false),
        }
    }

    /// The node's clocks under it: what the node's timers wait on.
    pub fn source(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, LogClock> {
        self.log.lock().expect("log clock lock")
    }

    /// The log's time now (milliseconds since the Unix epoch).
    pub fn now(&self) -> u64 {
        let (mono, wall) = self.read();
        self.log().now(mono, wall)
    }

    /// The time for an entry this node orders as the leader.
    pub(crate) fn stamp(&self) -> u64 {
        let (mono, wall) = self.read();
        let time = self.log().stamp(mono, wall);
        #[cfg(feature = "bug-node-wall-clock-stamp")]
        let time = {
            let _ = time;
            wall
        };
        self.clock.stamped(time);
        time
    }

    /// This node's monotonic clock (the Raft engine's time).
    pub(crate) fn monotonic_ms(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    /// An entry stamped `time` was applied here (or a state holding entries up to
    /// `time` was loaded).
    pub fn observe(&self, time: u64) {
        let mono = self.clock.monotonic_ms();
        self.log().observe(time, mono);
    }

    /// How far this node's wall clock is ahead of the log's time, in milliseconds
    /// (behind: negative); `None` before the site has a time.
    pub fn skew_ms(&self) -> Option<i64> {
        let (mono, wall) = self.read();
        self.log().skew(mono, wall)
    }

    fn read(&self) -> (u64, u64) {
        (self.clock.monotonic_ms(), self.clock.wall_ms())
    }

    /// Compares the clocks; the event to publish when this node's wall clock starts or
    /// stops disagreeing with the log's time by more than a minute.
    pub(crate) fn compare(&self, node: u64) -> Option<Event> {
        let skew_ms = self.skew_ms()?;
        let disagrees = LogClock::disagrees(skew_ms);
        if self.disagreeing.swap(disagrees, Ordering::Relaxed) == disagrees {
            return None;
        }
        if disagrees {
            tracing::warn!(
                node,
                skew_ms,
                "this node's wall clock disagrees with the site's log time by more than a minute; the log's time goes on with elapsed time (grace periods and TTLs are not bent): set the clock right"
            );
        } else {
            tracing::info!(
                node,
                skew_ms,
                "this node's wall clock agrees with the site's log time again"
            );
        }
        Some(Event::ClockSkew {
            node,
            skew_ms,
            disagrees,
        })
    }

    /// Compares the clocks every few seconds until `shutdown`, telling `events` what
    /// [`Self::compare`] finds.
    pub(crate) async fn watch(
        self: Arc<Self>,
        node: u64,
        events: crate::Events,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut every = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Some(event) = self.compare(node) {
                        events.publish(event);
                    }
                }
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
