//! RFC 9457 problem details: every error the API returns is one
//! `application/problem+json` object with a stable `type` URI, a short
//! `title`, the HTTP `status` and a `detail` written for the caller.
//!
//! Why a closed list of kinds: clients branch on `type`, so it must never
//! change with the wording of an engine message, and the detail of an
//! internal failure (a path, a store error) must never reach the client.
//! Engine errors are mapped here, in one place, with two rules that keep
//! existence from leaking: a message outside the caller's reach and a
//! tenant other than the caller's are both plain `not-found`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Base of every problem `type` URI.
pub const TYPE_BASE: &str = "https://ama.invalid/problems/";

/// The kinds of problem the API reports. Each has a stable `type` URI
/// (`https://ama.invalid/problems/<slug>`) and an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// The request is malformed (JSON, parameters, an argument out of range).
    BadRequest,
    /// The search query cannot be parsed.
    InvalidQuery,
    /// No valid credentials: missing, wrong, expired or revoked.
    Unauthenticated,
    /// The caller's role does not allow this.
    Forbidden,
    /// A cookie session made a state-changing request without its CSRF token.
    CsrfRejected,
    /// No such resource, or not visible to the caller.
    NotFound,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// A user or similar resource exists already.
    Conflict,
    /// The request body is over the limit.
    PayloadTooLarge,
    /// The request body has a media type this endpoint does not take.
    UnsupportedMediaType,
    /// A message was refused at ingest (empty, not a message, too large for the archive).
    MessageRefused,
    /// The identity request is invalid (weak password, bad user id).
    InvalidIdentity,
    /// Too many requests from this principal; see `Retry-After`.
    RateLimited,
    /// Too many failed logins; see `Retry-After`.
    LockedOut,
    /// The request took too long.
    Timeout,
    /// The server is shutting down or not ready.
    Unavailable,
    /// Something failed inside the server; details are in its log only.
    Internal,
}

impl Kind {
    /// The last segment of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::BadRequest => "bad-request",
            Kind::InvalidQuery => "invalid-query",
            Kind::Unauthenticated => "unauthenticated",
            Kind::Forbidden => "forbidden",
            Kind::CsrfRejected => "csrf-rejected",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::Conflict => "conflict",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::MessageRefused => "message-refused",
            Kind::InvalidIdentity => "invalid-identity",
            Kind::RateLimited => "rate-limited",
            Kind::LockedOut => "locked-out",
            Kind::Timeout => "timeout",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Kind::BadRequest | Kind::InvalidQuery => StatusCode::BAD_REQUEST,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::Forbidden | Kind::CsrfRejected => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::MessageRefused | Kind::InvalidIdentity => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::RateLimited | Kind::LockedOut => StatusCode::TOO_MANY_REQUESTS,
            Kind::Timeout | Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, fixed summary of the kind.
    pub fn title(self) -> &'static str {
        match self {
            Kind::BadRequest => "Bad request",
            Kind::InvalidQuery => "Invalid search query",
            Kind::Unauthenticated => "Authentication required",
            Kind::Forbidden => "Not allowed for this role",
            Kind::CsrfRejected => "CSRF token missing or wrong",
            Kind::NotFound => "Not found",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::Conflict => "Already exists",
            Kind::PayloadTooLarge => "Request body too large",
            Kind::UnsupportedMediaType => "Unsupported media type",
            Kind::MessageRefused => "Message refused",
            Kind::InvalidIdentity => "Invalid user or password",
            Kind::RateLimited => "Too many requests",
            Kind::LockedOut => "Too many failed logins",
            Kind::Timeout => "Request timed out",
            Kind::Unavailable => "Service unavailable",
            Kind::Internal => "Internal error",
        }
    }

    /// The full `type` URI.
    pub fn type_uri(self) -> String {
        format!("{TYPE_BASE}{}", self.slug())
    }
}

/// An RFC 9457 problem: what every error response of the API carries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemBody {
    /// Stable URI naming the kind of problem
    /// (`https://ama.invalid/problems/<kind>`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong with this request.
    pub detail: String,
}

/// An error response under construction.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Its kind.
    pub kind: Kind,
    /// The detail for the caller (never internal detail).
    pub detail: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Not found (or not visible: the two are never told apart).
    pub fn not_found() -> Self {
        Problem::new(Kind::NotFound, "no such resource")
    }

    /// Missing or invalid credentials.
    pub fn unauthenticated() -> Self {
        Problem::new(
            Kind::Unauthenticated,
            "log in (POST /v1/login) and send the session token as `Authorization: Bearer`, or an API key",
        )
    }

    /// An internal failure: logged with its cause, reported without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        eprintln!("ama-http: internal error: {cause}");
        Problem::new(Kind::Internal, "the server could not complete the request")
    }

    /// The JSON body.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_: self.kind.type_uri(),
            title: self.kind.title().into(),
            status: self.kind.status().as_u16(),
            detail: self.detail.clone(),
        }
    }
}

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut r = (self.kind.status(), body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.kind == Kind::Unauthenticated {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ama\""),
            );
        }
        r.extensions_mut().insert(self.kind);
        r
    }
}

impl From<ama_core::Error> for Problem {
    fn from(e: ama_core::Error) -> Self {
        use ama_core::Error as E;
        match e {
            E::NotFound(_) => Problem::not_found(),
            E::Tenant(ama_core::TenantError::Unknown(_)) => Problem::not_found(),
            E::Tenant(ama_core::TenantError::Exists(_)) => {
                Problem::new(Kind::Conflict, "it exists already")
            }
            E::Tenant(t) => Problem::new(Kind::BadRequest, t.to_string()),
            E::Query(q) => Problem::new(Kind::InvalidQuery, q.to_string()),
            E::InvalidArgument(m) => Problem::new(Kind::BadRequest, m),
            E::AccessDenied(m) => Problem::new(Kind::Forbidden, m),
            E::Unauthenticated(_) => Problem::unauthenticated(),
            E::LockedOut { retry_after_secs } => Problem::new(
                Kind::LockedOut,
                "too many failed logins; try again after the delay in Retry-After",
            )
            .retry_after(retry_after_secs),
            E::Identity(i) => {
                use ama_core::IdentityError as I;
                match i {
                    I::UserExists(_) => Problem::new(Kind::Conflict, i.to_string()),
                    I::UnknownUser(_) | I::UnknownApiKey(_) => Problem::not_found(),
                    I::WeakPassword(_)
                    | I::InvalidUserId(_)
                    | I::InvalidAddress(_)
                    | I::NoRoles(_) => Problem::new(Kind::InvalidIdentity, i.to_string()),
                    other => Problem::internal(&other),
                }
            }
            E::Ingest(i) => match i {
                ama_core::IngestError::TooLarge { .. } => {
                    Problem::new(Kind::PayloadTooLarge, i.to_string())
                }
                other => Problem::new(Kind::MessageRefused, other.to_string()),
            },
            other => Problem::internal(&other),
        }
    }
}
