//! `/metrics`: the HTTP API's own families (requests and their latency by method, route
//! and status class; bytes served and received; failed logins), the site's view of its
//! nodes, and the families of every other part of the node ([`Source`]s given by the
//! node).

use crate::path::{self, Endpoint};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use site_core::metrics::{Counter, Counters, Exposition, Histogram, Kind, Source};
use site_node::Membership;
use std::sync::Arc;

/// The HTTP API's numbers, and the node's other sources.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Counters,
    latency: Histogram,
    pub blob_bytes_served: Counter,
    pub bytes_received: Counter,
    pub sources: Vec<Arc<dyn Source>>,
    /// One scrape at a time: a burst of them queues instead of multiplying the walks of
    /// the state and the peers' reports.
    rendering: tokio::sync::Mutex<()>,
}

/// The route label of a request path.
pub(crate) fn route(path: &str) -> &'static str {
    match path {
        "/healthz" | "/readyz" => return "health",
        "/metrics" => return "metrics",
        _ => {}
    }
    match path::parse(path) {
        Ok(Endpoint::Base) => "base",
        Ok(Endpoint::Catalog) => "catalog",
        Ok(Endpoint::Tags(_)) => "tags",
        Ok(Endpoint::Manifest(..)) => "manifest",
        Ok(Endpoint::Blob(..)) => "blob",
        Ok(Endpoint::UploadStart(_) | Endpoint::Upload(..)) => "upload",
        Ok(Endpoint::Referrers(..)) => "referrers",
        Err(_) => "other",
    }
}

fn method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

impl Metrics {
    /// Counts an answered request and the seconds until its head was ready.
    pub fn count(&self, m: &Method, route: &str, status: StatusCode, seconds: f64) {
        let class = match status.as_u16() / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        let labels = [method(m), route, class];
        self.requests.inc(&labels);
        self.latency.observe(&labels, seconds);
    }

    /// The whole exposition.
    pub async fn render(&self, login_failures: u64, membership: &Membership) -> Response {
        let _one = self.rendering.lock().await;
        let mut out = Exposition::default();
        let labels = ["method", "route", "class"];
        self.requests.expose(
            &mut out,
            "site_http_requests_total",
            "HTTP requests answered, by method, route and status class.",
            &labels,
        );
        self.latency.expose(
            &mut out,
            "site_http_request_duration_seconds",
            "Seconds from a request's arrival to its response head, by method, route and status class.",
            &labels,
        );
        out.single(
            "site_http_blob_bytes_served_total",
            "Blob bytes sent to clients.",
            Kind::Counter,
            self.blob_bytes_served.get() as f64,
        );
        out.single(
            "site_http_bytes_received_total",
            "Blob and manifest bytes received from clients.",
            Kind::Counter,
            self.bytes_received.get() as f64,
        );
        out.single(
            "site_login_failures_total",
            "Logins refused (wrong user name or password).",
            Kind::Counter,
            login_failures as f64,
        );
        nodes(&mut out, membership).await;
        for s in &self.sources {
            s.expose(&mut out);
        }
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            out.into_text(),
        )
            .into_response()
    }
}

/// Each node of the site as this one sees it now (asked, with a short timeout).
async fn nodes(out: &mut Exposition, membership: &Membership) {
    let views = membership.site_nodes().await;
    out.family(
        "site_peer_up",
        "Whether a node of the site answered this node just now (1) or not (0).",
        Kind::Gauge,
    );
    for v in &views {
        let id = v.id.to_string();
        out.sample(
            "site_peer_up",
            &[("node", &id)],
            f64::from(u8::from(v.reachable)),
        );
    }
    out.family(
        "site_peer_blobs_missing",
        "Blobs a node of the site still has to fetch, as it reported them.",
        Kind::Gauge,
    );
    for v in views.iter().filter(|v| v.reachable) {
        let id = v.id.to_string();
        out.sample(
            "site_peer_blobs_missing",
            &[("node", &id)],
            v.report.blobs_missing as f64,
        );
    }
}
