//! The OpenAPI 3.1 document of the API (`GET /openapi.json`), generated from the types
//! of this crate: each route below is declared once, with what it takes and answers.

use crate::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document, as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "towerd",
        description = "The Control Tower's fleet service: the sites of the inventory and the rollouts that bring applications to them. Every refusal is an ErrorBody. Once the tower has users, every request needs a bearer token (or a client certificate of its CA): reads need the role read, changes write.",
        license(name = "see the repository")
    ),
    paths(
        list_sites, create_site, query_sites, get_site, update_site, remove_site, site_health,
        list_rollouts, create_rollout, get_rollout, cancel_rollout, openapi_json
    ),
    components(schemas(
        ErrorBody, ErrorDetail, SiteView, TlsView, NewSite, NewTls, SiteListing, SiteQuery,
        SiteHealth, NodeHealth, NewRollout, RolloutView, RolloutSummary, PullingView, Totals,
        SiteProgressView, ImageSummary, RolloutListing
    )),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /sites`.
#[utoipa::path(get, path = "/sites", tag = "sites",
    responses(
        (status = 200, description = "Every site, by id", body = SiteListing),
        (status = 401, description = "No user, or a wrong or revoked token", body = ErrorBody),
        (status = 403, description = "The user's role does not cover it", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn list_sites() {}

/// `POST /sites`.
#[utoipa::path(post, path = "/sites", tag = "sites", request_body = NewSite,
    responses(
        (status = 201, description = "Onboarded", body = SiteView),
        (status = 400, description = "BAD_REQUEST: not a site", body = ErrorBody),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role write", body = ErrorBody),
        (status = 409, description = "CONFLICT: the id or the name is taken", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn create_site() {}

/// `POST /sites/query`.
#[utoipa::path(post, path = "/sites/query", tag = "sites", request_body = SiteQuery,
    responses(
        (status = 200, description = "The sites the filter matches, by id", body = SiteListing),
        (status = 400, description = "BAD_FILTER or BAD_REQUEST", body = ErrorBody),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role read", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn query_sites() {}

/// `GET /sites/{id}`.
#[utoipa::path(get, path = "/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    responses(
        (status = 200, description = "The site", body = SiteView),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role read", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn get_site() {}

/// `PUT /sites/{id}`: a JSON merge patch (RFC 7386) of the site's fields.
#[utoipa::path(put, path = "/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    request_body(content = Object, description = "A JSON merge patch of NewSite's fields (the id cannot change)"),
    responses(
        (status = 200, description = "The site as changed", body = SiteView),
        (status = 400, description = "BAD_REQUEST", body = ErrorBody),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role write", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 409, description = "CONFLICT: the name is another site's", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn update_site() {}

/// `DELETE /sites/{id}`: the site leaves the inventory and its rollouts.
#[utoipa::path(delete, path = "/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    responses(
        (status = 200, description = "The site removed", body = SiteView),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role write", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn remove_site() {}

/// `GET /sites/{id}/health`.
#[utoipa::path(get, path = "/sites/{id}/health", tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    responses(
        (status = 200, description = "Every node asked at once, and a verdict", body = SiteHealth),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role read", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn site_health() {}

/// `GET /rollouts`.
#[utoipa::path(get, path = "/rollouts", tag = "rollouts",
    responses(
        (status = 200, description = "Every rollout, without its sites", body = RolloutListing),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role read", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn list_rollouts() {}

/// `POST /rollouts`.
#[utoipa::path(post, path = "/rollouts", tag = "rollouts", request_body = NewRollout,
    responses(
        (status = 201, description = "Accepted: pulling its images, then running", body = RolloutView),
        (status = 400, description = "BAD_REQUEST, BAD_FILTER, NO_SITES", body = ErrorBody),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role write", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "IMAGE_NOT_FOUND: the upstream says an image does not exist", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn create_rollout() {}

/// `GET /rollouts/{id}`.
#[utoipa::path(get, path = "/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout, every site and image", body = RolloutView),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role read", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn get_rollout() {}

/// `DELETE /rollouts/{id}`: cancels it; sites keep what they hold.
#[utoipa::path(delete, path = "/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout, cancelled", body = RolloutView),
        (status = 401, description = "No user", body = ErrorBody),
        (status = 403, description = "Not the role write", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn cancel_rollout() {}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of the API", body = Object),
        (status = 401, description = "No user", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn openapi_json() {}
