//! `GET /`: the status page (plain HTML and a little JavaScript over the API).

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("page.html"),
    )
}
