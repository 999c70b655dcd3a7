//! Node-to-node traffic (`proto/peer.proto`): the service that hands raft messages from
//! peers to this node's driver, and the transport that sends this node's messages to its
//! peers, one queue and one connection per peer, batching what queued up meanwhile.

use crate::peer_pb::peer_client::PeerClient;
use crate::peer_pb::peer_server::Peer;
use crate::peer_pb::{ProposeRequest, ProposeResponse, RaftAck, RaftBatch};
use site_store::raft_driver::Forwarded;
use site_store::{Store, Transport};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// Batches queued towards one peer before new ones are dropped (Raft resends).
const QUEUE: usize = 1024;

/// The peer service of a node.
pub struct PeerService {
    store: Store,
}

impl PeerService {
    /// The service of `store`'s node.
    pub fn new(store: Store) -> PeerService {
        PeerService { store }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        let batch = request.into_inner();
        for m in &batch.messages {
            self.store.receive_raft(m).map_err(crate::status::status)?;
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let answer = self
            .store
            .order_forwarded(&request.into_inner().entry)
            .await
            .map_err(crate::status::status)?;
        Ok(Response::new(ProposeResponse { answer }))
    }
}

/// Sends raft messages to peers over gRPC.
pub struct PeerTransport {
    queues: HashMap<u64, mpsc::Sender<Vec<Vec<u8>>>>,
    clients: HashMap<u64, PeerClient<Channel>>,
}

impl PeerTransport {
    /// A transport to `peers` (id → `HOST:PORT` of their `[cluster] listen`); `from` is this
    /// node's id. Spawns one sender task per peer on the current runtime.
    pub fn new(from: u64, peers: &[(u64, String)]) -> Result<PeerTransport, String> {
        let mut queues = HashMap::new();
        let mut clients = HashMap::new();
        for (id, address) in peers {
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| format!("peer {id} address {address:?}: {e}"))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .initial_stream_window_size(Some(crate::STREAM_WINDOW))
                .initial_connection_window_size(Some(crate::CONNECTION_WINDOW));
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(pump(
                from,
                *id,
                PeerClient::new(endpoint.connect_lazy()),
                rx,
            ));
            queues.insert(*id, tx);
            // Forwarded writes get their own connection: they wait for a commit, and must
            // not queue behind (or hold up) raft traffic.
            let forwarding = endpoint.clone().timeout(Duration::from_secs(30));
            clients.insert(*id, PeerClient::new(forwarding.connect_lazy()));
        }
        Ok(PeerTransport { queues, clients })
    }
}

impl Transport for PeerTransport {
    fn send(&self, to: u64, messages: Vec<Vec<u8>>) {
        match self.queues.get(&to) {
            Some(q) => {
                if q.try_send(messages).is_err() {
                    tracing::debug!(to, "raft queue to peer full: messages dropped");
                }
            }
            None => tracing::warn!(to, "raft message for a node not among the peers"),
        }
    }

    fn forward(&self, to: u64, entry: Vec<u8>) -> Forwarded {
        let client = self.clients.get(&to).cloned();
        Box::pin(async move {
            let mut client = client.ok_or_else(|| format!("node {to} is not among the peers"))?;
            client
                .propose(ProposeRequest { entry })
                .await
                .map(|r| r.into_inner().answer)
                .map_err(|s| s.message().to_owned())
        })
    }
}

/// Sends what queues up for one peer, all of it in one call each time.
async fn pump(
    from: u64,
    to: u64,
    mut client: PeerClient<Channel>,
    mut rx: mpsc::Receiver<Vec<Vec<u8>>>,
) {
    let mut reachable = true;
    while let Some(first) = rx.recv().await {
        let mut messages = first;
        while let Ok(more) = rx.try_recv() {
            messages.extend(more);
        }
        match client.raft(RaftBatch { from, messages }).await {
            Ok(_) if !reachable => {
                reachable = true;
                tracing::info!(peer = to, "peer reachable again");
            }
            Ok(_) => {}
            Err(e) if reachable => {
                reachable = false;
                tracing::warn!(peer = to, error = %e.message(), "peer unreachable");
            }
            Err(_) => {}
        }
    }
}
