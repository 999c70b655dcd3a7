#![deny(missing_docs)]
//! The site registry's gRPC contracts, generated from `proto/`: [`pb`] (the tower's API,
//! `site.proto`) and [`peer_pb`] (node to node, `peer.proto`). Clients only, unless the
//! `server` feature asks for the servers too; so towerctl, a client, builds neither the
//! node's servers nor its storage.

/// Generated from `proto/site.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("site.v1");
}

/// Generated from `proto/peer.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod peer_pb {
    tonic::include_proto!("peer.v1");
}
