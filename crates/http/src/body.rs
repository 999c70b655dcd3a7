//! Request bodies as the node's [`ByteSource`], bodies read whole under a limit, and
//! bodies watched for whether they were read to their end.

use crate::error::ApiError;
use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use site_core::metrics::Counter;
use site_core::ErrorCode;
use site_node::ByteSource;

/// Streams a request body into the node chunk by chunk, counting its bytes.
pub(crate) struct BodySource<'a>(pub Body, pub &'a Counter);

impl ByteSource for BodySource<'_> {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            match self.0.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => {
                        self.1.add(data.len() as u64);
                        return Some(Ok(data));
                    }
                    Err(_trailers) => continue,
                },
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }
}

/// Reads a whole body, refusing one over `limit` bytes with 413 `SIZE_INVALID`.
/// A body that says up front it is larger (`Content-Length`) is refused before any of it
/// is read.
pub(crate) async fn read_limited(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    if http_body::Body::size_hint(&body).lower() > limit {
        return Err(too_large(limit));
    }
    let limited = http_body_util::Limited::new(body, limit as usize);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(e) => Err(ApiError::new(
            ErrorCode::SizeInvalid,
            format!("request body interrupted: {e}"),
        )),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::SizeInvalid,
        format!("body larger than the limit of {limit} bytes"),
    )
    .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
}

/// A request body that says, through the flag it shares, whether it was read to its end.
pub(crate) struct Watched {
    inner: Body,
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watched {
    /// `body`, and the flag set once it has been read whole (at once if it is empty).
    pub fn new(body: Body) -> (Watched, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        use http_body::Body as _;
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(body.is_end_stream()));
        (
            Watched {
                inner: body,
                ended: ended.clone(),
            },
            ended,
        )
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, std::sync::atomic::Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
