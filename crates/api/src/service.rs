//! The `site.v1.Site` service: thin over the node's components and the collector. Every handler
//! checks its input, turns it into store calls or commands, and maps errors through the
//! one table in [`crate::status`].

use crate::convert;
use crate::deliveries::Deliveries;
use crate::node::NodeParts;
use crate::pb::{self, site_server};
use crate::status::{invalid, status};
use futures_util::Stream;
use site_core::{Digest, Repository};
use site_node::collector::Collector;
use site_node::{now_secs, MemberChange};
use site_pull::Puller;
use site_state::{Command, Event, ImageRef};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

/// Default lease on the blobs a delivery was told the site has.
const DEFAULT_LEASE_SECS: u64 = 3600;

/// The service of one node.
#[derive(Clone)]
pub struct SiteService {
    pub(crate) node: NodeParts,
    collector: Collector,
    node_id: u64,
    default_upstream: String,
    pub(crate) deliveries: Arc<Deliveries>,
    shutdown: watch::Receiver<bool>,
    puller: Puller,
}

impl SiteService {
    /// The service over the node's `node` parts, making images present through
    /// `puller`; `shutdown` ends event streams.
    pub fn new(
        node: NodeParts,
        collector: Collector,
        puller: Puller,
        node_id: u64,
        default_upstream: String,
        shutdown: watch::Receiver<bool>,
    ) -> SiteService {
        SiteService {
            node,
            collector,
            node_id,
            default_upstream,
            deliveries: Arc::default(),
            shutdown,
            puller,
        }
    }

    /// Deliveries by call and outcome, for `/metrics`.
    pub fn delivery_metrics(&self) -> Arc<Deliveries> {
        self.deliveries.clone()
    }

    pub(crate) fn repo(&self, name: &str) -> Result<Repository, Status> {
        if name.is_empty() {
            return Err(Status::invalid_argument("repository: empty name"));
        }
        Repository::parse_normalized(name, &self.default_upstream)
            .map_err(|e| invalid("repository", e))
    }

    fn image(&self, s: &str) -> Result<ImageRef, Status> {
        ImageRef::parse(s, &self.default_upstream).map_err(|e| invalid("image", e))
    }
}

pub(crate) fn digest(s: &str) -> Result<Digest, Status> {
    Digest::parse(s).map_err(|e| invalid("digest", e))
}

impl SiteService {
    /// Applies a pin or unpin and says whether it changed anything.
    async fn pin_change(&self, cmd: Command) -> Result<Response<pb::PinResponse>, Status> {
        let out = self.node.orderer.execute(cmd).await.map_err(status)?;
        Ok(Response::new(pb::PinResponse {
            changed: out.changed,
        }))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl site_server::Site for SiteService {
    async fn find_missing_blobs(
        &self,
        request: Request<pb::FindMissingBlobsRequest>,
    ) -> Result<Response<pb::FindMissingBlobsResponse>, Status> {
        // A delivery starts here: a node cut off from its site refuses it at once.
        self.node.leadership.writable().map_err(status)?;
        let req = request.into_inner();
        let mut wanted = Vec::with_capacity(req.blobs.len());
        for b in &req.blobs {
            wanted.push((digest(&b.digest)?, b.size));
        }
        let (present, missing): (Vec<_>, Vec<_>) = wanted
            .into_iter()
            .partition(|(d, _)| self.node.state.read(|s| s.blob(d).is_some()));
        let mut missing_bytes = 0u64;
        for (d, size) in &missing {
            let held = self
                .node
                .deliveries
                .tower_upload_offset(d)
                .await
                .map_err(status)?;
            missing_bytes = missing_bytes.saturating_add(size.saturating_sub(held));
        }
        match self.collector.admit(missing_bytes).await.map_err(status)? {
            Ok(()) => {}
            Err((needed, free, reclaimable)) => {
                let reason = format!(
                    "delivery needs {needed} bytes; the site has {free} bytes free and could free only {reclaimable} more by evicting unreferenced images"
                );
                self.node.events.publish(Event::DeliveryRefused {
                    needed,
                    free,
                    reason: reason.clone(),
                });
                return Err(Status::resource_exhausted(reason));
            }
        }
        if !present.is_empty() {
            let lease = if req.lease_seconds == 0 {
                DEFAULT_LEASE_SECS
            } else {
                req.lease_seconds
            };
            let leased = present.into_iter().map(|(d, _)| d).collect();
            self.node
                .orderer
                .execute(Command::lease_for(leased, lease.saturating_mul(1000)))
                .await
                .map_err(status)?;
        }
        Ok(Response::new(pb::FindMissingBlobsResponse {
            missing: missing
                .into_iter()
                .map(|(d, size)| pb::BlobRef {
                    digest: d.to_string(),
                    size,
                })
                .collect(),
            missing_bytes,
        }))
    }

    async fn blob_status(
        &self,
        request: Request<pb::BlobStatusRequest>,
    ) -> Result<Response<pb::BlobStatusResponse>, Status> {
        let d = digest(&request.into_inner().digest)?;
        let present = self.node.state.read(|s| s.blob(&d).is_some());
        let offset = if present {
            0
        } else {
            self.node
                .deliveries
                .tower_upload_offset(&d)
                .await
                .map_err(status)?
        };
        Ok(Response::new(pb::BlobStatusResponse { present, offset }))
    }

    async fn put_blob(
        &self,
        request: Request<Streaming<pb::PutBlobRequest>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        let result = self.receive_blob(request).await;
        self.deliveries.count("blob", &result);
        result
    }

    async fn put_manifest(
        &self,
        request: Request<pb::PutManifestRequest>,
    ) -> Result<Response<pb::PutManifestResponse>, Status> {
        let result = self.receive_manifest(request).await;
        self.deliveries.count("manifest", &result);
        result
    }

    async fn tag(
        &self,
        request: Request<pb::TagRequest>,
    ) -> Result<Response<pb::TagResponse>, Status> {
        let req = request.into_inner();
        let cmd = Command::Tag {
            repo: self.repo(&req.repository)?,
            tag: req.tag,
            digest: digest(&req.digest)?,
        };
        self.node.orderer.execute(cmd).await.map_err(status)?;
        Ok(Response::new(pb::TagResponse {}))
    }

    async fn schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let req = request.into_inner();
        let mut images = Vec::new();
        let mut problems = Vec::new();
        for s in &req.images {
            match self.image(s) {
                Ok(i) => images.push(i),
                Err(e) => problems.push(e.message().to_owned()),
            }
        }
        if !problems.is_empty() {
            return Err(Status::invalid_argument(problems.join("; ")));
        }
        let out = self
            .node
            .orderer
            .execute(Command::Schedule {
                app: req.application,
                images,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ScheduleResponse {
            changed: out.changed,
        }))
    }

    async fn unschedule(
        &self,
        request: Request<pb::UnscheduleRequest>,
    ) -> Result<Response<pb::UnscheduleResponse>, Status> {
        let app = request.into_inner().application;
        self.node
            .orderer
            .execute(Command::Unschedule { app })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UnscheduleResponse {}))
    }

    async fn pin(
        &self,
        request: Request<pb::PinRequest>,
    ) -> Result<Response<pb::PinResponse>, Status> {
        let image = self.image(&request.into_inner().image)?;
        self.pin_change(Command::Pin { image }).await
    }

    async fn unpin(
        &self,
        request: Request<pb::PinRequest>,
    ) -> Result<Response<pb::PinResponse>, Status> {
        let image = self.image(&request.into_inner().image)?;
        self.pin_change(Command::Unpin { image }).await
    }

    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let req = request.into_inner();
        let (key, value) = match req.annotation.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (req.annotation.clone(), None),
        };
        let images = self
            .node
            .state
            .read(|s| s.images())
            .into_iter()
            .filter(|i| i.image.repo.to_string().contains(&req.repository))
            .filter(|i| req.application.is_empty() || i.apps.contains(&req.application))
            .filter(|i| {
                key.is_empty()
                    || i.annotations
                        .get(&key)
                        .is_some_and(|v| value.as_ref().is_none_or(|want| v == want))
            })
            .map(convert::image)
            .collect();
        Ok(Response::new(pb::ListImagesResponse { images }))
    }

    async fn list_applications(
        &self,
        _request: Request<pb::ListApplicationsRequest>,
    ) -> Result<Response<pb::ListApplicationsResponse>, Status> {
        let applications = self.node.state.read(|s| {
            s.apps()
                .iter()
                .map(|(name, images)| pb::Application {
                    name: name.clone(),
                    images: images.iter().map(ToString::to_string).collect(),
                })
                .collect()
        });
        Ok(Response::new(pb::ListApplicationsResponse { applications }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let space = self.collector.space().map_err(status)?;
        let mut r = self.node.state.read(|s| {
            let images = s.images();
            let live = images.iter().filter(|i| i.live).count() as u64;
            pb::StatusResponse {
                blob_bytes: s.blob_bytes(),
                blobs: s.blobs().count() as u64,
                images: images.len() as u64,
                live_images: live,
                eligible_images: images.len() as u64 - live,
                applications: s.apps().len() as u64,
                pins: s.pins().len() as u64,
                last_gc: s.last_sweep().map(convert::report),
                ..Default::default()
            }
        });
        r.node_id = self.node_id;
        r.version = env!("CARGO_PKG_VERSION").to_owned();
        r.disk_capacity_bytes = space.capacity;
        r.disk_free_bytes = space.free;
        r.blob_bytes_received = self.deliveries.bytes.get();
        let raft = self.node.leadership.get();
        r.leader_id = raft.leader;
        r.raft_term = raft.term;
        r.commit_index = raft.commit;
        r.applied_index = raft.applied;
        r.blobs_missing = self.node.missing.count() as u64;
        r.failure = self.node.failure.get().unwrap_or_default();
        r.upstreams_backed_off = self
            .puller
            .backed_off()
            .into_iter()
            .map(|(host, reason, left)| pb::UpstreamBackoff {
                host,
                reason,
                seconds_left: left.as_secs().max(1),
            })
            .collect();
        let nodes = self.node.membership.site_nodes().await;
        let commit = nodes.iter().map(|n| n.report.commit).max().unwrap_or(0);
        r.nodes = nodes
            .into_iter()
            .map(|n| pb::NodeStatus {
                node_id: n.id,
                address: n.address,
                reachable: n.reachable,
                leader: n.id == raft.leader,
                commit_index: n.report.commit,
                applied_index: n.report.applied,
                apply_lag: if n.reachable {
                    commit.saturating_sub(n.report.applied)
                } else {
                    0
                },
                blobs_missing: n.report.blobs_missing,
            })
            .collect();
        Ok(Response::new(r))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let events = self.node.events.subscribe();
        let shutdown = self.shutdown.clone();
        // Ends when the node shuts down; dropped when the client goes away.
        let stream = futures_util::stream::unfold(
            (events, shutdown),
            |(mut events, mut shutdown)| async move {
                loop {
                    let received = tokio::select! {
                        e = events.recv() => e,
                        _ = shutdown.wait_for(|s| *s) => return None,
                    };
                    match received {
                        Ok(e) => {
                            return Some((Ok(convert::event(e, now_secs())), (events, shutdown)))
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "event watcher fell behind");
                        }
                        Err(_) => return None,
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let r = request.into_inner();
        let voters = self
            .node
            .membership
            .change_members(MemberChange::Add {
                id: r.node_id,
                address: r.address,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MembershipResponse { voters }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let id = request.into_inner().node_id;
        let voters = self
            .node
            .membership
            .change_members(MemberChange::Remove { id })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MembershipResponse { voters }))
    }

    async fn run_gc(
        &self,
        request: Request<pb::RunGcRequest>,
    ) -> Result<Response<pb::RunGcResponse>, Status> {
        let dry_run = request.into_inner().dry_run;
        let report = self.collector.run_now(dry_run).await.map_err(status)?;
        Ok(Response::new(pb::RunGcResponse {
            report: Some(convert::report(&report)),
        }))
    }

    async fn ensure_image(
        &self,
        request: Request<pb::EnsureImageRequest>,
    ) -> Result<Response<pb::EnsureImageResponse>, Status> {
        crate::ensure::ensure_image(&self.puller, request.into_inner())
            .await
            .map(Response::new)
    }
}
