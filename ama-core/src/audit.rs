//! The audit log: every access to mail and every change of state, per
//! tenant, append-only and tamper-evident.
//!
//! Why it looks like this:
//!
//! - **One log per tenant**, in the catalog (`audit` table, keyed by
//!   (tenant, sequence number)), so a tenant's log lives and dies with the
//!   tenant and one tenant's auditors never see another's entries.
//! - **Hash-chained**: each entry carries the SHA-256 of the previous entry
//!   (`prev_hash`); the chain head (next number, last hash) is kept in
//!   `audit_head`. Editing, deleting or reordering an entry breaks the chain
//!   at that entry, and [`Archive::verify_audit`] names it.
//! - **Sealed** like everything else at rest: each entry is encrypted with
//!   the tenant's `audit` subkey and its sequence number is bound into the
//!   authenticated data, so an entry moved to another position fails
//!   authentication even before the chain is checked.
//! - **Written in the same catalog transaction** as the change it records
//!   (ingest, user changes, logins): a change never commits without its
//!   entry. Reads (search, view, download) append their entry right after
//!   the read, before the result is handed out.
//! - **Reading the log is itself audited** and allowed to auditors only.
//!
//! Which calls write an entry: every [`Archive`] method that reads mail
//! content or changes state writes exactly one, including when it is refused
//! (the outcome says so). `tests/audit.rs` walks the public API and counts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::access::{Principal, Role};
use crate::archive::{Archive, TenantState};
use crate::catalog::{self, TenantTable, WriteTxn};
use crate::crypto::{self, SecretKey};
use crate::error::{Error, Result};
use crate::message::MessageId;
use crate::tenant::TenantId;

/// The way into the engine a request took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Frontend {
    /// The `ama` command line.
    Cli,
    /// The HTTP API or the search page.
    Http,
    /// The SMTP archive node.
    Smtp,
    /// The Python package.
    Python,
    /// A program embedding ama-core directly.
    Library,
}

impl Frontend {
    /// Stable lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Frontend::Cli => "cli",
            Frontend::Http => "http",
            Frontend::Smtp => "smtp",
            Frontend::Python => "python",
            Frontend::Library => "library",
        }
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from: recorded in every audit entry and used for
/// per-source login lockout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccessContext {
    /// The frontend that took the request.
    pub frontend: Frontend,
    /// The peer address (an IP address), when there is one.
    pub source: Option<String>,
}

impl AccessContext {
    /// A context for `frontend` without a source address.
    pub fn new(frontend: Frontend) -> Self {
        AccessContext {
            frontend,
            source: None,
        }
    }

    /// The same context with a source address (at most 100 characters kept).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        let s: String = source.into().chars().take(100).collect();
        self.source = Some(s).filter(|s| !s.is_empty());
        self
    }
}

impl Default for AccessContext {
    fn default() -> Self {
        AccessContext::new(Frontend::Library)
    }
}

/// What an audited call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuditAction {
    /// The tenant was created (the first entry of every log).
    TenantCreate,
    /// Messages were ingested.
    Ingest,
    /// A search (the detail holds the query).
    Search,
    /// A message's metadata was read.
    View,
    /// A message's raw bytes or an attachment were read.
    Download,
    /// Messages were exported.
    Export,
    /// Messages were restored to a mailbox.
    Restore,
    /// A login attempt.
    Login,
    /// A session was ended.
    Logout,
    /// A user was added or changed (password, roles, addresses, state).
    UserChange,
    /// An API key was created or revoked.
    ApiKeyChange,
    /// The tenant's directory (LDAP) configuration changed.
    DirectoryChange,
    /// The audit log was read.
    AuditRead,
    /// The audit log was verified.
    AuditVerify,
    /// The index was rebuilt.
    Reindex,
    /// A legal hold was placed or released.
    Hold,
    /// The retention policy changed.
    PolicyChange,
    /// A deletion was requested, approved or carried out.
    Deletion,
    /// A key was rotated.
    KeyRotation,
}

const ACTIONS: &[(AuditAction, &str)] = &[
    (AuditAction::TenantCreate, "tenant-create"),
    (AuditAction::Ingest, "ingest"),
    (AuditAction::Search, "search"),
    (AuditAction::View, "view"),
    (AuditAction::Download, "download"),
    (AuditAction::Export, "export"),
    (AuditAction::Restore, "restore"),
    (AuditAction::Login, "login"),
    (AuditAction::Logout, "logout"),
    (AuditAction::UserChange, "user-change"),
    (AuditAction::ApiKeyChange, "api-key-change"),
    (AuditAction::DirectoryChange, "directory-change"),
    (AuditAction::AuditRead, "audit-read"),
    (AuditAction::AuditVerify, "audit-verify"),
    (AuditAction::Reindex, "reindex"),
    (AuditAction::Hold, "hold"),
    (AuditAction::PolicyChange, "policy-change"),
    (AuditAction::Deletion, "deletion"),
    (AuditAction::KeyRotation, "key-rotation"),
];

impl AuditAction {
    /// Stable name (`search`, `login`, `user-change`, …).
    pub fn as_str(&self) -> &'static str {
        ACTIONS
            .iter()
            .find(|(a, _)| a == self)
            .map(|(_, s)| *s)
            .unwrap_or("unknown")
    }

    /// Every action name, for help texts.
    pub fn names() -> impl Iterator<Item = &'static str> {
        ACTIONS.iter().map(|(_, s)| *s)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ACTIONS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown audit action {s:?} (one of: {})",
                    AuditAction::names().collect::<Vec<_>>().join(", ")
                ))
            })
    }
}

/// How an audited call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// It was refused (access rules, wrong password, lockout).
    Denied(String),
    /// It failed (bad input, storage error).
    Failed(String),
}

impl Outcome {
    /// `success`, `denied` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied(_) => "denied",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The outcome of an engine result: refusals are `Denied`, the rest `Failed`.
    pub(crate) fn of<T>(r: &Result<T>) -> Outcome {
        match r {
            Ok(_) => Outcome::Success,
            Err(
                e @ (Error::AccessDenied(_)
                | Error::NotFound(_)
                | Error::Unauthenticated(_)
                | Error::LockedOut { .. }),
            ) => Outcome::Denied(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Denied(r) => write!(f, "denied: {r}"),
            Outcome::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    /// The user id; `None` for the operator or a system process (the SMTP
    /// node ingesting mail, `ama` on the data directory).
    pub user: Option<String>,
    /// The roles in force.
    pub roles: Vec<Role>,
    /// The frontend that took the request.
    pub frontend: Frontend,
    /// The peer address, when known.
    pub source: Option<String>,
}

impl AuditActor {
    /// The actor behind a principal.
    pub fn of(who: &Principal) -> Self {
        AuditActor {
            user: who.user().map(str::to_string),
            roles: who.roles().to_vec(),
            frontend: who.context().frontend,
            source: who.context().source.clone(),
        }
    }

    /// A system actor (no user) on `frontend`.
    pub fn system(frontend: Frontend) -> Self {
        AuditActor {
            user: None,
            roles: Vec::new(),
            frontend,
            source: None,
        }
    }

    /// A not-yet-authenticated caller (a login attempt) named `user`.
    pub fn anonymous(user: &str, ctx: &AccessContext) -> Self {
        AuditActor {
            user: Some(user.chars().take(200).collect()),
            roles: Vec::new(),
            frontend: ctx.frontend,
            source: ctx.source.clone(),
        }
    }
}

impl fmt::Display for AuditActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(u) => f.write_str(u)?,
            None => f.write_str("(operator)")?,
        }
        write!(f, " via {}", self.frontend)?;
        if let Some(s) = &self.source {
            write!(f, " from {s}")?;
        }
        Ok(())
    }
}

/// One entry of a tenant's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the tenant's log, from 0, without gaps.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch (UTC).
    pub at_ms: i64,
    /// Who.
    pub actor: AuditActor,
    /// What.
    pub action: AuditAction,
    /// Details: the query of a search, what changed about a user, …
    pub detail: String,
    /// The messages concerned, as raw [`MessageId`] values.
    messages: Vec<u128>,
    /// How it ended.
    pub outcome: Outcome,
    /// SHA-256 of the previous entry (all zero for the first).
    pub prev_hash: [u8; 32],
}

impl AuditEntry {
    /// The messages concerned.
    pub fn messages(&self) -> Vec<MessageId> {
        self.messages
            .iter()
            .map(|m| MessageId::from_u128(*m))
            .collect()
    }

    /// When, as a UTC timestamp.
    pub fn at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.at_ms as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The entry's hash, which the next entry carries as `prev_hash`.
    pub fn hash(&self) -> Result<[u8; 32]> {
        let mut buf = b"ama/audit-entry/v1\0".to_vec();
        buf.extend(catalog::encode_value(self)?);
        Ok(crypto::sha256(&buf))
    }
}

/// The head of a tenant's chain: what the next entry must follow.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct AuditHead {
    next_seq: u64,
    last_hash: [u8; 32],
}

/// Which entries [`Archive::audit_entries`] returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries of this action.
    pub action: Option<AuditAction>,
    /// Start at this sequence number.
    pub from_seq: u64,
    /// At most this many entries (0 means 1,000).
    pub limit: usize,
}

/// One thing wrong with a tenant's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProblem {
    /// The sequence number of the entry concerned.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}: {}", self.seq, self.reason)
    }
}

/// What [`Archive::verify_audit`] found.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last good entry: write it down somewhere else to detect a
    /// rewrite of the whole log later.
    pub head_hash: [u8; 32],
    /// Everything wrong, first first. Empty when the chain is intact.
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first broken link, if any.
    pub fn first_broken(&self) -> Option<&AuditProblem> {
        self.problems.first()
    }
}

pub(crate) fn entry_aad(tenant: &TenantId, seq: u64) -> Vec<u8> {
    format!("ama/audit/v1|{tenant}|{seq}").into_bytes()
}

pub(crate) fn head_aad(tenant: &TenantId) -> Vec<u8> {
    format!("ama/audit-head/v1|{tenant}").into_bytes()
}

/// Most entries one call returns.
const MAX_AUDIT_PAGE: usize = 10_000;

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Archive {
    /// Appends one entry to a tenant's log inside `txn` (committed with it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append_audit(
        &self,
        txn: &mut WriteTxn,
        state: &TenantState,
        actor: AuditActor,
        action: AuditAction,
        detail: String,
        messages: &[MessageId],
        outcome: Outcome,
    ) -> Result<u64> {
        append_entry(
            txn,
            &state.record.tenant.id,
            &state.keys.audit,
            actor,
            action,
            detail,
            messages,
            outcome,
        )
    }

    /// Appends one entry in its own durable transaction: for reads, which
    /// change nothing else. Errors writing the entry are returned, so a read
    /// whose entry cannot be written is not handed out.
    pub(crate) fn audit_now(
        &self,
        state: &TenantState,
        actor: AuditActor,
        action: AuditAction,
        detail: String,
        messages: &[MessageId],
        outcome: Outcome,
    ) -> Result<()> {
        let mut txn = self.catalog().write()?;
        self.append_audit(&mut txn, state, actor, action, detail, messages, outcome)?;
        if self.options().durable_read_audit {
            txn.commit()
        } else {
            txn.commit_lazy()
        }
    }

    /// Runs a read on behalf of `who` and records it: one entry with the
    /// outcome, whatever it is. `ids` names the messages a result concerns.
    pub(crate) fn audited_read<T>(
        &self,
        who: &Principal,
        action: AuditAction,
        detail: String,
        read: impl FnOnce(&TenantState) -> Result<T>,
        ids: impl FnOnce(&T) -> Vec<MessageId>,
    ) -> Result<T> {
        let state = self.state(who.tenant())?;
        let r = read(&state);
        let messages = r.as_ref().map(ids).unwrap_or_default();
        self.audit_now(
            &state,
            AuditActor::of(who),
            action,
            detail,
            &messages,
            Outcome::of(&r),
        )?;
        r
    }

    /// Entries of the principal's tenant's audit log. Auditors only; the
    /// reading is itself recorded (one `audit-read` entry per call).
    pub fn audit_entries(&self, who: &Principal, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let detail = format!(
            "from #{}{}{}",
            filter.from_seq,
            filter
                .action
                .map(|a| format!(", action {a}"))
                .unwrap_or_default(),
            filter
                .since
                .map(|s| format!(", since {}", s.unix_timestamp()))
                .unwrap_or_default()
        );
        self.audited_read(
            who,
            AuditAction::AuditRead,
            detail,
            |state| {
                who.require_auditor("read the audit log")?;
                let limit = match filter.limit {
                    0 => 1000,
                    n => n.min(MAX_AUDIT_PAGE),
                };
                let since = filter.since.map(|s| s.unix_timestamp() * 1000);
                let rtxn = self.catalog().read()?;
                let tenant = &state.record.tenant.id;
                let mut out = Vec::new();
                let mut from = filter.from_seq;
                'pages: loop {
                    let page = rtxn.audit(tenant.as_str(), from, 1000)?;
                    let Some(last) = page.last().map(|(s, _)| *s) else {
                        break;
                    };
                    for (seq, sealed) in page {
                        let e = open_entry(state, seq, &sealed)?;
                        if since.is_some_and(|s| e.at_ms < s)
                            || filter.action.is_some_and(|a| a != e.action)
                        {
                            continue;
                        }
                        out.push(e);
                        if out.len() >= limit {
                            break 'pages;
                        }
                    }
                    from = last + 1;
                }
                Ok(out)
            },
            |_| Vec::new(),
        )
    }

    /// Recomputes the principal's tenant's audit chain and reports every
    /// broken link: an entry that fails authentication (edited, or moved to
    /// another position), a missing entry (deleted, or cut off the end), or
    /// an entry that does not carry its predecessor's hash. Auditors only;
    /// recorded as one `audit-verify` entry (after the check).
    pub fn verify_audit(&self, who: &Principal) -> Result<AuditReport> {
        self.audited_read(
            who,
            AuditAction::AuditVerify,
            String::new(),
            |state| {
                who.require_auditor("verify the audit log")?;
                verify_chain(self, state)
            },
            |_| Vec::new(),
        )
    }
}

/// Appends one entry to `tenant`'s log inside `txn`, sealed with the
/// tenant's audit key, and moves the chain head.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_entry(
    txn: &mut WriteTxn,
    tenant: &TenantId,
    key: &SecretKey,
    actor: AuditActor,
    action: AuditAction,
    detail: String,
    messages: &[MessageId],
    outcome: Outcome,
) -> Result<u64> {
    let head = match txn.tenant_value(TenantTable::AuditHead, tenant.as_str())? {
        Some(sealed) => {
            let plain = crypto::open(key, &head_aad(tenant), &sealed, "audit chain head")?;
            catalog::decode_value::<AuditHead>(&plain, "audit chain head")?
        }
        None => AuditHead {
            next_seq: 0,
            last_hash: [0; 32],
        },
    };
    let entry = AuditEntry {
        seq: head.next_seq,
        at_ms: now_ms(),
        actor,
        action,
        detail: detail.chars().take(4000).collect(),
        messages: messages.iter().map(|m| m.as_u128()).collect(),
        outcome,
        prev_hash: head.last_hash,
    };
    let sealed = crypto::seal(
        key,
        &entry_aad(tenant, entry.seq),
        &catalog::encode_value(&entry)?,
    )?;
    txn.put_audit(tenant.as_str(), entry.seq, &sealed)?;
    let head = AuditHead {
        next_seq: entry.seq + 1,
        last_hash: entry.hash()?,
    };
    let sealed_head = crypto::seal(key, &head_aad(tenant), &catalog::encode_value(&head)?)?;
    txn.put_tenant_value(TenantTable::AuditHead, tenant.as_str(), &sealed_head)?;
    Ok(entry.seq)
}

fn open_entry(state: &TenantState, seq: u64, sealed: &[u8]) -> Result<AuditEntry> {
    let tenant = &state.record.tenant.id;
    let plain = crypto::open(
        &state.keys.audit,
        &entry_aad(tenant, seq),
        sealed,
        &format!("audit entry {seq}"),
    )?;
    catalog::decode_value(&plain, &format!("audit entry {seq}"))
}

fn verify_chain(archive: &Archive, state: &TenantState) -> Result<AuditReport> {
    let tenant = &state.record.tenant.id;
    let rtxn = archive.catalog().read()?;
    let mut problems = Vec::new();
    let mut expected = 0u64;
    let mut prev: Option<[u8; 32]> = Some([0; 32]);
    let mut entries = 0u64;
    let mut from = 0u64;
    loop {
        let page = rtxn.audit(tenant.as_str(), from, 1000)?;
        let Some(last) = page.last().map(|(s, _)| *s) else {
            break;
        };
        for (seq, sealed) in page {
            entries += 1;
            if seq != expected {
                problems.push(AuditProblem {
                    seq: expected,
                    reason: if seq == expected + 1 {
                        "missing (deleted from the log)".into()
                    } else {
                        format!(
                            "missing, and the {} entries after it up to {} (deleted from the log)",
                            seq - expected - 1,
                            seq - 1
                        )
                    },
                });
                prev = None;
            }
            expected = seq + 1;
            match open_entry(state, seq, &sealed) {
                Err(_) => {
                    problems.push(AuditProblem {
                        seq,
                        reason: "fails authentication: it was altered or moved from another \
                                 position"
                            .into(),
                    });
                    prev = None;
                }
                Ok(e) => {
                    if e.seq != seq {
                        problems.push(AuditProblem {
                            seq,
                            reason: format!("is stored at {seq} but numbered {}", e.seq),
                        });
                    } else if let Some(p) = prev.filter(|p| *p != e.prev_hash) {
                        let _ = p;
                        problems.push(AuditProblem {
                            seq,
                            reason: "does not carry the hash of the entry before it (the chain \
                                     is broken here)"
                                .into(),
                        });
                    }
                    prev = Some(e.hash()?);
                }
            }
        }
        from = last + 1;
    }
    let head = match rtxn.tenant_value(TenantTable::AuditHead, tenant.as_str())? {
        None if entries == 0 => None,
        None => {
            problems.push(AuditProblem {
                seq: expected,
                reason: "the chain head is missing".into(),
            });
            None
        }
        Some(sealed) => match crypto::open(
            &state.keys.audit,
            &head_aad(tenant),
            &sealed,
            "audit chain head",
        ) {
            Ok(plain) => Some(catalog::decode_value::<AuditHead>(
                &plain,
                "audit chain head",
            )?),
            Err(_) => {
                problems.push(AuditProblem {
                    seq: expected,
                    reason: "the chain head fails authentication (altered)".into(),
                });
                None
            }
        },
    };
    if let Some(h) = head {
        if h.next_seq > expected {
            problems.push(AuditProblem {
                seq: expected,
                reason: if h.next_seq == expected + 1 {
                    "missing (the last entry was deleted from the log)".into()
                } else {
                    format!(
                        "missing, and every entry after it up to {} (cut off the end of the log)",
                        h.next_seq - 1
                    )
                },
            });
        } else if let Some(p) = prev.filter(|p| *p != h.last_hash) {
            let _ = p;
            problems.push(AuditProblem {
                seq: expected.saturating_sub(1),
                reason: "is not the entry the chain head points at (replaced)".into(),
            });
        }
    }
    problems.sort_by_key(|p| p.seq);
    Ok(AuditReport {
        entries,
        head_hash: prev.unwrap_or([0; 32]),
        problems,
    })
}
