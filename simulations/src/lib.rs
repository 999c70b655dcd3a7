//! A deterministic simulation of a site under faults, driving the node's own Raft driver,
//! log, apply task, orderer, blob file operations, majority hold, fetcher, scrub and
//! reads (`site-node`), the replication core (`site-replica`) and the real state machine
//! (`site-state`). See `README.md`.
//!
//! - `world.rs`: one run: nodes, network, clock, clients, all drawn from one seed.
//! - `node.rs`, `blobs.rs`: a node: its components over a simulated disk (`disk.rs`),
//!   clock and timers (`clock.rs`) and transport (`outbox.rs`), its tasks on an executor
//!   of its own (`tasks.rs`).
//! - `net.rs`: loss, delay, reordering, duplication, partitions that heal.
//! - `workload.rs`: deliveries, tags, schedules, pins, sweeps, reads; crashes, wiped
//!   disks, bit flips, full disks, nodes added and removed.
//! - `invariants/`: one file per promise, checked against `oracle.rs`.

mod blobs;
mod clock;
mod disk;
pub mod invariants;
mod msg;
mod net;
mod node;
mod oracle;
mod outbox;
mod tasks;
mod workload;
pub mod world;

/// Runs one seed quietly: its violations (a panic in the core or the simulation is one
/// too) and what happened.
pub fn run(seed: u64) -> (Vec<String>, Vec<String>) {
    match std::panic::catch_unwind(|| world::World::new(seed, false).run()) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (vec![format!("panic: {what}")], Vec::new())
        }
    }
}
