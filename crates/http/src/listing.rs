//! Content discovery: tags list and catalog (with `n`/`last` paging), referrers.

use crate::error::ApiError;
use crate::{Ctx, Query, Registry};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use site_core::manifest::OCI_INDEX;
use site_core::{Digest, ErrorCode};

/// Largest page a client may ask for, and the page size when it asks none.
const MAX_PAGE: usize = 10_000;

fn page(q: &Query) -> Result<(usize, Option<String>), ApiError> {
    let n = match q.get("n") {
        None | Some("") => MAX_PAGE,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| {
                ApiError::new(ErrorCode::Unsupported, format!("invalid page size n={v:?}"))
                    .with_status(StatusCode::BAD_REQUEST)
            })?
            .min(MAX_PAGE),
    };
    Ok((n, q.get("last").map(str::to_owned)))
}

/// `Link` header to the next page when the page came back full.
fn paged(
    body: serde_json::Value,
    path: &str,
    n: usize,
    got: &[String],
    ns: Option<&str>,
) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if n > 0 && got.len() == n {
        let last = got.last().expect("full page");
        let ns = ns.map(|ns| format!("&ns={ns}")).unwrap_or_default();
        let link = format!("<{path}?n={n}&last={last}{ns}>; rel=\"next\"");
        if let Ok(v) = link.parse() {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

pub(crate) fn tags(reg: &Registry, name: &str, ctx: &Ctx) -> Result<Response, ApiError> {
    let repo = reg.repository(name, &ctx.query)?;
    let (n, last) = page(&ctx.query)?;
    let tags = reg.node.repositories.tags(&repo, last.as_deref(), n)?;
    if tags.is_empty() && !reg.node.repositories.repo_exists(&repo)? {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            format!("repository {repo} unknown"),
        ));
    }
    let body = json!({ "name": name, "tags": tags });
    Ok(paged(
        body,
        &format!("/v2/{name}/tags/list"),
        n,
        &tags,
        ctx.query.get("ns"),
    ))
}

pub(crate) fn catalog(reg: &Registry, ctx: &Ctx) -> Result<Response, ApiError> {
    let (n, last) = page(&ctx.query)?;
    let upstream = reg.config.default_upstream.as_str();
    let repos = reg
        .node
        .repositories
        .catalog(|r| r.short_name(upstream), last.as_deref(), n)?;
    let body = json!({ "repositories": repos });
    Ok(paged(body, "/v2/_catalog", n, &repos, None))
}

pub(crate) fn referrers(
    reg: &Registry,
    name: &str,
    digest: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let repo = reg.repository(name, &ctx.query)?;
    let subject = Digest::parse(digest)?;
    let artifact_type = ctx.query.get("artifactType");
    let manifests = reg
        .node
        .repositories
        .referrers(&repo, &subject, artifact_type)?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let mut response = ([(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            "OCI-Filters-Applied",
            "artifactType".parse().expect("static"),
        );
    }
    Ok(response)
}
