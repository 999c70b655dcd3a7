//! Blob reads (streamed from disk, single `Range` answered 206) and blob deletes.

use crate::error::ApiError;
use crate::{Ctx, Registry};
use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use site_core::{Digest, ErrorCode};
use site_store::StoreError;

/// An inclusive byte range within a blob.
#[derive(Debug, PartialEq, Eq)]
struct ByteRange {
    start: u64,
    end: u64,
}

/// Reads a `Range` header against a blob of `size` bytes. `Ok(None)`: serve it whole
/// (no header, or several ranges, which the RFC lets a server ignore).
fn parse_range(value: &str, size: u64) -> Result<Option<ByteRange>, ()> {
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let num = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(());
        }
        s.parse().map_err(|_| ())
    };
    let range = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n = num(suffix)?;
            if n == 0 || size == 0 {
                return Err(());
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }
        }
        (start, "") => ByteRange {
            start: num(start)?,
            end: size.saturating_sub(1),
        },
        (start, end) => {
            let (s, e) = (num(start)?, num(end)?);
            if e < s {
                return Err(());
            }
            ByteRange {
                start: s,
                end: e.min(size.saturating_sub(1)),
            }
        }
    };
    if range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

pub(crate) async fn get(
    reg: &Registry,
    name: &str,
    digest: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let repo = reg.repository(name, &ctx.query)?;
    let digest = Digest::parse(digest)?;
    // A miss goes to the pull-through cache, which may fetch the blob now.
    let (size, fill) = match (reg.blobs.size(&repo, &digest), &reg.puller) {
        (Ok(size), _) => (size, None),
        (Err(StoreError::BlobUnknown(_)), Some(puller)) => {
            let fill = puller
                .blob(&repo, &digest)
                .await
                .map_err(|e| ApiError::pull(e, ErrorCode::BlobUnknown))?;
            (fill.size(), Some(fill))
        }
        (Err(e), _) => return Err(e.into()),
    };
    let range = match ctx.headers.get(header::RANGE) {
        None => None,
        Some(v) => parse_range(v.to_str().unwrap_or(""), size).map_err(|()| {
            ApiError::new(
                ErrorCode::SizeInvalid,
                format!("range {:?} not satisfiable for a blob of {size} bytes", v),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))
        })?,
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", digest.as_str())
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "max-age=31536000");
    let (start, len) = match &range {
        Some(r) => {
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end),
            );
            (r.start, r.end - r.start + 1)
        }
        None => (0, size),
    };
    builder = builder.header(header::CONTENT_LENGTH, len);
    if ctx.method == Method::HEAD {
        return Ok(builder.body(Body::empty()).expect("valid response"));
    }
    let stream = match fill {
        Some(fill) => fill
            .stream(start, len)
            .await
            .map_err(|e| ApiError::pull(e, ErrorCode::BlobUnknown))?,
        None => reg.blobs.read(&digest, start, len).await?,
    };
    reg.metrics.blob_bytes_served.add(len);
    Ok(builder
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

pub(crate) async fn delete(
    reg: &Registry,
    name: &str,
    digest: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let user = reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    let digest = Digest::parse(digest)?;
    reg.push.delete_blob(&repo, &digest).await?;
    tracing::info!(%repo, %digest, %user, "blob deleted from repository");
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s, e| Ok(Some(ByteRange { start: s, end: e }));
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), r(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), r(50, 99));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        for bad in [
            "bytes=100-",
            "bytes=9-3",
            "bytes=-0",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "bytes=--1",
            "0-1",
        ] {
            assert_eq!(parse_range(bad, 100), Err(()), "{bad}");
        }
        assert_eq!(parse_range("bytes=0-0", 0), Err(()));
    }
}
