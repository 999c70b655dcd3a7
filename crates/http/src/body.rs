//! Request bodies as the store's [`ByteSource`], and bodies read whole under a limit.

use crate::error::ApiError;
use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use site_core::metrics::Counter;
use site_core::ErrorCode;
use site_store::ByteSource;

/// Streams a request body into the store chunk by chunk, counting its bytes.
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
pub(crate) async fn read_limited(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit as usize);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            ErrorCode::SizeInvalid,
            format!("body larger than the limit of {limit} bytes"),
        )
        .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)),
        Err(e) => Err(ApiError::new(
            ErrorCode::SizeInvalid,
            format!("request body interrupted: {e}"),
        )),
    }
}
