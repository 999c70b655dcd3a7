//! The way from a simulated node's Raft driver to the others: the driver's `send`s are
//! kept here until the world takes them onto its network (`net.rs`). The driver sends
//! nothing else through a transport.

use site_core::Digest;
use site_node::transport::{BlobStream, Forwarded, NodeReport, PeerCall};
use site_node::{Ask, Transport};
use std::sync::Mutex;

/// Raft messages a node's driver sent: (to, encoded messages).
#[derive(Default)]
pub struct Outbox(Mutex<Vec<(u64, Vec<Vec<u8>>)>>);

impl Outbox {
    /// What was sent since the last call.
    pub fn take(&self) -> Vec<(u64, Vec<Vec<u8>>)> {
        std::mem::take(&mut self.0.lock().expect("outbox"))
    }
}

fn elsewhere<T: Send + 'static>() -> PeerCall<T> {
    Box::pin(async { Err("the simulation carries this elsewhere".to_owned()) })
}

impl Transport for Outbox {
    fn send(&self, to: u64, messages: Vec<Vec<u8>>) {
        self.0.lock().expect("outbox").push((to, messages));
    }

    fn forward(&self, _to: u64, _ask: Ask) -> Forwarded {
        Box::pin(async {
            Err(site_node::NodeError::Unavailable(
                "the simulation carries forwards elsewhere".into(),
            ))
        })
    }

    fn fetch(&self, _: u64, _: Digest, _: u64, _: bool) -> PeerCall<BlobStream> {
        elsewhere()
    }

    fn hold(&self, _: u64, _: Digest, _: u64, _: u64) -> PeerCall<()> {
        elsewhere()
    }

    fn set_peer(&self, _: u64, _: Option<&str>) {}

    fn peers(&self) -> Vec<(u64, String)> {
        Vec::new()
    }

    fn report(&self, _: u64) -> PeerCall<NodeReport> {
        elsewhere()
    }
}
