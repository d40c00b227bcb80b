//! The catalog journal: every committed change to the catalog, in commit
//! order, so a backup can be brought forward from a snapshot to any moment
//! between two snapshots (point-in-time restore, `docs/BACKUP.md`).
//!
//! Why an operation log and not page copies: redb offers no change feed,
//! but every catalog write goes through a [`super::WriteTxn`] method. Each
//! of those is expressed as one or more [`Op`]s — "this key of this table
//! now holds this value" or "is gone" — which are applied by [`apply`] and
//! recorded. Replaying a row on a restored snapshot therefore runs the very
//! code the live write ran. An op holds the *final* value (a counter's new
//! value, not its increment), so applying a row twice is harmless; a restore
//! can start from a snapshot that already includes part of a row.
//!
//! The journal is off until the archive is first backed up
//! ([`super::Catalog::enable_journal`]): without a backup nobody ships it,
//! and it would only grow. Each durable commit with at least one op writes
//! one row, `seq → JournalRow`, in the same redb transaction: a row exists
//! exactly when its changes committed. Lazy (non-durable) commits hand
//! their ops to the next durable commit, so a lazy commit lost in a crash
//! leaves no row behind either, and sequence numbers are never reused.
//!
//! Not recorded: the pending-index marks (derived data: a restore marks
//! everything for re-indexing) and the journal's own bookkeeping.
//!
//! Keys are opaque ids and keyed hashes and values are the catalog's own
//! sealed bytes, so the journal holds nothing the catalog does not.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{
    AUDIT, AUDIT_HEAD, CREDENTIALS, DEDUP, DELETION_REQUESTS, DICTIONARIES, DIRECTORY, HOLDS,
    INGEST_HEAD, INGEST_LOG, MESSAGES, PENDING_INDEX, POLICY, PURGE_PENDING, RETENTION, ROTATIONS,
    SHREDS, STATS, TENANTS, TOMBSTONES, USERS, decode, encode, hashed_range,
};
use crate::error::{CatalogError, Result};

/// Segment files start with this.
const SEGMENT_MAGIC: &[u8; 4] = b"AMAJ";
/// Segment format version written by this build (and the newest it reads).
pub const SEGMENT_VERSION: u8 = 1;

/// A catalog table, as named in a journal op. Serialized by position:
/// append new tables at the end, never reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Table {
    /// `tenants`
    Tenants,
    /// `messages`
    Messages,
    /// `dedup`
    Dedup,
    /// `stats`
    Stats,
    /// `audit`
    Audit,
    /// `audit_head`
    AuditHead,
    /// `directory`
    Directory,
    /// `users`
    Users,
    /// `credentials`
    Credentials,
    /// `policy`
    Policy,
    /// `holds`
    Holds,
    /// `ingest_head`
    IngestHead,
    /// `deletion_requests`
    DeletionRequests,
    /// `retention`
    Retention,
    /// `tombstones`
    Tombstones,
    /// `purge_pending`
    PurgePending,
    /// `ingest_log`
    IngestLog,
    /// `shreds`
    Shreds,
    /// `rotations`
    Rotations,
    /// `dictionaries`
    Dictionaries,
}

/// A row's key, by the shape of the table's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    /// A tenant id.
    Tenant(String),
    /// (tenant, message id).
    Id(String, u128),
    /// (tenant, sequence number).
    Seq(String, u64),
    /// (tenant, keyed hash).
    Hash(String, Vec<u8>),
}

impl Key {
    /// The tenant the key belongs to.
    pub fn tenant(&self) -> &str {
        match self {
            Key::Tenant(t) | Key::Id(t, _) | Key::Seq(t, _) | Key::Hash(t, _) => t,
        }
    }
}

/// A row's value, by the shape of the table's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Bytes (sealed values and records).
    Bytes(Vec<u8>),
    /// A message id (`dedup`).
    Id(u128),
    /// A time in Unix seconds (`retention`).
    Time(i64),
    /// Nothing: the key is the fact (`purge_pending`).
    Unit,
}

/// One change to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The key now holds the value.
    Put(Table, Key, Value),
    /// The key is gone (no error if it was not there).
    Remove(Table, Key),
    /// Every row of the tenant is gone, its destruction record excepted
    /// ([`super::WriteTxn::purge_tenant`]).
    PurgeTenant(String),
}

impl Op {
    /// The tenant the op concerns.
    pub fn tenant(&self) -> &str {
        match self {
            Op::Put(_, k, _) | Op::Remove(_, k) => k.tenant(),
            Op::PurgeTenant(t) => t,
        }
    }

    /// Whether the op changes the tenant's data (everything but its
    /// destruction record, which is kept for good).
    fn is_tenant_data(&self, tenant: &str) -> bool {
        self.tenant() == tenant && !matches!(self, Op::Put(Table::Shreds, ..))
    }
}

/// One committed transaction's changes (value of the `journal` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRow {
    /// When it committed (Unix microseconds, UTC).
    pub time_micros: i64,
    /// Its changes, in the order they were made.
    pub ops: Vec<Op>,
}

impl JournalRow {
    /// The stored form (version byte + postcard).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    /// Reads the stored form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        decode(bytes, "journal row")
    }
}

/// Stored form of a row whose ops are borrowed (the commit path).
#[derive(Serialize)]
struct JournalRowRef<'a> {
    time_micros: i64,
    ops: Vec<&'a Op>,
}

/// Encodes a row from borrowed ops, byte-identical to [`JournalRow::to_bytes`].
pub(super) fn row_bytes<'a>(
    time_micros: i64,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<Vec<u8>> {
    encode(&JournalRowRef {
        time_micros,
        ops: ops.collect(),
    })
}

fn mismatch(op: &Op) -> crate::error::Error {
    CatalogError::Corrupt {
        what: "journal op".into(),
        reason: format!("key or value does not fit its table: {op:?}"),
    }
    .into()
}

type TenantDef = TableDefinition<'static, &'static str, &'static [u8]>;
type IdDef = TableDefinition<'static, (&'static str, u128), &'static [u8]>;
type HashDef = TableDefinition<'static, (&'static str, &'static [u8]), &'static [u8]>;
type SeqDef = TableDefinition<'static, (&'static str, u64), &'static [u8]>;

/// The table of sealed bytes keyed by tenant that `t` names.
fn tenant_def(t: Table) -> Option<TenantDef> {
    Some(match t {
        Table::Tenants => TENANTS,
        Table::Stats => STATS,
        Table::AuditHead => AUDIT_HEAD,
        Table::Directory => DIRECTORY,
        Table::Policy => POLICY,
        Table::Holds => HOLDS,
        Table::IngestHead => INGEST_HEAD,
        Table::DeletionRequests => DELETION_REQUESTS,
        Table::Shreds => SHREDS,
        Table::Rotations => ROTATIONS,
        Table::Dictionaries => DICTIONARIES,
        _ => return None,
    })
}

/// The table of sealed bytes keyed by (tenant, message id) that `t` names.
fn id_def(t: Table) -> Option<IdDef> {
    match t {
        Table::Messages => Some(MESSAGES),
        Table::Tombstones => Some(TOMBSTONES),
        _ => None,
    }
}

/// The table of sealed bytes keyed by (tenant, hash) that `t` names.
fn hash_def(t: Table) -> Option<HashDef> {
    match t {
        Table::Users => Some(USERS),
        Table::Credentials => Some(CREDENTIALS),
        _ => None,
    }
}

/// The table of sealed bytes keyed by (tenant, sequence number) that `t` names.
fn seq_def(t: Table) -> Option<SeqDef> {
    match t {
        Table::Audit => Some(AUDIT),
        Table::IngestLog => Some(INGEST_LOG),
        _ => None,
    }
}

/// The table `def` names, or the error for an op that does not fit it.
fn fits<D>(def: Option<D>, op: &Op) -> Result<D> {
    def.ok_or_else(|| mismatch(op))
}

/// Applies one op to a write transaction. A key or value of the wrong
/// shape for its table (a damaged segment) is a typed error, not a panic.
pub(super) fn apply(txn: &redb::WriteTransaction, op: &Op) -> Result<()> {
    match op {
        Op::PurgeTenant(tenant) => purge_tenant(txn, tenant)?,
        Op::Put(t, key, value) => match (key, value) {
            (Key::Tenant(k), Value::Bytes(v)) => {
                txn.open_table(fits(tenant_def(*t), op)?)?
                    .insert(k.as_str(), v.as_slice())?;
            }
            (Key::Id(k, id), Value::Bytes(v)) => {
                txn.open_table(fits(id_def(*t), op)?)?
                    .insert((k.as_str(), *id), v.as_slice())?;
            }
            (Key::Id(k, id), Value::Time(v)) if *t == Table::Retention => {
                txn.open_table(RETENTION)?.insert((k.as_str(), *id), *v)?;
            }
            (Key::Id(k, id), Value::Unit) if *t == Table::PurgePending => {
                txn.open_table(PURGE_PENDING)?
                    .insert((k.as_str(), *id), ())?;
            }
            (Key::Hash(k, h), Value::Id(v)) if *t == Table::Dedup => {
                txn.open_table(DEDUP)?
                    .insert((k.as_str(), h.as_slice()), *v)?;
            }
            (Key::Hash(k, h), Value::Bytes(v)) => {
                txn.open_table(fits(hash_def(*t), op)?)?
                    .insert((k.as_str(), h.as_slice()), v.as_slice())?;
            }
            (Key::Seq(k, n), Value::Bytes(v)) => {
                txn.open_table(fits(seq_def(*t), op)?)?
                    .insert((k.as_str(), *n), v.as_slice())?;
            }
            _ => return Err(mismatch(op)),
        },
        Op::Remove(t, key) => match key {
            Key::Tenant(k) => {
                txn.open_table(fits(tenant_def(*t), op)?)?
                    .remove(k.as_str())?;
            }
            Key::Id(k, id) => {
                let key = (k.as_str(), *id);
                match t {
                    Table::Retention => {
                        txn.open_table(RETENTION)?.remove(key)?;
                    }
                    Table::PurgePending => {
                        txn.open_table(PURGE_PENDING)?.remove(key)?;
                    }
                    _ => {
                        txn.open_table(fits(id_def(*t), op)?)?.remove(key)?;
                    }
                }
            }
            Key::Hash(k, h) => {
                let key = (k.as_str(), h.as_slice());
                if *t == Table::Dedup {
                    txn.open_table(DEDUP)?.remove(key)?;
                } else {
                    txn.open_table(fits(hash_def(*t), op)?)?.remove(key)?;
                }
            }
            Key::Seq(k, n) => {
                txn.open_table(fits(seq_def(*t), op)?)?
                    .remove((k.as_str(), *n))?;
            }
        },
    }
    Ok(())
}

/// Removes every row of `tenant` from every per-tenant table, the tenant
/// record included (not its destruction record).
fn purge_tenant(txn: &redb::WriteTransaction, tenant: &str) -> Result<()> {
    for def in [
        TENANTS,
        STATS,
        AUDIT_HEAD,
        DIRECTORY,
        POLICY,
        HOLDS,
        INGEST_HEAD,
    ]
    .into_iter()
    .chain([DELETION_REQUESTS, ROTATIONS, DICTIONARIES])
    {
        txn.open_table(def)?.remove(tenant)?;
    }
    for def in [MESSAGES, TOMBSTONES] {
        txn.open_table(def)?
            .retain_in((tenant, 0u128)..=(tenant, u128::MAX), |_, _| false)?;
    }
    txn.open_table(PENDING_INDEX)?
        .retain_in((tenant, 0u128)..=(tenant, u128::MAX), |_, _| false)?;
    txn.open_table(PURGE_PENDING)?
        .retain_in((tenant, 0u128)..=(tenant, u128::MAX), |_, _| false)?;
    txn.open_table(RETENTION)?
        .retain_in((tenant, 0u128)..=(tenant, u128::MAX), |_, _| false)?;
    for def in [AUDIT, INGEST_LOG] {
        txn.open_table(def)?
            .retain_in((tenant, 0u64)..=(tenant, u64::MAX), |_, _| false)?;
    }
    {
        let mut t = txn.open_table(DEDUP)?;
        let keys: Vec<Vec<u8>> = {
            let lo: (&str, &[u8]) = (tenant, &[]);
            let mut keys = Vec::new();
            for e in t.range(lo..)? {
                let (k, _) = e?;
                let (kt, kh) = k.value();
                if kt != tenant {
                    break;
                }
                keys.push(kh.to_vec());
            }
            keys
        };
        for k in keys {
            t.remove((tenant, k.as_slice()))?;
        }
    }
    for def in [USERS, CREDENTIALS] {
        let mut t = txn.open_table(def)?;
        let keys: Vec<Vec<u8>> = hashed_range(&t, tenant)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            t.remove((tenant, k.as_slice()))?;
        }
    }
    Ok(())
}

/// Drops a destroyed tenant's data ops from recorded rows (its destruction
/// record and the purge itself stay). Returns the row left, or None when
/// nothing of it remains.
pub(super) fn without_tenant(row: JournalRow, tenant: &str) -> Option<JournalRow> {
    let ops: Vec<Op> = row
        .ops
        .into_iter()
        .filter(|op| !op.is_tenant_data(tenant) || matches!(op, Op::PurgeTenant(_)))
        .collect();
    (!ops.is_empty()).then_some(JournalRow {
        time_micros: row.time_micros,
        ops,
    })
}

/// Same, for ops not yet in a row.
pub(super) fn retain_not_tenant(ops: &mut Vec<Op>, tenant: &str) {
    ops.retain(|op| !op.is_tenant_data(tenant) || matches!(op, Op::PurgeTenant(_)));
}

/// A run of journal rows as shipped to a backup target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The journal the rows belong to (see [`super::JournalState::id`]).
    pub journal_id: String,
    /// (sequence number, stored row) in increasing order.
    pub rows: Vec<(u64, Vec<u8>)>,
}

impl Segment {
    /// The stored form: `"AMAJ" | version | postcard(segment)`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = SEGMENT_MAGIC.to_vec();
        out.push(SEGMENT_VERSION);
        out.extend(
            postcard::to_stdvec(self).map_err(|e| CatalogError::Corrupt {
                what: "journal segment".into(),
                reason: e.to_string(),
            })?,
        );
        Ok(out)
    }

    /// Reads the stored form; anything else is a typed error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| -> crate::error::Error {
            CatalogError::Corrupt {
                what: "journal segment".into(),
                reason,
            }
            .into()
        };
        let rest = bytes
            .strip_prefix(SEGMENT_MAGIC.as_slice())
            .ok_or_else(|| bad("not a journal segment (magic)".into()))?;
        match rest.split_first() {
            Some((&SEGMENT_VERSION, body)) => {
                postcard::from_bytes(body).map_err(|e| bad(e.to_string()))
            }
            Some((v, _)) => Err(bad(format!(
                "version {v} is not supported (this build reads up to {SEGMENT_VERSION})"
            ))),
            None => Err(bad("truncated".into())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_row_encodes_the_same_from_borrowed_ops() {
        let row = JournalRow {
            time_micros: 1_795_000_000_000_001,
            ops: vec![
                Op::Put(
                    Table::Messages,
                    Key::Id("acme".into(), 7),
                    Value::Bytes(vec![1, 2, 3]),
                ),
                Op::Remove(Table::Dedup, Key::Hash("acme".into(), vec![9; 32])),
                Op::PurgeTenant("old".into()),
            ],
        };
        let bytes = row.to_bytes().unwrap();
        assert_eq!(bytes, row_bytes(row.time_micros, row.ops.iter()).unwrap());
        assert_eq!(JournalRow::from_bytes(&bytes).unwrap(), row);
    }

    #[test]
    fn a_segment_round_trips_and_damage_is_refused() {
        let s = Segment {
            journal_id: "ab".into(),
            rows: vec![(1, vec![1]), (2, vec![2, 2])],
        };
        let b = s.to_bytes().unwrap();
        assert_eq!(Segment::from_bytes(&b).unwrap(), s);
        assert!(Segment::from_bytes(b"AMAB\x01").is_err());
        assert!(Segment::from_bytes(b"AMAJ").is_err());
        assert!(
            Segment::from_bytes(b"AMAJ\x02")
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        assert!(Segment::from_bytes(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn an_op_that_does_not_fit_its_table_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("c.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        for op in [
            Op::Put(Table::Messages, Key::Tenant("a".into()), Value::Unit),
            Op::Put(
                Table::Retention,
                Key::Id("a".into(), 1),
                Value::Bytes(vec![]),
            ),
            Op::Remove(Table::Audit, Key::Id("a".into(), 1)),
            Op::Put(Table::Tenants, Key::Tenant("a".into()), Value::Id(3)),
            Op::Put(Table::Stats, Key::Seq("a".into(), 1), Value::Bytes(vec![])),
            Op::Remove(Table::Tenants, Key::Hash("a".into(), vec![1])),
            Op::Put(Table::Users, Key::Hash("a".into(), vec![1]), Value::Id(1)),
        ] {
            let e = apply(&txn, &op).unwrap_err();
            assert!(e.to_string().contains("does not fit"), "{e}");
        }
    }

    #[test]
    fn dropping_a_tenant_keeps_its_destruction_record_and_other_tenants() {
        let row = JournalRow {
            time_micros: 5,
            ops: vec![
                Op::Put(
                    Table::Audit,
                    Key::Seq("gone".into(), 1),
                    Value::Bytes(vec![1]),
                ),
                Op::Put(
                    Table::Audit,
                    Key::Seq("kept".into(), 1),
                    Value::Bytes(vec![2]),
                ),
                Op::Put(
                    Table::Shreds,
                    Key::Tenant("gone".into()),
                    Value::Bytes(vec![3]),
                ),
                Op::PurgeTenant("gone".into()),
            ],
        };
        let left = without_tenant(row, "gone").unwrap();
        assert_eq!(left.ops.len(), 3);
        assert!(
            left.ops
                .iter()
                .all(|o| !matches!(o, Op::Put(Table::Audit, k, _) if k.tenant() == "gone"))
        );
        let only = JournalRow {
            time_micros: 6,
            ops: vec![Op::Remove(Table::Policy, Key::Tenant("gone".into()))],
        };
        assert!(without_tenant(only, "gone").is_none());
    }
}
