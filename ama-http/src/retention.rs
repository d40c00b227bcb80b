//! Retention, legal holds and deletion over HTTP: the tenant's retention
//! policy (read by anyone of the tenant, replaced by admins), named legal
//! holds (auditors), and deletion requests with the four-eyes approval
//! (auditors). The engine decides everything — who may, what is kept back
//! by a hold, the minimum retention or a locked policy — and writes the
//! audit entries; these handlers only translate JSON.

use ama_core::{
    CountFrom, DeletionOutcome, Direction, Hold, HoldScope, MessageId, Retention, RetentionPolicy,
    RetentionRule, RuleMatch,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{Kind, Problem, ProblemBody};
use crate::{AppState, blocking};

fn own(a: &Authed, tenant: &str) -> Result<(), Problem> {
    if a.principal.tenant().as_str() == tenant {
        Ok(())
    } else {
        Err(Problem::not_found())
    }
}

fn rfc3339(unix: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn period(s: &str, what: &str) -> Result<Retention, Problem> {
    s.parse()
        .map_err(|_| Problem::new(Kind::BadRequest, format!("{what}: use e.g. 10y, 6m or 90d")))
}

fn ids(v: &[String]) -> Result<Vec<MessageId>, Problem> {
    v.iter()
        .map(|s| {
            s.parse()
                .map_err(|_| Problem::new(Kind::BadRequest, "a malformed archive id"))
        })
        .collect()
}

// ----- policy ------------------------------------------------------------------

/// Where retention periods start.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CountFromParam {
    /// From the message date.
    MessageDate,
    /// From the end of the message's calendar year.
    YearEnd,
}

/// Direction of a message seen from the tenant's domains.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DirectionParam {
    /// From outside in.
    Inbound,
    /// From inside out.
    Outbound,
    /// Within the tenant.
    Internal,
}

/// One retention rule: exactly one of `address`, `domain`, `direction`, `query`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A sender or recipient address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A sender or recipient domain (or a subdomain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The message's direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionParam>,
    /// Messages this search query finds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 2000)]
    pub query: Option<String>,
    /// How long matching messages are kept (`10y`, `6m`, `90d`).
    #[schema(pattern = "^[0-9]{1,4}[dmyDMY]$")]
    pub period: String,
}

/// A tenant's retention policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Period of messages no rule matches (`10y`, `6m`, `90d`).
    #[schema(pattern = "^[0-9]{1,4}[dmyDMY]$")]
    pub default: String,
    /// Where periods start.
    pub count_from: CountFromParam,
    /// Ordered rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// No message is kept less than this; can only be raised.
    #[schema(pattern = "^[0-9]{1,4}[dmyDMY]$")]
    pub minimum: Option<String>,
    /// Once set, no change may shorten a retention or lift the lock.
    #[serde(default)]
    pub locked: bool,
    /// Deletion requests need a second auditor's approval.
    #[serde(default)]
    pub four_eyes: bool,
}

impl From<RetentionPolicy> for Policy {
    fn from(p: RetentionPolicy) -> Self {
        Policy {
            default: p.default.to_string(),
            count_from: match p.count_from {
                CountFrom::YearEnd => CountFromParam::YearEnd,
                CountFrom::MessageDate => CountFromParam::MessageDate,
            },
            rules: p
                .rules
                .into_iter()
                .map(|r| {
                    let mut out = Rule {
                        address: None,
                        domain: None,
                        direction: None,
                        query: None,
                        period: r.period.to_string(),
                    };
                    match r.matches {
                        RuleMatch::Address(a) => out.address = Some(a),
                        RuleMatch::Domain(d) => out.domain = Some(d),
                        RuleMatch::Direction(d) => {
                            out.direction = Some(match d {
                                Direction::Inbound => DirectionParam::Inbound,
                                Direction::Outbound => DirectionParam::Outbound,
                                Direction::Internal => DirectionParam::Internal,
                            });
                        }
                        RuleMatch::Query(q) => out.query = Some(q),
                    }
                    out
                })
                .collect(),
            minimum: p.minimum.map(|m| m.to_string()),
            locked: p.locked,
            four_eyes: p.four_eyes,
        }
    }
}

impl TryFrom<Policy> for RetentionPolicy {
    type Error = Problem;
    fn try_from(p: Policy) -> Result<Self, Problem> {
        let mut rules = Vec::with_capacity(p.rules.len());
        for (i, r) in p.rules.into_iter().enumerate() {
            let matches = match (r.address, r.domain, r.direction, r.query) {
                (Some(a), None, None, None) => RuleMatch::Address(a),
                (None, Some(d), None, None) => RuleMatch::Domain(d),
                (None, None, None, Some(q)) => RuleMatch::Query(q),
                (None, None, Some(d), None) => RuleMatch::Direction(match d {
                    DirectionParam::Inbound => Direction::Inbound,
                    DirectionParam::Outbound => Direction::Outbound,
                    DirectionParam::Internal => Direction::Internal,
                }),
                _ => {
                    return Err(Problem::new(
                        Kind::BadRequest,
                        format!("rule {i}: give exactly one of address, domain, direction, query"),
                    ));
                }
            };
            rules.push(RetentionRule {
                matches,
                period: period(&r.period, &format!("rule {i} period"))?,
            });
        }
        Ok(RetentionPolicy {
            default: period(&p.default, "default")?,
            count_from: match p.count_from {
                CountFromParam::MessageDate => CountFrom::MessageDate,
                CountFromParam::YearEnd => CountFrom::YearEnd,
            },
            rules,
            minimum: p
                .minimum
                .as_deref()
                .map(|m| period(m, "minimum"))
                .transpose()?,
            locked: p.locked,
            four_eyes: p.four_eyes,
        })
    }
}

/// The answer to a policy change.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyChanged {
    /// Messages whose retain-until date was recomputed.
    pub recomputed: u64,
    /// The policy now in force.
    pub policy: Policy,
}

/// The tenant's retention policy.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/retention-policy", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The policy", body = Policy),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn get_policy(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Policy>, Problem> {
    own(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let p = blocking(move || archive.retention_policy(&who)).await?;
    Ok(Json(p.into()))
}

/// Replace the retention policy (admins); every message's retain-until is recomputed.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/retention-policy", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = Policy,
    responses(
        (status = 200, description = "Changed", body = PolicyChanged),
        (status = 400, description = "Malformed policy", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, a locked policy, a lower minimum, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn put_policy(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(p): ApiJson<Policy>,
) -> Result<Json<PolicyChanged>, Problem> {
    own(&a, &tenant)?;
    let policy = RetentionPolicy::try_from(p)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let (recomputed, now) = blocking(move || {
        let n = archive.set_retention_policy(&who, policy)?;
        Ok((n, archive.retention_policy(&who)?))
    })
    .await?;
    Ok(Json(PolicyChanged {
        recomputed,
        policy: now.into(),
    }))
}

// ----- holds -------------------------------------------------------------------

/// What a hold covers: exactly one of `query`, `custodian`, `ids`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Scope {
    /// The messages a query finds (evaluated whenever deletion is considered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Every message from or to this address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custodian: Option<String>,
    /// These archive ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// A new legal hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    /// Its name (unique among active holds).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Why (case number, matter).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
    /// A query whose results are held.
    pub query: Option<String>,
    /// An address whose mail is held.
    pub custodian: Option<String>,
    /// Archive ids to hold.
    pub ids: Option<Vec<String>>,
}

/// Why a hold is released.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Why.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// The release of a hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct Released {
    /// Who released it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When (RFC 3339).
    pub at: String,
    /// Why.
    pub reason: String,
}

/// A legal hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldOut {
    /// Name.
    pub name: String,
    /// What it covers.
    pub scope: Scope,
    /// Why.
    pub reason: String,
    /// Who placed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placed_by: Option<String>,
    /// When (RFC 3339).
    pub placed_at: String,
    /// Set once released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<Released>,
}

impl From<Hold> for HoldOut {
    fn from(h: Hold) -> Self {
        let scope = match h.scope {
            HoldScope::Query(q) => Scope {
                query: Some(q),
                custodian: None,
                ids: None,
            },
            HoldScope::Custodian(c) => Scope {
                query: None,
                custodian: Some(c),
                ids: None,
            },
            HoldScope::Ids(ids) => Scope {
                query: None,
                custodian: None,
                ids: Some(
                    ids.into_iter()
                        .map(|i| MessageId::from_u128(i).to_string())
                        .collect(),
                ),
            },
        };
        HoldOut {
            name: h.name,
            scope,
            reason: h.reason,
            placed_by: h.placed_by,
            placed_at: rfc3339(h.placed_at),
            released: h.released.map(|(by, at, reason)| Released {
                by,
                at: rfc3339(at),
                reason,
            }),
        }
    }
}

/// The tenant's legal holds, active and released (auditors).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/holds", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Holds", body = Vec<HoldOut>),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn holds(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<HoldOut>>, Problem> {
    own(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let h = blocking(move || archive.holds(&who)).await?;
    Ok(Json(h.into_iter().map(HoldOut::from).collect()))
}

/// Place a legal hold (auditors): exactly one of `query`, `custodian`, `ids`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/holds", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = NewHold,
    responses(
        (status = 201, description = "Placed", body = HoldOut),
        (status = 400, description = "Malformed, an invalid query, or an active hold of that name", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn place_hold(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(h): ApiJson<NewHold>,
) -> Result<Response, Problem> {
    own(&a, &tenant)?;
    let scope = match (h.query, h.custodian, h.ids) {
        (Some(q), None, None) => HoldScope::Query(q),
        (None, Some(c), None) => HoldScope::Custodian(c),
        (None, None, Some(v)) if !v.is_empty() => HoldScope::ids(ids(&v)?),
        _ => {
            return Err(Problem::new(
                Kind::BadRequest,
                "give exactly one of query, custodian, ids (not empty)",
            ));
        }
    };
    let archive = st.archive.clone();
    let who = a.principal;
    let hold = blocking(move || archive.place_hold(&who, &h.name, scope, &h.reason)).await?;
    Ok((StatusCode::CREATED, Json(HoldOut::from(hold))).into_response())
}

/// Release an active legal hold (auditors).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/holds/{name}/release", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Hold name")),
    request_body = Release,
    responses(
        (status = 204, description = "Released"),
        (status = 400, description = "Malformed, or no active hold of that name", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn release_hold(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
    ApiJson(r): ApiJson<Release>,
) -> Result<StatusCode, Problem> {
    own(&a, &tenant)?;
    if r.reason.trim().is_empty() {
        return Err(Problem::new(Kind::BadRequest, "a release needs a reason"));
    }
    let archive = st.archive.clone();
    let who = a.principal;
    blocking(move || archive.release_hold(&who, &name, &r.reason)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- deletion ----------------------------------------------------------------

/// A deletion request: exactly one of `ids` and `query`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeletion {
    /// The archive ids to delete.
    #[schema(min_items = 1, max_items = 10000)]
    pub ids: Option<Vec<String>>,
    /// Delete what this query finds now (the query language of
    /// `docs/SEARCH.md`; an empty query is refused). The ids it found are
    /// what the request holds, so a four-eyes approval deletes exactly
    /// what the requester saw.
    #[schema(min_length = 1, max_length = 2000)]
    pub query: Option<String>,
    /// Why.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// A message kept back from a deletion.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeptBack {
    /// Archive id.
    pub id: String,
    /// Why (a hold, the minimum retention, a locked policy, …).
    pub reason: String,
}

/// What a deletion did: `done` (with what was deleted and kept back) or
/// `pending` (four-eyes: the request waits for a second auditor).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionResult {
    /// `done` or `pending`.
    pub status: String,
    /// The request to approve (pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Deleted archive ids (done).
    pub deleted: Vec<String>,
    /// Kept back, with the reason (done).
    pub kept: Vec<KeptBack>,
}

fn outcome(o: DeletionOutcome) -> Response {
    match o {
        DeletionOutcome::Pending { request } => (
            StatusCode::ACCEPTED,
            Json(DeletionResult {
                status: "pending".into(),
                request: Some(request),
                deleted: vec![],
                kept: vec![],
            }),
        )
            .into_response(),
        DeletionOutcome::Done { deleted, kept } => Json(DeletionResult {
            status: "done".into(),
            request: None,
            deleted: deleted.iter().map(ToString::to_string).collect(),
            kept: kept
                .into_iter()
                .map(|(id, reason)| KeptBack {
                    id: id.to_string(),
                    reason,
                })
                .collect(),
        })
        .into_response(),
    }
}

/// A pending deletion request.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionRequestOut {
    /// Its id.
    pub id: String,
    /// Who asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The messages.
    pub ids: Vec<String>,
    /// Why.
    pub reason: String,
}

/// Delete messages (auditors), listed by `ids` or found by a `query`:
/// carried out at once, or, with four-eyes on, recorded until a second
/// auditor approves. Held or still retained messages are kept back.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/deletions", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = NewDeletion,
    responses(
        (status = 200, description = "Carried out", body = DeletionResult),
        (status = 202, description = "Waiting for a second auditor", body = DeletionResult),
        (status = 400, description = "Malformed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant, or a message that does not exist", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn delete(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(d): ApiJson<NewDeletion>,
) -> Result<Response, Problem> {
    own(&a, &tenant)?;
    if d.reason.trim().is_empty() {
        return Err(Problem::new(Kind::BadRequest, "a deletion needs a reason"));
    }
    let archive = st.archive.clone();
    let who = a.principal;
    let o = match (d.ids, d.query) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(Problem::new(
                Kind::BadRequest,
                "give exactly one of ids and query",
            ));
        }
        (Some(list), None) => {
            let list = ids(&list)?;
            if list.is_empty() || list.len() > 10_000 {
                return Err(Problem::new(Kind::BadRequest, "give 1 to 10000 ids"));
            }
            blocking(move || archive.request_deletion(&who, &list, &d.reason)).await?
        }
        (None, Some(q)) => {
            if q.trim().is_empty() {
                return Err(Problem::new(
                    Kind::BadRequest,
                    "an empty query would delete everything; give a query that selects",
                ));
            }
            blocking(move || archive.request_deletion_matching(&who, &q, &d.reason)).await?
        }
    };
    Ok(outcome(o))
}

/// Pending deletion requests (auditors).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/deletion-requests", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Pending requests", body = Vec<DeletionRequestOut>),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn deletion_requests(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<DeletionRequestOut>>, Problem> {
    own(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let r = blocking(move || archive.deletion_requests(&who)).await?;
    Ok(Json(
        r.into_iter()
            .map(|r| DeletionRequestOut {
                id: r.id,
                requested_by: r.requested_by,
                ids: r
                    .ids
                    .into_iter()
                    .map(|i| MessageId::from_u128(i).to_string())
                    .collect(),
                reason: r.reason,
            })
            .collect(),
    ))
}

/// Approve a pending deletion request (a second auditor, not the requester).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/deletion-requests/{request}/approve", tag = "retention",
    params(("tenant" = String, Path, description = "Tenant id"), ("request" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "Carried out", body = DeletionResult),
        (status = 400, description = "No such pending request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor, the requester himself, or CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn approve(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, request)): ApiPath<(String, String)>,
) -> Result<Response, Problem> {
    own(&a, &tenant)?;
    let archive = st.archive.clone();
    let who = a.principal;
    let o = blocking(move || archive.approve_deletion(&who, &request)).await?;
    Ok(outcome(o))
}
