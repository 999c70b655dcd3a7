//! Blob reads (from disk, single `Range` answered 206) and blob deletes.

use crate::error::ApiError;
use crate::ranges::parse_range;
use crate::{Ctx, Registry};
use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use site_core::{Digest, ErrorCode};
use site_node::{BlobBytes, NodeError};

pub(crate) async fn get(
    reg: &Registry,
    name: &str,
    digest: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let repo = reg.repository(name, &ctx.query)?;
    let digest = Digest::parse(digest)?;
    // A miss goes to the pull-through cache, which may fetch the blob now. Not for a
    // HEAD: pushers ask it before they upload (a fetch would pull bytes nobody asked
    // for, or fail a push while the upstream is unreachable); runtimes GET blobs.
    let (size, fill) = match (reg.node.repositories.blob_size(&repo, &digest), &reg.puller) {
        (Ok(size), _) => (size, None),
        (Err(NodeError::BlobUnknown(_)), Some(puller)) if ctx.method == Method::HEAD => {
            let size = puller
                .held_blob(&repo, &digest)
                .await
                .map_err(|e| ApiError::pull(e, ErrorCode::BlobUnknown))?
                .ok_or_else(|| ApiError::from(NodeError::BlobUnknown(digest.clone())))?;
            (size, None)
        }
        (Err(NodeError::BlobUnknown(_)), Some(puller)) => {
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
        Some(v) => parse_range(v.to_str().unwrap_or(""), size).map_err(|_| {
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
    let bytes = match fill {
        Some(fill) => BlobBytes::Stream(
            fill.stream(start, len)
                .await
                .map_err(|e| ApiError::pull(e, ErrorCode::BlobUnknown))?,
        ),
        None => reg.node.reads.open_blob(&digest, start, len).await?,
    };
    reg.metrics.blob_bytes_served.add(len);
    Ok(match bytes {
        // The plain HTTP server sends the region from the page cache (`plain/`); over
        // HTTPS the body is read and encrypted.
        BlobBytes::File(region) => builder
            .extension(region.clone())
            .body(Body::from_stream(region.stream())),
        BlobBytes::Stream(stream) => builder.body(Body::from_stream(stream)),
    }
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
    reg.node.repositories.delete_blob(&repo, &digest).await?;
    tracing::info!(%repo, %digest, %user, "blob deleted from repository");
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response"))
}
