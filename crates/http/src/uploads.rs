//! Blob uploads: start (with monolithic and cross-repository mount forms), chunked
//! PATCH, status, final PUT and cancel.

use crate::body::BodySource;
use crate::error::{upload_range, ApiError};
use crate::ranges::parse_content_range;
use crate::{location, Ctx, Query, Registry};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use site_core::{Digest, ErrorCode, Repository};

fn upload_response(status: StatusCode, name: &str, id: &str, offset: u64, q: &Query) -> Response {
    Response::builder()
        .status(status)
        .header(
            header::LOCATION,
            location(name, &format!("blobs/uploads/{id}"), q),
        )
        .header(header::RANGE, upload_range(offset))
        .header("Docker-Upload-UUID", id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

fn created(name: &str, digest: &Digest, q: &Query) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            location(name, &format!("blobs/{digest}"), q),
        )
        .header("Docker-Content-Digest", digest.as_str())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

/// The start offset of the request's `Content-Range`, checked against `Content-Length`.
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    parse_content_range(v.to_str().map_err(|_| ())?, length)
        .map(Some)
        .map_err(drop)
}

/// The start of the request's `Content-Range`; a malformed one is a 416 that tells the
/// client where the upload stands.
async fn range_start(
    reg: &Registry,
    repo: &Repository,
    name: &str,
    id: &str,
    q: &Query,
    h: &HeaderMap,
) -> Result<Option<u64>, ApiError> {
    match content_range_start(h) {
        Ok(start) => Ok(start),
        Err(()) => {
            let offset = reg.node.uploads.upload_offset(repo, id).await?;
            Err(ApiError::new(
                ErrorCode::BlobUploadInvalid,
                "malformed Content-Range, or one that disagrees with Content-Length",
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(header::RANGE, &upload_range(offset))
            .with_header(
                header::LOCATION,
                &location(name, &format!("blobs/uploads/{id}"), q),
            ))
        }
    }
}

fn digest_param(ctx: &Ctx) -> Result<Digest, ApiError> {
    let d = ctx.query.get("digest").ok_or_else(|| {
        ApiError::new(ErrorCode::DigestInvalid, "the digest parameter is required")
    })?;
    Ok(Digest::parse(d)?)
}

pub(crate) async fn start(
    reg: &Registry,
    name: &str,
    ctx: &Ctx,
    body: Body,
) -> Result<Response, ApiError> {
    let user = reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    if let Some(mount) = ctx.query.get("mount") {
        let digest = Digest::parse(mount)?;
        if let Some(from) = ctx.query.get("from") {
            if let Ok(from) = reg.repository(from, &ctx.query) {
                if reg
                    .node
                    .repositories
                    .mount_blob(&repo, &from, &digest)
                    .await?
                {
                    tracing::info!(%repo, %from, %digest, %user, "blob mounted");
                    return Ok(created(name, &digest, &ctx.query));
                }
            }
        }
    }
    if ctx.query.get("digest").is_some() {
        // Monolithic upload: the whole blob in the POST.
        let digest = digest_param(ctx)?;
        let id = reg.node.uploads.start_upload(&repo).await?;
        let mut body = BodySource(body, &reg.metrics.bytes_received);
        let size = reg
            .node
            .uploads
            .finish_upload(&repo, &id, &digest, None, &mut body)
            .await;
        if size.is_err() {
            let _ = reg.node.uploads.cancel_upload(&repo, &id).await;
        }
        let size = size?;
        tracing::info!(%repo, %digest, size, %user, "blob stored");
        return Ok(created(name, &digest, &ctx.query));
    }
    let id = reg.node.uploads.start_upload(&repo).await?;
    Ok(upload_response(
        StatusCode::ACCEPTED,
        name,
        &id,
        0,
        &ctx.query,
    ))
}

pub(crate) async fn status(
    reg: &Registry,
    name: &str,
    id: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    let offset = reg.node.uploads.upload_offset(&repo, id).await?;
    Ok(upload_response(
        StatusCode::NO_CONTENT,
        name,
        id,
        offset,
        &ctx.query,
    ))
}

pub(crate) async fn patch(
    reg: &Registry,
    name: &str,
    id: &str,
    ctx: &Ctx,
    body: Body,
) -> Result<Response, ApiError> {
    reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    let start = range_start(reg, &repo, name, id, &ctx.query, &ctx.headers).await?;
    let mut body = BodySource(body, &reg.metrics.bytes_received);
    let offset = reg
        .node
        .uploads
        .append_upload(&repo, id, start, &mut body)
        .await
        .map_err(|e| with_location(e.into(), name, id, &ctx.query))?;
    Ok(upload_response(
        StatusCode::ACCEPTED,
        name,
        id,
        offset,
        &ctx.query,
    ))
}

fn with_location(e: ApiError, name: &str, id: &str, q: &Query) -> ApiError {
    if e.status() != StatusCode::RANGE_NOT_SATISFIABLE {
        return e;
    }
    e.with_header(
        header::LOCATION,
        &location(name, &format!("blobs/uploads/{id}"), q),
    )
}

pub(crate) async fn put(
    reg: &Registry,
    name: &str,
    id: &str,
    ctx: &Ctx,
    body: Body,
) -> Result<Response, ApiError> {
    let user = reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    let digest = digest_param(ctx)?;
    let start = range_start(reg, &repo, name, id, &ctx.query, &ctx.headers).await?;
    let mut body = BodySource(body, &reg.metrics.bytes_received);
    let size = reg
        .node
        .uploads
        .finish_upload(&repo, id, &digest, start, &mut body)
        .await
        .map_err(|e| with_location(e.into(), name, id, &ctx.query))?;
    tracing::info!(%repo, %digest, size, %user, "blob stored");
    Ok(created(name, &digest, &ctx.query))
}

pub(crate) async fn cancel(
    reg: &Registry,
    name: &str,
    id: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    reg.node.uploads.cancel_upload(&repo, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response"))
}
