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
//!
//! Keys never hold personal data: tenant ids are operator-chosen names,
//! message ids are opaque, dedup keys are HMACs under a per-tenant key.
//! Values that hold personal data (addresses, subjects, file names,
//! Message-IDs, the SHA-256 of the content) are sealed with the tenant's
//! catalog subkey, bound to their key. Every value starts with a version byte.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{CatalogError, Result};
use crate::message::MessageId;
use crate::tenant::Tenant;

/// Catalog format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
const RECORD_VERSION: u8 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const MESSAGES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("messages");
const DEDUP: TableDefinition<(&str, &[u8]), u128> = TableDefinition::new("dedup");
const PENDING_INDEX: TableDefinition<(&str, u128), ()> = TableDefinition::new("pending_index");
const STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("stats");

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
    /// Sealed [`crate::archive::SealedMessage`].
    pub sealed: Vec<u8>,
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
}

impl Catalog {
    /// Opens or creates the catalog at `path`, checking its format version.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
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
            if found == 0 {
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
        }
        txn.commit()?;
        Ok(Catalog { db })
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
        })
    }
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
}

/// The write transaction.
pub struct WriteTxn {
    txn: redb::WriteTransaction,
}

impl WriteTxn {
    /// A tenant record.
    pub fn tenant(&self, id: &str) -> Result<Option<TenantRecord>> {
        let t = self.txn.open_table(TENANTS)?;
        let v = t.get(id)?;
        v.map(|v| decode(v.value(), &format!("tenant {id}")))
            .transpose()
    }

    /// Inserts or replaces a tenant record.
    pub fn put_tenant(&mut self, rec: &TenantRecord) -> Result<()> {
        let mut t = self.txn.open_table(TENANTS)?;
        t.insert(rec.tenant.id.as_str(), encode(rec)?.as_slice())?;
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
        let mut t = self.txn.open_table(MESSAGES)?;
        t.insert((tenant, id.as_u128()), encode(rec)?.as_slice())?;
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
        let mut t = self.txn.open_table(DEDUP)?;
        t.insert((tenant, hash.as_slice()), id.as_u128())?;
        Ok(())
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

    /// Adds to a tenant's counters.
    pub fn add_stats(&mut self, tenant: &str, delta: TenantStats) -> Result<()> {
        let mut t = self.txn.open_table(STATS)?;
        let cur: TenantStats = match t.get(tenant)? {
            Some(v) => decode(v.value(), &format!("stats {tenant}"))?,
            None => TenantStats::default(),
        };
        let new = TenantStats {
            messages: cur.messages + delta.messages,
            raw_bytes: cur.raw_bytes + delta.raw_bytes,
            stored_bytes: cur.stored_bytes + delta.stored_bytes,
            duplicates: cur.duplicates + delta.duplicates,
        };
        t.insert(tenant, encode(&new)?.as_slice())?;
        Ok(())
    }

    /// Commits durably (fsync) before returning.
    pub fn commit(self) -> Result<()> {
        self.txn.commit()?;
        Ok(())
    }

    /// Commits without waiting for the disk: visible at once, durable with
    /// the next durable commit. Only for changes that are safe to lose
    /// (clearing pending-index marks: the worst case is indexing again).
    pub fn commit_lazy(mut self) -> Result<()> {
        self.txn
            .set_durability(redb::Durability::None)
            .map_err(|e| CatalogError::Db(e.to_string()))?;
        self.txn.commit()?;
        Ok(())
    }
}
