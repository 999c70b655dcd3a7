//! Manifest reads, pushes and deletes.

use crate::body::read_limited;
use crate::error::ApiError;
use crate::{location, Ctx, Registry};
use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use site_core::reference::validate_tag;
use site_core::{Digest, ErrorCode};
use site_node::ManifestRef;

/// Tags one push by digest may set (the spec asks for at least 10).
const MAX_TAGS: usize = 100;

/// Reads a reference: a digest if it has the digest's `:`, else a tag.
fn reference(r: &str) -> Result<ManifestRef, ApiError> {
    if r.contains(':') {
        Ok(ManifestRef::Digest(Digest::parse(r)?))
    } else {
        validate_tag(r)?;
        Ok(ManifestRef::Tag(r.to_owned()))
    }
}

/// Reads a reference to look a manifest up. A tag no push could have stored names no
/// manifest: 404 `MANIFEST_UNKNOWN`, as the reference registry and the OCI conformance
/// suite have it. A malformed digest stays 400 `DIGEST_INVALID`.
fn lookup(r: &str) -> Result<ManifestRef, ApiError> {
    if r.contains(':') {
        return reference(r);
    }
    match validate_tag(r) {
        Ok(_) => Ok(ManifestRef::Tag(r.to_owned())),
        Err(e) => Err(ApiError::new(
            ErrorCode::ManifestUnknown,
            format!("manifest {r} unknown: {e}"),
        )),
    }
}

pub(crate) async fn get(
    reg: &Registry,
    name: &str,
    r: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let repo = reg.repository(name, &ctx.query)?;
    let reference = lookup(r)?;
    let m = match &reg.puller {
        Some(puller) => puller
            .manifest(&repo, &reference)
            .await
            .map_err(|e| ApiError::pull(e, ErrorCode::ManifestUnknown))?,
        None => reg.node.repositories.get_manifest(&repo, &reference)?,
    };
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, &m.media_type)
        .header("Docker-Content-Digest", m.digest.as_str())
        .header(header::ETAG, format!("\"{}\"", m.digest))
        .header(header::CONTENT_LENGTH, m.body.len());
    let body = if ctx.method == Method::HEAD {
        Body::empty()
    } else {
        // A pull: it moves the image up the order of least-recently-used eviction.
        reg.node.pulls.note(&m.digest);
        Body::from(m.body)
    };
    Ok(builder.body(body).expect("valid response"))
}

pub(crate) async fn put(
    reg: &Registry,
    name: &str,
    r: &str,
    ctx: &Ctx,
    body: Body,
) -> Result<Response, ApiError> {
    let user = reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    let reference = reference(r)?;
    // A push by digest may name tags as well (`?tag=a&tag=b`, spec "Pushing
    // Manifests"): each is checked before anything is stored, set once the manifest is,
    // and listed in `OCI-Tag`. A push by tag ignores them.
    let mut tags: Vec<&str> = Vec::new();
    if matches!(reference, ManifestRef::Digest(_)) {
        for t in ctx.query.all("tag") {
            validate_tag(t)?;
            if !tags.contains(&t.as_str()) {
                tags.push(t);
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("at most {MAX_TAGS} tags per push, not {}", tags.len()),
            ));
        }
    }
    let limit = reg.node.repositories.max_manifest_bytes();
    let content_type = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_limited(body, limit).await?;
    reg.metrics.bytes_received.add(body.len() as u64);
    let (digest, manifest) = reg
        .node
        .repositories
        .put_manifest(&repo, &reference, content_type.as_deref(), &body)
        .await?;
    tracing::info!(%repo, %digest, reference = r, media_type = %manifest.media_type, %user, "manifest stored");
    for t in &tags {
        reg.node.repositories.tag(&repo, t, &digest).await?;
        tracing::info!(%repo, %digest, tag = t, %user, "tag set");
    }
    let location = location(name, &format!("manifests/{digest}"), &ctx.query);
    let mut builder = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, location)
        .header("Docker-Content-Digest", digest.as_str())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &manifest.subject {
        builder = builder.header("OCI-Subject", subject.digest.as_str());
    }
    if !tags.is_empty() {
        // Tags hold no comma: one header lists them all.
        builder = builder.header("OCI-Tag", tags.join(", "));
    }
    Ok(builder.body(Body::empty()).expect("valid response"))
}

pub(crate) async fn delete(
    reg: &Registry,
    name: &str,
    r: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let user = reg.access.push(&ctx.headers, ctx.peer).await?;
    let repo = reg.repository(name, &ctx.query)?;
    match lookup(r)? {
        ManifestRef::Digest(d) => reg.node.repositories.delete_manifest(&repo, &d).await?,
        ManifestRef::Tag(t) => reg.node.repositories.delete_tag(&repo, &t).await?,
    }
    tracing::info!(%repo, reference = r, %user, "manifest deleted");
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response"))
}
