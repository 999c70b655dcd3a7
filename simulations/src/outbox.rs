//! The way from a simulated node to the others, as its components use it (the node's
//! `Transport`): the driver's Raft messages, the orderer's forwards to the leader
//! (`forward`), the majority hold's asks (`hold`), the fetches of blob bytes (`fetch`)
//! and the answers the node's tasks give are kept here until the world takes them onto
//! its network (`net.rs`); an answer, once it arrives, resolves the call that waits on
//! it.

use crate::msg::{ForwardError, Forwarded as ForwardAnswer, Payload};
use bytes::Bytes;
use futures_util::StreamExt;
use site_core::Digest;
use site_node::transport::{BlobStream, Forwarded, NodeReport, PeerCall};
use site_node::{Ask, NodeError, Transport};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// What a node sent, and the calls waiting on answers.
pub struct Outbox {
    sent: Mutex<Sent>,
}

#[derive(Default)]
struct Sent {
    /// Raft messages: (to, encoded messages).
    raft: Vec<(u64, Vec<Vec<u8>>)>,
    /// Everything else: (to, message).
    other: Vec<(u64, Payload)>,
    /// The holds not answered yet.
    holds: Waiting<Result<(), String>>,
    /// The fetches not answered yet.
    fetches: Waiting<Option<Vec<u8>>>,
    /// The forwards not answered yet.
    forwards: Waiting<ForwardAnswer>,
    next: u64,
}

/// Calls waiting on their answer, by number.
type Waiting<T> = BTreeMap<u64, oneshot::Sender<T>>;

/// Which calls of a kind wait in `Sent`.
type Kind<T> = fn(&mut Sent) -> &mut Waiting<T>;

impl Outbox {
    /// The outbox of a node's `life`-th start: its calls are numbered apart from those
    /// of its earlier lives, whose answers may still be on the way (a call of the peer
    /// transport is one gRPC call, whose answer never reaches the process started after).
    pub fn new(life: u64) -> Outbox {
        let sent = Sent {
            next: life << 32,
            ..Sent::default()
        };
        Outbox {
            sent: Mutex::new(sent),
        }
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().expect("outbox")
    }

    /// The Raft messages sent since the last call.
    pub fn take(&self) -> Vec<(u64, Vec<Vec<u8>>)> {
        std::mem::take(&mut self.sent().raft)
    }

    /// The other messages sent since the last call.
    pub fn take_other(&self) -> Vec<(u64, Payload)> {
        std::mem::take(&mut self.sent().other)
    }

    /// Sends `payload` to `to` (a task's answer to a peer).
    pub fn send_payload(&self, to: u64, payload: Payload) {
        self.sent().other.push((to, payload));
    }

    /// Hold ask `id` is answered.
    pub fn answer_hold(&self, id: u64, answer: Result<(), String>) {
        self.answer(id, answer, |s| &mut s.holds);
    }

    /// Fetch `id` is answered: the blob's bytes, or none.
    pub fn answer_fetch(&self, id: u64, bytes: Option<Vec<u8>>) {
        self.answer(id, bytes, |s| &mut s.fetches);
    }

    /// Forward `id` is answered.
    pub fn answer_forward(&self, id: u64, answer: ForwardAnswer) {
        self.answer(id, answer, |s| &mut s.forwards);
    }

    /// Sends `to` a call, the payload made from its number; its answer comes back on
    /// the receiver.
    fn call<T>(
        &self,
        to: u64,
        payload: impl FnOnce(u64) -> Payload,
        kind: Kind<T>,
    ) -> oneshot::Receiver<T> {
        let (reply, answer) = oneshot::channel();
        let mut sent = self.sent();
        sent.next += 1;
        let id = sent.next;
        sent.other.push((to, payload(id)));
        kind(&mut sent).insert(id, reply);
        answer
    }

    /// Call `id` of its kind is answered (a late or duplicated answer finds no call).
    fn answer<T>(&self, id: u64, answer: T, kind: Kind<T>) {
        let reply = kind(&mut self.sent()).remove(&id);
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }
}

impl Transport for Outbox {
    fn send(&self, to: u64, messages: Vec<Vec<u8>>) {
        self.sent().raft.push((to, messages));
    }

    fn forward(&self, to: u64, ask: Ask) -> Forwarded {
        let forward = |req| Payload::Forward { req, ask };
        let answer = self.call(to, forward, |s| &mut s.forwards);
        Box::pin(async move {
            match answer.await {
                Ok(Ok(ordered)) => Ok(ordered),
                Ok(Err(ForwardError::NotLeader(leader))) => Err(NodeError::NotLeader(leader)),
                Ok(Err(ForwardError::Other(e))) => Err(NodeError::Unavailable(e)),
                Err(_) => Err(NodeError::Unavailable("the node stopped".into())),
            }
        })
    }

    /// The blob's bytes arrive in one message; the stream opens when it does.
    fn fetch(&self, to: u64, digest: Digest, offset: u64, _: bool) -> PeerCall<BlobStream> {
        let answer = self.call(to, |req| Payload::Fetch { req, digest }, |s| &mut s.fetches);
        Box::pin(async move {
            match answer.await {
                Ok(Some(bytes)) => {
                    let from = (offset as usize).min(bytes.len());
                    let chunk = Bytes::from(bytes).slice(from..);
                    Ok(futures_util::stream::iter([Ok(chunk)]).boxed())
                }
                Ok(None) => Err(format!("node {to} has no copy")),
                Err(_) => Err("the node stopped".to_owned()),
            }
        })
    }

    /// The holder fetches the bytes from the node that asks (`from`, the sender).
    fn hold(&self, to: u64, digest: Digest, size: u64, _from: u64) -> PeerCall<()> {
        let hold = |hold| Payload::Hold { hold, digest, size };
        let answer = self.call(to, hold, |s| &mut s.holds);
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
        Box::pin(async { Err("the simulation carries this elsewhere".to_owned()) })
    }
}
