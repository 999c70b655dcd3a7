//! The parts of a node the gRPC services are given: each a component of its own, named
//! for what the handlers ask of it (no wrapper around the whole node).

use site_node::{
    Deliveries, Events, Failure, Fetcher, Leadership, Membership, MissingBlobs, Orderer, PeerFiles,
    Repositories, SiteState,
};

/// What the tower's service and the peer service use of their node.
#[derive(Clone)]
pub struct NodeParts {
    /// The site's state as applied here.
    pub state: SiteState,
    /// The way into the site's log.
    pub orderer: Orderer,
    /// Manifests, tags and blob links.
    pub repositories: Repositories,
    /// Blobs made the site's: the tower's resumable streams.
    pub deliveries: Deliveries,
    /// Where this node's Raft stands; whether it can take writes.
    pub leadership: Leadership,
    /// The site's members.
    pub membership: Membership,
    /// The committed blobs this node lacks.
    pub missing: MissingBlobs,
    /// Whether this node's storage failed.
    pub failure: Failure,
    /// The node's events.
    pub events: Events,
    /// Copies of blobs from peers (a peer's hold).
    pub fetcher: Fetcher,
    /// The files peers are sent blob bytes from.
    pub peer_files: PeerFiles,
}

impl NodeParts {
    /// The parts of `node` the services use.
    pub fn of(node: &site_node::Node) -> NodeParts {
        NodeParts {
            state: node.state.clone(),
            orderer: node.orderer.clone(),
            repositories: node.repositories.clone(),
            deliveries: node.deliveries.clone(),
            leadership: node.leadership.clone(),
            membership: node.membership.clone(),
            missing: node.missing.clone(),
            failure: node.failure.clone(),
            events: node.events.clone(),
            fetcher: node.fetcher.clone(),
            peer_files: node.peer_files.clone(),
        }
    }
}
