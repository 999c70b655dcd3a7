#![deny(missing_docs)]
//! The OCI Distribution API v1.1 (HTTP) of a site node.
//!
//! Rule of this crate: handlers translate HTTP to calls on the node's components and back;
//! they hold no registry logic of their own, and see only the components this API uses
//! ([`NodeParts`]: reads, repositories, pulls, uploads, the failure, the members). Paths
//! are read by one parser ([`path`]), errors mapped by one table ([`error`]). Reads are
//! anonymous; writes need `[registry.push]`.

pub mod auth;
mod blobs;
mod body;
pub mod error;
pub mod https;
mod listing;
mod login_failures;
mod manifests;
mod metrics;
pub mod path;
mod plain;
pub mod query;
pub mod ranges;
pub mod tls_listener;
mod uploads;
mod users;

pub use auth::{AccessConfig, ReadAccess};
pub use https::{Certificates, TlsFiles};
pub use tls_listener::{PlainRefusal, TlsConfigs, TlsListener};
pub use users::User;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use error::ApiError;
use path::Endpoint;
pub(crate) use query::Query;
use site_core::{ErrorCode, Repository};
use site_node::{Failure, Membership, Pulls, Reads, Repositories, Uploads};
use site_pull::Puller;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Settings of the HTTP registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registry of names that carry no host (`docker.io`).
    pub default_upstream: String,
    /// Who may push and pull.
    pub access: AccessConfig,
}

/// The parts of the node the handlers use.
#[derive(Clone)]
pub struct NodeParts {
    /// Reads of blobs.
    pub reads: Reads,
    /// Manifests, tags, referrers, the catalog and blob links.
    pub repositories: Repositories,
    /// Pulls noted for GC's eviction order.
    pub pulls: Pulls,
    /// OCI upload sessions.
    pub uploads: Uploads,
    /// Whether this node's storage failed (`/readyz`).
    pub failure: Failure,
    /// The site's nodes (`/metrics`).
    pub membership: Membership,
}

impl NodeParts {
    /// The parts of `node` the handlers use.
    pub fn of(node: &site_node::Node) -> NodeParts {
        NodeParts {
            reads: node.reads.clone(),
            repositories: node.repositories.clone(),
            pulls: node.pulls.clone(),
            uploads: node.uploads.clone(),
            failure: node.failure.clone(),
            membership: node.membership.clone(),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct Registry {
    node: NodeParts,
    config: Arc<RegistryConfig>,
    access: Arc<auth::Access>,
    metrics: Arc<metrics::Metrics>,
    /// The pull-through cache, when some registry may be fetched from.
    puller: Option<Puller>,
}

impl Registry {
    /// A registry over the node's `node` parts; the error says why its users cannot be
    /// read.
    pub fn new(node: NodeParts, mut config: RegistryConfig) -> Result<Registry, String> {
        // The users move into the access policy: one copy of their passwords.
        let access = auth::Access::new(std::mem::take(&mut config.access))?;
        Ok(Registry {
            node,
            access: Arc::new(access),
            config: Arc::new(config),
            metrics: Arc::default(),
            puller: None,
        })
    }

    /// Adds the node's other parts to what `/metrics` shows.
    pub fn with_metrics(mut self, sources: Vec<Arc<dyn site_core::metrics::Source>>) -> Registry {
        Arc::get_mut(&mut self.metrics)
            .expect("metrics sources are given before serving")
            .sources = sources;
        self
    }

    /// Fills misses through `puller` (see `site-pull`).
    pub fn with_puller(mut self, puller: Puller) -> Registry {
        self.puller = Some(puller);
        self
    }

    /// The axum router of the whole API, health and metrics included.
    pub fn router(self) -> Router {
        Router::new().fallback(dispatch).with_state(self)
    }

    /// Serves the API on `listener` until `shutdown` completes, then finishes the requests
    /// in flight.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let handler: plain::Handler = Arc::new(move |req| {
            let reg = self.clone();
            Box::pin(dispatch(State(reg), req))
        });
        plain::serve(listener, handler, plain::Limits::default(), shutdown).await
    }

    /// Serves the API over HTTPS on `listener`, each new connection with the certificates
    /// current then, until `shutdown` completes; then finishes the requests in flight.
    pub async fn serve_https(
        self,
        listener: tokio::net::TcpListener,
        certificates: Arc<Certificates>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = tls_listener::TlsListener::new(listener, certificates)?;
        let service = Router::new()
            .fallback(dispatch_closing_unread)
            .with_state(self)
            .into_make_service_with_connect_info::<Peer>();
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// The repository a request names, after DESIGN's mirror rules.
    fn repository(&self, name: &str, query: &Query) -> Result<Repository, ApiError> {
        Ok(Repository::from_request(
            name,
            query.get("ns"),
            &self.config.default_upstream,
        )?)
    }
}

/// How the plain HTTP/1.1 server reads a request head at the start of `buf`: its length
/// once it is whole, `None` while it is not, or the status it is refused with (400, 431,
/// 501). Exposed for the fuzz target of request heads.
pub fn request_head(buf: &[u8]) -> Result<Option<usize>, u16> {
    plain::head_len(buf)
}

/// The path a follow-up request should use, keeping containerd's `ns` if one was given.
pub(crate) fn location(name: &str, rest: &str, q: &Query) -> String {
    match q.get("ns") {
        Some(ns) => format!("/v2/{name}/{rest}?ns={ns}"),
        None => format!("/v2/{name}/{rest}"),
    }
}

/// The address of a connection's client, over plain HTTP or HTTPS.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tls_listener::TlsListener>,
    > for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls_listener::TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// What a handler needs of the request besides the endpoint.
pub(crate) struct Ctx {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    /// The client's address, when the server was told it.
    pub peer: Option<IpAddr>,
}

async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match path.as_str() {
        "/healthz" => (StatusCode::OK, "ok\n").into_response(),
        // Ready to take writes: not once its storage failed (it still serves reads).
        "/readyz" => match reg.node.failure.get() {
            None => (StatusCode::OK, "ok\n").into_response(),
            Some(f) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("storage failed: {f}\n"),
            )
                .into_response(),
        },
        "/metrics" => {
            reg.metrics
                .render(reg.access.failures.total(), &reg.node.membership)
                .await
        }
        _ => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<Peer>>()
                .map(|c| c.0 .0.ip());
            let (parts, body) = req.into_parts();
            let ctx = Ctx {
                method: parts.method,
                query: Query::parse(parts.uri.query()),
                headers: parts.headers,
                peer,
            };
            match route(&reg, &path, &ctx, body).await {
                Ok(r) => r,
                Err(e) => {
                    if e.status().is_server_error() {
                        tracing::error!(%method, %path, status = e.status().as_u16(), code = %e.code(), "request failed: {}", e.message());
                    } else {
                        tracing::warn!(%method, %path, status = e.status().as_u16(), code = %e.code(), "request refused: {}", e.message());
                    }
                    e.into_response()
                }
            }
        }
    };
    let route = metrics::route(&path);
    reg.metrics.count(
        &method,
        route,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    let mut response = response;
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

/// [`dispatch`] for hyper (HTTPS): a request whose body the handler left unread is
/// answered with `Connection: close`, since hyper would otherwise drop the connection
/// without a word once the client sends the rest (a client that refused credentials,
/// say, then retries on a connection that is gone).
async fn dispatch_closing_unread(reg: State<Registry>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let (body, ended) = body::Watched::new(body);
    let mut response = dispatch(reg, Request::from_parts(parts, Body::new(body))).await;
    if !ended.load(std::sync::atomic::Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn route(reg: &Registry, path: &str, ctx: &Ctx, body: Body) -> Result<Response, ApiError> {
    let endpoint = path::parse(path)?;
    let m = ctx.method.clone();
    let is_read = m == Method::GET || m == Method::HEAD;
    let reads = match &endpoint {
        Endpoint::Catalog | Endpoint::Tags(_) | Endpoint::Manifest(..) | Endpoint::Blob(..) => {
            is_read
        }
        Endpoint::Referrers(..) => m == Method::GET,
        _ => false,
    };
    if reads {
        reg.access.read(&ctx.headers, ctx.peer).await?;
    }
    match endpoint {
        Endpoint::Base if is_read => base(reg, ctx).await,
        Endpoint::Catalog if is_read => listing::catalog(reg, ctx),
        Endpoint::Tags(name) if is_read => listing::tags(reg, name, ctx),
        Endpoint::Referrers(name, d) if m == Method::GET => listing::referrers(reg, name, d, ctx),
        Endpoint::Manifest(name, r) if is_read => manifests::get(reg, name, r, ctx).await,
        Endpoint::Blob(name, d) if is_read => blobs::get(reg, name, d, ctx).await,
        Endpoint::Manifest(name, r) if m == Method::PUT => {
            manifests::put(reg, name, r, ctx, body).await
        }
        Endpoint::Manifest(name, r) if m == Method::DELETE => {
            manifests::delete(reg, name, r, ctx).await
        }
        Endpoint::Blob(name, d) if m == Method::DELETE => blobs::delete(reg, name, d, ctx).await,
        Endpoint::UploadStart(name) if m == Method::POST => {
            uploads::start(reg, name, ctx, body).await
        }
        Endpoint::Upload(name, id) if m == Method::GET => uploads::status(reg, name, id, ctx).await,
        Endpoint::Upload(name, id) if m == Method::PATCH => {
            uploads::patch(reg, name, id, ctx, body).await
        }
        Endpoint::Upload(name, id) if m == Method::PUT => {
            uploads::put(reg, name, id, ctx, body).await
        }
        Endpoint::Upload(name, id) if m == Method::DELETE => {
            uploads::cancel(reg, name, id, ctx).await
        }
        _ => Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("method {m} not allowed here"),
        )),
    }
}

/// `/v2/`: the API version check, and the credential check of `docker login`.
async fn base(reg: &Registry, ctx: &Ctx) -> Result<Response, ApiError> {
    reg.access.base(&ctx.headers, ctx.peer).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response())
}
