//! # ama-http: the JSON API and the search page
//!
//! Integrators call HTTP; compliance staff use a page where they type a
//! query and read the mail. Both go through the same [`ama_core::Archive`]
//! calls and therefore the same access rules and the same audit log: every
//! request is authenticated by one engine call
//! (`Archive::authenticate(token) -> Principal`) and then does its work
//! through the engine's principal-checked methods. This crate only parses
//! HTTP, renders JSON, and adds what belongs to the transport: TLS,
//! body limits, timeouts, per-principal rate limits, security headers,
//! CSRF protection for cookie sessions, metrics.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ama_core::{Archive, ArchiveOptions, Unlock};
//! use ama_http::{HttpConfig, Transport};
//!
//! # async fn run(tls: Arc<rustls::ServerConfig>) -> Result<(), Box<dyn std::error::Error>> {
//! let archive = Arc::new(Archive::open("/srv/ama", &Unlock::passphrase("…"), ArchiveOptions::default())?);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! // Serves until `stop` is sent (or dropped); then requests in flight finish.
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! ama_http::serve(listener, Transport::Tls(tls), archive, HttpConfig::default(), async {
//!     let _ = stopped.await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! The routes, their parameters and answers are described by the OpenAPI
//! 3.1 document the server publishes at `/v1/openapi.json` (generated from
//! this code with utoipa). Errors are RFC 9457 problem details
//! ([`problem`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ama_core::Archive;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

mod api;
mod auth;
mod export;
mod extract;
mod jobs;
mod linger;
pub mod metrics;
pub mod openapi;
mod page;
pub mod problem;
pub mod ratelimit;
mod retention;
mod server;

pub use api::safe_filename;
pub use problem::{Kind, Problem};
pub use ratelimit::Rate;
pub use server::{ConnLimits, Peer, Transport, check_transport};

/// The engine this API serves, re-exported for the API's users.
pub use ama_core as core;

/// Failures of the server itself (not of a request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The configuration cannot work (e.g. plain HTTP on a public address).
    #[error("HTTP configuration: {0}")]
    Config(String),
    /// A socket operation failed.
    #[error("HTTP I/O: {0}")]
    Io(String),
}

/// Server settings. The defaults suit an archive node on one machine.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted for ingest, in bytes (larger: 413).
    pub max_body: usize,
    /// Largest JSON request body, in bytes (larger: 413).
    pub max_json_body: usize,
    /// Longest time a request may take before it is answered with 503.
    pub request_timeout: Duration,
    /// Requests per authenticated principal.
    pub rate: Rate,
    /// Login attempts per client address.
    pub login_rate: Rate,
    /// Connection limits and timeouts.
    pub conn: ConnLimits,
    /// More metrics for `/metrics` from the embedding program (e.g. the
    /// SMTP node's spool depth), appended to the server's own.
    pub extra_metrics: Option<ExtraMetrics>,
    /// How long an export job and its (encrypted) file are kept when
    /// nobody downloads it, counted from the job's start.
    pub export_ttl: Duration,
}

/// A function returning Prometheus text exposition lines (with their
/// `# HELP`/`# TYPE` lines), called at every scrape of `/metrics`. It must
/// be cheap and must not return personal data.
#[derive(Clone)]
pub struct ExtraMetrics(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtraMetrics(..)")
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body: 64 * 1024 * 1024,
            max_json_body: 64 * 1024,
            request_timeout: Duration::from_secs(60),
            rate: Rate::new(50.0, 200.0),
            login_rate: Rate::new(1.0, 20.0),
            conn: ConnLimits {
                max_connections: 1024,
                handshake_timeout: Duration::from_secs(10),
                header_timeout: Duration::from_secs(30),
                shutdown_grace: Duration::from_secs(30),
            },
            extra_metrics: None,
            export_ttl: Duration::from_secs(3600),
        }
    }
}

/// What every handler shares.
pub(crate) struct Inner {
    pub(crate) archive: Arc<Archive>,
    pub(crate) config: HttpConfig,
    pub(crate) tls: bool,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) limiter: ratelimit::Limiter,
    pub(crate) login_limiter: ratelimit::Limiter,
    pub(crate) ready: AtomicBool,
    pub(crate) jobs: Arc<jobs::Jobs>,
}

/// Cheap handle on the shared state.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A running API's handle: its router and readiness switch. Built by
/// [`App::new`]; [`serve`] uses it, tests and embedders may drive the
/// router directly.
#[derive(Clone)]
pub struct App {
    state: AppState,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("tls", &self.state.tls)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The API over `archive`. `tls` says whether it is served over TLS
    /// (then responses carry HSTS and the session cookie is `Secure`).
    /// Export job files live in `tmp/http-exports` of the data directory;
    /// leftovers of an earlier process there are deleted (one server per
    /// data directory).
    pub fn new(archive: Arc<Archive>, config: HttpConfig, tls: bool) -> Self {
        let jobs = jobs::Jobs::new(
            archive.data_dir().join("tmp").join("http-exports"),
            config.export_ttl,
        );
        App {
            state: AppState(Arc::new(Inner {
                jobs,
                archive,
                limiter: ratelimit::Limiter::new(config.rate),
                login_limiter: ratelimit::Limiter::new(config.login_rate),
                config,
                tls,
                metrics: metrics::Metrics::default(),
                ready: AtomicBool::new(true),
            })),
        }
    }

    /// The axum router with every route and middleware.
    pub fn router(&self) -> Router {
        let st = self.state.clone();
        Router::new()
            .route("/", get(page::index))
            .route("/assets/app.js", get(page::script))
            .route("/assets/app.css", get(page::style))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .nest("/v1", api::routes(&st))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(st.clone(), outer))
            .with_state(st)
    }

    /// Marks the server as not ready (`/readyz` answers 503), e.g. while
    /// shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.state.ready.store(ready, Ordering::Relaxed);
    }

    /// The Prometheus text of this server's metrics.
    pub fn metrics(&self) -> String {
        self.state.metrics.render()
    }
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// requests in flight finish. Plain HTTP is refused unless `listener` is on
/// a loopback address.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    archive: Arc<Archive>,
    config: HttpConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let conn = config.conn.clone();
    let app = App::new(archive, config, transport.is_tls());
    let router = app.router();
    let flag = app.clone();
    let shutdown = async move {
        shutdown.await;
        flag.set_ready(false);
    };
    server::run(listener, transport, router, conn, shutdown).await
}

/// Runs an engine call on a blocking thread; engine errors become problems.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ama_core::Result<T> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Problem::from),
        Err(e) => Err(Problem::internal(&e)),
    }
}

/// The Content-Security-Policy of every response: only this origin's
/// script and style files, no inline code, no framing, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                       base-uri 'none'";

/// Limits, timeout, security headers and metrics around every request.
async fn outer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_string(), |m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Over HTTP/1, whatever the handler leaves unread of the body comes
    // back here to be drained (see `linger`).
    let (req, unread) = if req.version() <= axum::http::Version::HTTP_11 {
        let (req, rx) = linger::track(req);
        (req, Some(rx))
    } else {
        (req, None)
    };
    let mut resp = if declared.is_some_and(|n| n > st.config.max_body as u64) {
        drop(req);
        Problem::new(
            Kind::PayloadTooLarge,
            format!("the request body is over {} bytes", st.config.max_body),
        )
        .into_response()
    } else {
        match tokio::time::timeout(st.config.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => Problem::new(Kind::Timeout, "the request took too long").into_response(),
        }
    };
    if let Some(Ok(rest)) = unread.map(|mut rx| rx.try_recv())
        && !linger::drain(rest, linger::DRAIN_BYTES, linger::DRAIN_TIME).await
    {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(kind) = resp.extensions().get::<Kind>() {
        st.metrics.problem(kind.slug());
    }
    security_headers(resp.headers_mut(), st.tls, route.starts_with("/assets/"));
    st.metrics
        .request(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

fn security_headers(h: &mut axum::http::HeaderMap, tls: bool, asset: bool) {
    let mut set = |name: HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    set(
        header::CACHE_CONTROL,
        if asset { "no-cache" } else { "no-store" },
    );
    if tls {
        set(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

/// Readiness: not shutting down, and the catalog answers.
async fn readyz(State(st): State<AppState>) -> Response {
    if !st.ready.load(Ordering::Relaxed) {
        return Problem::new(Kind::Unavailable, "shutting down").into_response();
    }
    let a = st.archive.clone();
    match tokio::task::spawn_blocking(move || a.tenants()).await {
        Ok(Ok(_)) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ready\n",
        )
            .into_response(),
        Ok(Err(e)) => {
            eprintln!("ama-http: not ready: {e}");
            Problem::new(Kind::Unavailable, "the archive is not available").into_response()
        }
        Err(e) => Problem::internal(&e).into_response(),
    }
}

async fn metrics_text(State(st): State<AppState>) -> impl IntoResponse {
    let mut text = st.metrics.render();
    if let Some(extra) = &st.config.extra_metrics {
        text.push_str(&(extra.0)());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn not_found() -> Problem {
    Problem::not_found()
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        Kind::MethodNotAllowed,
        "this path does not take that method",
    )
}
