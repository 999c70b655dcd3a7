//! A gRPC client of a node's `[api]` (the generated `site.v1` client), and helpers that
//! deliver blobs and manifests the way the tower does.

use site_api::pb::site_client::SiteClient;
use site_api::pb::{self, PutBlobHeader, PutBlobRequest};
use std::net::SocketAddr;
use tonic::transport::Channel;

pub type Client = SiteClient<Channel>;

pub async fn connect(api: SocketAddr) -> Client {
    SiteClient::connect(format!("http://{api}"))
        .await
        .expect("connect to the node's gRPC API")
        .max_decoding_message_size(64 << 20)
}

/// The first message of a blob stream.
fn header(repo: &str, digest: &str, size: u64, offset: u64) -> PutBlobRequest {
    PutBlobRequest {
        header: Some(PutBlobHeader {
            repository: repo.into(),
            digest: digest.into(),
            size,
            offset,
        }),
        data: Default::default(),
    }
}

/// Streams `data` as blob `digest` from `offset`, in `chunk`-byte messages.
pub async fn put_blob(
    c: &mut Client,
    repo: &str,
    digest: &str,
    size: u64,
    offset: u64,
    data: &[u8],
    chunk: usize,
) -> Result<pb::PutBlobResponse, tonic::Status> {
    let mut msgs = vec![header(repo, digest, size, offset)];
    for part in data.chunks(chunk.max(1)) {
        msgs.push(PutBlobRequest {
            header: None,
            data: bytes::Bytes::copy_from_slice(part),
        });
    }
    c.put_blob(futures_util::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// A blob stream whose bytes the caller sends as it goes (on the runtime's other
/// threads): returns the sender of data messages and the call, which ends once the
/// sender is dropped.
pub fn put_blob_by_hand(
    c: &Client,
    repo: &str,
    digest: &str,
    size: u64,
    offset: u64,
) -> (
    tokio::sync::mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<Result<pb::PutBlobResponse, tonic::Status>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let header = header(repo, digest, size, offset);
    let data = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((
            PutBlobRequest {
                header: None,
                data: data.into(),
            },
            rx,
        ))
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter([header]), data);
    let mut c = c.clone();
    let call = tokio::spawn(async move { c.put_blob(stream).await.map(|r| r.into_inner()) });
    (tx, call)
}

/// Delivers a whole blob.
pub async fn deliver_blob(c: &mut Client, repo: &str, data: &[u8]) {
    let d = super::digest(data);
    let r = put_blob(c, repo, &d, data.len() as u64, 0, data, 64 << 10)
        .await
        .expect("blob delivered");
    assert!(r.complete);
}

/// Delivers `image` to `repo:tag` the tower's way (its blobs, then its manifest).
pub async fn deliver_image(c: &mut Client, repo: &str, image: &super::oci::Image, tag: &str) {
    for b in image.blobs() {
        deliver_blob(c, repo, &b.data).await;
    }
    let d = put_manifest(c, repo, &image.manifest, super::oci::OCI_MANIFEST, tag)
        .await
        .unwrap();
    assert_eq!(d, image.digest);
}

/// [`deliver_image`] through the node whose API listens on `api`.
pub async fn deliver_image_to(api: SocketAddr, repo: &str, image: &super::oci::Image, tag: &str) {
    deliver_image(&mut connect(api).await, repo, image, tag).await;
}

pub async fn put_manifest(
    c: &mut Client,
    repo: &str,
    body: &[u8],
    media_type: &str,
    tag: &str,
) -> Result<String, tonic::Status> {
    c.put_manifest(pb::PutManifestRequest {
        repository: repo.into(),
        body: body.to_vec(),
        media_type: media_type.into(),
        tag: tag.into(),
    })
    .await
    .map(|r| r.into_inner().digest)
}

/// Runs GC (or plans it, with `dry_run`) and returns its report.
pub async fn run_gc(c: &mut Client, dry_run: bool) -> pb::GcReport {
    c.run_gc(pb::RunGcRequest { dry_run })
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
}

pub async fn status(c: &mut Client) -> pb::StatusResponse {
    c.status(pb::StatusRequest {}).await.unwrap().into_inner()
}

/// The node's event stream from now on.
pub async fn watch(c: &mut Client) -> tonic::Streaming<pb::Event> {
    c.watch_events(pb::WatchEventsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// A runtime for the gRPC calls of a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The next event of `events` that `pick` accepts (bounded wait, 20 s).
pub async fn next_event<T>(
    events: &mut tonic::Streaming<pb::Event>,
    mut pick: impl FnMut(pb::event::Kind) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.message())
            .await
            .expect("the awaited event in time")
            .unwrap()
            .expect("the event stream ended");
        if let Some(t) = ev.kind.and_then(&mut pick) {
            return t;
        }
    }
}

/// The next event of `$events` of kind `$kind` (`ImagePullStarted`, ...), its message.
#[macro_export]
macro_rules! next_event {
    ($events:expr, $kind:ident) => {
        $crate::kit::grpc::next_event($events, |k| match k {
            site_api::pb::event::Kind::$kind(x) => Some(x),
            _ => None,
        })
        .await
    };
}

/// Collects the events of `node` in the background until `done` holds for what was seen
/// (or 30 s have passed); the handle's result is the events seen.
pub fn watch_events(
    node: &super::Node,
    done: impl Fn(&[pb::event::Kind]) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<pb::event::Kind>> {
    let api = node.api;
    let (ready, started) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        rt().block_on(async move {
            let mut c = connect(api).await;
            let mut stream = c
                .watch_events(pb::WatchEventsRequest {})
                .await
                .unwrap()
                .into_inner();
            ready.send(()).unwrap();
            let mut seen = Vec::new();
            let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while !done(&seen) {
                match tokio::time::timeout_at(until, stream.message()).await {
                    Ok(Ok(Some(e))) => seen.extend(e.kind),
                    _ => break,
                }
            }
            seen
        })
    });
    started.recv().unwrap();
    handle
}
