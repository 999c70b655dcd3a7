//! Prometheus counters of the HTTP API.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU64, Ordering};

/// Request counters by status class, and bytes of blobs served.
#[derive(Default)]
pub(crate) struct Metrics {
    by_class: [AtomicU64; 5],
    pub blob_bytes_served: AtomicU64,
}

impl Metrics {
    pub fn count(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> Response {
        let mut out = String::from(
            "# HELP site_http_requests_total HTTP requests answered, by status class.\n\
             # TYPE site_http_requests_total counter\n",
        );
        for (i, c) in self.by_class.iter().enumerate() {
            out.push_str(&format!(
                "site_http_requests_total{{class=\"{}xx\"}} {}\n",
                i + 1,
                c.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP site_blob_bytes_served_total Blob bytes sent to clients.\n\
             # TYPE site_blob_bytes_served_total counter\n\
             site_blob_bytes_served_total {}\n",
            self.blob_bytes_served.load(Ordering::Relaxed)
        ));
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
    }
}
