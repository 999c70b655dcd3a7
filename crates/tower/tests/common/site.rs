//! An in-memory site for the tests, speaking proto/site.proto, with injected faults.

use super::registry::sha256;
use futures_util::stream::BoxStream;
use site_core::{Manifest, ManifestKind};
use site_proto::pb::site_server::{Site, SiteServer};
use site_proto::pb::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

#[derive(Default)]
pub struct State {
    /// digest -> bytes held (complete when in `complete`)
    pub partial: HashMap<String, Vec<u8>>,
    pub complete: HashMap<String, Vec<u8>>,
    /// (repository, digest, tag) in arrival order
    pub manifests: Vec<(String, String, String)>,
    pub capacity: u64,
    /// Data bytes received per blob, over every stream.
    pub received: HashMap<String, u64>,
    pub largest_chunk: usize,
    /// Once: fail the stream of this blob with UNAVAILABLE after this many bytes.
    pub break_after_once: Option<(String, u64)>,
    pub saw_authorization: bool,
    pub put_blob_calls: usize,
    /// BlobStatus calls per digest.
    pub blob_status_calls: HashMap<String, usize>,
    /// (digest, call number from 1): that BlobStatus call for that blob answers offset 0
    /// whatever the site holds.
    pub lie_at_status_call: Option<(String, usize)>,
}

#[derive(Clone)]
pub struct FakeSite(pub Arc<Mutex<State>>);

impl FakeSite {
    pub fn new(capacity: u64) -> FakeSite {
        FakeSite(Arc::new(Mutex::new(State {
            capacity,
            ..State::default()
        })))
    }

    /// Serves on 127.0.0.1; returns `host:port`.
    pub async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        });
        let svc = SiteServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        addr
    }

    fn note_metadata<T>(&self, r: &Request<T>) {
        if r.metadata().get("authorization").is_some() {
            self.0.lock().unwrap().saw_authorization = true;
        }
    }

    fn used(s: &State) -> u64 {
        s.complete
            .values()
            .chain(s.partial.values())
            .map(|b| b.len() as u64)
            .sum()
    }
}

#[tonic::async_trait]
impl Site for FakeSite {
    async fn find_missing_blobs(
        &self,
        r: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        self.note_metadata(&r);
        let s = self.0.lock().unwrap();
        let missing: Vec<BlobRef> = r
            .into_inner()
            .blobs
            .into_iter()
            .filter(|b| !s.complete.contains_key(&b.digest))
            .collect();
        let missing_bytes: u64 = missing.iter().map(|b| b.size).sum();
        let free = s.capacity.saturating_sub(Self::used(&s));
        if missing_bytes > free {
            return Err(Status::resource_exhausted(format!(
                "delivery needs {missing_bytes} bytes, {free} bytes free"
            )));
        }
        Ok(Response::new(FindMissingBlobsResponse {
            missing,
            missing_bytes,
        }))
    }

    async fn blob_status(
        &self,
        r: Request<BlobStatusRequest>,
    ) -> Result<Response<BlobStatusResponse>, Status> {
        let mut s = self.0.lock().unwrap();
        let d = r.into_inner().digest;
        let calls = {
            let n = s.blob_status_calls.entry(d.clone()).or_default();
            *n += 1;
            *n
        };
        let lie = s.lie_at_status_call == Some((d.clone(), calls));
        Ok(Response::new(BlobStatusResponse {
            present: s.complete.contains_key(&d),
            offset: if lie {
                0
            } else {
                s.partial.get(&d).map_or(0, |b| b.len() as u64)
            },
        }))
    }

    async fn put_blob(
        &self,
        r: Request<Streaming<PutBlobRequest>>,
    ) -> Result<Response<PutBlobResponse>, Status> {
        self.note_metadata(&r);
        let mut stream = r.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty stream"))?;
        let header = first
            .header
            .clone()
            .ok_or_else(|| Status::invalid_argument("no header"))?;
        {
            let mut s = self.0.lock().unwrap();
            s.put_blob_calls += 1;
            let held = s.partial.get(&header.digest).map_or(0, |b| b.len() as u64);
            if held != header.offset {
                return Err(Status::failed_precondition(format!(
                    "stream starts at {} but the site holds {held} bytes",
                    header.offset
                )));
            }
        }
        let mut received = 0u64;
        let mut message = Some(first);
        loop {
            let m = match message.take() {
                Some(m) => m,
                None => match stream.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    // Broken stream: keep what arrived.
                    Err(e) => return Err(e),
                },
            };
            let mut s = self.0.lock().unwrap();
            s.largest_chunk = s.largest_chunk.max(m.data.len());
            *s.received.entry(header.digest.clone()).or_default() += m.data.len() as u64;
            received += m.data.len() as u64;
            let held = s.partial.entry(header.digest.clone()).or_default();
            held.extend_from_slice(&m.data);
            if held.len() as u64 > header.size {
                s.partial.remove(&header.digest);
                return Err(Status::invalid_argument("more bytes than the size"));
            }
            let len = held.len() as u64;
            if let Some((d, n)) = s.break_after_once.clone() {
                if d == header.digest && len >= n {
                    s.break_after_once = None;
                    return Err(Status::unavailable("injected broken link"));
                }
            }
        }
        let mut s = self.0.lock().unwrap();
        let held = s.partial.get(&header.digest).cloned().unwrap_or_default();
        if held.len() as u64 == header.size {
            s.partial.remove(&header.digest);
            if sha256(&held) != header.digest {
                return Err(Status::data_loss("digest mismatch"));
            }
            s.complete.insert(header.digest.clone(), held);
            return Ok(Response::new(PutBlobResponse {
                received,
                complete: true,
                offset: header.size,
            }));
        }
        Ok(Response::new(PutBlobResponse {
            received,
            complete: false,
            offset: held.len() as u64,
        }))
    }

    async fn put_manifest(
        &self,
        r: Request<PutManifestRequest>,
    ) -> Result<Response<PutManifestResponse>, Status> {
        self.note_metadata(&r);
        let m = r.into_inner();
        let parsed = Manifest::parse(&m.body, Some(&m.media_type))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut s = self.0.lock().unwrap();
        for b in parsed.blob_references() {
            if !s.complete.contains_key(b.digest.as_str()) {
                return Err(Status::failed_precondition(format!(
                    "blob {} missing",
                    b.digest
                )));
            }
        }
        if let ManifestKind::Index { manifests } = &parsed.kind {
            for c in manifests {
                if !s.manifests.iter().any(|(_, d, _)| d == c.digest.as_str()) {
                    return Err(Status::failed_precondition(format!(
                        "manifest {} missing",
                        c.digest
                    )));
                }
            }
        }
        let digest = sha256(&m.body);
        s.manifests.push((m.repository, digest.clone(), m.tag));
        Ok(Response::new(PutManifestResponse { digest }))
    }

    async fn tag(&self, _: Request<TagRequest>) -> Result<Response<TagResponse>, Status> {
        Ok(Response::new(TagResponse {}))
    }
    async fn schedule(
        &self,
        r: Request<ScheduleRequest>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        let r = r.into_inner();
        if r.application == "missing-images" {
            return Err(Status::failed_precondition(
                "image docker.io/library/x@sha256:.. is not present",
            ));
        }
        Ok(Response::new(ScheduleResponse { changed: true }))
    }
    async fn unschedule(
        &self,
        _: Request<UnscheduleRequest>,
    ) -> Result<Response<UnscheduleResponse>, Status> {
        Err(Status::not_found("unknown application"))
    }
    async fn pin(&self, _: Request<PinRequest>) -> Result<Response<PinResponse>, Status> {
        Ok(Response::new(PinResponse { changed: true }))
    }
    async fn unpin(&self, _: Request<PinRequest>) -> Result<Response<PinResponse>, Status> {
        Ok(Response::new(PinResponse { changed: false }))
    }
    async fn list_images(
        &self,
        _: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        Ok(Response::new(ListImagesResponse::default()))
    }
    async fn list_applications(
        &self,
        _: Request<ListApplicationsRequest>,
    ) -> Result<Response<ListApplicationsResponse>, Status> {
        Ok(Response::new(ListApplicationsResponse::default()))
    }
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(StatusResponse::default()))
    }
    type WatchEventsStream = BoxStream<'static, Result<Event, Status>>;
    async fn watch_events(
        &self,
        _: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let events = vec![Ok(Event {
            at_unix: 1,
            kind: Some(event::Kind::ImageReceived(ImageReceived {
                repository: "docker.io/library/nginx".into(),
                digest: "sha256:00".into(),
            })),
        })];
        Ok(Response::new(Box::pin(futures_util::stream::iter(events))))
    }
    async fn run_gc(&self, _: Request<RunGcRequest>) -> Result<Response<RunGcResponse>, Status> {
        Ok(Response::new(RunGcResponse::default()))
    }
    async fn add_node(
        &self,
        _: Request<site_proto::pb::AddNodeRequest>,
    ) -> Result<Response<site_proto::pb::MembershipResponse>, Status> {
        Err(Status::unimplemented("a fake site has one node"))
    }
    async fn remove_node(
        &self,
        _: Request<site_proto::pb::RemoveNodeRequest>,
    ) -> Result<Response<site_proto::pb::MembershipResponse>, Status> {
        Err(Status::unimplemented("a fake site has one node"))
    }
    async fn ensure_image(
        &self,
        _: Request<site_proto::pb::EnsureImageRequest>,
    ) -> Result<Response<site_proto::pb::EnsureImageResponse>, Status> {
        Err(Status::unimplemented(
            "towerctl does not pull through a site",
        ))
    }
}
