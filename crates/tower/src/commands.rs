//! The site-management subcommands: schedule, pin, listings, status, events, GC.

use crate::exit::Error;
use crate::output::{human_bytes, line, table, unix_time};
use crate::site::{self, status_error, Client};
use site_proto::pb::{
    event, AddNodeRequest, Event, GcReport, ListApplicationsRequest, ListImagesRequest, PinRequest,
    RemoveNodeRequest, RunGcRequest, ScheduleRequest, StatusRequest, UnscheduleRequest,
    WatchEventsRequest,
};

/// `schedule APP IMAGE@DIGEST...`
pub async fn schedule(site: &Client, app: &str, images: &[String]) -> Result<(), Error> {
    let r = site::retry(|| {
        let mut c = site.clone();
        let request = ScheduleRequest {
            application: app.to_owned(),
            images: images.to_vec(),
        };
        async move { c.schedule(request).await }
    })
    .await?;
    let what = if r.changed { "scheduled" } else { "unchanged" };
    line(format_args!("{app}: {what} ({} image(s))", images.len()))
}

/// `unschedule APP`
pub async fn unschedule(site: &Client, app: &str) -> Result<(), Error> {
    site::retry(|| {
        let mut c = site.clone();
        let request = UnscheduleRequest {
            application: app.to_owned(),
        };
        async move { c.unschedule(request).await }
    })
    .await?;
    line(format_args!("{app}: unscheduled"))
}

/// `pin IMAGE@DIGEST` (or `unpin` when `pin` is false).
pub async fn pin(site: &Client, image: &str, pin: bool) -> Result<(), Error> {
    let r = site::retry(|| {
        let mut c = site.clone();
        let request = PinRequest {
            image: image.to_owned(),
        };
        async move {
            if pin {
                c.pin(request).await
            } else {
                c.unpin(request).await
            }
        }
    })
    .await?;
    let what = match (pin, r.changed) {
        (true, true) => "pinned",
        (true, false) => "already pinned",
        (false, true) => "unpinned",
        (false, false) => "was not pinned",
    };
    line(format_args!("{image}: {what}"))
}

/// `images [--repository SUBSTR] [--app APP] [--annotation K[=V]]`
pub async fn images(site: &Client, request: ListImagesRequest) -> Result<(), Error> {
    let r = site::retry(|| {
        let mut c = site.clone();
        let request = request.clone();
        async move { c.list_images(request).await }
    })
    .await?;
    let mut rows = vec![[
        "REPOSITORY",
        "TAGS",
        "DIGEST",
        "SIZE",
        "STATE",
        "APPLICATIONS",
    ]
    .map(String::from)
    .to_vec()];
    for i in &r.images {
        let mut state = vec![if i.live { "live" } else { "eligible" }];
        if i.pinned {
            state.push("pinned");
        }
        rows.push(vec![
            i.repository.clone(),
            dash(i.tags.join(",")),
            i.digest.clone(),
            short_bytes(i.size),
            state.join(","),
            dash(i.applications.join(",")),
        ]);
    }
    for row in table(&rows) {
        line(row)?;
    }
    Ok(())
}

/// `apps`
pub async fn apps(site: &Client) -> Result<(), Error> {
    let r = site::retry(|| {
        let mut c = site.clone();
        async move { c.list_applications(ListApplicationsRequest {}).await }
    })
    .await?;
    if r.applications.is_empty() {
        return line("no applications scheduled");
    }
    for app in &r.applications {
        line(format_args!("{} ({} image(s))", app.name, app.images.len()))?;
        for image in &app.images {
            line(format_args!("  {image}"))?;
        }
    }
    Ok(())
}

/// `status`
pub async fn status(site: &Client) -> Result<(), Error> {
    let s = site::retry(|| {
        let mut c = site.clone();
        async move { c.status(StatusRequest {}).await }
    })
    .await?;
    let mut lines = vec![
        format!("node: {}", s.node_id),
        format!("disk_capacity: {}", human_bytes(s.disk_capacity_bytes)),
        format!("disk_free: {}", human_bytes(s.disk_free_bytes)),
        format!("blob_bytes: {}", human_bytes(s.blob_bytes)),
        format!("blobs: {}", s.blobs),
        format!("images: {}", s.images),
        format!("live_images: {}", s.live_images),
        format!("eligible_images: {}", s.eligible_images),
        format!("applications: {}", s.applications),
        format!("pins: {}", s.pins),
        format!(
            "blob_bytes_received: {}",
            human_bytes(s.blob_bytes_received)
        ),
    ];
    match &s.last_gc {
        Some(gc) if gc.at_unix != 0 => {
            lines.push(format!("last_gc: {}", unix_time(gc.at_unix)));
            lines.push(format!(
                "last_gc_deleted: {} manifest(s), {} evicted, {} blob(s), {} freed",
                gc.manifests.len(),
                gc.evicted.len(),
                gc.blobs.len(),
                human_bytes(gc.bytes_freed)
            ));
        }
        _ => lines.push("last_gc: never".to_owned()),
    }
    lines.push(format!("leader: {}", s.leader_id));
    lines.push(format!("raft_term: {}", s.raft_term));
    lines.push(format!("commit_index: {}", s.commit_index));
    lines.push(format!("applied_index: {}", s.applied_index));
    lines.push(format!("blobs_missing: {}", s.blobs_missing));
    if !s.failure.is_empty() {
        lines.push(format!("FAILED: {}", crate::exit::one_line(&s.failure)));
    }
    for u in &s.upstreams_backed_off {
        lines.push(format!(
            "upstream {}: not asked for {} s ({})",
            u.host, u.seconds_left, u.reason
        ));
    }
    for n in &s.nodes {
        let role = if n.leader { "leader" } else { "follower" };
        lines.push(if n.reachable {
            format!(
                "node {}: {role}, {}, applied {}, apply_lag {}, blobs_missing {}",
                n.node_id,
                dash(n.address.clone()),
                n.applied_index,
                n.apply_lag,
                n.blobs_missing
            )
        } else {
            format!(
                "node {}: unreachable, {}",
                n.node_id,
                dash(n.address.clone())
            )
        });
    }
    for l in lines {
        line(l)?;
    }
    Ok(())
}

/// `events`: one line per event until the stream ends or Ctrl-C.
pub async fn events(site: &Client) -> Result<(), Error> {
    let mut c = site.clone();
    let mut stream = c
        .watch_events(WatchEventsRequest {})
        .await
        .map_err(|s| status_error(&s))?
        .into_inner();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = stream.message() => match next {
                Ok(Some(e)) => line(event_line(&e))?,
                Ok(None) => return Ok(()),
                Err(s) => return Err(status_error(&s)),
            },
        }
    }
}

/// One event as one line.
pub fn event_line(e: &Event) -> String {
    let at = unix_time(e.at_unix);
    match &e.kind {
        Some(event::Kind::ImageReceived(i)) => {
            format!("{at} image-received {}@{}", i.repository, i.digest)
        }
        Some(event::Kind::ImageRemoved(i)) => format!(
            "{at} image-removed {} ({})",
            i.digest,
            dash(i.repositories.join(", "))
        ),
        Some(event::Kind::GcRun(g)) => {
            let r = g.report.clone().unwrap_or_default();
            format!(
                "{at} gc-run {} manifest(s), {} evicted, {} blob(s), {} freed",
                r.manifests.len(),
                r.evicted.len(),
                r.blobs.len(),
                human_bytes(r.bytes_freed)
            )
        }
        Some(event::Kind::DeliveryRefused(d)) => format!(
            "{at} delivery-refused needs {}, free {}: {}",
            human_bytes(d.bytes_needed),
            human_bytes(d.bytes_free),
            crate::exit::one_line(&d.reason)
        ),
        Some(event::Kind::NodeJoined(n)) => {
            format!("{at} node-joined {} at {}", n.node_id, n.address)
        }
        Some(event::Kind::NodeLeft(n)) => format!("{at} node-left {}", n.node_id),
        Some(event::Kind::ReplicationDegraded(r)) => format!(
            "{at} replication-degraded node {}: {}",
            r.node_id,
            crate::exit::one_line(&r.reason)
        ),
        Some(event::Kind::ReplicationRestored(r)) => {
            format!("{at} replication-restored node {}", r.node_id)
        }
        Some(event::Kind::BlobCorrupt(b)) => format!(
            "{at} blob-corrupt {} on node {} (its bytes hash to {}); fetching it again",
            b.digest, b.node_id, b.actual
        ),
        Some(event::Kind::NodeFailed(f)) => format!(
            "{at} node-failed {}: {}",
            f.node_id,
            crate::exit::one_line(&f.reason)
        ),
        Some(event::Kind::ClockSkew(c)) => {
            let by = crate::output::apart(c.skew_ms);
            if c.disagrees {
                format!("{at} clock-skew node {}: its wall clock is {by} the site's log time (the log's time goes on with elapsed time; set the clock right)", c.node_id)
            } else {
                format!(
                    "{at} clock-agrees node {}: its wall clock is {by} the site's log time",
                    c.node_id
                )
            }
        }
        Some(event::Kind::BlobRepaired(b)) => format!(
            "{at} blob-repaired {} on node {} (verified copy from node {})",
            b.digest, b.node_id, b.from_node_id
        ),
        Some(event::Kind::ImagePullStarted(p)) => {
            format!("{at} image-pull-started {} on node {}", p.image, p.node_id)
        }
        Some(event::Kind::ImagePullCompleted(p)) => format!(
            "{at} image-pull-completed {} -> {} {} ({} bytes, {} ms) on node {}",
            p.image, p.digest, p.source, p.bytes, p.millis, p.node_id
        ),
        Some(event::Kind::ImagePullFailed(p)) => format!(
            "{at} image-pull-failed {} {}: {} on node {}",
            p.image, p.reason, p.message, p.node_id
        ),
        Some(event::Kind::ImageCached(c)) => format!(
            "{at} image-cached {}@{} ({} bytes)",
            c.repository, c.digest, c.bytes
        ),
        None => format!("{at} unknown-event"),
    }
}

/// `node add ID HOST:PORT`
pub async fn add_node(site: &Client, id: u64, address: &str) -> Result<(), Error> {
    // Adding a member again changes nothing, so a retry is safe.
    let r = site::retry(|| {
        let mut c = site.clone();
        let request = AddNodeRequest {
            node_id: id,
            address: address.to_owned(),
        };
        async move { c.add_node(request).await }
    })
    .await?;
    line(format_args!("node {id} added; nodes: {}", ids(&r.voters)))
}

/// `node remove ID`
pub async fn remove_node(site: &Client, id: u64) -> Result<(), Error> {
    let mut c = site.clone();
    let r = c
        .remove_node(RemoveNodeRequest { node_id: id })
        .await
        .map_err(|s| status_error(&s))?
        .into_inner();
    line(format_args!("node {id} removed; nodes: {}", ids(&r.voters)))
}

fn ids(voters: &[u64]) -> String {
    voters
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `gc [--dry-run]`
pub async fn gc(site: &Client, dry_run: bool) -> Result<(), Error> {
    // Not retried: a sweep that ran before the link broke must not run twice unseen.
    let mut c = site.clone();
    let r = c
        .run_gc(RunGcRequest { dry_run })
        .await
        .map_err(|s| status_error(&s))?
        .into_inner();
    for l in gc_lines(&r.report.unwrap_or_default(), dry_run) {
        line(l)?;
    }
    Ok(())
}

/// What a GC report says, one line per deletion and a total.
pub fn gc_lines(r: &GcReport, dry_run: bool) -> Vec<String> {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut out = Vec::new();
    out.extend(r.manifests.iter().map(|m| format!("{verb} manifest {m}")));
    out.extend(
        r.evicted
            .iter()
            .map(|m| format!("{verb} image {m} (evicted)")),
    );
    out.extend(r.blobs.iter().map(|b| format!("{verb} blob {b}")));
    let freed = if dry_run { "would free" } else { "freed" };
    out.push(format!("{freed} {}", human_bytes(r.bytes_freed)));
    out
}

fn dash(s: String) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s
    }
}

/// `12.3 MiB` without the exact count, for tables.
fn short_bytes(n: u64) -> String {
    let h = human_bytes(n);
    h.split(" (").next().unwrap_or(&h).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use site_proto::pb::{DeliveryRefused, ImageReceived};

    #[test]
    fn events_are_one_line_each() {
        let e = Event {
            at_unix: 1_700_000_000,
            kind: Some(event::Kind::ImageReceived(ImageReceived {
                repository: "docker.io/library/nginx".into(),
                digest: "sha256:ab".into(),
            })),
        };
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20Z image-received docker.io/library/nginx@sha256:ab"
        );
        let e = Event {
            at_unix: 1,
            kind: Some(event::Kind::DeliveryRefused(DeliveryRefused {
                bytes_needed: 2048,
                bytes_free: 1024,
                reason: "no\nspace".into(),
            })),
        };
        assert!(!event_line(&e).contains('\n'));
    }

    #[test]
    fn gc_reports() {
        let r = GcReport {
            manifests: vec!["sha256:aa".into()],
            blobs: vec!["sha256:bb".into()],
            bytes_freed: 2048,
            ..Default::default()
        };
        assert_eq!(
            gc_lines(&r, true),
            [
                "would delete manifest sha256:aa",
                "would delete blob sha256:bb",
                "would free 2.0 KiB (2048 bytes)"
            ]
        );
        assert_eq!(gc_lines(&GcReport::default(), false), ["freed 0 B"]);
    }
}
