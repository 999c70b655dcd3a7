//! Which reads of a blob file are checked against its digest (`[node] verify_reads`).
//!
//! A copy is checked when it is written (`blob_writer.rs`, before its rename), by the
//! scrub (`scrub.rs`), and, by default, on its first whole read after the node starts:
//! that read streams through a hash (`scrub.rs`: `verified`) and its last chunk is held
//! back until the bytes
//! match, so a client never gets a whole wrong blob. A copy that does not match ends the
//! read with an error instead of its last bytes, and is then checked again, removed and
//! fetched from a peer (`scrub.rs`). A copy known good is served without a hash (from
//! the page cache straight to the socket, `FileRegion`): runtimes check every blob's
//! digest themselves, so a second hash here costs a core for a check the client repeats.

use site_core::metrics::Counter;
use site_core::Digest;
use std::collections::HashSet;
use std::sync::Mutex;

/// `[node] verify_reads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyReads {
    /// The first whole read of each copy after the node starts (and ranged reads of a
    /// copy not checked yet start a check in the background).
    #[default]
    First,
    /// Every whole read.
    Always,
    /// None: copies are checked when written and by the scrub only.
    Never,
}

/// The copies checked since the node started, and the bytes reads hashed.
pub struct ReadChecks {
    policy: VerifyReads,
    checked: Mutex<HashSet<Digest>>,
    /// Copies being checked in the background.
    checking: Mutex<HashSet<Digest>>,
    /// Bytes hashed to check reads for clients.
    pub hashed: Counter,
    /// One background check at a time: ranged reads across many blobs after a start
    /// queue their checks rather than hash them all at once.
    pub one_at_a_time: tokio::sync::Semaphore,
}

impl ReadChecks {
    /// Checks under `policy`, none done yet.
    pub fn new(policy: VerifyReads) -> ReadChecks {
        ReadChecks {
            policy,
            checked: Default::default(),
            checking: Default::default(),
            hashed: Default::default(),
            one_at_a_time: tokio::sync::Semaphore::new(1),
        }
    }

    /// Whether a read of this node's copy of `d` must be hashed.
    pub fn needed(&self, d: &Digest) -> bool {
        match self.policy {
            VerifyReads::Always => true,
            VerifyReads::Never => false,
            VerifyReads::First => !self.checked.lock().expect("read checks").contains(d),
        }
    }

    /// This node's copy of `d` was found whole (written, scrubbed or read).
    pub fn passed(&self, d: &Digest) {
        if self.policy == VerifyReads::First {
            self.checked.lock().expect("read checks").insert(d.clone());
        }
    }

    /// Whether a background check of `d` may start: under `first`, for a copy not
    /// checked yet, when no check of it is under way (`always` hashes whole reads only;
    /// a ranged read starts nothing).
    pub fn start_check(&self, d: &Digest) -> bool {
        self.policy == VerifyReads::First
            && !self.checked.lock().expect("read checks").contains(d)
            && self.checking.lock().expect("read checks").insert(d.clone())
    }

    /// The background check of `d` ended.
    pub fn end_check(&self, d: &Digest) {
        self.checking.lock().expect("read checks").remove(d);
    }

    /// This node's copy of `d` is gone or bad: the next one is checked again.
    pub fn forget(&self, d: &Digest) {
        self.checked.lock().expect("read checks").remove(d);
    }
}
