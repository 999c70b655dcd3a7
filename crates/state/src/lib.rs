#![deny(missing_docs)]
//! The site's state machine: every change to the site's metadata is a [`Command`], and
//! [`State::apply`] applies it deterministically.
//!
//! Rule of this crate: no clocks, no randomness, no I/O. Time arrives in the command's
//! entry ([`Entry::now`]), so the same entries applied in the same order to the same state
//! give the same state and the same outcome on every node, today from a local log and
//! tomorrow from a Raft log. Blob bytes are not here: the state records which blobs the
//! site holds; the store holds their files.
//!
//! Reference counting (what is live) and garbage collection (what a sweep deletes) are
//! pure functions of the state in [`gc`].

mod apply;
pub mod command;
pub mod error;
pub mod gc;
pub mod image_ref;
pub mod members;
pub mod state;

pub use command::{Command, Entry, Event, Outcome, PullSource};
pub use error::StateError;
pub use gc::{ImageCounts, SweepReport, SweepRules};
pub use image_ref::ImageRef;
pub use members::{check_address, MemberChange};
pub use state::{BlobInfo, ImageSummary, ManifestInfo, Repo, State};
