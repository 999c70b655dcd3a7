//! Node-to-node traffic (`proto/peer.proto`): the service that hands raft messages from
//! peers to this node's driver and serves its blob files to them, and the transport that
//! sends this node's messages to its peers (one queue and one connection per peer,
//! batching what queued up meanwhile), forwards writes, and fetches blobs.

use crate::ask_wire;
use crate::node::NodeParts;
use crate::peer_pb::peer_client::PeerClient;
use crate::peer_pb::peer_server::Peer;
use crate::peer_pb::{
    BlobChunk, FetchBlobRequest, FillBlobRequest, FillProgress, HoldRequest, HoldResponse,
    ProposeRequest, ProposeResponse, RaftAck, RaftBatch, ReportRequest,
};
use crate::tls::PeerCheck;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use site_core::{Digest, Repository};
use site_node::transport::{BlobStream, Forwarded, PeerCall};
use site_node::{Ask, NodeError, NodeReport, PeerFiles, Transport};
use site_pull::{FillUpdate, Peers, PullError, Puller};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

/// Batches queued towards one peer before new ones are dropped (Raft resends).
const QUEUE: usize = 1024;
/// Largest blob message a peer sends (the node reads blobs in chunks of this size).
const BLOB_CHUNK: usize = 1 << 20;

/// The peer service of a node.
pub struct PeerService {
    node: NodeParts,
    /// Fills blobs that peers' clients missed (`FillBlob`).
    puller: Puller,
    /// Under `[tls]`: only callers with a node's certificate for one of these peers' hosts
    /// are served (`tls.rs`).
    only_peers: Option<(PeerCheck, Arc<dyn Transport>)>,
}

impl PeerService {
    /// The service of the node of `node`'s parts; with `check`, callers must hold a node
    /// certificate for the host of one of `transport`'s peers.
    pub fn new(
        node: NodeParts,
        puller: Puller,
        check: Option<PeerCheck>,
        transport: Arc<dyn Transport>,
    ) -> PeerService {
        PeerService {
            node,
            puller,
            only_peers: check.map(|c| (c, transport)),
        }
    }

    /// The files the service sends peers blob bytes from.
    pub fn peer_files(&self) -> &PeerFiles {
        &self.node.peer_files
    }

    /// Refuses a caller that is not one of the site's nodes.
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some((check, transport)) = &self.only_peers else {
            return Ok(());
        };
        let peers = transport.peers();
        let hosts = peers.iter().map(|(_, a)| crate::tls::host_of(a));
        let chain = request.peer_certs();
        if chain
            .as_deref()
            .and_then(|chain| check.host_of_chain(chain, hosts))
            .is_some()
        {
            return Ok(());
        }
        tracing::warn!(
            client = ?request.remote_addr(),
            "refused a call to the cluster listener: the client certificate is not a node certificate for any peer's host"
        );
        Err(Status::permission_denied(
            "the cluster listener serves the site's nodes only: present a node certificate for the host of one of this node's peers",
        ))
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        self.admit(&request)?;
        let batch = request.into_inner();
        for m in &batch.messages {
            self.node
                .orderer
                .receive_raft(m)
                .map_err(crate::status::status)?;
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        self.admit(&request)?;
        let ask = request
            .into_inner()
            .ask
            .ok_or("no change")
            .map_err(str::to_owned)
            .and_then(ask_wire::ask_from_wire)
            .map_err(|e| {
                Status::invalid_argument(crate::status::bounded(format!(
                    "not a change to order: {e}"
                )))
            })?;
        match self.node.orderer.order_forwarded(ask).await {
            Ok(ordered) => Ok(Response::new(ProposeResponse {
                ordered: Some(ask_wire::ordered_to_wire(&ordered)),
                refusal: None,
            })),
            Err(e) => match crate::forwarded::refusal(&e) {
                Some(refusal) => Ok(Response::new(ProposeResponse {
                    ordered: None,
                    refusal: Some(refusal),
                })),
                None => Err(crate::status::status(e)),
            },
        }
    }

    type FetchBlobStream = Pin<Box<dyn Stream<Item = Result<BlobChunk, Status>> + Send>>;

    async fn fetch_blob(
        &self,
        request: Request<FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        self.admit(&request)?;
        let r = request.into_inner();
        let digest =
            Digest::parse(&r.digest).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let chunks = self
            .node
            .peer_files
            .blob_for_peer(&digest, r.offset, r.background)
            .await
            .map_err(crate::status::status)?
            .map_ok({
                let peer_files = self.node.peer_files.clone();
                move |data| {
                    peer_files.count_sent(site_node::PeerSend::Grpc, data.len() as u64);
                    BlobChunk { data }
                }
            })
            .map_err(|e| Status::internal(format!("reading the blob file: {e}")));
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn hold(&self, request: Request<HoldRequest>) -> Result<Response<HoldResponse>, Status> {
        self.admit(&request)?;
        let r = request.into_inner();
        let digest =
            Digest::parse(&r.digest).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.node
            .fetcher
            .fetch_blob(&digest, r.size, Some(r.from))
            .await
            .map_err(crate::status::status)?;
        Ok(Response::new(HoldResponse {}))
    }

    type FillBlobStream = Pin<Box<dyn Stream<Item = Result<FillProgress, Status>> + Send>>;

    async fn fill_blob(
        &self,
        request: Request<FillBlobRequest>,
    ) -> Result<Response<Self::FillBlobStream>, Status> {
        self.admit(&request)?;
        let r = request.into_inner();
        let repo = Repository::parse_normalized(&r.repository, "docker.io")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let digest =
            Digest::parse(&r.digest).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let expected = (r.size > 0).then_some(r.size);
        let ended = |e: PullError| FillProgress {
            done: true,
            reason: e.reason().to_owned(),
            message: e.detail().to_owned(),
            retry_after: e.retry_after().unwrap_or(0),
            ..FillProgress::default()
        };
        let mut fill = match self.puller.fill_for_peer(&repo, &digest, expected).await {
            Ok(f) => f,
            Err(e) => {
                let once = futures_util::stream::once(async move { Ok(ended(e)) });
                return Ok(Response::new(Box::pin(once)));
            }
        };
        // The size once bytes flow, then how it ended.
        let progress = async_stream(move |tx| async move {
            match fill.started().await {
                Ok(size) => {
                    let _ = tx
                        .send(Ok(FillProgress {
                            size,
                            ..FillProgress::default()
                        }))
                        .await;
                }
                Err(e) => {
                    let _ = tx.send(Ok(ended(e))).await;
                    return;
                }
            }
            match fill.verified().await {
                Ok(size) => {
                    let verified = FillProgress {
                        size,
                        verified: true,
                        ..FillProgress::default()
                    };
                    let _ = tx.send(Ok(verified)).await;
                }
                Err(e) => {
                    let _ = tx.send(Ok(ended(e))).await;
                    return;
                }
            }
            let last = match fill.done().await {
                Ok(size) => FillProgress {
                    size,
                    done: true,
                    ..FillProgress::default()
                },
                Err(e) => ended(e),
            };
            let _ = tx.send(Ok(last)).await;
        });
        Ok(Response::new(progress))
    }

    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<crate::peer_pb::NodeReport>, Status> {
        self.admit(&request)?;
        let r = self.node.membership.local_report();
        Ok(Response::new(crate::peer_pb::NodeReport {
            leader_id: r.leader,
            term: r.term,
            commit_index: r.commit,
            applied_index: r.applied,
            blobs_missing: r.blobs_missing,
        }))
    }
}

/// The connections to one peer.
struct Link {
    address: String,
    /// Raft messages, sent by this link's pump task (which ends when the link is dropped).
    queue: mpsc::Sender<Vec<Vec<u8>>>,
    /// Forwarded writes and reports: they wait for a commit, and must not queue behind
    /// (or hold up) raft traffic.
    calls: PeerClient<Channel>,
    /// Blob bytes: bulk transfers with no deadline (the receiver gives up on a stall).
    blobs: PeerClient<Channel>,
}

impl Link {
    /// Connections (made lazily) from node `from` to node `to` at `address`; spawns the
    /// raft pump on the current runtime.
    fn new(
        from: u64,
        to: u64,
        address: &str,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Link, String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| format!("peer {to} address {address:?}: {e}"))?;
        if let Some(tls) = tls {
            let tls = tls.clone().domain_name(crate::tls::host_of(address));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("peer {to}: TLS: {e}"))?;
        }
        // Keepalives find a peer that vanished (power cut, cable) within seconds, so that
        // no call waits on it forever.
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_keepalive(Some(Duration::from_secs(10)))
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(crate::STREAM_WINDOW))
            .initial_connection_window_size(Some(crate::CONNECTION_WINDOW))
            .max_frame_size(Some(crate::MAX_FRAME));
        let (queue, rx) = mpsc::channel(QUEUE);
        let raft = endpoint.clone().timeout(Duration::from_secs(10));
        tokio::spawn(pump(from, to, PeerClient::new(raft.connect_lazy()), rx));
        let calls = endpoint.clone().timeout(Duration::from_secs(30));
        Ok(Link {
            address: address.to_owned(),
            queue,
            calls: PeerClient::new(calls.connect_lazy()),
            blobs: PeerClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(2 * BLOB_CHUNK),
        })
    }
}

/// Talks to the peers over gRPC: raft messages through one queue per peer, calls and
/// blob streams on connections of their own.
pub struct PeerTransport {
    from: u64,
    tls: Option<ClientTlsConfig>,
    links: RwLock<HashMap<u64, Link>>,
}

impl PeerTransport {
    /// A transport to `peers` (id → `HOST:PORT` of their `[cluster] listen`), over mTLS
    /// when `tls` is given; `from` is this node's id. Spawns one sender task per peer on
    /// the current runtime.
    pub fn new(
        from: u64,
        peers: &[(u64, String)],
        tls: Option<ClientTlsConfig>,
    ) -> Result<PeerTransport, String> {
        let mut links = HashMap::new();
        for (id, address) in peers {
            links.insert(*id, Link::new(from, *id, address, tls.as_ref())?);
        }
        Ok(PeerTransport {
            from,
            tls,
            links: RwLock::new(links),
        })
    }

    /// The cluster address of node `to`.
    fn address(&self, to: u64) -> Option<String> {
        let links = self.links.read().expect("peer links");
        links.get(&to).map(|l| l.address.clone())
    }

    /// A client of node `to`: the connection `pick` chooses among its link's.
    fn client(
        &self,
        to: u64,
        pick: fn(&Link) -> &PeerClient<Channel>,
    ) -> Result<PeerClient<Channel>, String> {
        self.links
            .read()
            .expect("peer links")
            .get(&to)
            .map(|l| pick(l).clone())
            .ok_or_else(|| format!("node {to} is not among the peers"))
    }
}

impl Transport for PeerTransport {
    fn send(&self, to: u64, messages: Vec<Vec<u8>>) {
        match self.links.read().expect("peer links").get(&to) {
            Some(l) => {
                if l.queue.try_send(messages).is_err() {
                    tracing::debug!(to, "raft queue to peer full: messages dropped");
                }
            }
            None => tracing::warn!(to, "raft message for a node not among the peers"),
        }
    }

    fn forward(&self, to: u64, ask: Ask) -> Forwarded {
        let client = self.client(to, |l| &l.calls);
        Box::pin(async move {
            let unavailable = |m: String| NodeError::Unavailable(format!("leader {to}: {m}"));
            let answer = client
                .map_err(unavailable)?
                .propose(ProposeRequest {
                    ask: Some(ask_wire::ask_to_wire(&ask)),
                })
                .await
                .map_err(|s| unavailable(s.message().to_owned()))?
                .into_inner();
            match (answer.refusal, answer.ordered) {
                (Some(refusal), _) => Err(crate::forwarded::error(to, refusal)),
                (None, Some(ordered)) => ask_wire::ordered_from_wire(ordered)
                    .map_err(|e| unavailable(format!("answered no outcome: {e}"))),
                (None, None) => Err(unavailable(
                    "answered neither an outcome nor a refusal".into(),
                )),
            }
        })
    }

    fn fetch(
        &self,
        to: u64,
        digest: Digest,
        offset: u64,
        background: bool,
    ) -> PeerCall<BlobStream> {
        let client = self.client(to, |l| &l.blobs);
        // Without TLS, the bytes come from the peer's page cache (`peer_bytes.rs`).
        let plain = self.tls.is_none().then(|| self.address(to)).flatten();
        Box::pin(async move {
            if let Some(address) = plain {
                if let Some(stream) =
                    crate::peer_bytes::fetch(&address, &digest, offset, background).await?
                {
                    return Ok(stream);
                }
            }
            let stream = client?
                .fetch_blob(FetchBlobRequest {
                    digest: digest.to_string(),
                    offset,
                    background,
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
        let client = self.client(to, |l| &l.blobs);
        Box::pin(async move {
            client?
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

    fn set_peer(&self, id: u64, address: Option<&str>) {
        let mut links = self.links.write().expect("peer links");
        match address {
            Some(a) if links.get(&id).is_some_and(|l| l.address == a) => {}
            Some(a) => match Link::new(self.from, id, a, self.tls.as_ref()) {
                Ok(link) => {
                    tracing::info!(peer = id, address = a, "peer address set");
                    links.insert(id, link);
                }
                Err(e) => tracing::error!(peer = id, error = %e, "cannot reach the new peer"),
            },
            None => {
                if links.remove(&id).is_some() {
                    tracing::info!(peer = id, "peer dropped");
                }
            }
        }
    }

    fn peers(&self) -> Vec<(u64, String)> {
        let mut peers: Vec<(u64, String)> = self
            .links
            .read()
            .expect("peer links")
            .iter()
            .map(|(id, l)| (*id, l.address.clone()))
            .collect();
        peers.sort();
        peers
    }

    fn report(&self, to: u64) -> PeerCall<NodeReport> {
        let client = self.client(to, |l| &l.calls);
        Box::pin(async move {
            let r = client?
                .report(ReportRequest {})
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            Ok(NodeReport {
                leader: r.leader_id,
                term: r.term,
                commit: r.commit_index,
                applied: r.applied_index,
                blobs_missing: r.blobs_missing,
            })
        })
    }
}

/// The stream of what `produce` sends (a task feeding a channel; it stops when the
/// receiver goes away).
fn async_stream<T: Send + 'static, F>(
    produce: impl FnOnce(mpsc::Sender<T>) -> F,
) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(produce(tx));
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    }))
}

impl Peers for PeerTransport {
    fn fill(
        &self,
        to: u64,
        repo: &Repository,
        digest: &Digest,
        size: Option<u64>,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Result<FillUpdate, String>>, String>> {
        let client = self.client(to, |l| &l.blobs);
        let registry = repo.host().to_owned();
        let request = FillBlobRequest {
            repository: repo.to_string(),
            digest: digest.to_string(),
            size: size.unwrap_or(0),
        };
        Box::pin(async move {
            let stream = client?
                .fill_blob(request)
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            Ok(stream
                .map_err(|s| s.message().to_owned())
                .map_ok(move |p| {
                    if p.verified {
                        return FillUpdate::Verified(p.size);
                    }
                    if !p.done {
                        return FillUpdate::Started(p.size);
                    }
                    if p.reason.is_empty() {
                        return FillUpdate::Done(Ok(p.size));
                    }
                    let retry_after = (p.retry_after > 0).then_some(p.retry_after);
                    FillUpdate::Done(Err(PullError::rebuild(
                        &p.reason,
                        &registry,
                        p.message,
                        retry_after,
                    )))
                })
                .boxed())
        })
    }

    fn fetch(
        &self,
        to: u64,
        digest: &Digest,
        offset: u64,
    ) -> BoxFuture<'static, Result<site_node::ByteStream, String>> {
        let call = Transport::fetch(self, to, digest.clone(), offset, false);
        Box::pin(async move { Ok(call.await?.map_err(std::io::Error::other).boxed()) })
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
