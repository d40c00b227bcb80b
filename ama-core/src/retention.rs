//! Retention, legal holds, deletion and integrity: what the archive keeps,
//! for how long, and how it proves it kept and destroyed the right things.
//!
//! - A tenant's [`RetentionPolicy`] is data: a default period, ordered
//!   rules (the first whose sender/recipient address, domain, direction
//!   or search query matches wins), periods counted from the message date or from the end of
//!   its calendar year (GoBD: "10 years from the end of the year"). Each
//!   message's retain-until is computed at ingest and recomputed when the
//!   policy changes. A **minimum** retention can only be raised; a **lock**
//!   (SEC 17a-4) makes every later change that would shorten any message's
//!   retention, or lift the lock, fail.
//! - [`Hold`]s (by query, custodian address or explicit ids) keep messages
//!   whatever their retention says, until released.
//! - Deletion is logical first: one catalog transaction replaces the
//!   message record (and with it the wrapped data key: the blob becomes
//!   unreadable in every copy and backup) by a **tombstone** (id, SHA-256,
//!   dates, reason; no content) and marks the blob and index entry for
//!   purging; then they are purged. A crash between the two is finished by
//!   the next sweep, so [`Archive::sweep`] is idempotent and resumable.
//! - Every ingested message is appended to a per-tenant, hash-chained
//!   **ingest log** (id, SHA-256). [`Archive::verify`] decrypts every
//!   message, checks its digest against the log, checks the chain, and
//!   accounts for every logged message: present, or deleted with a
//!   tombstone. Anything else is reported by id.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use crate::access::Principal;
use crate::archive::{Archive, TenantState};
use crate::audit::{AuditAction, AuditActor, Outcome};
use crate::catalog::{self, TenantTable, WriteTxn};
use crate::crypto;
use crate::error::{Error, Result};
use crate::index::Scope;
use crate::message::{MessageId, MessageInfo};
use crate::parse::MessageText;
use crate::store::BlobKey;
use crate::tenant::{Retention, RetentionUnit, TenantId};

/// Where a retention period starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CountFrom {
    /// From the message's date.
    #[default]
    MessageDate,
    /// From the end of the message's calendar year (GoBD: a mail of any day
    /// of 2020 kept 10 years may go from 1 January 2031).
    YearEnd,
}

/// Which way a message went, seen from the tenant's mail domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// From outside to the tenant.
    Inbound,
    /// From the tenant to outside.
    Outbound,
    /// Within the tenant.
    Internal,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleMatch {
    /// A sender or recipient address (header or envelope), case-insensitive.
    Address(String),
    /// A sender or recipient domain (or a subdomain of it).
    Domain(String),
    /// The message's direction.
    Direction(Direction),
    /// Messages a search query finds (the language of `docs/SEARCH.md`),
    /// e.g. `subject:invoice` or `has:attachment from:@bank.test`.
    Query(String),
}

/// One rule: messages it matches are kept for `period`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRule {
    /// What the rule matches.
    pub matches: RuleMatch,
    /// How long matching messages are kept.
    pub period: Retention,
}

/// A tenant's retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Period of messages no rule matches.
    pub default: Retention,
    /// Where periods start.
    pub count_from: CountFrom,
    /// Ordered rules; the first match wins.
    pub rules: Vec<RetentionRule>,
    /// No message is kept less than this (can only be raised).
    pub minimum: Option<Retention>,
    /// Once set, no change may shorten any message's retention or lift it.
    pub locked: bool,
    /// Deletion requests need a second auditor's approval.
    pub four_eyes: bool,
}

impl RetentionPolicy {
    /// The policy of a tenant that never set one: its default retention,
    /// counted from the message date.
    pub fn from_default(default: Retention) -> Self {
        RetentionPolicy {
            default,
            count_from: CountFrom::MessageDate,
            rules: Vec::new(),
            minimum: None,
            locked: false,
            four_eyes: false,
        }
    }

    /// Whether any rule matches by query.
    pub fn has_query_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.matches, RuleMatch::Query(_)))
    }

    /// The parsed query of every query rule, by rule number. A query that
    /// does not parse is an [`Error::InvalidArgument`] naming the rule.
    pub(crate) fn rule_queries(&self) -> Result<Vec<(usize, crate::query::Query)>> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if let RuleMatch::Query(q) = &r.matches {
                let parsed = crate::query::parse(q).map_err(|e| {
                    Error::InvalidArgument(format!("retention rule {}: {e}", i + 1))
                })?;
                out.push((i, parsed));
            }
        }
        Ok(out)
    }

    /// When a message may go: the first matching rule's period (or the
    /// default), at least the minimum, from the date or its year's end.
    /// `in_query(n)` says whether the message is found by the query of rule
    /// number `n` (asked only of [`RuleMatch::Query`] rules; the engine
    /// answers it from the index).
    pub fn retain_until(
        &self,
        info: &MessageInfo,
        domains: &[String],
        in_query: impl Fn(usize) -> bool,
    ) -> i64 {
        let parties = Parties::of(info, domains);
        let period = self
            .rules
            .iter()
            .enumerate()
            .find(|(n, r)| match &r.matches {
                RuleMatch::Query(_) => in_query(*n),
                m => parties.matches(m),
            })
            .map(|(_, r)| r.period)
            .unwrap_or(self.default);
        let start = match self.count_from {
            CountFrom::MessageDate => info.meta.date,
            CountFrom::YearEnd => year_end(info.meta.date),
        };
        let until = add_period(start, period);
        match self.minimum {
            Some(min) => until.max(add_period(info.meta.date, min)),
            None => until,
        }
    }
}

/// The start of the year after the one `ts` falls in (UTC), in Unix seconds.
pub fn year_end(ts: i64) -> i64 {
    let d = OffsetDateTime::from_unix_timestamp(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Date::from_calendar_date(d.year() + 1, Month::January, 1)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .unwrap_or(i64::MAX)
}

/// `ts` plus a period in calendar units; a day that does not exist in the
/// target month is clamped to the month's last day (29 February + 1 year =
/// 28 February).
pub fn add_period(ts: i64, p: Retention) -> i64 {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(ts) else {
        return i64::MAX;
    };
    let months = match p.unit {
        RetentionUnit::Days => {
            return ts.saturating_add(i64::from(p.count) * 86_400);
        }
        RetentionUnit::Months => i64::from(p.count),
        RetentionUnit::Years => i64::from(p.count) * 12,
    };
    let total = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 + months;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let Ok(year) = i32::try_from(year) else {
        return i64::MAX;
    };
    let Ok(month) = Month::try_from(month0 as u8 + 1) else {
        return i64::MAX;
    };
    let last = time::util::days_in_month(month, year);
    match Date::from_calendar_date(year, month, t.day().min(last)) {
        Ok(d) => d.with_time(t.time()).assume_utc().unix_timestamp(),
        Err(_) => i64::MAX,
    }
}

struct Parties {
    addresses: Vec<String>,
    direction: Direction,
}

fn domain_of(a: &str) -> &str {
    a.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

fn in_domains(a: &str, domains: &[String]) -> bool {
    let d = domain_of(a);
    domains
        .iter()
        .any(|td| d == td || d.ends_with(&format!(".{td}")))
}

impl Parties {
    fn of(info: &MessageInfo, domains: &[String]) -> Self {
        let addresses = crate::index::parties(info);
        let senders: Vec<String> = info
            .meta
            .from
            .iter()
            .chain(&info.meta.sender)
            .map(|m| m.address.to_lowercase())
            .chain(
                info.deliveries
                    .iter()
                    .filter_map(|d| d.mail_from.as_ref().map(|a| a.to_lowercase())),
            )
            .collect();
        let from_inside = senders.iter().any(|a| in_domains(a, domains));
        let to_outside = addresses
            .iter()
            .filter(|a| !senders.contains(a))
            .any(|a| !in_domains(a, domains));
        let direction = match (from_inside, to_outside) {
            (true, true) => Direction::Outbound,
            (true, false) => Direction::Internal,
            (false, _) => Direction::Inbound,
        };
        Parties {
            addresses,
            direction,
        }
    }

    fn matches(&self, m: &RuleMatch) -> bool {
        match m {
            RuleMatch::Address(a) => {
                let a = a.trim().to_lowercase();
                self.addresses.contains(&a)
            }
            RuleMatch::Domain(d) => {
                let d = d.trim().trim_start_matches('@').to_lowercase();
                self.addresses
                    .iter()
                    .any(|a| in_domains(a, std::slice::from_ref(&d)))
            }
            RuleMatch::Direction(d) => self.direction == *d,
            // Answered from the index by the caller of `retain_until`.
            RuleMatch::Query(_) => false,
        }
    }
}

/// Which batch items each query rule found (see `Archive::rule_hits`).
#[derive(Default)]
pub(crate) struct RuleHits(HashMap<usize, HashSet<usize>>);

impl RuleHits {
    /// Whether rule number `rule` found batch item `item`.
    pub(crate) fn hit(&self, rule: usize, item: usize) -> bool {
        self.0.get(&rule).is_some_and(|s| s.contains(&item))
    }
}

/// What a legal hold covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldScope {
    /// The messages a query finds (evaluated whenever deletion is considered).
    Query(String),
    /// Every message from or to this address.
    Custodian(String),
    /// These messages.
    Ids(Vec<u128>),
}

impl HoldScope {
    /// A hold on explicit messages.
    pub fn ids(ids: impl IntoIterator<Item = MessageId>) -> Self {
        HoldScope::Ids(ids.into_iter().map(|i| i.as_u128()).collect())
    }
}

/// A named legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Its name (unique among the tenant's active holds).
    pub name: String,
    /// What it covers.
    pub scope: HoldScope,
    /// Why (case number, matter).
    pub reason: String,
    /// Who placed it.
    pub placed_by: Option<String>,
    /// When (Unix seconds).
    pub placed_at: i64,
    /// Who released it, when and why; `None` while active.
    pub released: Option<(Option<String>, i64, String)>,
}

/// Why a deleted message is gone; no content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The message's id.
    pub id: u128,
    /// SHA-256 of its raw bytes.
    pub sha256: [u8; 32],
    /// Its date (Unix seconds).
    pub date: i64,
    /// When it was deleted.
    pub deleted_at: i64,
    /// Why (`retention expired`, a deletion request's reason).
    pub reason: String,
    /// Who deleted it (`None`: the retention sweep).
    pub by: Option<String>,
}

/// What [`Archive::sweep`] did.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Messages deleted by this sweep.
    pub deleted: Vec<MessageId>,
    /// Messages past retention kept because a hold covers them.
    pub held: Vec<MessageId>,
    /// Messages past retention that write-once storage still locks, with the
    /// lock's date (Unix seconds): kept, and deleted by a sweep after it.
    /// Also blobs of deleted messages whose purge the store refused.
    pub locked: Vec<(MessageId, i64)>,
    /// Deletions of an earlier, interrupted run whose purge this one finished.
    pub resumed: usize,
}

/// What [`Archive::verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Messages whose bytes decrypted and matched their logged SHA-256.
    pub verified: u64,
    /// Logged messages that were deleted, with their tombstones.
    pub tombstones: Vec<Tombstone>,
    /// Everything wrong: `(message, what)`.
    pub problems: Vec<(Option<MessageId>, String)>,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct LogEntry {
    seq: u64,
    id: u128,
    sha256: [u8; 32],
    prev: [u8; 32],
}

#[derive(Serialize, Deserialize, Clone, Copy)]
pub(crate) struct LogHead {
    next: u64,
    last: [u8; 32],
}

fn log_aad(t: &TenantId, seq: u64) -> Vec<u8> {
    format!("ama/ingest-log/v1|{t}|{seq}").into_bytes()
}

fn tomb_aad(t: &TenantId, id: MessageId) -> Vec<u8> {
    format!("ama/tombstone/v1|{t}|{id}").into_bytes()
}

fn value_aad(kind: &str, t: &TenantId) -> Vec<u8> {
    format!("ama/{kind}/v1|{t}").into_bytes()
}

/// How far a sweep extends the write-once lock of a held message whose
/// retain-until has passed (renewed by every sweep while the hold lasts).
pub const HOLD_LOCK_SECS: i64 = 30 * 86_400;

/// A Unix time as RFC 3339 (UTC), or the number if it is out of range.
fn show_time(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Appends new messages to the tenant's ingest log inside `txn`.
pub(crate) fn log_ingest(
    txn: &mut WriteTxn,
    state: &TenantState,
    new: &[(MessageId, [u8; 32])],
) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let t = &state.record.tenant.id;
    let key = &state.keys.catalog;
    let mut head = match txn.tenant_value(TenantTable::IngestHead, t.as_str())? {
        Some(s) => catalog::decode_value::<LogHead>(
            &crypto::open(key, &value_aad("ingest-head", t), &s, "ingest log head")?,
            "ingest log head",
        )?,
        None => LogHead {
            next: 0,
            last: [0; 32],
        },
    };
    for (id, sha) in new {
        let e = LogEntry {
            seq: head.next,
            id: id.as_u128(),
            sha256: *sha,
            prev: head.last,
        };
        let plain = catalog::encode_value(&e)?;
        txn.put_ingest_log(
            t.as_str(),
            e.seq,
            &crypto::seal(key, &log_aad(t, e.seq), &plain)?,
        )?;
        head = LogHead {
            next: e.seq + 1,
            last: crypto::sha256(&plain),
        };
    }
    let sealed = crypto::seal(
        key,
        &value_aad("ingest-head", t),
        &catalog::encode_value(&head)?,
    )?;
    txn.put_tenant_value(TenantTable::IngestHead, t.as_str(), &sealed)
}

impl Archive {
    fn sealed_value<T: serde::de::DeserializeOwned>(
        &self,
        state: &TenantState,
        table: TenantTable,
        kind: &str,
    ) -> Result<Option<T>> {
        let t = &state.record.tenant.id;
        match self.catalog().read()?.tenant_value(table, t.as_str())? {
            None => Ok(None),
            Some(s) => Ok(Some(catalog::decode_value(
                &crypto::open(&state.keys.catalog, &value_aad(kind, t), &s, kind)?,
                kind,
            )?)),
        }
    }

    fn put_sealed_value<T: Serialize>(
        txn: &mut WriteTxn,
        state: &TenantState,
        table: TenantTable,
        kind: &str,
        v: &T,
    ) -> Result<()> {
        let t = &state.record.tenant.id;
        let sealed = crypto::seal(
            &state.keys.catalog,
            &value_aad(kind, t),
            &catalog::encode_value(v)?,
        )?;
        txn.put_tenant_value(table, t.as_str(), &sealed)
    }

    pub(crate) fn policy_of(&self, state: &TenantState) -> Result<RetentionPolicy> {
        Ok(self
            .sealed_value(state, TenantTable::Policy, "policy")?
            .unwrap_or_else(|| RetentionPolicy::from_default(state.record.tenant.retention)))
    }

    /// The principal's tenant's retention policy.
    pub fn retention_policy(&self, who: &Principal) -> Result<RetentionPolicy> {
        let state = self.state(who.tenant())?;
        self.policy_of(&state)
    }

    /// A message's retain-until (Unix seconds), for auditors.
    pub fn retain_until(&self, who: &Principal, id: MessageId) -> Result<i64> {
        who.require_auditor("read retention dates")?;
        self.catalog()
            .read()?
            .retention(who.tenant().as_str(), id)?
            .ok_or(Error::NotFound(id))
    }

    /// Replaces the tenant's retention policy (admins) and recomputes every
    /// message's retain-until. Refused when the minimum would drop, or the
    /// current policy is locked and the change would lift the lock or
    /// shorten any message's retention. One audited `policy-change`.
    pub fn set_retention_policy(&self, who: &Principal, policy: RetentionPolicy) -> Result<u64> {
        let detail = format!(
            "default {}, {} rules, from {:?}, minimum {}, locked {}, four-eyes {}",
            policy.default,
            policy.rules.len(),
            policy.count_from,
            policy
                .minimum
                .map(|m| m.to_string())
                .unwrap_or_else(|| "none".into()),
            policy.locked,
            policy.four_eyes
        );
        // What the query rules find, looked up before the catalog write
        // below (making the index current writes to the catalog too).
        let found = match policy.rule_queries() {
            Ok(q) if !q.is_empty() => {
                let state = self.state(who.tenant())?;
                self.rule_matches(&state, &policy)?
            }
            _ => HashMap::new(), // none, or refused inside (and audited)
        };
        self.audited_change(who, AuditAction::PolicyChange, detail, |txn, state| {
            who.require_admin("change the retention policy")?;
            policy.rule_queries()?;
            let old = self.policy_of(state)?;
            let reference = Date::from_calendar_date(2000, Month::March, 1)
                .map(|d| d.midnight().assume_utc().unix_timestamp())
                .unwrap_or(0);
            let min_of = |p: &RetentionPolicy| p.minimum.map(|m| add_period(reference, m));
            if min_of(&policy) < min_of(&old) {
                return Err(Error::AccessDenied(
                    "the minimum retention can only be raised".into(),
                ));
            }
            if old.locked && !policy.locked {
                return Err(Error::AccessDenied(
                    "the retention policy is locked; the lock cannot be lifted".into(),
                ));
            }
            let t = state.record.tenant.id.as_str();
            let domains = &state.record.tenant.domains;
            let ids = self.catalog().read()?.message_ids(t)?;
            let mut updates = Vec::with_capacity(ids.len());
            let write_once = self.store().object_lock();
            let mut locks = Vec::new();
            for id in ids {
                let Some(rec) = txn.message(t, id)? else {
                    continue;
                };
                let info = self.info_of(state, id, &rec)?;
                let new = policy.retain_until(&info, domains, |n| {
                    found.get(&n).is_some_and(|set| set.contains(&id))
                });
                let cur = txn.retention(t, id)?;
                if old.locked && cur.is_some_and(|cur| new < cur) {
                    return Err(Error::AccessDenied(format!(
                        "the retention policy is locked; this change would shorten the \
                         retention of message {id}"
                    )));
                }
                // Write-once locks follow a longer retention; a shorter one
                // leaves the lock (it cannot shrink) and the sweep waits for it.
                if write_once && cur.is_none_or(|cur| new > cur) {
                    locks.push((BlobKey::message(&state.record.storage_id, id), new));
                }
                updates.push((id, new));
            }
            for (id, until) in &updates {
                txn.put_retention(t, *id, *until)?;
            }
            // Before the commit: a lock that fails refuses the change.
            if !locks.is_empty() {
                self.store().set_retention_many(&locks)?;
            }
            Self::put_sealed_value(txn, state, TenantTable::Policy, "policy", &policy)?;
            Ok(updates.len() as u64)
        })
    }

    /// What each query rule of `policy` finds in the tenant's index, by
    /// rule number.
    fn rule_matches(
        &self,
        state: &TenantState,
        policy: &RetentionPolicy,
    ) -> Result<HashMap<usize, HashSet<MessageId>>> {
        let queries = policy.rule_queries()?;
        if !queries.is_empty() {
            self.flush_index(state)?;
        }
        let mut out = HashMap::new();
        for (n, q) in queries {
            out.insert(n, state.index.all_ids(&q, Scope::All)?);
        }
        Ok(out)
    }

    /// For ingest: which items of a batch (`(item, info, text)`) each query
    /// rule of `policy` finds, evaluated in a throwaway in-memory index.
    pub(crate) fn rule_hits(
        &self,
        state: &TenantState,
        policy: &RetentionPolicy,
        docs: &[(usize, &MessageInfo, &MessageText)],
    ) -> Result<RuleHits> {
        let queries = policy.rule_queries()?;
        let qs: Vec<&crate::query::Query> = queries.iter().map(|(_, q)| q).collect();
        let pairs: Vec<(&MessageInfo, &MessageText)> =
            docs.iter().map(|(_, i, t)| (*i, *t)).collect();
        let found = state.index.matching(&qs, &pairs)?;
        let mut hits = RuleHits::default();
        for ((rule, _), per_doc) in queries.iter().zip(found) {
            let items = per_doc
                .iter()
                .zip(docs)
                .filter(|(hit, _)| **hit)
                .map(|(_, (item, _, _))| *item)
                .collect();
            hits.0.insert(*rule, items);
        }
        Ok(hits)
    }

    // ----- holds -------------------------------------------------------------

    fn holds_of(&self, state: &TenantState) -> Result<Vec<Hold>> {
        Ok(self
            .sealed_value(state, TenantTable::Holds, "holds")?
            .unwrap_or_default())
    }

    /// Every hold of the principal's tenant, active and released (auditors).
    pub fn holds(&self, who: &Principal) -> Result<Vec<Hold>> {
        who.require_auditor("read legal holds")?;
        let state = self.state(who.tenant())?;
        self.holds_of(&state)
    }

    /// Places a named legal hold (auditors). Audited.
    pub fn place_hold(
        &self,
        who: &Principal,
        name: &str,
        scope: HoldScope,
        reason: &str,
    ) -> Result<Hold> {
        let detail = format!("place hold {name:?}: {reason}");
        self.audited_change(who, AuditAction::Hold, detail, |txn, state| {
            who.require_auditor("place legal holds")?;
            if name.trim().is_empty() || reason.trim().is_empty() {
                return Err(Error::InvalidArgument(
                    "a hold needs a name and a reason".into(),
                ));
            }
            if let HoldScope::Query(q) = &scope {
                crate::query::parse(q)?;
            }
            let mut holds = self.holds_of(state)?;
            if holds.iter().any(|h| h.name == name && h.released.is_none()) {
                return Err(Error::InvalidArgument(format!(
                    "an active hold named {name:?} exists"
                )));
            }
            let hold = Hold {
                name: name.to_string(),
                scope: scope.clone(),
                reason: reason.to_string(),
                placed_by: who.user().map(str::to_string),
                placed_at: now(),
                released: None,
            };
            holds.push(hold.clone());
            Self::put_sealed_value(txn, state, TenantTable::Holds, "holds", &holds)?;
            Ok(hold)
        })
    }

    /// Releases an active hold (auditors). Audited.
    pub fn release_hold(&self, who: &Principal, name: &str, reason: &str) -> Result<()> {
        let detail = format!("release hold {name:?}: {reason}");
        self.audited_change(who, AuditAction::Hold, detail, |txn, state| {
            who.require_auditor("release legal holds")?;
            let mut holds = self.holds_of(state)?;
            let h = holds
                .iter_mut()
                .find(|h| h.name == name && h.released.is_none())
                .ok_or_else(|| Error::InvalidArgument(format!("no active hold {name:?}")))?;
            h.released = Some((who.user().map(str::to_string), now(), reason.to_string()));
            Self::put_sealed_value(txn, state, TenantTable::Holds, "holds", &holds)
        })
    }

    /// Which of the tenant's messages an active hold covers, by hold name.
    fn held(&self, state: &TenantState) -> Result<Vec<(String, HashSet<MessageId>)>> {
        let mut out = Vec::new();
        for h in self
            .holds_of(state)?
            .into_iter()
            .filter(|h| h.released.is_none())
        {
            let set = self.hold_ids(state, &h)?;
            out.push((h.name, set));
        }
        Ok(out)
    }

    /// Every message `hold` covers now.
    pub(crate) fn hold_ids(&self, state: &TenantState, hold: &Hold) -> Result<HashSet<MessageId>> {
        Ok(match &hold.scope {
            HoldScope::Ids(ids) => ids.iter().map(|i| MessageId::from_u128(*i)).collect(),
            HoldScope::Query(q) => {
                self.flush_index(state)?;
                state.index.all_ids(&crate::query::parse(q)?, Scope::All)?
            }
            // A custodian's mail is exactly what he would see as an end user.
            HoldScope::Custodian(a) => {
                self.flush_index(state)?;
                let who = Principal::end_user(state.record.tenant.id.clone(), [a.as_str()]);
                state
                    .index
                    .all_ids(&crate::query::Query::All, who.mail_scope()?)?
            }
        })
    }

    /// The messages the hold named `name` (active or released) covers now,
    /// in id order (auditors; unaudited: the caller records the access).
    pub(crate) fn hold_members(&self, who: &Principal, name: &str) -> Result<Vec<MessageId>> {
        who.require_auditor("read legal holds")?;
        let state = self.state(who.tenant())?;
        let hold = self
            .holds_of(&state)?
            .into_iter()
            .rev()
            .find(|h| h.name == name)
            .ok_or_else(|| Error::InvalidArgument(format!("no legal hold named {name:?}")))?;
        let mut ids: Vec<MessageId> = self.hold_ids(&state, &hold)?.into_iter().collect();
        ids.sort();
        Ok(ids)
    }

    // ----- deletion ----------------------------------------------------------

    /// Deletes messages logically (tombstones, data keys gone) in one
    /// transaction with `audit`, then purges blobs and index entries.
    fn delete_now(
        &self,
        state: &TenantState,
        ids: &[MessageId],
        reason: &str,
        by: Option<String>,
        audit: (AuditActor, AuditAction, String),
    ) -> Result<()> {
        let t = &state.record.tenant.id;
        let mut txn = self.catalog().write()?;
        let mut delta = crate::catalog::TenantStats::default();
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(rec) = txn.message(t.as_str(), *id)? else {
                continue; // deleted meanwhile: once is enough
            };
            let info = self.info_of(state, *id, &rec)?;
            // The dedup key is the keyed hash of the raw bytes: read them
            // once more (if they are unreadable, the entry is searched).
            let dedup = self
                .read_blob_of(state, *id, &rec, &info)
                .ok()
                .map(|raw| crypto::keyed_hash(&state.keys.dedup, &raw));
            let tomb = Tombstone {
                id: id.as_u128(),
                sha256: info.sha256,
                date: info.meta.date,
                deleted_at: now(),
                reason: reason.to_string(),
                by: by.clone(),
            };
            let sealed = crypto::seal(
                &state.keys.catalog,
                &tomb_aad(t, *id),
                &catalog::encode_value(&tomb)?,
            )?;
            txn.delete_message(t.as_str(), *id, dedup.as_ref(), &sealed)?;
            delta.messages += 1;
            delta.raw_bytes += info.meta.size;
            delta.stored_bytes += rec.stored_size;
            done.push(*id);
        }
        txn.sub_stats(t.as_str(), delta)?;
        let (actor, action, detail) = audit;
        self.append_audit(
            &mut txn,
            state,
            actor,
            action,
            detail,
            &done,
            Outcome::Success,
        )?;
        txn.commit()?;
        self.purge(state)?;
        Ok(())
    }

    /// Removes blobs and index entries of deleted messages (idempotent).
    /// A blob that write-once storage still locks ([`StoreError::Locked`])
    /// stays marked for purging (a later sweep retries) and is returned with
    /// its lock date; any other store error stops the purge.
    ///
    /// [`StoreError::Locked`]: crate::StoreError::Locked
    fn purge(&self, state: &TenantState) -> Result<(usize, Vec<(MessageId, i64)>)> {
        let t = state.record.tenant.id.as_str();
        let pending = self.catalog().read()?.purge_pending(t)?;
        if pending.is_empty() {
            return Ok((0, Vec::new()));
        }
        let mut purged = Vec::with_capacity(pending.len());
        let mut locked = Vec::new();
        for id in &pending {
            match self
                .store()
                .delete(&BlobKey::message(&state.record.storage_id, *id))
            {
                Ok(()) => purged.push(*id),
                Err(crate::StoreError::Locked { until, .. }) => locked.push((*id, until)),
                Err(e) => return Err(e.into()),
            }
        }
        state.index.delete(&pending)?;
        let mut txn = self.catalog().write()?;
        txn.clear_purge(t, &purged)?;
        txn.commit()?;
        Ok((purged.len(), locked))
    }

    /// Of `ids` (due for deletion), those write-once storage still locks at
    /// the real time now, with the lock's date; asks the store once per
    /// message, and only a store with locks.
    fn still_locked(
        &self,
        state: &TenantState,
        ids: &[MessageId],
    ) -> Result<Vec<(MessageId, i64)>> {
        if !self.store().object_lock() {
            return Ok(Vec::new());
        }
        let n = now();
        let mut out = Vec::new();
        for id in ids {
            let key = BlobKey::message(&state.record.storage_id, *id);
            if let Some(until) = self.store().retention(&key)?
                && until > n
            {
                out.push((*id, until));
            }
        }
        Ok(out)
    }

    /// Deletes every message of `tenant` whose retain-until is before `at`
    /// (default: now) and that no active hold covers. Finishes the purge of
    /// an interrupted earlier run first. One audited `deletion` entry per
    /// 500 deleted messages, or one saying nothing was due.
    pub fn sweep(&self, tenant: &TenantId, at: Option<OffsetDateTime>) -> Result<SweepReport> {
        let state = self.state(tenant)?;
        let (resumed, purge_locked) = self.purge(&state)?;
        let at = at.unwrap_or_else(OffsetDateTime::now_utc).unix_timestamp();
        let due: Vec<MessageId> = self
            .catalog()
            .read()?
            .retention_all(tenant.as_str())?
            .into_iter()
            .filter(|(_, until)| *until <= at)
            .map(|(id, _)| id)
            .collect();
        let mut report = SweepReport {
            resumed,
            locked: purge_locked,
            ..Default::default()
        };
        if !due.is_empty() {
            let holds = self.held(&state)?;
            for id in due {
                if holds.iter().any(|(_, s)| s.contains(&id)) {
                    report.held.push(id);
                } else {
                    report.deleted.push(id);
                }
            }
            // Not marked deleted while the store would refuse to delete it.
            let locked = self.still_locked(&state, &report.deleted)?;
            if !locked.is_empty() {
                report
                    .deleted
                    .retain(|id| !locked.iter().any(|(l, _)| l == id));
                report.locked.extend(locked);
            }
            // A hold keeps a message past its retain-until; on write-once
            // storage its lock is extended too, so the hold is not left to
            // the engine alone (each sweep renews it while the hold lasts).
            if self.store().object_lock() && !report.held.is_empty() {
                let until = now() + HOLD_LOCK_SECS;
                let locks: Vec<(BlobKey, i64)> = report
                    .held
                    .iter()
                    .map(|id| (BlobKey::message(&state.record.storage_id, *id), until))
                    .collect();
                self.store().set_retention_many(&locks)?;
            }
        }
        if report.deleted.is_empty() {
            // The run itself is on record, also when nothing was due.
            self.audit_now(
                &state,
                AuditActor::system(crate::audit::Frontend::Library),
                AuditAction::Deletion,
                format!(
                    "retention sweep: nothing deleted, {} held, {} write-once locked, \
                     {resumed} purges finished",
                    report.held.len(),
                    report.locked.len()
                ),
                &report.held,
                Outcome::Success,
            )?;
            return Ok(report);
        }
        for chunk in report.deleted.chunks(500) {
            self.delete_now(
                &state,
                chunk,
                "retention expired",
                None,
                (
                    AuditActor::system(crate::audit::Frontend::Library),
                    AuditAction::Deletion,
                    format!(
                        "retention sweep: {} deleted, {} held, {} write-once locked",
                        chunk.len(),
                        report.held.len(),
                        report.locked.len()
                    ),
                ),
            )?;
        }
        Ok(report)
    }

    /// Deletes messages before their retention ends (an auditor's erasure
    /// request, e.g. under GDPR where no duty to keep remains). Messages
    /// under a hold, under the minimum retention, or under a locked policy
    /// are kept back, each with its reason. With four-eyes on, the request
    /// is only recorded ([`DeletionOutcome::Pending`]) until a second
    /// auditor approves it with [`Archive::approve_deletion`].
    pub fn request_deletion(
        &self,
        who: &Principal,
        ids: &[MessageId],
        reason: &str,
    ) -> Result<DeletionOutcome> {
        let state = self.state(who.tenant())?;
        if reason.trim().is_empty() {
            let e = Error::InvalidArgument("a deletion needs a reason".into());
            return self.refuse_deletion(who, &state, "deletion requested".into(), ids, e);
        }
        let policy = self.policy_of(&state)?;
        if policy.four_eyes {
            let detail = format!("deletion requested: {reason}");
            let req = DeletionRequest {
                id: crypto::hex(
                    &crypto::sha256(format!("{}|{}|{:?}", now(), reason, ids).as_bytes())[..6],
                ),
                requested_by: who.user().map(str::to_string),
                ids: ids.iter().map(|i| i.as_u128()).collect(),
                reason: reason.to_string(),
            };
            let r = req.clone();
            self.audited_change(who, AuditAction::Deletion, detail, |txn, state| {
                who.require_auditor("request deletions")?;
                if reason.trim().is_empty() {
                    return Err(Error::InvalidArgument("a deletion needs a reason".into()));
                }
                let mut reqs = self.requests_of(state)?;
                reqs.retain(|x| x.id != r.id);
                reqs.push(r);
                self.put_requests(txn, state, &reqs)
            })?;
            return Ok(DeletionOutcome::Pending { request: req.id });
        }
        self.execute_deletion(who, &state, ids, reason, None)
    }

    /// [`Archive::request_deletion`] of every message `query` finds (the
    /// search language of `docs/SEARCH.md`). The query is resolved now, so
    /// a second auditor approves exactly the messages that were found; it is
    /// kept in the reason (and so in the tombstones and the audit log).
    /// A query that finds nothing is an [`Error::InvalidArgument`].
    pub fn request_deletion_matching(
        &self,
        who: &Principal,
        query: &str,
        reason: &str,
    ) -> Result<DeletionOutcome> {
        let state = self.state(who.tenant())?;
        let resolve = || -> Result<Vec<MessageId>> {
            who.require_auditor("request deletions")?;
            if reason.trim().is_empty() {
                return Err(Error::InvalidArgument("a deletion needs a reason".into()));
            }
            let q = crate::query::parse(query)?;
            self.flush_index(&state)?;
            let mut ids: Vec<MessageId> = state
                .index
                .all_ids(&q, who.mail_scope()?)?
                .into_iter()
                .collect();
            if ids.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the query {query:?} finds no message to delete"
                )));
            }
            ids.sort();
            Ok(ids)
        };
        match resolve() {
            Ok(ids) => {
                self.request_deletion(who, &ids, &format!("{} (query: {query})", reason.trim()))
            }
            Err(e) => {
                let detail = format!("deletion requested by query {query:?}");
                self.refuse_deletion(who, &state, detail, &[], e)
            }
        }
    }

    /// Records a deletion request refused before anything happened (one
    /// audit entry, as every call that would change state writes), then
    /// returns the refusal.
    fn refuse_deletion(
        &self,
        who: &Principal,
        state: &TenantState,
        detail: String,
        ids: &[MessageId],
        e: Error,
    ) -> Result<DeletionOutcome> {
        let refused: Result<DeletionOutcome> = Err(e);
        self.audit_now(
            state,
            AuditActor::of(who),
            AuditAction::Deletion,
            detail,
            ids,
            Outcome::of(&refused),
        )?;
        refused
    }

    fn put_requests(
        &self,
        txn: &mut WriteTxn,
        state: &TenantState,
        reqs: &[DeletionRequest],
    ) -> Result<()> {
        let t = &state.record.tenant.id;
        let sealed = crypto::seal(
            &state.keys.catalog,
            &value_aad("deletion-requests", t),
            &catalog::encode_value(&reqs.to_vec())?,
        )?;
        txn.put_tenant_value(TenantTable::DeletionRequests, t.as_str(), &sealed)
    }

    fn requests_of(&self, state: &TenantState) -> Result<Vec<DeletionRequest>> {
        Ok(self
            .sealed_value(state, TenantTable::DeletionRequests, "deletion-requests")?
            .unwrap_or_default())
    }

    /// Pending deletion requests (auditors).
    pub fn deletion_requests(&self, who: &Principal) -> Result<Vec<DeletionRequest>> {
        who.require_auditor("read deletion requests")?;
        let state = self.state(who.tenant())?;
        self.requests_of(&state)
    }

    /// Approves a pending request: a different auditor than the one who
    /// made it. Deletes what may be deleted and reports what was kept back.
    pub fn approve_deletion(&self, who: &Principal, request: &str) -> Result<DeletionOutcome> {
        let state = self.state(who.tenant())?;
        let find = || -> Result<(Vec<DeletionRequest>, DeletionRequest)> {
            who.require_auditor("approve deletions")?;
            let reqs = self.requests_of(&state)?;
            let req = reqs
                .iter()
                .find(|r| r.id == request)
                .cloned()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("no pending deletion request {request}"))
                })?;
            // Both sides must be named users, and different ones: the operator
            // (whoever holds the archive passphrase) is nobody's second pair of eyes.
            if who.user().is_none()
                || req.requested_by.is_none()
                || req.requested_by.as_deref() == who.user()
            {
                return Err(Error::AccessDenied(
                    "four-eyes: a deletion must be approved by a second, named auditor".into(),
                ));
            }
            Ok((reqs, req))
        };
        let (reqs, req) = match find() {
            Ok(found) => found,
            Err(e) => {
                let detail = format!("approve deletion request {request}");
                return self.refuse_deletion(who, &state, detail, &[], e);
            }
        };
        let ids: Vec<MessageId> = req.ids.iter().map(|i| MessageId::from_u128(*i)).collect();
        let out = self.execute_deletion(who, &state, &ids, &req.reason, Some(&req))?;
        let mut txn = self.catalog().write()?;
        let rest: Vec<DeletionRequest> = reqs.into_iter().filter(|r| r.id != req.id).collect();
        self.put_requests(&mut txn, &state, &rest)?;
        txn.commit()?;
        Ok(out)
    }

    fn execute_deletion(
        &self,
        who: &Principal,
        state: &TenantState,
        ids: &[MessageId],
        reason: &str,
        request: Option<&DeletionRequest>,
    ) -> Result<DeletionOutcome> {
        if let Err(e) = who.require_auditor("delete messages") {
            self.audit_now(
                state,
                AuditActor::of(who),
                AuditAction::Deletion,
                format!("delete: {reason}"),
                ids,
                Outcome::Denied(e.to_string()),
            )?;
            return Err(e);
        }
        let policy = self.policy_of(state)?;
        let holds = self.held(state)?;
        let t = state.record.tenant.id.as_str();
        let rtxn = self.catalog().read()?;
        let n = now();
        let mut deleted = Vec::new();
        let mut kept = Vec::new();
        for id in ids {
            let Some(rec) = rtxn.message(t, *id)? else {
                kept.push((*id, "not found".to_string()));
                continue;
            };
            if let Some((name, _)) = holds.iter().find(|(_, s)| s.contains(id)) {
                kept.push((*id, format!("legal hold {name:?}")));
                continue;
            }
            let until = rtxn.retention(t, *id)?.unwrap_or(i64::MAX);
            if policy.locked && until > n {
                kept.push((*id, "the retention policy is locked".into()));
                continue;
            }
            if let Some(min) = policy.minimum {
                let info = self.info_of(state, *id, &rec)?;
                if add_period(info.meta.date, min) > n {
                    kept.push((*id, format!("minimum retention {min}")));
                    continue;
                }
            }
            if let Some((_, until)) = self.still_locked(state, &[*id])?.first() {
                kept.push((
                    *id,
                    format!("write-once storage locks it until {}", show_time(*until)),
                ));
                continue;
            }
            deleted.push(*id);
        }
        drop(rtxn);
        let detail = match request {
            Some(r) => format!(
                "deletion request {} approved ({} deleted, {} kept back): {reason}",
                r.id,
                deleted.len(),
                kept.len()
            ),
            None => format!(
                "deletion ({} deleted, {} kept back): {reason}",
                deleted.len(),
                kept.len()
            ),
        };
        self.delete_now(
            state,
            &deleted,
            reason,
            who.user().map(str::to_string),
            (AuditActor::of(who), AuditAction::Deletion, detail),
        )?;
        Ok(DeletionOutcome::Done { deleted, kept })
    }

    // ----- integrity -----------------------------------------------------------

    /// Archives written before the ingest log existed hold messages no log
    /// entry covers, and `verify` would call each of them a gap. The first
    /// time such a tenant is opened (it has messages and no log head), one
    /// entry per stored message is appended, in id order, with the SHA-256
    /// its sealed catalog record has carried since ingest; one audit entry
    /// says so. The log proves nothing about the time before the backfill,
    /// and the audit entry says when it happened.
    pub(crate) fn backfill_ingest_log(&self, state: &TenantState) -> Result<()> {
        let t = &state.record.tenant.id;
        let ids = {
            let rtxn = self.catalog().read()?;
            if rtxn
                .tenant_value(TenantTable::IngestHead, t.as_str())?
                .is_some()
            {
                return Ok(());
            }
            let mut ids = rtxn.message_ids(t.as_str())?;
            if ids.is_empty() {
                return Ok(());
            }
            ids.sort();
            ids
        };
        let mut txn = self.catalog().write()?;
        if txn
            .tenant_value(TenantTable::IngestHead, t.as_str())?
            .is_some()
        {
            return Ok(()); // another opener was first
        }
        let mut logged = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(rec) = txn.message(t.as_str(), id)? {
                logged.push((id, self.info_of(state, id, &rec)?.sha256));
            }
        }
        log_ingest(&mut txn, state, &logged)?;
        self.append_audit(
            &mut txn,
            state,
            AuditActor::system(crate::audit::Frontend::Library),
            AuditAction::Ingest,
            format!(
                "ingest log backfilled: {} messages stored before the archive kept one",
                logged.len()
            ),
            &[],
            Outcome::Success,
        )?;
        txn.commit()
    }

    /// Checks the principal's tenant (auditors): every logged message
    /// decrypts and matches its SHA-256; the ingest log's chain is intact;
    /// every logged message is present or has a tombstone; every message is
    /// logged. One audited `verify` entry (as `audit-verify`).
    pub fn verify(&self, who: &Principal) -> Result<VerifyReport> {
        self.audited_read(
            who,
            AuditAction::AuditVerify,
            "verify messages and ingest log".into(),
            |state| {
                who.require_auditor("verify the archive")?;
                self.verify_in(state)
            },
            |_| Vec::new(),
        )
    }

    /// The tenant's ingest log as (message, SHA-256), in order (for proofs).
    pub(crate) fn ingest_log_entries(
        &self,
        state: &TenantState,
    ) -> Result<Vec<(MessageId, [u8; 32])>> {
        let t = &state.record.tenant.id;
        let rtxn = self.catalog().read()?;
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let page = rtxn.ingest_log(t.as_str(), from, 1000)?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, sealed) in page {
                let plain = crypto::open(
                    &state.keys.catalog,
                    &log_aad(t, seq),
                    &sealed,
                    &format!("ingest log entry {seq}"),
                )?;
                let e: LogEntry = catalog::decode_value(&plain, "ingest log entry")?;
                out.push((MessageId::from_u128(e.id), e.sha256));
            }
            from = last + 1;
        }
        Ok(out)
    }

    fn verify_in(&self, state: &TenantState) -> Result<VerifyReport> {
        let t = &state.record.tenant.id;
        let key = &state.keys.catalog;
        let rtxn = self.catalog().read()?;
        let mut report = VerifyReport::default();
        let mut logged = HashSet::new();
        let mut prev = [0u8; 32];
        let mut expected = 0u64;
        let mut from = 0;
        loop {
            let page = rtxn.ingest_log(t.as_str(), from, 1000)?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, sealed) in page {
                if seq != expected {
                    report.problems.push((
                        None,
                        format!("ingest log entries {expected}..{} are missing", seq - 1),
                    ));
                }
                expected = seq + 1;
                let plain = match crypto::open(key, &log_aad(t, seq), &sealed, "ingest log") {
                    Ok(p) => p,
                    Err(_) => {
                        report
                            .problems
                            .push((None, format!("ingest log entry {seq} fails authentication")));
                        continue;
                    }
                };
                let e: LogEntry = catalog::decode_value(&plain, "ingest log entry")?;
                if e.prev != prev {
                    report
                        .problems
                        .push((None, format!("ingest log chain broken at entry {seq}")));
                }
                prev = crypto::sha256(&plain);
                let id = MessageId::from_u128(e.id);
                logged.insert(id);
                match rtxn.message(t.as_str(), id)? {
                    Some(rec) => {
                        let check = self.info_of(state, id, &rec).and_then(|info| {
                            if info.sha256 != e.sha256 {
                                return Err(Error::InvalidArgument(
                                    "catalog SHA-256 differs from the ingest log".into(),
                                ));
                            }
                            self.read_blob_of(state, id, &rec, &info)
                        });
                        match check {
                            Ok(_) => report.verified += 1,
                            Err(err) => report.problems.push((Some(id), err.to_string())),
                        }
                    }
                    None => match rtxn.tombstone(t.as_str(), id)? {
                        Some(s) => {
                            let tomb: Tombstone = catalog::decode_value(
                                &crypto::open(key, &tomb_aad(t, id), &s, "tombstone")?,
                                "tombstone",
                            )?;
                            if tomb.sha256 != e.sha256 {
                                report.problems.push((
                                    Some(id),
                                    "tombstone SHA-256 differs from the ingest log".into(),
                                ));
                            }
                            report.tombstones.push(tomb);
                        }
                        None => report.problems.push((
                            Some(id),
                            "missing from the catalog without a tombstone (a gap)".into(),
                        )),
                    },
                }
            }
            from = last + 1;
        }
        for id in rtxn.message_ids(t.as_str())? {
            if !logged.contains(&id) {
                report
                    .problems
                    .push((Some(id), "stored but not in the ingest log".into()));
            }
        }
        Ok(report)
    }
}

/// A deletion request waiting for a second auditor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRequest {
    /// Its id.
    pub id: String,
    /// Who asked.
    pub requested_by: Option<String>,
    /// The messages.
    pub ids: Vec<u128>,
    /// Why.
    pub reason: String,
}

/// What a deletion request led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionOutcome {
    /// Four-eyes: waiting for a second auditor's approval.
    Pending {
        /// The request to approve.
        request: String,
    },
    /// Carried out.
    Done {
        /// Deleted messages.
        deleted: Vec<MessageId>,
        /// Messages kept back, and why.
        kept: Vec<(MessageId, String)>,
    },
}
