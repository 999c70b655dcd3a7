#![deny(missing_docs)]
//! The site's replication core: everything that decides how the site's nodes agree, with
//! no I/O of its own.
//!
//! - [`Engine`] wraps raft-rs's `RawNode`: ticks, peer messages and proposals go in;
//!   the Ready procedure comes out as a list of [`Effect`]s (persist, sync, send, install
//!   a snapshot, apply, save a snapshot) that the caller executes in order before it
//!   calls [`Engine::advance`]. Proposals are matched to their entries by the id carried
//!   in the entry's context. Membership changes (`members.rs`), the votes of a node that
//!   lost its log (`catch_up.rs`, `ballot.rs`) and the leader's view of its peers (`health.rs`) are
//!   decided here.
//! - [`Applier`] applies committed entries to `site-state` and says what follows on this
//!   node: blob files to remove or fetch, events to publish, proposers to answer.
//! - Blob replication's decisions: the majority-hold arithmetic and whom to ask
//!   (`hold.rs`), which committed blobs this node lacks or holds corrupt and when to try
//!   again (`missing.rs`).
//!
//! - [`LogClock`]: the time a leader stamps on entries, carried on by monotonic time
//!   from the last entry so that no node's wall clock bends it (`clock.rs`).
//!
//! Time (milliseconds) and randomness (a seed) are arguments, so the node
//! (`site-node`) and the simulation (`simulations/`) drive the same code; one seed
//! replays a whole simulated run.

mod apply;
pub mod ballot;
pub mod catch_up;
pub mod clock;
mod effect;
mod engine;
pub mod health;
pub mod hold;
pub mod members;
pub mod missing;
mod proposal;
mod ready;
mod rng;

pub use apply::Applier;
pub use clock::LogClock;
pub use effect::{Applied, Committed, Effect, LogEffect};
pub use engine::{Engine, Settings, Status};
pub use proposal::{Ask, Refusal};
pub use ready::Cycle;
pub use rng::Rng;

/// Index (and term) of the founding snapshot every new log starts from.
pub const FOUNDING_INDEX: u64 = 1;

/// Raft's message and entry types, as the engine takes and gives them.
pub use raft::eraftpb;
