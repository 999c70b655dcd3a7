//! Node-to-node traffic (`proto/peer.proto`): the service that hands raft messages from
//! peers to this node's driver and serves its blob files to them, and the transport that
//! sends this node's messages to its peers (one queue and one connection per peer,
//! batching what queued up meanwhile), forwards writes, and fetches blobs.

use crate::peer_pb::peer_client::PeerClient;
use crate::peer_pb::peer_server::Peer;
use crate::peer_pb::{
    BlobChunk, FetchBlobRequest, HoldRequest, HoldResponse, ProposeRequest, ProposeResponse,
    RaftAck, RaftBatch,
};
use futures_util::{Stream, StreamExt, TryStreamExt};
use site_core::Digest;
use site_store::transport::{BlobStream, Forwarded, PeerCall};
use site_store::{Store, Transport};
use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// Batches queued towards one peer before new ones are dropped (Raft resends).
const QUEUE: usize = 1024;
/// Bytes per message of a blob sent to a peer.
const BLOB_CHUNK: usize = 1 << 20;

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

    type FetchBlobStream = Pin<Box<dyn Stream<Item = Result<BlobChunk, Status>> + Send>>;

    async fn fetch_blob(
        &self,
        request: Request<FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        let r = request.into_inner();
        let digest =
            Digest::parse(&r.digest).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let file = self
            .store
            .local_blob(&digest, r.offset)
            .await
            .map_err(crate::status::status)?;
        let chunks = tokio_util::io::ReaderStream::with_capacity(file, BLOB_CHUNK)
            .map_ok(|data| BlobChunk { data })
            .map_err(|e| Status::internal(format!("reading the blob file: {e}")));
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn hold(&self, request: Request<HoldRequest>) -> Result<Response<HoldResponse>, Status> {
        let r = request.into_inner();
        let digest =
            Digest::parse(&r.digest).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.store
            .fetch_blob(&digest, r.size, Some(r.from))
            .await
            .map_err(crate::status::status)?;
        Ok(Response::new(HoldResponse {}))
    }
}

/// Sends raft messages to peers over gRPC.
pub struct PeerTransport {
    queues: HashMap<u64, mpsc::Sender<Vec<Vec<u8>>>>,
    /// Forwarded writes: they wait for a commit, and must not queue behind (or hold up)
    /// raft traffic.
    clients: HashMap<u64, PeerClient<Channel>>,
    /// Blob bytes: bulk transfers with no deadline (the receiver gives up on a stall).
    blobs: HashMap<u64, PeerClient<Channel>>,
}

impl PeerTransport {
    /// A transport to `peers` (id → `HOST:PORT` of their `[cluster] listen`); `from` is this
    /// node's id. Spawns one sender task per peer on the current runtime.
    pub fn new(from: u64, peers: &[(u64, String)]) -> Result<PeerTransport, String> {
        let mut queues = HashMap::new();
        let mut clients = HashMap::new();
        let mut blobs = HashMap::new();
        for (id, address) in peers {
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| format!("peer {id} address {address:?}: {e}"))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .initial_stream_window_size(Some(crate::STREAM_WINDOW))
                .initial_connection_window_size(Some(crate::CONNECTION_WINDOW));
            let (tx, rx) = mpsc::channel(QUEUE);
            let raft = endpoint.clone().timeout(Duration::from_secs(10));
            tokio::spawn(pump(from, *id, PeerClient::new(raft.connect_lazy()), rx));
            queues.insert(*id, tx);
            let forwarding = endpoint.clone().timeout(Duration::from_secs(30));
            clients.insert(*id, PeerClient::new(forwarding.connect_lazy()));
            blobs.insert(
                *id,
                PeerClient::new(endpoint.connect_lazy()).max_decoding_message_size(2 * BLOB_CHUNK),
            );
        }
        Ok(PeerTransport {
            queues,
            clients,
            blobs,
        })
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

    fn fetch(&self, to: u64, digest: Digest, offset: u64) -> PeerCall<BlobStream> {
        let client = self.blobs.get(&to).cloned();
        Box::pin(async move {
            let mut client = client.ok_or_else(|| format!("node {to} is not among the peers"))?;
            let stream = client
                .fetch_blob(FetchBlobRequest {
                    digest: digest.to_string(),
                    offset,
                })
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            Ok(stream
                .map_ok(|c| c.data)
                .map_err(|s| s.message().to_owned())
                .boxed())
        })
    }

    fn hold(&self, to: u64, digest: Digest, size: u64, from: u64) -> PeerCall<()> {
        let client = self.blobs.get(&to).cloned();
        Box::pin(async move {
            let mut client = client.ok_or_else(|| format!("node {to} is not among the peers"))?;
            client
                .hold(HoldRequest {
                    digest: digest.to_string(),
                    size,
                    from,
                })
                .await
                .map(|_| ())
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
