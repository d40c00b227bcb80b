//! The `/v1` routes: log in and out, ingest, search, read one message (its
//! metadata and text, its raw bytes, an attachment), users and API keys
//! (admins), the audit log (auditors).
//!
//! Every handler is the same three steps: authenticate (the [`Authed`]
//! extractor), one engine call on a blocking thread with the principal,
//! render. Who may do what is decided by the engine; this module adds one
//! HTTP rule of its own: a tenant in the path other than the caller's is
//! answered exactly like a missing message (`404`), so a caller cannot
//! probe which tenants or messages exist.

use std::time::Instant;

use ama_core::{
    AuditAction, AuditFilter, Envelope, MessageId, Role, SearchOptions, Sort, Source, TenantId,
    UserSpec,
};
use axum::extract::{DefaultBodyLimit, FromRequest as _, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{self, Authed};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::metrics::IngestOutcome;
use crate::problem::{Kind, Problem, ProblemBody};
use crate::{AppState, blocking};

/// Results per page when the caller does not say.
pub const DEFAULT_PER_PAGE: u32 = 25;
/// Most results per page.
pub const MAX_PER_PAGE: u32 = 100;
/// Deepest page (with the largest page size this stays within the engine's
/// deepest offset).
pub const MAX_PAGE_NUMBER: u32 = 10_000;

pub(crate) fn routes(st: &AppState) -> Router<AppState> {
    let json_limit = DefaultBodyLimit::max(st.config.max_json_body);
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/session", get(session))
        .route(
            "/tenants/{tenant}/messages",
            post(ingest).layer(DefaultBodyLimit::max(st.config.max_body)),
        )
        .route("/tenants/{tenant}/search", get(search))
        .route("/tenants/{tenant}/messages/{id}", get(message))
        .route("/tenants/{tenant}/messages/{id}/raw", get(raw))
        .route(
            "/tenants/{tenant}/messages/{id}/attachments/{n}",
            get(attachment),
        )
        .route("/tenants/{tenant}/users", get(users).post(add_user))
        .route("/tenants/{tenant}/users/{user}", patch(update_user))
        .route(
            "/tenants/{tenant}/api-keys",
            get(api_keys).post(add_api_key),
        )
        .route(
            "/tenants/{tenant}/api-keys/{key}",
            axum::routing::delete(revoke_api_key),
        )
        .route("/tenants/{tenant}/export", get(crate::export::export))
        .route("/tenants/{tenant}/exports", post(crate::jobs::start))
        .route("/tenants/{tenant}/exports/{job}", get(crate::jobs::status))
        .route(
            "/tenants/{tenant}/exports/{job}/download",
            get(crate::jobs::download),
        )
        .route(
            "/tenants/{tenant}/retention-policy",
            get(crate::retention::get_policy).put(crate::retention::put_policy),
        )
        .route(
            "/tenants/{tenant}/holds",
            get(crate::retention::holds).post(crate::retention::place_hold),
        )
        .route(
            "/tenants/{tenant}/holds/{name}/release",
            post(crate::retention::release_hold),
        )
        .route(
            "/tenants/{tenant}/deletions",
            post(crate::retention::delete),
        )
        .route(
            "/tenants/{tenant}/deletion-requests",
            get(crate::retention::deletion_requests),
        )
        .route(
            "/tenants/{tenant}/deletion-requests/{request}/approve",
            post(crate::retention::approve),
        )
        .route("/tenants/{tenant}/audit", get(audit))
        .route("/tenants/{tenant}/audit/verify", get(verify_audit))
        .route("/openapi.json", get(openapi))
        .layer(json_limit)
}

// ----- helpers ---------------------------------------------------------------

/// Refuses (as "not found") a tenant in the path that is not the caller's.
fn own_tenant(a: &Authed, tenant: &str) -> Result<(), Problem> {
    if a.principal.tenant().as_str() == tenant {
        Ok(())
    } else {
        Err(Problem::not_found())
    }
}

fn message_id(s: &str) -> Result<MessageId, Problem> {
    s.parse().map_err(|_| Problem::not_found())
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn roles(r: &[Role]) -> Vec<String> {
    r.iter().map(|r| r.as_str().to_string()).collect()
}

// ----- schemas ---------------------------------------------------------------

/// `POST /v1/login`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant id.
    #[schema(max_length = 63)]
    pub tenant: String,
    /// The user id.
    #[schema(max_length = 200)]
    pub user: String,
    /// The password (local or the directory's).
    #[schema(max_length = 1024)]
    pub password: String,
    /// `token` (default): the token is in the answer, for `Authorization:
    /// Bearer`. `cookie`: the token goes into an HttpOnly cookie and the
    /// answer carries the CSRF token instead (the search page).
    #[serde(default)]
    pub session: SessionKind,
}

/// How a session is carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// A bearer token in the answer.
    #[default]
    Token,
    /// An HttpOnly cookie plus a CSRF token.
    Cookie,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session token (only for `session: token`); send it as `Authorization: Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// For cookie sessions: send this as `X-CSRF-Token` with every POST, PATCH and DELETE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// The tenant.
    pub tenant: String,
    /// The user id.
    pub user: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// When the session ends at the latest (RFC 3339).
    pub expires_at: String,
}

/// The caller's session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// The tenant.
    pub tenant: String,
    /// The user id (absent for an API key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Roles in force.
    pub roles: Vec<String>,
    /// For cookie sessions: the CSRF token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// Envelope of an ingested message.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// The envelope sender (SMTP `MAIL FROM`).
    pub mail_from: Option<String>,
    /// Envelope recipients, comma-separated (they find the mail even when
    /// only in Bcc).
    pub rcpt: Option<String>,
}

/// Proof that a message is archived (durable when this is returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    /// The archive id.
    pub id: String,
    /// SHA-256 of the exact bytes, hex.
    pub sha256: String,
    /// Whether the same bytes were archived before (then `id` is that message).
    pub duplicate: bool,
}

/// Result order.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortParam {
    /// Newest message date first.
    #[default]
    Newest,
    /// Oldest first.
    Oldest,
    /// Best match first.
    Relevance,
}

/// Search parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The query (docs/SEARCH.md); empty finds every message the caller may see.
    pub q: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    /// Results per page (1–100, default 25).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
    /// Result order.
    #[param(inline)]
    pub sort: Option<SortParam>,
}

/// A mailbox: optional display name and address.
#[derive(Debug, Serialize, ToSchema)]
pub struct Mailbox {
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address.
    pub address: String,
}

fn mailboxes(v: &[ama_core::Mailbox]) -> Vec<Mailbox> {
    v.iter()
        .map(|m| Mailbox {
            name: m.name.clone(),
            address: m.address.clone(),
        })
        .collect()
}

/// One search hit.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hit {
    /// The archive id.
    pub id: String,
    /// Message date (RFC 3339; the header date, or the reception time).
    pub date: String,
    /// Senders.
    pub from: Vec<Mailbox>,
    /// Header recipients (To).
    pub to: Vec<Mailbox>,
    /// Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Number of attachments.
    pub attachments: usize,
    /// Size in bytes.
    pub size: u64,
}

/// A page of search results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// All matches (not only this page).
    pub total: usize,
    /// This page's number.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// The hits of this page.
    pub hits: Vec<Hit>,
}

/// An attachment of a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentMeta {
    /// Its number, for `/attachments/{n}`.
    pub index: usize,
    /// File name as the sender gave it (display only; downloads use a cleaned name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Declared media type.
    pub mime_type: String,
    /// Decoded size in bytes.
    pub size: u64,
}

/// One delivery of a message to the archive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// Envelope sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_from: Option<String>,
    /// Envelope recipients the caller may see.
    pub rcpt_to: Vec<String>,
    /// When it was received (RFC 3339).
    pub received_at: String,
    /// Through which frontend (`smtp`, `http`, `import`, `python`).
    pub source: String,
}

/// A header line.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeaderLine {
    /// Field name.
    pub name: String,
    /// Value, unfolded, as in the message.
    pub value: String,
}

/// A message: metadata, header lines and decoded text.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    /// The archive id.
    pub id: String,
    /// SHA-256 of the raw bytes, hex.
    pub sha256: String,
    /// Message date (RFC 3339).
    pub date: String,
    /// The Date header, if valid (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_date: Option<String>,
    /// Message-ID without angle brackets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// From.
    pub from: Vec<Mailbox>,
    /// Sender.
    pub sender: Vec<Mailbox>,
    /// To.
    pub to: Vec<Mailbox>,
    /// Cc.
    pub cc: Vec<Mailbox>,
    /// Bcc (when the archived copy carries it).
    pub bcc: Vec<Mailbox>,
    /// Reply-To.
    pub reply_to: Vec<Mailbox>,
    /// Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// In-Reply-To ids.
    pub in_reply_to: Vec<String>,
    /// References ids.
    pub references: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// What is odd about the message (`missing-from`, `bad-date`, …).
    pub anomalies: Vec<String>,
    /// Attachments.
    pub attachments: Vec<AttachmentMeta>,
    /// Deliveries, first first.
    pub deliveries: Vec<Delivery>,
    /// Top-level header lines in order.
    pub headers: Vec<HeaderLine>,
    /// Decoded text of the text parts (HTML converted to text; never HTML).
    pub text: String,
    /// Whether `text` was cut (at 2 MiB).
    pub text_truncated: bool,
}

/// A user (no password material).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Login name.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Own addresses.
    pub addresses: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Whether the user may log in.
    pub active: bool,
    /// `local` or `directory`.
    pub source: String,
    /// Whether a local password is set.
    pub has_password: bool,
    /// Last successful login (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login: Option<String>,
}

impl From<ama_core::User> for UserOut {
    fn from(u: ama_core::User) -> Self {
        UserOut {
            source: match u.source {
                ama_core::UserSource::Local => "local",
                _ => "directory",
            }
            .into(),
            id: u.id,
            display_name: u.display_name,
            addresses: u.addresses,
            roles: roles(&u.roles),
            active: u.active,
            has_password: u.has_password,
            last_login: u.last_login.map(rfc3339),
        }
    }
}

/// A role a user can be given.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    /// Reads only mail of the user's own addresses.
    EndUser,
    /// Reads all mail of the tenant and the audit log.
    Auditor,
    /// Manages users and API keys; reads no mail.
    Admin,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::EndUser => Role::EndUser,
            RoleName::Auditor => Role::Auditor,
            RoleName::Admin => Role::Admin,
        }
    }
}

/// `POST /v1/tenants/{tenant}/users`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1–100 letters, digits and `._@+-`.
    #[schema(
        pattern = "^[A-Za-z0-9._@+-]{1,100}$",
        min_length = 1,
        max_length = 100
    )]
    pub id: String,
    /// Display name (defaults to the id).
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    /// Own addresses (what an end user may read).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Roles (at least one).
    #[schema(min_items = 1)]
    pub roles: Vec<RoleName>,
    /// Initial password: at least 12 characters, not a common one, not the user id.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

/// `PATCH /v1/tenants/{tenant}/users/{user}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Enable or disable logins (disabling ends the user's sessions at their next use).
    pub active: Option<bool>,
    /// A new password: at least 12 characters, not a common one, not the user id.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

/// `POST /v1/tenants/{tenant}/api-keys`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the key is for.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
}

/// An ingest API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    /// Public id (for revocation).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The secret: only in the answer that created the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<ama_core::ApiKey> for ApiKeyOut {
    fn from(k: ama_core::ApiKey) -> Self {
        ApiKeyOut {
            id: k.id,
            name: k.name,
            created_at: rfc3339(k.created_at),
            token: k.token,
        }
    }
}

/// Audit log filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Start at this sequence number.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub from_seq: Option<u64>,
    /// At most this many entries (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only this action.
    #[param(inline)]
    pub action: Option<ActionName>,
    /// Only entries at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
}

/// An audited action.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum ActionName {
    TenantCreate,
    Ingest,
    Search,
    View,
    Download,
    Export,
    Restore,
    Login,
    Logout,
    UserChange,
    ApiKeyChange,
    DirectoryChange,
    AuditRead,
    AuditVerify,
    Reindex,
    Hold,
    PolicyChange,
    Deletion,
    KeyRotation,
}

/// Who did something.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActorOut {
    /// User id (absent for the operator or a system process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Roles in force.
    pub roles: Vec<String>,
    /// Frontend (`http`, `cli`, `smtp`, …).
    pub frontend: String,
    /// Peer address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOut {
    /// Position in the log.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: AuditActorOut,
    /// What (`search`, `view`, `login`, …).
    pub action: String,
    /// Details (the query of a search, …).
    pub detail: String,
    /// Archive ids of the messages concerned.
    pub messages: Vec<String>,
    /// `success`, `denied` or `failed`.
    pub outcome: String,
    /// Why it was denied or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// SHA-256 of the previous entry, hex.
    pub prev_hash: String,
}

/// A broken link of the audit chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditProblemOut {
    /// Sequence number concerned.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Result of verifying the audit chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditReportOut {
    /// Entries checked.
    pub entries: u64,
    /// Whether the chain is intact.
    pub intact: bool,
    /// Hash of the last good entry, hex (write it down elsewhere).
    pub head_hash: String,
    /// Everything wrong, first first.
    pub problems: Vec<AuditProblemOut>,
}

// ----- handlers --------------------------------------------------------------

/// Log in with a user and password.
#[utoipa::path(post, path = "/v1/login", tag = "session",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Wrong tenant, user or password", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn login(State(st): State<AppState>, req: Request) -> Result<Response, Problem> {
    let (parts, body) = req.into_parts();
    let ctx = auth::context(&parts);
    let ip = auth::peer(&parts).map_or_else(String::new, |p| p.ip().to_string());
    if let Err(wait) = st.login_limiter.check(&ip) {
        st.metrics.rate_limited();
        return Err(
            Problem::new(Kind::RateLimited, "too many login attempts; slow down")
                .retry_after(wait.as_secs() + 1),
        );
    }
    let ApiJson(body): ApiJson<LoginRequest> =
        ApiJson::from_request(Request::from_parts(parts, body), &st).await?;
    let Ok(tenant) = TenantId::new(body.tenant.trim()) else {
        return Err(Problem::unauthenticated());
    };
    let a = st.archive.clone();
    let user = body.user.clone();
    let password = body.password;
    let s = blocking(move || a.login(&tenant, &user, &password, &ctx)).await?;
    let expires_at = s.expires_at.format(&Rfc3339).unwrap_or_default();
    let max_age = (s.expires_at - OffsetDateTime::now_utc()).whole_seconds();
    let mut out = LoginResponse {
        token: None,
        csrf_token: None,
        tenant: s.tenant.to_string(),
        user: s.user.clone(),
        roles: roles(&s.roles),
        expires_at,
    };
    let mut headers = HeaderMap::new();
    match body.session {
        SessionKind::Token => out.token = Some(s.token.clone()),
        SessionKind::Cookie => {
            out.csrf_token = Some(auth::csrf_token(&s.token));
            headers.insert(
                header::SET_COOKIE,
                auth::set_cookie(st.tls, &s.token, max_age),
            );
        }
    }
    Ok((headers, Json(out)).into_response())
}

/// End the session (the token no longer works).
#[utoipa::path(post, path = "/v1/logout", tag = "session",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not logged in", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Cookie session without CSRF token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn logout(
    State(st): State<AppState>,
    a: Authed,
    req: Request,
) -> Result<Response, Problem> {
    let (parts, _) = req.into_parts();
    let ctx = auth::context(&parts);
    let archive = st.archive.clone();
    let token = a.token.clone();
    blocking(move || archive.logout(&token, &ctx)).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, auth::clear_cookie(st.tls));
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// Who the caller is (and, for cookie sessions, the CSRF token).
#[utoipa::path(get, path = "/v1/session", tag = "session",
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 401, description = "Not logged in", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn session(a: Authed) -> Json<SessionInfo> {
    Json(SessionInfo {
        tenant: a.principal.tenant().to_string(),
        user: a.principal.user().map(str::to_string),
        roles: roles(a.principal.roles()),
        csrf_token: a.csrf(),
    })
}

/// Archive one message (raw RFC 5322 bytes). API keys and admins.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/messages", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"), IngestParams),
    request_body(
        content(
            (Vec<u8> = "message/rfc822"),
            (Vec<u8> = "application/octet-stream"),
        ),
        description = "The message, byte for byte"
    ),
    responses(
        (status = 201, description = "Archived (durable)", body = Receipt),
        (status = 200, description = "The same bytes were archived before", body = Receipt),
        (status = 400, description = "Malformed parameters", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Role may not ingest, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Message too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Neither message/rfc822 nor application/octet-stream", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Not an e-mail message", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn ingest(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(p): ApiQuery<IngestParams>,
    req: Request,
) -> Result<Response, Problem> {
    own_tenant(&a, &tenant)?;
    let ok_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("message/rfc822")
                || m.eq_ignore_ascii_case("application/octet-stream")
        });
    if !ok_type {
        return Err(Problem::new(
            Kind::UnsupportedMediaType,
            "send the message as Content-Type: message/rfc822 (or application/octet-stream)",
        ));
    }
    let raw = crate::extract::body(req, &st).await?;
    let mut env = Envelope::new(Source::Http);
    if let Some(f) = p.mail_from.filter(|f| !f.trim().is_empty()) {
        env = env.mail_from(f.trim());
    }
    for r in p.rcpt.iter().flat_map(|r| r.split(',')) {
        if !r.trim().is_empty() {
            env = env.rcpt(r.trim());
        }
    }
    let archive = st.archive.clone();
    let who = a.principal.clone();
    let len = raw.len();
    let started = Instant::now();
    let r = blocking(move || archive.ingest_as(&who, &raw, &env)).await;
    let receipt = match r {
        Ok(r) => r,
        Err(e) => {
            if matches!(e.kind, Kind::MessageRefused | Kind::PayloadTooLarge) {
                st.metrics
                    .ingest(IngestOutcome::Refused, len, started.elapsed());
            }
            return Err(e);
        }
    };
    let outcome = if receipt.duplicate {
        IngestOutcome::Duplicate
    } else {
        IngestOutcome::Stored
    };
    st.metrics.ingest(outcome, len, started.elapsed());
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/tenants/{tenant}/messages/{}", receipt.id);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    let body = Receipt {
        id: receipt.id.to_string(),
        sha256: receipt.sha256_hex(),
        duplicate: receipt.duplicate,
    };
    Ok((status, headers, Json(body)).into_response())
}

/// Search the tenant's mail (end users: only their own).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/search", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"), SearchParams),
    responses(
        (status = 200, description = "A page of results", body = SearchResponse),
        (status = 400, description = "Invalid query or parameters", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Role may not read mail", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn search(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Json<SearchResponse>, Problem> {
    own_tenant(&a, &tenant)?;
    let page = p.page.unwrap_or(1);
    let per_page = p.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PAGE_NUMBER).contains(&page) {
        return Err(Problem::new(
            Kind::BadRequest,
            format!("page must be 1 to {MAX_PAGE_NUMBER}"),
        ));
    }
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(Problem::new(
            Kind::BadRequest,
            format!("per_page must be 1 to {MAX_PER_PAGE}"),
        ));
    }
    let opts = SearchOptions {
        limit: per_page as usize,
        offset: (page as usize - 1) * per_page as usize,
        sort: match p.sort.unwrap_or_default() {
            SortParam::Newest => Sort::Newest,
            SortParam::Oldest => Sort::Oldest,
            SortParam::Relevance => Sort::Relevance,
        },
    };
    let q = p.q.unwrap_or_default();
    let archive = st.archive.clone();
    let who = a.principal;
    let started = Instant::now();
    let res = blocking(move || archive.search(&who, &q, &opts)).await?;
    st.metrics.search(started.elapsed());
    let hits = res
        .hits
        .into_iter()
        .map(|h| Hit {
            id: h.id.to_string(),
            date: rfc3339(h.meta.date),
            from: mailboxes(&h.meta.from),
            to: mailboxes(&h.meta.to),
            subject: h.meta.subject,
            attachments: h.meta.attachments.len(),
            size: h.meta.size,
        })
        .collect();
    Ok(Json(SearchResponse {
        total: res.total,
        page,
        per_page,
        hits,
    }))
}

/// A message's metadata, header lines and decoded text.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/messages/{id}", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Archive id")),
    responses(
        (status = 200, description = "The message", body = Message),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Role may not read mail", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this caller", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn message(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<Json<Message>, Problem> {
    own_tenant(&a, &tenant)?;
    let id = message_id(&id)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let v = blocking(move || archive.view(&who, id)).await?;
    let m = v.info.meta;
    Ok(Json(Message {
        id: v.info.id.to_string(),
        sha256: auth::hex(&v.info.sha256),
        date: rfc3339(m.date),
        header_date: m.header_date.map(rfc3339),
        message_id: m.message_id,
        from: mailboxes(&m.from),
        sender: mailboxes(&m.sender),
        to: mailboxes(&m.to),
        cc: mailboxes(&m.cc),
        bcc: mailboxes(&m.bcc),
        reply_to: mailboxes(&m.reply_to),
        subject: m.subject,
        in_reply_to: m.in_reply_to,
        references: m.references,
        size: m.size,
        anomalies: m.anomalies.iter().map(|a| a.as_str().to_string()).collect(),
        attachments: m
            .attachments
            .into_iter()
            .enumerate()
            .map(|(index, at)| AttachmentMeta {
                index,
                name: at.name,
                mime_type: at.mime_type,
                size: at.size,
            })
            .collect(),
        deliveries: v
            .info
            .deliveries
            .into_iter()
            .map(|d| Delivery {
                mail_from: d.mail_from,
                rcpt_to: d.rcpt_to,
                received_at: rfc3339(d.received_at),
                source: d.source.to_string(),
            })
            .collect(),
        headers: v
            .headers
            .into_iter()
            .map(|(name, value)| HeaderLine { name, value })
            .collect(),
        text: v.text,
        text_truncated: v.text_truncated,
    }))
}

/// The message exactly as it was archived.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/messages/{id}/raw", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Archive id")),
    responses(
        (status = 200, description = "The raw bytes", content_type = "message/rfc822", body = Vec<u8>),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Role may not read mail", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this caller", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn raw(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<Response, Problem> {
    own_tenant(&a, &tenant)?;
    let id = message_id(&id)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let bytes = blocking(move || archive.get_raw(&who, id)).await?;
    Ok(download(
        bytes,
        "message/rfc822",
        &format!("attachment; filename=\"{id}.eml\""),
    ))
}

/// A download: the bytes with a fixed media type and disposition, and a
/// CSP sandbox in case a browser renders it anyway.
fn download(bytes: Vec<u8>, mime: &'static str, disposition: &str) -> Response {
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox; frame-ancestors 'none'"),
    );
    r
}

/// One attachment, decoded, always as `application/octet-stream`.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/messages/{id}/attachments/{n}", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Archive id"),
           ("n" = u32, Path, description = "Attachment number, from 0")),
    responses(
        (status = 200, description = "The attachment", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Role may not read mail", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such message or attachment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn attachment(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, id, n)): ApiPath<(String, String, u32)>,
) -> Result<Response, Problem> {
    own_tenant(&a, &tenant)?;
    let id = message_id(&id)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let att = blocking(move || archive.attachment(&who, id, n as usize)).await?;
    let name = safe_filename(att.info.name.as_deref(), att.index);
    Ok(download(
        att.bytes,
        "application/octet-stream",
        &content_disposition(&name),
    ))
}

/// A file name safe to offer for saving: the last path component, without
/// control characters, quotes or leading dots, at most 150 characters;
/// `attachment-<n+1>` when nothing is left.
pub fn safe_filename(name: Option<&str>, index: usize) -> String {
    let base = name.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '"' | '\\' | '/' | ':' | '*' | '?' | '<' | '>' | '|')
        })
        .take(150)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    if cleaned.is_empty() {
        format!("attachment-{}", index + 1)
    } else {
        cleaned
    }
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{enc}")
}

/// The tenant's users (admins).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Users", body = Vec<UserOut>),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn users(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<UserOut>>, Problem> {
    own_tenant(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let users = blocking(move || archive.users(&who)).await?;
    Ok(Json(users.into_iter().map(UserOut::from).collect()))
}

/// Add a user (admins).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserOut),
        (status = 400, description = "Malformed request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The user exists", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid id, address or weak password", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn add_user(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(u): ApiJson<NewUser>,
) -> Result<Response, Problem> {
    own_tenant(&a, &tenant)?;
    let spec = UserSpec {
        id: u.id,
        display_name: u.display_name,
        addresses: u.addresses,
        roles: u.roles.into_iter().map(Role::from).collect(),
        password: u.password,
    };
    let archive = st.archive.clone();
    let who = a.principal;
    let user = blocking(move || archive.add_user(&who, spec)).await?;
    Ok((StatusCode::CREATED, Json(UserOut::from(user))).into_response())
}

/// Enable, disable or set the password of a user (admins).
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/users/{user}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id"), ("user" = String, Path, description = "User id")),
    request_body = UserChange,
    responses(
        (status = 200, description = "The user after the change", body = UserOut),
        (status = 400, description = "Malformed request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Weak password", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn update_user(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, user)): ApiPath<(String, String)>,
    ApiJson(c): ApiJson<UserChange>,
) -> Result<Json<UserOut>, Problem> {
    own_tenant(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let out = blocking(move || {
        let mut out = None;
        if let Some(p) = &c.password {
            out = Some(archive.set_password(&who, &user, p)?);
        }
        if let Some(active) = c.active {
            out = Some(archive.set_user_active(&who, &user, active)?);
        }
        match out {
            Some(u) => Ok(u),
            None => archive.user(&who, &user),
        }
    })
    .await?;
    Ok(Json(out.into()))
}

/// The tenant's ingest API keys, without their secrets (admins).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "API keys", body = Vec<ApiKeyOut>),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn api_keys(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<ApiKeyOut>>, Problem> {
    own_tenant(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let keys = blocking(move || archive.api_keys(&who)).await?;
    Ok(Json(keys.into_iter().map(ApiKeyOut::from).collect()))
}

/// Create an ingest API key (admins); the secret is shown once.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/api-keys", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created; `token` is the secret", body = ApiKeyOut),
        (status = 400, description = "Malformed request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn add_api_key(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(k): ApiJson<NewApiKey>,
) -> Result<Response, Problem> {
    own_tenant(&a, &tenant)?;
    if k.name.trim().is_empty() || k.name.chars().count() > 200 {
        return Err(Problem::new(
            Kind::BadRequest,
            "name must be 1 to 200 characters",
        ));
    }
    let archive = st.archive.clone();
    let who = a.principal;
    let key = blocking(move || archive.create_api_key(&who, &k.name)).await?;
    Ok((StatusCode::CREATED, Json(ApiKeyOut::from(key))).into_response())
}

/// Revoke an API key (admins).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/api-keys/{key}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id"), ("key" = String, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn revoke_api_key(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, key)): ApiPath<(String, String)>,
) -> Result<StatusCode, Problem> {
    own_tenant(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    blocking(move || archive.revoke_api_key(&who, &key)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Entries of the tenant's audit log (auditors; the reading is audited too).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "audit",
    params(("tenant" = String, Path, description = "Tenant id"), AuditParams),
    responses(
        (status = 200, description = "Entries, oldest first", body = Vec<AuditEntryOut>),
        (status = 400, description = "Malformed parameters", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn audit(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<Vec<AuditEntryOut>>, Problem> {
    own_tenant(&a, &tenant)?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::new(Kind::BadRequest, "limit must be 1 to 1000"));
    }
    let action = match p.action {
        Some(a) => {
            let name = serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            Some(
                name.parse::<AuditAction>()
                    .map_err(|e| Problem::new(Kind::BadRequest, e.to_string()))?,
            )
        }
        None => None,
    };
    let since =
        match p.since.as_deref() {
            Some(s) => Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                Problem::new(Kind::BadRequest, "since must be an RFC 3339 date-time")
            })?),
            None => None,
        };
    let from_seq = p.from_seq.unwrap_or(0);
    if from_seq > i64::MAX as u64 {
        return Err(Problem::new(Kind::BadRequest, "from_seq is out of range"));
    }
    let filter = AuditFilter {
        since,
        action,
        from_seq,
        limit: limit as usize,
    };
    let archive = st.archive.clone();
    let who = a.principal;
    let entries = blocking(move || archive.audit_entries(&who, &filter)).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditEntryOut {
                seq: e.seq,
                at: rfc3339_ms(e.at_ms),
                messages: e.messages().iter().map(ToString::to_string).collect(),
                actor: AuditActorOut {
                    user: e.actor.user,
                    roles: roles(&e.actor.roles),
                    frontend: e.actor.frontend.as_str().into(),
                    source: e.actor.source,
                },
                action: e.action.as_str().into(),
                detail: e.detail,
                outcome: e.outcome.kind().into(),
                reason: match e.outcome {
                    ama_core::Outcome::Denied(r) | ama_core::Outcome::Failed(r) => Some(r),
                    _ => None,
                },
                prev_hash: auth::hex(&e.prev_hash),
            })
            .collect(),
    ))
}

/// Verify the tenant's audit chain (auditors).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit/verify", tag = "audit",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The verification report", body = AuditReportOut),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn verify_audit(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<AuditReportOut>, Problem> {
    own_tenant(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let r = blocking(move || archive.verify_audit(&who)).await?;
    Ok(Json(AuditReportOut {
        entries: r.entries,
        intact: r.is_intact(),
        head_hash: auth::hex(&r.head_hash),
        problems: r
            .problems
            .into_iter()
            .map(|p| AuditProblemOut {
                seq: p.seq,
                reason: p.reason,
            })
            .collect(),
    }))
}

/// The OpenAPI 3.1 document of this API.
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_cleaned() {
        assert_eq!(safe_filename(Some("../../etc/passwd"), 0), "passwd");
        assert_eq!(safe_filename(Some("..\\..\\boot.ini"), 0), "boot.ini");
        assert_eq!(safe_filename(Some("..."), 2), "attachment-3");
        assert_eq!(safe_filename(None, 0), "attachment-1");
        assert_eq!(safe_filename(Some(".htaccess"), 0), "htaccess");
        assert_eq!(
            safe_filename(Some("a\"b\r\nc<script>.txt"), 0),
            "abcscript.txt"
        );
        assert_eq!(
            content_disposition("Grüße.pdf"),
            "attachment; filename=\"Gr__e.pdf\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.pdf"
        );
    }
}
