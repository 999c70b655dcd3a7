//! What travels between simulated nodes, and what a node tells the world.

use raft::eraftpb::Message;
use site_core::Digest;
use site_replica::Ask;
use site_state::{Outcome, StateError};

/// The answer to a client's command: its result, the index it was applied at and the
/// fingerprint of the entry there; `Err` when it was not ordered (not acknowledged).
pub type Answer = Result<(Result<Outcome, StateError>, u64, u64), String>;

/// A leader's answer to a forwarded change: its outcome and the index it was applied
/// at, or why it was not ordered (`NotLeader` keeps the node named, as the peer
/// service's status does).
pub type Forwarded = Result<(Result<Outcome, StateError>, u64), ForwardError>;

/// Why a forwarded change was not ordered.
#[derive(Debug, Clone)]
pub enum ForwardError {
    /// Not the leader; this node is (0: none known).
    NotLeader(u64),
    Other(String),
}

/// A message between nodes.
#[derive(Debug, Clone)]
pub enum Payload {
    Raft(Box<Message>),
    /// Order `ask` on the leader (a follower's client asked).
    Forward {
        req: u64,
        ask: Ask,
    },
    ForwardAnswer {
        req: u64,
        answer: Forwarded,
    },
    /// Hold this blob of `size` bytes (fetched from the sender) for hold `hold`.
    Hold {
        hold: u64,
        digest: Digest,
        size: u64,
    },
    HoldAnswer {
        hold: u64,
        ok: Result<(), String>,
    },
    /// Send me blob `digest`.
    Fetch {
        req: u64,
        digest: Digest,
    },
    FetchAnswer {
        req: u64,
        bytes: Option<Vec<u8>>,
    },
}

impl Payload {
    /// A short name for the trace.
    pub fn name(&self) -> String {
        match self {
            Payload::Raft(m) => format!(
                "{:?} t{} i{} c{} r{} h{} n{}",
                m.get_msg_type(),
                m.term,
                m.index,
                m.commit,
                m.reject as u8,
                m.reject_hint,
                m.entries.len()
            ),
            Payload::Forward { req, .. } => format!("Forward#{req}"),
            Payload::ForwardAnswer { req, .. } => format!("ForwardAnswer#{req}"),
            Payload::Hold { hold, .. } => format!("Hold#{hold}"),
            Payload::HoldAnswer { hold, ok } => format!("HoldAnswer#{hold}:{}", ok.is_ok()),
            Payload::Fetch { req, .. } => format!("Fetch#{req}"),
            Payload::FetchAnswer { req, bytes, .. } => {
                format!("FetchAnswer#{req}:{}", bytes.is_some())
            }
        }
    }
}

/// What a node's step produced for the world.
#[derive(Default)]
pub struct Out {
    /// Messages to send: (from, to, payload).
    pub sends: Vec<(u64, u64, Payload)>,
    /// Answers to clients: (client request, answer).
    pub answers: Vec<(u64, Answer)>,
    /// Entries applied: (node, index, fingerprint).
    pub applied: Vec<(u64, u64, u64)>,
    /// Violations seen while the step ran (checked where they happen).
    pub violations: Vec<String>,
    /// The node failed on its disk and stopped.
    pub fatal: Option<String>,
    /// Entry times a leader stamped: (the log's time, the real time).
    pub stamps: Vec<(u64, u64)>,
    /// Blobs a majority hold said a majority of the voters hold: (node, blob, the
    /// voters when the hold began, the real time it began).
    pub held: Vec<(u64, site_core::Digest, Vec<u64>, u64)>,
    /// Grace periods a sweep ended (`invariants/clock.rs`).
    pub expired: Vec<(u64, crate::invariants::clock::Ended)>,
}
