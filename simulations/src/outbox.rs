//! The way from a simulated node to the others, as its components use it: the driver's
//! Raft messages and the majority hold's asks (`hold`) are kept here until the world
//! takes them onto its network (`net.rs`); an ask's answer, once it arrives, resolves the
//! call the hold waits on. Fetches and forwards are carried by the simulation itself.

use site_core::Digest;
use site_node::transport::{BlobStream, Forwarded, NodeReport, PeerCall};
use site_node::{Ask, Transport};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// What a node sent, and the holds it waits on.
#[derive(Default)]
pub struct Outbox(Mutex<Sent>);

#[derive(Default)]
struct Sent {
    /// Raft messages: (to, encoded messages).
    raft: Vec<(u64, Vec<Vec<u8>>)>,
    /// Asks to hold a blob: (to, ask id, digest).
    holds: Vec<(u64, u64, Digest)>,
    /// The asks not answered yet.
    waiting: BTreeMap<u64, oneshot::Sender<Result<(), String>>>,
    next: u64,
}

impl Outbox {
    fn sent(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.0.lock().expect("outbox")
    }

    /// The Raft messages sent since the last call.
    pub fn take(&self) -> Vec<(u64, Vec<Vec<u8>>)> {
        std::mem::take(&mut self.sent().raft)
    }

    /// The asks to hold a blob made since the last call.
    pub fn take_holds(&self) -> Vec<(u64, u64, Digest)> {
        std::mem::take(&mut self.sent().holds)
    }

    /// Ask `id` is answered.
    pub fn answer(&self, id: u64, answer: Result<(), String>) {
        if let Some(reply) = self.sent().waiting.remove(&id) {
            let _ = reply.send(answer);
        }
    }
}

fn elsewhere<T: Send + 'static>() -> PeerCall<T> {
    Box::pin(async { Err("the simulation carries this elsewhere".to_owned()) })
}

impl Transport for Outbox {
    fn send(&self, to: u64, messages: Vec<Vec<u8>>) {
        self.sent().raft.push((to, messages));
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

    fn hold(&self, to: u64, digest: Digest, _size: u64, _from: u64) -> PeerCall<()> {
        let (reply, answer) = oneshot::channel();
        let mut sent = self.sent();
        sent.next += 1;
        let id = sent.next;
        sent.holds.push((to, id, digest));
        sent.waiting.insert(id, reply);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err("the node stopped".to_owned()))
        })
    }

    fn set_peer(&self, _: u64, _: Option<&str>) {}

    fn peers(&self) -> Vec<(u64, String)> {
        Vec::new()
    }

    fn report(&self, _: u64) -> PeerCall<NodeReport> {
        elsewhere()
    }
}
