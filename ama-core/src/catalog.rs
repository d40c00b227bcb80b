//! The catalog: the archive's source of truth, one redb database
//! (`catalog.redb`). A message exists once its catalog record is committed;
//! blobs are written before and the index is brought up to date after, so a
//! crash at any point leaves either no trace or a complete message.
//!
//! Tables (format version [`FORMAT_VERSION`]):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | e.g. `format_version` (u32 LE) |
//! | `tenants` | tenant id | [`TenantRecord`] (tenant settings, wrapped tenant key) |
//! | `messages` | (tenant, message id) | [`MessageRecord`]: wrapped data key + sealed metadata |
//! | `dedup` | (tenant, keyed hash of raw bytes) | message id |
//! | `pending_index` | (tenant, message id) | (): committed but not yet in the index |
//! | `stats` | tenant id | [`TenantStats`] |
//! | `audit` | (tenant, sequence number) | sealed audit entry ([`crate::audit`]) |
//! | `audit_head` | tenant id | sealed head of the audit chain (next number, last hash) |
//! | `users` | (tenant, keyed hash of the user id) | sealed user record ([`crate::identity`]) |
//! | `credentials` | (tenant, SHA-256 of a session token or API key) | sealed credential record |
//! | `directory` | tenant id | sealed directory (LDAP) configuration |
//! | `policy`, `holds` | tenant id | sealed retention policy, sealed legal holds ([`crate::retention`]) |
//! | `retention` | (tenant, message id) | retain-until (Unix seconds) |
//! | `tombstones` | (tenant, message id) | sealed tombstone of a deleted message |
//! | `purge_pending` | (tenant, message id) | (): deleted, blob and index entry not yet purged |
//! | `ingest_log` | (tenant, sequence number) | sealed, hash-chained (message id, SHA-256) |
//! | `ingest_head` | tenant id | sealed head of the ingest log |
//! | `deletion_requests` | tenant id | sealed deletion requests awaiting a second auditor |
//! | `shreds` | tenant id | [`ShredRecord`]: a tenant being or having been destroyed ([`crate::shred`]) |
//! | `rotations` | tenant id | [`RotationRecord`]: a tenant key rotation under way ([`crate::rotation`]) |
//! | `dictionaries` | tenant id | sealed zstd dictionaries ([`crate::dictionary`]) |
//! | `journal` | sequence number | [`journal::JournalRow`]: one committed transaction's changes, once backups run |
//!
//! Format 2 added `journal` (and `meta`'s `journal_id`, `journal_next`,
//! `journal_last_micros`); a format-1 catalog is brought to 2 when opened.
//!
//! Keys never hold personal data: tenant ids are operator-chosen names,
//! message ids are opaque, dedup keys are HMACs under a per-tenant key.
//! Values that hold personal data (addresses, subjects, file names,
//! Message-IDs, the SHA-256 of the content) are sealed with the tenant's
//! catalog subkey, bound to their key. Every value starts with a version byte.

pub mod journal;

use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{CatalogError, Result};
use crate::message::MessageId;
use crate::tenant::Tenant;
use journal::{JournalRow, Key, Op, Table, Value};

/// Catalog format version written by this build.
pub const FORMAT_VERSION: u32 = 2;
const RECORD_VERSION: u8 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const MESSAGES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("messages");
const DEDUP: TableDefinition<(&str, &[u8]), u128> = TableDefinition::new("dedup");
const PENDING_INDEX: TableDefinition<(&str, u128), ()> = TableDefinition::new("pending_index");
const STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("stats");
const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
/// Tables whose values are opaque sealed bytes, keyed by tenant (and a hash).
const AUDIT_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_head");
const DIRECTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("directory");
const USERS: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("users");
const CREDENTIALS: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("credentials");
const POLICY: TableDefinition<&str, &[u8]> = TableDefinition::new("policy");
const HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("holds");
const INGEST_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("ingest_head");
const DELETION_REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deletion_requests");
const RETENTION: TableDefinition<(&str, u128), i64> = TableDefinition::new("retention");
const TOMBSTONES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("tombstones");
const PURGE_PENDING: TableDefinition<(&str, u128), ()> = TableDefinition::new("purge_pending");
const INGEST_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("ingest_log");
const SHREDS: TableDefinition<&str, &[u8]> = TableDefinition::new("shreds");
const ROTATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("rotations");
const DICTIONARIES: TableDefinition<&str, &[u8]> = TableDefinition::new("dictionaries");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// `meta` entries of the journal: its random id (present = recording),
/// the next sequence number (u64 LE) and the last row's commit time (i64 LE).
const JOURNAL_ID: &str = "journal_id";
const JOURNAL_NEXT: &str = "journal_next";
const JOURNAL_LAST: &str = "journal_last_micros";
/// Every table this build creates (keep in step with [`Catalog::open`]).
const TABLES: [&str; 23] = [
    "meta",
    "tenants",
    "messages",
    "dedup",
    "pending_index",
    "stats",
    "audit",
    "audit_head",
    "directory",
    "users",
    "credentials",
    "policy",
    "holds",
    "ingest_head",
    "deletion_requests",
    "retention",
    "tombstones",
    "purge_pending",
    "ingest_log",
    "shreds",
    "rotations",
    "dictionaries",
    "journal",
];
/// redb's page cache. Its default (1 GiB) made an archive's memory grow
/// with its catalog: 1.51 GiB peak at a million messages (docs/PERFORMANCE.md,
/// "Scale"). Reads that miss it come from the OS page cache; a search reads
/// one record per hit shown.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A per-tenant table of sealed values keyed by a hash (users, credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashedTable {
    /// Users, keyed by the keyed hash of the user id.
    Users,
    /// Session tokens and API keys, keyed by the SHA-256 of the token.
    Credentials,
}

impl HashedTable {
    fn journal(self) -> Table {
        match self {
            HashedTable::Users => Table::Users,
            HashedTable::Credentials => Table::Credentials,
        }
    }

    fn def(self) -> TableDefinition<'static, (&'static str, &'static [u8]), &'static [u8]> {
        match self {
            HashedTable::Users => USERS,
            HashedTable::Credentials => CREDENTIALS,
        }
    }
}

/// A per-tenant single-value table of sealed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantTable {
    /// The head of the tenant's audit chain.
    AuditHead,
    /// The tenant's directory (LDAP) configuration.
    Directory,
    /// The tenant's retention policy.
    Policy,
    /// The tenant's legal holds.
    Holds,
    /// The head of the tenant's ingest log.
    IngestHead,
    /// Deletion requests waiting for approval.
    DeletionRequests,
    /// The tenant's zstd dictionaries ([`crate::dictionary`]).
    Dictionaries,
}

impl TenantTable {
    fn journal(self) -> Table {
        match self {
            TenantTable::AuditHead => Table::AuditHead,
            TenantTable::Directory => Table::Directory,
            TenantTable::Policy => Table::Policy,
            TenantTable::Holds => Table::Holds,
            TenantTable::IngestHead => Table::IngestHead,
            TenantTable::DeletionRequests => Table::DeletionRequests,
            TenantTable::Dictionaries => Table::Dictionaries,
        }
    }

    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            TenantTable::AuditHead => AUDIT_HEAD,
            TenantTable::Directory => DIRECTORY,
            TenantTable::Policy => POLICY,
            TenantTable::Holds => HOLDS,
            TenantTable::IngestHead => INGEST_HEAD,
            TenantTable::DeletionRequests => DELETION_REQUESTS,
            TenantTable::Dictionaries => DICTIONARIES,
        }
    }
}

/// A per-tenant table of sealed values keyed by a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqTable {
    /// The audit log.
    Audit,
    /// The ingest log.
    IngestLog,
}

impl SeqTable {
    fn journal(self) -> Table {
        match self {
            SeqTable::Audit => Table::Audit,
            SeqTable::IngestLog => Table::IngestLog,
        }
    }

    fn def(self) -> TableDefinition<'static, (&'static str, u64), &'static [u8]> {
        match self {
            SeqTable::Audit => AUDIT,
            SeqTable::IngestLog => INGEST_LOG,
        }
    }
}

/// A tenant as stored: its settings plus what only the engine needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Public settings.
    pub tenant: Tenant,
    /// Random id used for the tenant's blob prefix and index directory.
    pub storage_id: String,
    /// The tenant key, wrapped by the key service.
    pub wrapped_key: Vec<u8>,
}

/// A message as stored in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The per-message data key, wrapped by the tenant's message-key subkey.
    pub wrapped_key: Vec<u8>,
    /// Size of the encrypted blob.
    pub stored_size: u64,
    /// Sealed `SealedMessage` (in `archive`).
    pub sealed: Vec<u8>,
}

/// How far the destruction of a tenant got ([`crate::shred`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShredPhase {
    /// Recorded, the key not yet destroyed (the tenant may still be intact).
    Intent,
    /// The key service destroyed the tenant key; data may be left to purge.
    KeyDestroyed,
    /// Every trace of the tenant's data is gone.
    Done,
}

/// A tenant being destroyed or destroyed: kept for good, so the
/// destruction is on record and its id is not silently reused. Holds no
/// personal data: the operator-chosen id, the random storage id, times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShredRecord {
    /// The tenant id.
    pub tenant: String,
    /// Its storage id (blob prefix and index directory), to purge leftovers.
    pub storage_id: String,
    /// Who asked (frontend and user, if any).
    pub by: String,
    /// When it was asked (Unix seconds).
    pub requested_at: i64,
    /// When the data was gone (Unix seconds).
    pub finished_at: Option<i64>,
    /// How far it got.
    pub phase: ShredPhase,
}

/// A tenant key rotation under way ([`crate::rotation`]): both wrapped keys,
/// so a crash at any point can be resumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationRecord {
    /// The wrapped key the tenant had when the rotation started.
    pub old_wrapped: Vec<u8>,
    /// The wrapped new tenant key.
    pub new_wrapped: Vec<u8>,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// Whether the catalog is re-sealed (then only the index swap is left).
    pub catalog_done: bool,
}

/// Per-tenant counters, kept in the same transactions as the messages.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantStats {
    /// Distinct messages stored.
    pub messages: u64,
    /// Sum of their raw sizes.
    pub raw_bytes: u64,
    /// Sum of their encrypted blob sizes.
    pub stored_bytes: u64,
    /// Deliveries that were duplicates of a stored message.
    pub duplicates: u64,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_VERSION];
    out.extend(postcard::to_stdvec(v).map_err(|e| CatalogError::Corrupt {
        what: "record".into(),
        reason: e.to_string(),
    })?);
    Ok(out)
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| {
            CatalogError::Corrupt {
                what: what.into(),
                reason: e.to_string(),
            }
            .into()
        }),
        Some((v, _)) => Err(CatalogError::Corrupt {
            what: what.into(),
            reason: format!("unknown record version {v}"),
        }
        .into()),
        None => Err(CatalogError::Corrupt {
            what: what.into(),
            reason: "empty record".into(),
        }
        .into()),
    }
}

/// Encodes a value for sealing (same framing as catalog records).
pub(crate) fn encode_value<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    encode(v)
}

/// Decodes what [`encode_value`] produced.
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    decode(bytes, what)
}

/// The catalog database.
pub struct Catalog {
    db: Database,
    /// Journal ops of lazy commits, written with the next durable commit
    /// ([`journal`]): a lazy commit lost in a crash loses its ops too.
    lazy: Arc<Mutex<Vec<Op>>>,
}

/// Journal rows as stored: (sequence number, [`journal::JournalRow`] bytes).
pub type StoredRows = Vec<(u64, Vec<u8>)>;

/// Where the catalog's journal stands ([`Catalog::journal_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalState {
    /// Random id of this journal (hex), None while nothing is recorded.
    /// A restored archive starts a new one: its history forks there.
    pub id: Option<String>,
    /// The last sequence number written (0: none yet).
    pub last_seq: u64,
    /// Commit time of that row (Unix microseconds).
    pub last_micros: Option<i64>,
    /// Rows held (not yet shipped by a backup and pruned).
    pub rows: u64,
    /// Their size in bytes.
    pub bytes: u64,
}

fn now_micros() -> i64 {
    let t = time::OffsetDateTime::now_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn meta_u64(v: Option<redb::AccessGuard<'_, &'static [u8]>>) -> Option<u64> {
    v.and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map(u64::from_le_bytes)
}

fn meta_i64(v: Option<redb::AccessGuard<'_, &'static [u8]>>) -> Option<i64> {
    v.and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map(i64::from_le_bytes)
}

fn journal_state(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    rows: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<JournalState> {
    let id = meta
        .get(JOURNAL_ID)?
        .map(|v| String::from_utf8_lossy(v.value()).into_owned());
    let next = meta_u64(meta.get(JOURNAL_NEXT)?).unwrap_or(1);
    let mut bytes = 0;
    let mut count = 0;
    for e in rows.iter()? {
        bytes += e?.1.value().len() as u64;
        count += 1;
    }
    Ok(JournalState {
        id,
        last_seq: next.saturating_sub(1),
        last_micros: meta_i64(meta.get(JOURNAL_LAST)?),
        rows: count,
        bytes,
    })
}

impl Catalog {
    /// Opens or creates the catalog at `path`, checking its format version.
    pub fn open(path: &Path) -> Result<Self> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        if Self::up_to_date(&db)? {
            // Nothing to create: no write transaction, so opening an
            // archive to read costs no fsync.
            return Ok(Catalog::from_db(db));
        }
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta
                .get("format_version")?
                .map(|v| {
                    let b = v.value();
                    let mut a = [0u8; 4];
                    if b.len() == 4 {
                        a.copy_from_slice(b);
                    }
                    u32::from_le_bytes(a)
                })
                .unwrap_or(0);
            if found < FORMAT_VERSION {
                // New, or format 1: what 2 adds (the journal) is created below.
                meta.insert("format_version", FORMAT_VERSION.to_le_bytes().as_slice())?;
            } else if found > FORMAT_VERSION {
                return Err(CatalogError::Version {
                    found,
                    supported: FORMAT_VERSION,
                }
                .into());
            }
            txn.open_table(TENANTS)?;
            txn.open_table(MESSAGES)?;
            txn.open_table(DEDUP)?;
            txn.open_table(PENDING_INDEX)?;
            txn.open_table(STATS)?;
            txn.open_table(AUDIT)?;
            txn.open_table(AUDIT_HEAD)?;
            txn.open_table(DIRECTORY)?;
            txn.open_table(USERS)?;
            txn.open_table(CREDENTIALS)?;
            txn.open_table(POLICY)?;
            txn.open_table(HOLDS)?;
            txn.open_table(INGEST_HEAD)?;
            txn.open_table(DELETION_REQUESTS)?;
            txn.open_table(RETENTION)?;
            txn.open_table(TOMBSTONES)?;
            txn.open_table(PURGE_PENDING)?;
            txn.open_table(INGEST_LOG)?;
            txn.open_table(SHREDS)?;
            txn.open_table(ROTATIONS)?;
            txn.open_table(DICTIONARIES)?;
            txn.open_table(JOURNAL)?;
        }
        txn.commit()?;
        Ok(Catalog::from_db(db))
    }

    fn from_db(db: Database) -> Self {
        Catalog {
            db,
            lazy: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Whether the file already has this build's format version and every
    /// table (then [`Catalog::open`] needs no write).
    fn up_to_date(db: &Database) -> Result<bool> {
        use redb::TableHandle;
        let r = db.begin_read()?;
        let version = match r.open_table(META) {
            Ok(meta) => meta.get("format_version")?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if version.as_deref() != Some(FORMAT_VERSION.to_le_bytes().as_slice()) {
            return Ok(false);
        }
        let present: Vec<String> = r.list_tables()?.map(|t| t.name().to_string()).collect();
        Ok(TABLES.iter().all(|t| present.iter().any(|p| p == t)))
    }

    /// A consistent read-only snapshot.
    pub fn read(&self) -> Result<ReadTxn> {
        Ok(ReadTxn {
            txn: self.db.begin_read()?,
        })
    }

    /// The single write transaction (blocks while another is open). Nothing
    /// is visible or durable until [`WriteTxn::commit`].
    pub fn write(&self) -> Result<WriteTxn> {
        Ok(WriteTxn {
            txn: self.db.begin_write()?,
            ops: Vec::new(),
            lazy: Arc::clone(&self.lazy),
        })
    }

    /// Starts recording the journal (idempotent): from the next commit on,
    /// every durable commit writes a row. Called by the first backup.
    pub fn enable_journal(&self) -> Result<JournalState> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(JOURNAL_ID)?.is_none() {
                let mut id = [0u8; 16];
                crate::crypto::random_fill(&mut id)?;
                meta.insert(JOURNAL_ID, crate::crypto::hex(&id).as_bytes())?;
            }
            if meta.get(JOURNAL_NEXT)?.is_none() {
                meta.insert(JOURNAL_NEXT, 1u64.to_le_bytes().as_slice())?;
            }
        }
        txn.commit()?;
        self.journal_state()
    }

    /// The journal's id, last row and unshipped rows.
    pub fn journal_state(&self) -> Result<JournalState> {
        let r = self.db.begin_read()?;
        journal_state(&r.open_table(META)?, &r.open_table(JOURNAL)?)
    }

    /// Drops rows up to `seq` (shipped to a backup), durably. Not itself
    /// recorded.
    pub fn prune_journal(&self, seq: u64) -> Result<u64> {
        let txn = self.db.begin_write()?;
        let mut n = 0;
        {
            let mut t = txn.open_table(JOURNAL)?;
            t.retain_in(0..=seq, |_, _| {
                n += 1;
                false
            })?;
        }
        txn.commit()?;
        Ok(n)
    }

    /// Applies recorded rows (a restore bringing a snapshot forward), in
    /// one durable transaction, without recording them again; then starts
    /// a new journal id (the restored archive's history forks here) whose
    /// numbers continue after the last row applied.
    pub fn replay(&self, rows: &[(u64, JournalRow)]) -> Result<()> {
        let txn = self.db.begin_write()?;
        for (_, row) in rows {
            for op in &row.ops {
                journal::apply(&txn, op)?;
            }
        }
        {
            let mut meta = txn.open_table(META)?;
            if let Some((seq, row)) = rows.last() {
                meta.insert(JOURNAL_NEXT, (seq + 1).to_le_bytes().as_slice())?;
                meta.insert(JOURNAL_LAST, row.time_micros.to_le_bytes().as_slice())?;
            }
            if meta.get(JOURNAL_ID)?.is_some() {
                let mut id = [0u8; 16];
                crate::crypto::random_fill(&mut id)?;
                meta.insert(JOURNAL_ID, crate::crypto::hex(&id).as_bytes())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Writes a consistent copy of the whole catalog (one read snapshot,
    /// every table) to a new redb file at `dest`, durably. Used by backups:
    /// copying the live file could catch a commit half-written. Refuses to
    /// copy a catalog holding a table this build does not know (a snapshot
    /// without it would restore silently incomplete).
    ///
    /// The journal's rows are not copied (a backup ships them as segments):
    /// the copy's journal is empty, its `meta` says where it stands. Returns
    /// that position and the rows, read in the same snapshot.
    pub fn snapshot_to(&self, dest: &Path) -> Result<(JournalState, StoredRows)> {
        use redb::TableHandle;
        let src = self.db.begin_read()?;
        let known = [
            META.name(),
            TENANTS.name(),
            MESSAGES.name(),
            DEDUP.name(),
            PENDING_INDEX.name(),
            STATS.name(),
            AUDIT.name(),
            AUDIT_HEAD.name(),
            DIRECTORY.name(),
            USERS.name(),
            CREDENTIALS.name(),
            POLICY.name(),
            HOLDS.name(),
            INGEST_HEAD.name(),
            DELETION_REQUESTS.name(),
            RETENTION.name(),
            TOMBSTONES.name(),
            PURGE_PENDING.name(),
            INGEST_LOG.name(),
            SHREDS.name(),
            ROTATIONS.name(),
            DICTIONARIES.name(),
            JOURNAL.name(),
        ];
        for t in src.list_tables()? {
            if !known.contains(&t.name()) {
                return Err(CatalogError::Corrupt {
                    what: format!("table {}", t.name()),
                    reason: "unknown to this build; refusing an incomplete snapshot".into(),
                }
                .into());
            }
        }
        let db = Database::create(dest)?;
        let dst = db.begin_write()?;
        copy_table(&src, &dst, META)?;
        copy_table(&src, &dst, TENANTS)?;
        copy_table(&src, &dst, MESSAGES)?;
        copy_table(&src, &dst, DEDUP)?;
        copy_table(&src, &dst, PENDING_INDEX)?;
        copy_table(&src, &dst, STATS)?;
        copy_table(&src, &dst, AUDIT)?;
        copy_table(&src, &dst, AUDIT_HEAD)?;
        copy_table(&src, &dst, DIRECTORY)?;
        copy_table(&src, &dst, USERS)?;
        copy_table(&src, &dst, CREDENTIALS)?;
        copy_table(&src, &dst, POLICY)?;
        copy_table(&src, &dst, HOLDS)?;
        copy_table(&src, &dst, INGEST_HEAD)?;
        copy_table(&src, &dst, DELETION_REQUESTS)?;
        copy_table(&src, &dst, RETENTION)?;
        copy_table(&src, &dst, TOMBSTONES)?;
        copy_table(&src, &dst, PURGE_PENDING)?;
        copy_table(&src, &dst, INGEST_LOG)?;
        copy_table(&src, &dst, SHREDS)?;
        copy_table(&src, &dst, ROTATIONS)?;
        copy_table(&src, &dst, DICTIONARIES)?;
        dst.open_table(JOURNAL)?;
        dst.commit()?;
        let (state, rows) = match src.open_table(JOURNAL) {
            Ok(t) => {
                let state = journal_state(&src.open_table(META)?, &t)?;
                let mut rows = Vec::new();
                for e in t.iter()? {
                    let (k, v) = e?;
                    rows.push((k.value(), v.value().to_vec()));
                }
                (state, rows)
            }
            Err(redb::TableError::TableDoesNotExist(_)) => (
                JournalState {
                    id: None,
                    last_seq: 0,
                    last_micros: None,
                    rows: 0,
                    bytes: 0,
                },
                Vec::new(),
            ),
            Err(e) => return Err(e.into()),
        };
        Ok((state, rows))
    }
}

impl Drop for Catalog {
    /// Lazy commits' ops still waiting for a durable commit: write them
    /// now, as redb persists those commits when the database closes.
    fn drop(&mut self) {
        let waiting = self.lazy.lock().map(|l| !l.is_empty()).unwrap_or(false);
        if waiting && let Ok(txn) = self.write() {
            let _ = txn.commit();
        }
    }
}

impl Catalog {
    /// SHA-256 over every row of every table but the derived ones (pending
    /// index marks, the journal and its bookkeeping in `meta`): equal for
    /// two catalogs holding the same archive state. For tests of restores.
    #[doc(hidden)]
    pub fn content_digest(&self) -> Result<[u8; 32]> {
        let r = self.db.begin_read()?;
        let mut out = Vec::new();
        let skip_meta = |k: &[u8]| k.starts_with(b"journal_");
        digest_table(&r, META, &mut out, skip_meta)?;
        let all = |_: &[u8]| false;
        digest_table(&r, TENANTS, &mut out, all)?;
        digest_table(&r, MESSAGES, &mut out, all)?;
        digest_table(&r, DEDUP, &mut out, all)?;
        digest_table(&r, STATS, &mut out, all)?;
        digest_table(&r, AUDIT, &mut out, all)?;
        digest_table(&r, AUDIT_HEAD, &mut out, all)?;
        digest_table(&r, DIRECTORY, &mut out, all)?;
        digest_table(&r, USERS, &mut out, all)?;
        digest_table(&r, CREDENTIALS, &mut out, all)?;
        digest_table(&r, POLICY, &mut out, all)?;
        digest_table(&r, HOLDS, &mut out, all)?;
        digest_table(&r, INGEST_HEAD, &mut out, all)?;
        digest_table(&r, DELETION_REQUESTS, &mut out, all)?;
        digest_table(&r, RETENTION, &mut out, all)?;
        digest_table(&r, TOMBSTONES, &mut out, all)?;
        digest_table(&r, PURGE_PENDING, &mut out, all)?;
        digest_table(&r, INGEST_LOG, &mut out, all)?;
        digest_table(&r, SHREDS, &mut out, all)?;
        digest_table(&r, ROTATIONS, &mut out, all)?;
        digest_table(&r, DICTIONARIES, &mut out, all)?;
        Ok(crate::crypto::sha256(&out))
    }
}

/// Appends a table's name and rows (length-prefixed key and value bytes)
/// to `out`, leaving out keys `skip` names.
fn digest_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
    out: &mut Vec<u8>,
    skip: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    use redb::TableHandle;
    let t = txn.open_table(def)?;
    let name = def.name().as_bytes();
    out.extend((name.len() as u64).to_le_bytes());
    out.extend(name);
    for e in t.iter()? {
        let (k, v) = e?;
        let kv = k.value();
        let kb = K::as_bytes(&kv);
        if skip(kb.as_ref()) {
            continue;
        }
        let vv = v.value();
        let vb = V::as_bytes(&vv);
        for part in [kb.as_ref(), vb.as_ref()] {
            out.extend((part.len() as u64).to_le_bytes());
            out.extend(part);
        }
    }
    Ok(())
}

/// Copies one table of a read snapshot into a write transaction (a table
/// the source never created is skipped).
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &redb::ReadTransaction,
    dst: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<()> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut to = dst.open_table(def)?;
    for item in from.iter()? {
        let (k, v) = item?;
        to.insert(k.value(), v.value())?;
    }
    Ok(())
}

/// A read snapshot of the catalog.
pub struct ReadTxn {
    txn: redb::ReadTransaction,
}

impl ReadTxn {
    /// A tenant record.
    pub fn tenant(&self, id: &str) -> Result<Option<TenantRecord>> {
        let t = self.txn.open_table(TENANTS)?;
        t.get(id)?
            .map(|v| decode(v.value(), &format!("tenant {id}")))
            .transpose()
    }

    /// Every tenant record, by id.
    pub fn tenants(&self) -> Result<Vec<TenantRecord>> {
        let t = self.txn.open_table(TENANTS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push(decode(v.value(), &format!("tenant {}", k.value()))?);
        }
        Ok(out)
    }

    /// The destruction record of a tenant, if it is being or was destroyed.
    pub fn shred(&self, id: &str) -> Result<Option<ShredRecord>> {
        let t = self.txn.open_table(SHREDS)?;
        t.get(id)?
            .map(|v| decode(v.value(), &format!("shred record {id}")))
            .transpose()
    }

    /// Every destruction record, by tenant id.
    pub fn shreds(&self) -> Result<Vec<ShredRecord>> {
        let t = self.txn.open_table(SHREDS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push(decode(v.value(), &format!("shred record {}", k.value()))?);
        }
        Ok(out)
    }

    /// The key rotation under way for a tenant, if any.
    pub fn rotation(&self, id: &str) -> Result<Option<RotationRecord>> {
        let t = self.txn.open_table(ROTATIONS)?;
        t.get(id)?
            .map(|v| decode(v.value(), &format!("rotation record {id}")))
            .transpose()
    }

    /// A message record.
    pub fn message(&self, tenant: &str, id: MessageId) -> Result<Option<MessageRecord>> {
        let t = self.txn.open_table(MESSAGES)?;
        t.get((tenant, id.as_u128()))?
            .map(|v| decode(v.value(), &format!("message {id}")))
            .transpose()
    }

    /// The id of the message with this dedup hash, if any.
    pub fn dedup(&self, tenant: &str, hash: &[u8; 32]) -> Result<Option<MessageId>> {
        let t = self.txn.open_table(DEDUP)?;
        Ok(t.get((tenant, hash.as_slice()))?
            .map(|v| MessageId::from_u128(v.value())))
    }

    /// Every message id of a tenant, in id order.
    pub fn message_ids(&self, tenant: &str) -> Result<Vec<MessageId>> {
        let t = self.txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for e in t.range((tenant, 0u128)..=(tenant, u128::MAX))? {
            let (k, _) = e?;
            out.push(MessageId::from_u128(k.value().1));
        }
        Ok(out)
    }

    /// The first (oldest) `n` message ids of a tenant.
    pub fn first_message_ids(&self, tenant: &str, n: usize) -> Result<Vec<MessageId>> {
        let t = self.txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for e in t.range((tenant, 0u128)..=(tenant, u128::MAX))?.take(n) {
            let (k, _) = e?;
            out.push(MessageId::from_u128(k.value().1));
        }
        Ok(out)
    }

    /// Messages of a tenant committed but not yet indexed.
    pub fn pending_index(&self, tenant: &str) -> Result<Vec<MessageId>> {
        let t = self.txn.open_table(PENDING_INDEX)?;
        let mut out = Vec::new();
        for e in t.range((tenant, 0u128)..=(tenant, u128::MAX))? {
            let (k, _) = e?;
            out.push(MessageId::from_u128(k.value().1));
        }
        Ok(out)
    }

    /// Number of pending index entries over all tenants.
    pub fn pending_index_len(&self) -> Result<u64> {
        Ok(self.txn.open_table(PENDING_INDEX)?.len()?)
    }

    /// Counters of a tenant.
    pub fn stats(&self, tenant: &str) -> Result<TenantStats> {
        let t = self.txn.open_table(STATS)?;
        Ok(t.get(tenant)?
            .map(|v| decode(v.value(), &format!("stats {tenant}")))
            .transpose()?
            .unwrap_or_default())
    }

    /// A sealed value of a per-tenant hashed table.
    pub fn hashed(&self, table: HashedTable, tenant: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(table.def())?;
        Ok(t.get((tenant, key))?.map(|v| v.value().to_vec()))
    }

    /// Every (key, sealed value) of a tenant in a hashed table.
    pub fn hashed_all(&self, table: HashedTable, tenant: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.txn.open_table(table.def())?;
        hashed_range(&t, tenant)
    }

    /// A tenant's single sealed value.
    pub fn tenant_value(&self, table: TenantTable, tenant: &str) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(table.def())?;
        Ok(t.get(tenant)?.map(|v| v.value().to_vec()))
    }

    /// Sealed audit entries of a tenant from sequence number `from`, in order,
    /// at most `limit`.
    pub fn audit(&self, tenant: &str, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let t = self.txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for e in t.range((tenant, from)..=(tenant, u64::MAX))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = e?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }
}

impl ReadTxn {
    /// Every (message, retain-until) of a tenant.
    pub fn retention_all(&self, tenant: &str) -> Result<Vec<(MessageId, i64)>> {
        let t = self.txn.open_table(RETENTION)?;
        let mut out = Vec::new();
        for e in t.range((tenant, 0u128)..=(tenant, u128::MAX))? {
            let (k, v) = e?;
            out.push((MessageId::from_u128(k.value().1), v.value()));
        }
        Ok(out)
    }

    /// A message's retain-until.
    pub fn retention(&self, tenant: &str, id: MessageId) -> Result<Option<i64>> {
        let t = self.txn.open_table(RETENTION)?;
        Ok(t.get((tenant, id.as_u128()))?.map(|v| v.value()))
    }

    /// A sealed tombstone.
    pub fn tombstone(&self, tenant: &str, id: MessageId) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(TOMBSTONES)?;
        Ok(t.get((tenant, id.as_u128()))?.map(|v| v.value().to_vec()))
    }

    /// Every sealed tombstone of a tenant.
    pub fn tombstones(&self, tenant: &str) -> Result<Vec<(MessageId, Vec<u8>)>> {
        let t = self.txn.open_table(TOMBSTONES)?;
        let mut out = Vec::new();
        for e in t.range((tenant, 0u128)..=(tenant, u128::MAX))? {
            let (k, v) = e?;
            out.push((MessageId::from_u128(k.value().1), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Messages deleted whose blob and index entry are not purged yet.
    pub fn purge_pending(&self, tenant: &str) -> Result<Vec<MessageId>> {
        let t = self.txn.open_table(PURGE_PENDING)?;
        let mut out = Vec::new();
        for e in t.range((tenant, 0u128)..=(tenant, u128::MAX))? {
            out.push(MessageId::from_u128(e?.0.value().1));
        }
        Ok(out)
    }

    /// Sealed ingest-log entries of a tenant from `from`, at most `limit`.
    pub fn ingest_log(&self, tenant: &str, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let t = self.txn.open_table(INGEST_LOG)?;
        let mut out = Vec::new();
        for e in t.range((tenant, from)..=(tenant, u64::MAX))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = e?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }
}

fn hashed_range(
    t: &impl ReadableTable<(&'static str, &'static [u8]), &'static [u8]>,
    tenant: &str,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let lo: (&str, &[u8]) = (tenant, &[]);
    for e in t.range(lo..)? {
        let (k, v) = e?;
        let (kt, kh) = k.value();
        if kt != tenant {
            break;
        }
        out.push((kh.to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

/// The write transaction. Every change goes through [`WriteTxn::exec`],
/// which applies it and keeps it for the journal ([`journal`]).
pub struct WriteTxn {
    txn: redb::WriteTransaction,
    /// This transaction's changes, in order.
    ops: Vec<Op>,
    /// Ops of earlier lazy commits, shared with the [`Catalog`].
    lazy: Arc<Mutex<Vec<Op>>>,
}

impl WriteTxn {
    /// Applies one change and records it.
    fn exec(&mut self, op: Op) -> Result<()> {
        journal::apply(&self.txn, &op)?;
        self.ops.push(op);
        Ok(())
    }

    /// A tenant record.
    pub fn tenant(&self, id: &str) -> Result<Option<TenantRecord>> {
        let t = self.txn.open_table(TENANTS)?;
        let v = t.get(id)?;
        v.map(|v| decode(v.value(), &format!("tenant {id}")))
            .transpose()
    }

    /// Inserts or replaces a tenant record.
    pub fn put_tenant(&mut self, rec: &TenantRecord) -> Result<()> {
        self.exec(Op::Put(
            Table::Tenants,
            Key::Tenant(rec.tenant.id.as_str().to_string()),
            Value::Bytes(encode(rec)?),
        ))
    }

    /// The destruction record of a tenant.
    pub fn shred(&self, id: &str) -> Result<Option<ShredRecord>> {
        let t = self.txn.open_table(SHREDS)?;
        let v = t.get(id)?;
        v.map(|v| decode(v.value(), &format!("shred record {id}")))
            .transpose()
    }

    /// Inserts or replaces a destruction record.
    pub fn put_shred(&mut self, rec: &ShredRecord) -> Result<()> {
        self.exec(Op::Put(
            Table::Shreds,
            Key::Tenant(rec.tenant.clone()),
            Value::Bytes(encode(rec)?),
        ))
    }

    /// The key rotation under way for a tenant.
    pub fn rotation(&self, id: &str) -> Result<Option<RotationRecord>> {
        let t = self.txn.open_table(ROTATIONS)?;
        let v = t.get(id)?;
        v.map(|v| decode(v.value(), &format!("rotation record {id}")))
            .transpose()
    }

    /// Records (or updates) a key rotation under way.
    pub fn put_rotation(&mut self, id: &str, rec: &RotationRecord) -> Result<()> {
        self.exec(Op::Put(
            Table::Rotations,
            Key::Tenant(id.to_string()),
            Value::Bytes(encode(rec)?),
        ))
    }

    /// Drops a finished key rotation.
    pub fn remove_rotation(&mut self, id: &str) -> Result<()> {
        self.exec(Op::Remove(Table::Rotations, Key::Tenant(id.to_string())))
    }

    /// Up to `limit` message records of a tenant with ids from `from` on,
    /// in id order (a key rotation walks a tenant page by page).
    pub fn messages_page(
        &self,
        tenant: &str,
        from: u128,
        limit: usize,
    ) -> Result<Vec<(MessageId, MessageRecord)>> {
        let t = self.txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for e in t.range((tenant, from)..=(tenant, u128::MAX))?.take(limit) {
            let (k, v) = e?;
            let id = MessageId::from_u128(k.value().1);
            out.push((id, decode(v.value(), &format!("message {id}"))?));
        }
        Ok(out)
    }

    /// Up to `limit` sealed values of a tenant in a sequence-keyed table,
    /// with sequence numbers from `from` on, in order.
    pub fn seq_page(
        &self,
        table: SeqTable,
        tenant: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let t = self.txn.open_table(table.def())?;
        let mut out = Vec::new();
        for e in t.range((tenant, from)..=(tenant, u64::MAX))?.take(limit) {
            let (k, v) = e?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }

    /// Replaces a sealed value in a sequence-keyed table.
    pub fn put_seq(
        &mut self,
        table: SeqTable,
        tenant: &str,
        seq: u64,
        sealed: &[u8],
    ) -> Result<()> {
        self.exec(Op::Put(
            table.journal(),
            Key::Seq(tenant.to_string(), seq),
            Value::Bytes(sealed.to_vec()),
        ))
    }

    /// Up to `limit` sealed tombstones of a tenant with ids from `from` on.
    pub fn tombstones_page(
        &self,
        tenant: &str,
        from: u128,
        limit: usize,
    ) -> Result<Vec<(MessageId, Vec<u8>)>> {
        let t = self.txn.open_table(TOMBSTONES)?;
        let mut out = Vec::new();
        for e in t.range((tenant, from)..=(tenant, u128::MAX))?.take(limit) {
            let (k, v) = e?;
            out.push((MessageId::from_u128(k.value().1), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Replaces a sealed tombstone.
    pub fn put_tombstone(&mut self, tenant: &str, id: MessageId, sealed: &[u8]) -> Result<()> {
        self.exec(Op::Put(
            Table::Tombstones,
            Key::Id(tenant.to_string(), id.as_u128()),
            Value::Bytes(sealed.to_vec()),
        ))
    }

    /// Every dedup entry of a tenant: (keyed hash, message id).
    pub fn dedup_all(&self, tenant: &str) -> Result<Vec<(Vec<u8>, MessageId)>> {
        let t = self.txn.open_table(DEDUP)?;
        let mut out = Vec::new();
        let lo: (&str, &[u8]) = (tenant, &[]);
        for e in t.range(lo..)? {
            let (k, v) = e?;
            let (kt, kh) = k.value();
            if kt != tenant {
                break;
            }
            out.push((kh.to_vec(), MessageId::from_u128(v.value())));
        }
        Ok(out)
    }

    /// Removes a dedup entry.
    pub fn remove_dedup(&mut self, tenant: &str, hash: &[u8]) -> Result<()> {
        self.exec(Op::Remove(
            Table::Dedup,
            Key::Hash(tenant.to_string(), hash.to_vec()),
        ))
    }

    /// Removes every row of `tenant` from every per-tenant table, the
    /// tenant record included (not its destruction record). Its changes
    /// still in the journal (not yet shipped to a backup) go too.
    pub fn purge_tenant(&mut self, tenant: &str) -> Result<()> {
        self.exec(Op::PurgeTenant(tenant.to_string()))?;
        journal::retain_not_tenant(&mut self.ops, tenant);
        if let Ok(mut lazy) = self.lazy.lock() {
            journal::retain_not_tenant(&mut lazy, tenant);
        }
        let mut t = self.txn.open_table(JOURNAL)?;
        let mut rows = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            rows.push((k.value(), JournalRow::from_bytes(v.value())?));
        }
        for (seq, row) in rows {
            if !row.ops.iter().any(|op| op.tenant() == tenant) {
                continue;
            }
            match journal::without_tenant(row, tenant) {
                Some(left) => {
                    t.insert(seq, left.to_bytes()?.as_slice())?;
                }
                None => {
                    t.remove(seq)?;
                }
            }
        }
        Ok(())
    }

    /// A message record.
    pub fn message(&self, tenant: &str, id: MessageId) -> Result<Option<MessageRecord>> {
        let t = self.txn.open_table(MESSAGES)?;
        let v = t.get((tenant, id.as_u128()))?;
        v.map(|v| decode(v.value(), &format!("message {id}")))
            .transpose()
    }

    /// Inserts or replaces a message record and marks it for (re)indexing.
    pub fn put_message(&mut self, tenant: &str, id: MessageId, rec: &MessageRecord) -> Result<()> {
        self.exec(Op::Put(
            Table::Messages,
            Key::Id(tenant.to_string(), id.as_u128()),
            Value::Bytes(encode(rec)?),
        ))?;
        let mut p = self.txn.open_table(PENDING_INDEX)?;
        p.insert((tenant, id.as_u128()), ())?;
        Ok(())
    }

    /// The id of the message with this dedup hash, if any.
    pub fn dedup(&self, tenant: &str, hash: &[u8; 32]) -> Result<Option<MessageId>> {
        let t = self.txn.open_table(DEDUP)?;
        let v = t.get((tenant, hash.as_slice()))?;
        Ok(v.map(|v| MessageId::from_u128(v.value())))
    }

    /// Records the dedup hash of a new message.
    pub fn put_dedup(&mut self, tenant: &str, hash: &[u8; 32], id: MessageId) -> Result<()> {
        self.exec(Op::Put(
            Table::Dedup,
            Key::Hash(tenant.to_string(), hash.to_vec()),
            Value::Id(id.as_u128()),
        ))
    }

    /// Clears pending-index marks once the index has committed them.
    pub fn clear_pending(&mut self, tenant: &str, ids: &[MessageId]) -> Result<()> {
        let mut p = self.txn.open_table(PENDING_INDEX)?;
        for id in ids {
            p.remove((tenant, id.as_u128()))?;
        }
        Ok(())
    }

    /// Marks every message of a tenant for re-indexing (after the index was dropped).
    pub fn mark_all_pending(&mut self, tenant: &str) -> Result<u64> {
        let ids: Vec<u128> = {
            let t = self.txn.open_table(MESSAGES)?;
            let mut ids = Vec::new();
            for e in t.range((tenant, 0u128)..=(tenant, u128::MAX))? {
                ids.push(e?.0.value().1);
            }
            ids
        };
        let mut p = self.txn.open_table(PENDING_INDEX)?;
        for id in &ids {
            p.insert((tenant, *id), ())?;
        }
        Ok(ids.len() as u64)
    }

    /// A tenant's counters (zero if none yet).
    fn stats(&self, tenant: &str) -> Result<TenantStats> {
        let t = self.txn.open_table(STATS)?;
        let v = t.get(tenant)?;
        match v {
            Some(v) => decode(v.value(), &format!("stats {tenant}")),
            None => Ok(TenantStats::default()),
        }
    }

    fn put_stats(&mut self, tenant: &str, new: &TenantStats) -> Result<()> {
        self.exec(Op::Put(
            Table::Stats,
            Key::Tenant(tenant.to_string()),
            Value::Bytes(encode(new)?),
        ))
    }

    /// Adds to a tenant's counters.
    pub fn add_stats(&mut self, tenant: &str, delta: TenantStats) -> Result<()> {
        let cur = self.stats(tenant)?;
        let new = TenantStats {
            messages: cur.messages + delta.messages,
            raw_bytes: cur.raw_bytes + delta.raw_bytes,
            stored_bytes: cur.stored_bytes + delta.stored_bytes,
            duplicates: cur.duplicates + delta.duplicates,
        };
        self.put_stats(tenant, &new)
    }

    /// A sealed value of a per-tenant hashed table.
    pub fn hashed(&self, table: HashedTable, tenant: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(table.def())?;
        let v = t.get((tenant, key))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Every (key, sealed value) of a tenant in a hashed table.
    pub fn hashed_all(&self, table: HashedTable, tenant: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.txn.open_table(table.def())?;
        hashed_range(&t, tenant)
    }

    /// Inserts or replaces a sealed value in a hashed table.
    pub fn put_hashed(
        &mut self,
        table: HashedTable,
        tenant: &str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<()> {
        self.exec(Op::Put(
            table.journal(),
            Key::Hash(tenant.to_string(), key.to_vec()),
            Value::Bytes(sealed.to_vec()),
        ))
    }

    /// Removes a value from a hashed table (no error if absent).
    pub fn remove_hashed(&mut self, table: HashedTable, tenant: &str, key: &[u8]) -> Result<()> {
        self.exec(Op::Remove(
            table.journal(),
            Key::Hash(tenant.to_string(), key.to_vec()),
        ))
    }

    /// A tenant's single sealed value.
    pub fn tenant_value(&self, table: TenantTable, tenant: &str) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(table.def())?;
        let v = t.get(tenant)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Sets a tenant's single sealed value.
    pub fn put_tenant_value(
        &mut self,
        table: TenantTable,
        tenant: &str,
        sealed: &[u8],
    ) -> Result<()> {
        self.exec(Op::Put(
            table.journal(),
            Key::Tenant(tenant.to_string()),
            Value::Bytes(sealed.to_vec()),
        ))
    }

    /// Sets a message's retain-until.
    pub fn put_retention(&mut self, tenant: &str, id: MessageId, until: i64) -> Result<()> {
        self.exec(Op::Put(
            Table::Retention,
            Key::Id(tenant.to_string(), id.as_u128()),
            Value::Time(until),
        ))
    }

    /// A message's retain-until.
    pub fn retention(&self, tenant: &str, id: MessageId) -> Result<Option<i64>> {
        let t = self.txn.open_table(RETENTION)?;
        let v = t.get((tenant, id.as_u128()))?;
        Ok(v.map(|v| v.value()))
    }

    /// Appends a sealed ingest-log entry.
    pub fn put_ingest_log(&mut self, tenant: &str, seq: u64, sealed: &[u8]) -> Result<()> {
        self.put_seq(SeqTable::IngestLog, tenant, seq, sealed)
    }

    /// Deletes a message logically: removes its record (and with it the
    /// wrapped data key), retain-until, dedup entry and pending-index mark,
    /// writes its tombstone and marks its blob and index entry for purging.
    pub fn delete_message(
        &mut self,
        tenant: &str,
        id: MessageId,
        dedup: Option<&[u8; 32]>,
        tombstone: &[u8],
    ) -> Result<()> {
        let key = || Key::Id(tenant.to_string(), id.as_u128());
        self.exec(Op::Remove(Table::Messages, key()))?;
        self.exec(Op::Remove(Table::Retention, key()))?;
        self.txn
            .open_table(PENDING_INDEX)?
            .remove((tenant, id.as_u128()))?;
        let hash = match dedup {
            Some(h) => Some(h.to_vec()),
            None => {
                // No hash at hand (the blob was unreadable): find the entry.
                let t = self.txn.open_table(DEDUP)?;
                let mut found = None;
                let lo: (&str, &[u8]) = (tenant, &[]);
                for e in t.range(lo..)? {
                    let (k, v) = e?;
                    if k.value().0 != tenant {
                        break;
                    }
                    if v.value() == id.as_u128() {
                        found = Some(k.value().1.to_vec());
                        break;
                    }
                }
                found
            }
        };
        if let Some(h) = hash {
            self.exec(Op::Remove(Table::Dedup, Key::Hash(tenant.to_string(), h)))?;
        }
        self.exec(Op::Put(
            Table::Tombstones,
            key(),
            Value::Bytes(tombstone.to_vec()),
        ))?;
        self.exec(Op::Put(Table::PurgePending, key(), Value::Unit))
    }

    /// Clears purge marks once blobs and index entries are gone.
    pub fn clear_purge(&mut self, tenant: &str, ids: &[MessageId]) -> Result<()> {
        for id in ids {
            self.exec(Op::Remove(
                Table::PurgePending,
                Key::Id(tenant.to_string(), id.as_u128()),
            ))?;
        }
        Ok(())
    }

    /// Subtracts from a tenant's counters (after deletions).
    pub fn sub_stats(&mut self, tenant: &str, delta: TenantStats) -> Result<()> {
        let cur = self.stats(tenant)?;
        let new = TenantStats {
            messages: cur.messages.saturating_sub(delta.messages),
            raw_bytes: cur.raw_bytes.saturating_sub(delta.raw_bytes),
            stored_bytes: cur.stored_bytes.saturating_sub(delta.stored_bytes),
            duplicates: cur.duplicates,
        };
        self.put_stats(tenant, &new)
    }

    /// Removes a tenant's single sealed value (no error if absent).
    pub fn remove_tenant_value(&mut self, table: TenantTable, tenant: &str) -> Result<()> {
        self.exec(Op::Remove(table.journal(), Key::Tenant(tenant.to_string())))
    }

    /// Appends a sealed audit entry (the caller keeps the chain head).
    pub fn put_audit(&mut self, tenant: &str, seq: u64, sealed: &[u8]) -> Result<()> {
        self.put_seq(SeqTable::Audit, tenant, seq, sealed)
    }

    /// Writes the journal row of this transaction (its ops, after those of
    /// earlier lazy commits) when the journal is on. Returns the lazy ops
    /// taken, to give back should the commit fail.
    fn write_journal_row(&mut self) -> Result<Vec<Op>> {
        let mut meta = self.txn.open_table(META)?;
        if meta.get(JOURNAL_ID)?.is_none() {
            return Ok(Vec::new());
        }
        let earlier = match self.lazy.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => Vec::new(),
        };
        if earlier.is_empty() && self.ops.is_empty() {
            return Ok(earlier);
        }
        let seq = meta_u64(meta.get(JOURNAL_NEXT)?).unwrap_or(1);
        let last = meta_i64(meta.get(JOURNAL_LAST)?).unwrap_or(i64::MIN);
        // Never earlier than the row before: a clock stepped back must not
        // reorder a point-in-time restore.
        let time = now_micros().max(last);
        let row = journal::row_bytes(time, earlier.iter().chain(self.ops.iter()))?;
        self.txn.open_table(JOURNAL)?.insert(seq, row.as_slice())?;
        meta.insert(JOURNAL_NEXT, (seq + 1).to_le_bytes().as_slice())?;
        meta.insert(JOURNAL_LAST, time.to_le_bytes().as_slice())?;
        Ok(earlier)
    }

    /// Commits durably (fsync) before returning.
    pub fn commit(mut self) -> Result<()> {
        let earlier = self.write_journal_row()?;
        if let Err(e) = self.txn.commit() {
            if let Ok(mut l) = self.lazy.lock() {
                l.splice(0..0, earlier);
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Commits without waiting for the disk: visible at once, durable with
    /// the next durable commit. Only for changes that are safe to lose
    /// (clearing pending-index marks: the worst case is indexing again).
    /// Its journal ops wait for the next durable commit's row.
    pub fn commit_lazy(mut self) -> Result<()> {
        let recording = self.txn.open_table(META)?.get(JOURNAL_ID)?.is_some();
        self.txn
            .set_durability(redb::Durability::None)
            .map_err(|e| CatalogError::Db(e.to_string()))?;
        if !recording || self.ops.is_empty() {
            self.txn.commit()?;
            return Ok(());
        }
        // Queued before the commit, while this transaction still excludes
        // every other writer: a durable commit that follows takes them in
        // commit order (after it, another writer could commit first and
        // its row would come before these ops, out of order).
        let mut lazy = self
            .lazy
            .lock()
            .map_err(|_| CatalogError::Db("journal queue lock poisoned".into()))?;
        let before = lazy.len();
        lazy.append(&mut self.ops);
        if let Err(e) = self.txn.commit() {
            lazy.truncate(before);
            return Err(e.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn tables_lists_what_open_creates_and_a_missing_table_is_created() {
        use redb::TableHandle;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        let c = Catalog::open(&path).unwrap();
        let mut made: Vec<String> =
            c.db.begin_read()
                .unwrap()
                .list_tables()
                .unwrap()
                .map(|t| t.name().to_string())
                .collect();
        made.sort();
        let mut listed: Vec<String> = TABLES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(made, listed);
        assert!(Catalog::up_to_date(&c.db).unwrap());
        drop(c);
        // An older catalog (a table missing) is not up to date, and open
        // creates what is missing.
        let db = Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.delete_table(DICTIONARIES).unwrap();
        w.commit().unwrap();
        assert!(!Catalog::up_to_date(&db).unwrap());
        drop(db);
        let c = Catalog::open(&path).unwrap();
        assert!(Catalog::up_to_date(&c.db).unwrap());
    }

    #[test]
    fn a_format_1_catalog_is_brought_to_format_2_with_its_journal_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        drop(Catalog::open(&path).unwrap());
        // What format 1 was: no journal table, version 1.
        let db = Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.delete_table(JOURNAL).unwrap();
        w.open_table(META)
            .unwrap()
            .insert("format_version", 1u32.to_le_bytes().as_slice())
            .unwrap();
        w.commit().unwrap();
        drop(db);
        let c = Catalog::open(&path).unwrap();
        let r = c.db.begin_read().unwrap();
        let v = r
            .open_table(META)
            .unwrap()
            .get("format_version")
            .unwrap()
            .map(|v| v.value().to_vec());
        assert_eq!(v, Some(FORMAT_VERSION.to_le_bytes().to_vec()));
        drop(r);
        // Off until a backup turns it on: commits write no row.
        let mut w = c.write().unwrap();
        w.put_audit("acme", 1, b"sealed").unwrap();
        w.commit().unwrap();
        assert_eq!(c.journal_state().unwrap().rows, 0);
        let on = c.enable_journal().unwrap();
        assert_eq!((on.rows, on.last_seq), (0, 0));
        let mut w = c.write().unwrap();
        w.put_audit("acme", 2, b"sealed").unwrap();
        w.commit().unwrap();
        let st = c.journal_state().unwrap();
        assert_eq!((st.rows, st.last_seq, st.id), (1, 1, on.id));
        // A newer format is refused.
        drop(c);
        let db = Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(META)
            .unwrap()
            .insert("format_version", 3u32.to_le_bytes().as_slice())
            .unwrap();
        w.commit().unwrap();
        drop(db);
        assert!(Catalog::open(&path).is_err());
    }

    #[test]
    fn lazy_commits_ride_on_the_next_durable_row_or_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        let c = Catalog::open(&path).unwrap();
        c.enable_journal().unwrap();
        let mut w = c.write().unwrap();
        w.put_audit("acme", 1, b"lazy").unwrap();
        w.commit_lazy().unwrap();
        assert_eq!(c.journal_state().unwrap().rows, 0);
        let mut w = c.write().unwrap();
        w.put_audit("acme", 2, b"durable").unwrap();
        w.commit().unwrap();
        let r = c.db.begin_read().unwrap();
        let row = journal::JournalRow::from_bytes(
            r.open_table(JOURNAL)
                .unwrap()
                .get(1)
                .unwrap()
                .unwrap()
                .value(),
        )
        .unwrap();
        assert_eq!(row.ops.len(), 2);
        drop(r);
        // Closing writes what is still waiting.
        let mut w = c.write().unwrap();
        w.put_audit("acme", 3, b"lazy again").unwrap();
        w.commit_lazy().unwrap();
        drop(c);
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.journal_state().unwrap().last_seq, 2);
    }
}
