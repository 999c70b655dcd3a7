//! The way from one node to the others of its site. The store defines what it needs
//! (raft messages, forwarded writes, blob bytes); the gRPC adapter (`site-api`'s
//! `peer.rs`) implements it over `proto/peer.proto`. A group of one uses [`Alone`].

use bytes::Bytes;
use futures_util::stream::BoxStream;
use site_core::Digest;
use std::future::Future;
use std::pin::Pin;

/// A future answered by a peer: its value, or the peer's error message.
pub type PeerCall<T> = Pin<Box<dyn Future<Output = std::result::Result<T, String>> + Send>>;

/// The answer a leader gives to a forwarded change: its outcome, or why it was not
/// ordered (`NotLeader`, `LeaderMoving`, `NoQuorum`, `NodeFailed`, or
/// `Unavailable` for everything else, the peer out of reach included).
pub type Forwarded =
    Pin<Box<dyn Future<Output = std::result::Result<crate::Ordered, crate::NodeError>> + Send>>;

/// Bytes of a blob as a peer streams them.
pub type BlobStream = BoxStream<'static, std::result::Result<Bytes, String>>;

/// Talks to the other nodes of the group.
pub trait Transport: Send + Sync + 'static {
    /// Sends encoded raft messages to node `to`, in order (best effort: Raft retries what
    /// is lost). Must not block.
    fn send(&self, to: u64, messages: Vec<Vec<u8>>);

    /// Asks node `to` (the leader) to order `ask`; resolves to its outcome (or the state
    /// machine's refusal) and the index it was applied at there.
    fn forward(&self, to: u64, ask: crate::Ask) -> Forwarded;

    /// Streams the bytes of blob `digest` from node `to`, from `offset` on. Resolves once
    /// the peer has opened its file (an error if it has none).
    /// A `background` fetch is a copy no one waits for (see `peer.proto`).
    fn fetch(&self, to: u64, digest: Digest, offset: u64, background: bool)
        -> PeerCall<BlobStream>;

    /// Asks node `to` to hold blob `digest` of `size` bytes, fetching it from node `from`
    /// (or any other peer); resolves once its copy is verified and durable.
    fn hold(&self, to: u64, digest: Digest, size: u64, from: u64) -> PeerCall<()>;

    /// Node `id` is now reachable at `address`, or (`None`) no longer a peer.
    fn set_peer(&self, id: u64, address: Option<&str>);

    /// The peers and their addresses.
    fn peers(&self) -> Vec<(u64, String)>;

    /// Asks node `to` where it stands.
    fn report(&self, to: u64) -> PeerCall<NodeReport>;
}

/// Where a node stands, as it reports itself to a peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// The leader it knows of (0: none).
    pub leader: u64,
    /// Its term.
    pub term: u64,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
    /// Committed blobs it lacks the bytes of.
    pub blobs_missing: u64,
}

/// A transport for a group of one: there is nobody to talk to.
pub struct Alone;

fn nobody<T: Send + 'static>(to: u64) -> PeerCall<T> {
    Box::pin(async move { Err(format!("node {to} is not a peer of a group of one")) })
}

impl Transport for Alone {
    fn send(&self, to: u64, messages: Vec<Vec<u8>>) {
        tracing::warn!(
            to,
            n = messages.len(),
            "raft messages for a peer in a group of one"
        );
    }

    fn forward(&self, to: u64, _ask: crate::Ask) -> Forwarded {
        Box::pin(async move {
            Err(crate::NodeError::Unavailable(format!(
                "node {to} is not a peer of a group of one"
            )))
        })
    }

    fn fetch(&self, to: u64, _digest: Digest, _offset: u64, _: bool) -> PeerCall<BlobStream> {
        nobody(to)
    }

    fn hold(&self, to: u64, _digest: Digest, _size: u64, _from: u64) -> PeerCall<()> {
        nobody(to)
    }

    fn set_peer(&self, id: u64, _address: Option<&str>) {
        tracing::warn!(
            node = id,
            "a node alone has no cluster listener: start it with [cluster] peers to grow the site"
        );
    }

    fn peers(&self) -> Vec<(u64, String)> {
        Vec::new()
    }

    fn report(&self, to: u64) -> PeerCall<NodeReport> {
        nobody(to)
    }
}
