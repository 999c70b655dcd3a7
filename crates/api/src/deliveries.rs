//! Deliveries from the tower (`PutBlob` streams and `PutManifest`), and their counts by
//! call and outcome for `/metrics`.

use crate::pb;
use crate::service::{digest, SiteService};
use crate::status::status;
use bytes::Bytes;
use site_core::metrics::{Counter, Counters, Exposition, Kind, Source};
use site_core::Digest;
use site_node::{ByteSource, Received};
use tonic::{Request, Response, Status, Streaming};

/// Deliveries received by this node.
#[derive(Default)]
pub struct Deliveries {
    /// Blob bytes received.
    pub(crate) bytes: Counter,
    /// Calls by kind (blob, manifest) and outcome (ok, or the gRPC code).
    calls: Counters,
}

impl Deliveries {
    pub(crate) fn count<T>(&self, kind: &str, result: &Result<T, Status>) {
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(s) => format!("{:?}", s.code()).to_lowercase(),
        };
        self.calls.inc(&[kind, &outcome]);
    }
}

impl Source for Deliveries {
    fn expose(&self, out: &mut Exposition) {
        self.calls.expose(
            out,
            "site_deliveries_total",
            "Deliveries from the tower, by kind (blob stream, manifest) and outcome (ok, or the gRPC code of the refusal).",
            &["kind", "outcome"],
        );
        out.single(
            "site_delivered_bytes_total",
            "Blob bytes received in deliveries.",
            Kind::Counter,
            self.bytes.get() as f64,
        );
    }
}

/// The data of a `PutBlob` stream after its header, as the node reads bodies.
struct BlobStream {
    first: Option<Bytes>,
    stream: Streaming<pb::PutBlobRequest>,
}

impl ByteSource for BlobStream {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        match self.stream.message().await {
            Ok(Some(m)) if m.header.is_some() => Some(Err("a second header in one stream".into())),
            Ok(Some(m)) => Some(Ok(m.data)),
            Ok(None) => None,
            Err(e) => Some(Err(e.message().to_owned())),
        }
    }
}

impl SiteService {
    pub(crate) async fn receive_blob(
        &self,
        request: Request<Streaming<pb::PutBlobRequest>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        // Refused before any byte is taken when this node is cut off from its site.
        self.node.leadership.writable().map_err(status)?;
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            Status::invalid_argument("empty stream: the first message carries the header")
        })?;
        let header = first
            .header
            .ok_or_else(|| Status::invalid_argument("the first message carries no header"))?;
        let d = digest(&header.digest)?;
        let repo = if header.repository.is_empty() {
            None
        } else {
            Some(self.repo(&header.repository)?)
        };
        let mut source = BlobStream {
            first: Some(first.data),
            stream,
        };
        // Run to completion in its own task: when the link breaks, the handler is dropped,
        // but what arrived must still be recorded so the next stream resumes after it.
        let deliver = self.node.clone();
        let deliveries = self.deliveries.clone();
        let task_digest = d.clone();
        let size = header.size;
        let offset = header.offset;
        let result = tokio::spawn(async move {
            let r = deliver
                .deliveries
                .receive_blob(repo.as_ref(), &task_digest, size, offset, &mut source)
                .await;
            if let Ok((received, _)) = &r {
                deliveries.bytes.add(*received);
            }
            r
        })
        .await
        .map_err(|e| Status::internal(format!("blob receiver failed: {e}")))?;
        let (received, at) = result.map_err(|e| {
            tracing::info!(digest = %d, error = %e, "blob stream refused");
            status(e)
        })?;
        let (complete, offset) = match at {
            Received::Complete => (true, header.size),
            Received::Partial(held) => (false, held),
        };
        if !complete {
            // The client ended the stream early (or it broke): it may resume from `offset`.
            return Err(Status::aborted(format!(
                "blob {d} stream ended at {offset} of {} bytes; resume from offset {offset}",
                header.size
            )));
        }
        Ok(Response::new(pb::PutBlobResponse {
            received,
            complete,
            offset,
        }))
    }

    pub(crate) async fn receive_manifest(
        &self,
        request: Request<pb::PutManifestRequest>,
    ) -> Result<Response<pb::PutManifestResponse>, Status> {
        let req = request.into_inner();
        let repo = self.repo(&req.repository)?;
        let reference = if req.tag.is_empty() {
            site_node::ManifestRef::Digest(Digest::of(&req.body))
        } else {
            site_node::ManifestRef::Tag(req.tag)
        };
        let media_type = (!req.media_type.is_empty()).then_some(req.media_type.as_str());
        let (d, _) = self
            .node
            .repositories
            .deliver_manifest(&repo, &reference, media_type, &req.body)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutManifestResponse {
            digest: d.to_string(),
        }))
    }
}
