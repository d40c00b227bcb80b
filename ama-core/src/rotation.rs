//! Key rotation: a new master key, or a new tenant key, without
//! re-encrypting a single message blob.
//!
//! **Master key** ([`Archive::rotate_master`]): the master key only seals
//! the key store's check value and the tenant KEKs, so rotating it is one
//! atomic rewrite of the key store file
//! ([`crate::LocalKeyStore::rotate_master`]). Tenant keys still wrapped in
//! the old format 1 (directly under the master key, archives from before
//! KEKs) are first re-wrapped under their KEK ([`Archive::rewrap_tenant_keys`]),
//! in one catalog commit; a crash between the two steps leaves a valid
//! archive under the old master key.
//!
//! **Tenant key** ([`Archive::rotate_tenant_key`]): a message blob is
//! encrypted under its own data key, which is wrapped under the tenant's
//! `message-keys` subkey; every other value is sealed under a subkey of the
//! tenant key. So a rotation re-wraps every data key, re-seals every catalog
//! value of the tenant (message metadata, tombstones, audit log and head,
//! ingest log and head, policy, holds, deletion requests, users, credentials,
//! directory settings), re-keys the tables whose keys are keyed hashes
//! (dedup, users), and rebuilds the index under the new `index` subkey.
//!
//! How it survives a crash: first a rotation record holding the old and the
//! new wrapped tenant key is committed (`rotations` table). Then the whole
//! catalog part happens in **one** write transaction, which also swaps the
//! tenant's wrapped key, marks every message for indexing, appends the
//! `key-rotation` audit entry and flags the record as done: a crash leaves
//! either everything under the old key or everything under the new one,
//! never a mix, so nothing ever has to try two keys. Last, the old index
//! directory is dropped and the record removed; the index is rebuilt from
//! the blobs (as `ama reindex` does) the next time the tenant is opened. A
//! tenant opened while a done record is still there finishes this step
//! first; calling the rotation again resumes with the recorded new key.
//!
//! Online: reads and writes of the tenant go on until the catalog
//! transaction starts; while it runs, writers (of every tenant: the catalog
//! has a single writer) wait. A request that picked up the tenant's keys
//! just before the swap fails authentication instead of writing a value
//! under the old key (every write re-opens the audit or ingest head, now
//! sealed under the new key). Hash chains are unaffected: the audit log and
//! the ingest log hash plaintext entries, which re-sealing does not change.
//!
//! Not covered: SMTP spool files (sealed with the tenant's spool subkey) that
//! are waiting when the rotation commits can no longer be opened and are
//! moved to the spool's `failed/` directory; drain the spool first (stop
//! accepting mail for the tenant, let the node ingest).

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::archive::{Archive, TenantKeys};
use crate::audit::{AuditAction, AuditActor, Frontend, Outcome};
use crate::catalog::{self, HashedTable, RotationRecord, SeqTable, TenantTable};
use crate::crypto::{self, SecretKey};
use crate::error::{CatalogError, Error, KeyError, Result, TenantError};
use crate::keys::{KdfParams, Unlock};
use crate::message::MessageId;
use crate::tenant::TenantId;

/// Records re-sealed per page: bounds the memory of a rotation. Debug
/// builds (the tests) use tiny pages so that every test walks many pages.
const PAGE: usize = if cfg!(debug_assertions) { 5 } else { 1000 };

/// What [`Archive::rotate_tenant_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// The tenant.
    pub tenant: TenantId,
    /// Message data keys re-wrapped.
    pub messages: usize,
    /// Other catalog values re-sealed (audit and ingest log entries,
    /// tombstones, users, credentials, settings).
    pub values: usize,
    /// Whether this finished an interrupted rotation.
    pub resumed: bool,
}

/// Where a test makes a rotation fail on purpose (a simulated crash).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationFault {
    /// No failure.
    None,
    /// After everything is re-sealed, before the catalog commit.
    BeforeCatalogCommit,
    /// After the catalog commit, before the old index is dropped.
    AfterCatalogCommit,
}

// The associated data of each sealed value, as the owning modules write it
// (archive.rs, retention.rs). A change there without one here makes the
// rotation tests fail.
fn msg_aad(kind: &str, t: &TenantId, id: MessageId) -> Vec<u8> {
    format!("ama/{kind}/v1|{t}|{id}").into_bytes()
}
fn log_aad(t: &TenantId, seq: u64) -> Vec<u8> {
    format!("ama/ingest-log/v1|{t}|{seq}").into_bytes()
}
fn value_aad(kind: &str, t: &TenantId) -> Vec<u8> {
    format!("ama/{kind}/v1|{t}").into_bytes()
}

/// Opens under `old`, seals under `new`, same associated data.
fn reseal(
    old: &SecretKey,
    new: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>> {
    let plain = zeroize::Zeroizing::new(crypto::open(old, aad, sealed, what)?);
    Ok(crypto::seal(new, aad, &plain)?)
}

impl Archive {
    /// Re-wraps every tenant key through the key service (for the local key
    /// store: moves keys of format 1 under their tenant's KEK). Returns how
    /// many wrapped keys were rewritten. One catalog commit.
    pub fn rewrap_tenant_keys(&self) -> Result<usize> {
        let mut txn = self.catalog().write()?;
        let rtxn = self.catalog().read()?;
        let mut n = 0;
        for mut rec in rtxn.tenants()? {
            let id = rec.tenant.id.clone();
            if rtxn.shred(id.as_str())?.is_some() {
                continue;
            }
            let k = self
                .key_service()
                .unwrap_tenant_key(&id, &rec.wrapped_key)?;
            rec.wrapped_key = self.key_service().wrap_tenant_key(&id, &k)?;
            txn.put_tenant(&rec)?;
            n += 1;
            if let Some(mut rot) = rtxn.rotation(id.as_str())? {
                for w in [&mut rot.old_wrapped, &mut rot.new_wrapped] {
                    let k = self.key_service().unwrap_tenant_key(&id, w)?;
                    *w = self.key_service().wrap_tenant_key(&id, &k)?;
                }
                txn.put_rotation(id.as_str(), &rot)?;
                n += 2;
            }
        }
        drop(rtxn);
        txn.commit()?;
        Ok(n)
    }

    /// Replaces the master key of the local key store (a new passphrase or
    /// key file): re-wraps old-format tenant keys first, then rewrites the
    /// key store atomically. The old passphrase stops working. Refused when
    /// the archive uses another key service (it rotates its own).
    pub fn rotate_master(&self, unlock: &Unlock, params: KdfParams) -> Result<usize> {
        let Some(ks) = self.local_key_store() else {
            return Err(Error::InvalidArgument(
                "this archive's keys are in another key service; rotate its master key there"
                    .into(),
            ));
        };
        if let Unlock::Passphrase(p) = unlock {
            // Refused before anything is rewritten.
            if p.chars().count() < crate::keys::MIN_PASSPHRASE_CHARS {
                return Err(KeyError::WeakPassphrase {
                    min: crate::keys::MIN_PASSPHRASE_CHARS,
                }
                .into());
            }
        }
        let n = self.rewrap_tenant_keys()?;
        ks.rotate_master(unlock, params)?;
        Ok(n)
    }

    /// Rotates a tenant's key (see the module docs). Resumes an interrupted
    /// rotation of the tenant if there is one.
    pub fn rotate_tenant_key(&self, id: &TenantId, frontend: Frontend) -> Result<RotationReport> {
        self.rotate_tenant_key_with_fault(id, frontend, RotationFault::None)
    }

    /// [`Archive::rotate_tenant_key`] failing on purpose at `fault` (tests).
    #[doc(hidden)]
    pub fn rotate_tenant_key_with_fault(
        &self,
        id: &TenantId,
        frontend: Frontend,
        fault: RotationFault,
    ) -> Result<RotationReport> {
        let t = id.as_str();
        let (record, existing) = {
            let rtxn = self.catalog().read()?;
            if rtxn.shred(t)?.is_some() {
                return Err(KeyError::TenantDestroyed(t.to_string()).into());
            }
            let record = rtxn
                .tenant(t)?
                .ok_or_else(|| TenantError::Unknown(t.to_string()))?;
            (record, rtxn.rotation(t)?)
        };
        let resumed = existing.is_some();
        let rot = match existing {
            Some(r) => r,
            None => {
                let new_key = SecretKey::generate()?;
                let new_wrapped = self.key_service().wrap_tenant_key(id, &new_key)?;
                drop(new_key);
                let r = RotationRecord {
                    old_wrapped: record.wrapped_key.clone(),
                    new_wrapped,
                    started_at: OffsetDateTime::now_utc().unix_timestamp(),
                    catalog_done: false,
                };
                let mut txn = self.catalog().write()?;
                if let Some(other) = txn.rotation(t)? {
                    // Another rotation started meanwhile: finish that one.
                    drop(txn);
                    return self.continue_rotation(id, frontend, other, true, fault);
                }
                txn.put_rotation(t, &r)?;
                txn.commit()?;
                r
            }
        };
        self.continue_rotation(id, frontend, rot, resumed, fault)
    }

    fn continue_rotation(
        &self,
        id: &TenantId,
        frontend: Frontend,
        rot: RotationRecord,
        resumed: bool,
        fault: RotationFault,
    ) -> Result<RotationReport> {
        let (messages, values) = if rot.catalog_done {
            (0, 0)
        } else {
            self.reseal_tenant(id, frontend, &rot, fault)?
        };
        if fault == RotationFault::AfterCatalogCommit {
            return Err(Error::Io {
                path: "rotation".into(),
                source: std::io::Error::other("injected crash after the catalog commit"),
            });
        }
        self.finish_rotation(id)?;
        self.forget_tenant(id);
        Ok(RotationReport {
            tenant: id.clone(),
            messages,
            values,
            resumed,
        })
    }

    /// The catalog part, in one write transaction. Returns (data keys
    /// re-wrapped, other values re-sealed).
    fn reseal_tenant(
        &self,
        id: &TenantId,
        frontend: Frontend,
        rot: &RotationRecord,
        fault: RotationFault,
    ) -> Result<(usize, usize)> {
        let t = id.as_str();
        let old = TenantKeys::derive(&self.key_service().unwrap_tenant_key(id, &rot.old_wrapped)?);
        let new = TenantKeys::derive(&self.key_service().unwrap_tenant_key(id, &rot.new_wrapped)?);
        // The tenant as it is now (under the old key), to read blobs for the
        // new dedup hashes: before the write transaction, so other writers
        // wait only for the re-sealing itself.
        let state = self.state(id)?;
        let mut dedup: HashMap<MessageId, [u8; 32]> = HashMap::new();
        let new_hash = |mid: MessageId, rec: &catalog::MessageRecord| -> Result<[u8; 32]> {
            let info = self.info_of(&state, mid, rec)?;
            let raw = zeroize::Zeroizing::new(self.read_blob_of(&state, mid, rec, &info)?);
            Ok(crypto::keyed_hash(&new.dedup, &raw))
        };
        {
            let rtxn = self.catalog().read()?;
            for mid in rtxn.message_ids(t)? {
                if let Some(rec) = rtxn.message(t, mid)? {
                    dedup.insert(mid, new_hash(mid, &rec)?);
                }
            }
        }

        let mut txn = self.catalog().write()?;
        let mut current = txn
            .tenant(t)?
            .ok_or_else(|| TenantError::Unknown(t.to_string()))?;
        if current.wrapped_key != rot.old_wrapped {
            return Err(CatalogError::Corrupt {
                what: format!("rotation record of tenant {t}"),
                reason: "the tenant's wrapped key is neither the old nor the new one".into(),
            }
            .into());
        }
        let mut values = 0;
        // Dedup first, while the message records are still under the old
        // key: keyed hashes of the raw bytes under the dedup subkey.
        for (h, mid) in txn.dedup_all(t)? {
            txn.remove_dedup(t, &h)?;
            let nh = match dedup.get(&mid) {
                Some(nh) => *nh,
                None => match txn.message(t, mid)? {
                    // Ingested after the snapshot above.
                    Some(rec) => new_hash(mid, &rec)?,
                    // A dedup entry without its message: drop it.
                    None => continue,
                },
            };
            txn.put_dedup(t, &nh, mid)?;
        }
        drop(dedup);
        // Messages: data keys and sealed metadata, a page at a time (memory
        // stays bounded; the transaction is still one).
        let mut messages = 0;
        let mut from = 0u128;
        loop {
            let page = txn.messages_page(t, from, PAGE)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            let next = last.as_u128().checked_add(1);
            for (mid, rec) in &page {
                let what = format!("data key of message {mid}");
                let dk_aad = msg_aad("data-key", id, *mid);
                let dk = crypto::unwrap_key(&old.message_keys, &dk_aad, &rec.wrapped_key, &what)?;
                let fresh = catalog::MessageRecord {
                    wrapped_key: crypto::wrap_key(&new.message_keys, &dk_aad, &dk)?,
                    stored_size: rec.stored_size,
                    sealed: reseal(
                        &old.catalog,
                        &new.catalog,
                        &msg_aad("message", id, *mid),
                        &rec.sealed,
                        &format!("metadata of message {mid}"),
                    )?,
                };
                txn.put_message(t, *mid, &fresh)?;
                messages += 1;
            }
            match next {
                Some(n) if page.len() == PAGE => from = n,
                _ => break,
            }
        }
        // Tombstones.
        let mut from = 0u128;
        loop {
            let page = txn.tombstones_page(t, from, PAGE)?;
            for (mid, sealed) in &page {
                let aad = msg_aad("tombstone", id, *mid);
                let s = reseal(&old.catalog, &new.catalog, &aad, sealed, "tombstone")?;
                txn.put_tombstone(t, *mid, &s)?;
                values += 1;
            }
            match page.last().and_then(|(m, _)| m.as_u128().checked_add(1)) {
                Some(n) if page.len() == PAGE => from = n,
                _ => break,
            }
        }
        // The audit log and the ingest log (their chains hash plaintext
        // entries, which re-sealing does not change).
        for (table, ok, nk) in [
            (SeqTable::Audit, &old.audit, &new.audit),
            (SeqTable::IngestLog, &old.catalog, &new.catalog),
        ] {
            let mut from = 0u64;
            loop {
                let page = txn.seq_page(table, t, from, PAGE)?;
                for (seq, sealed) in &page {
                    let aad = match table {
                        SeqTable::Audit => crate::audit::entry_aad(id, *seq),
                        SeqTable::IngestLog => log_aad(id, *seq),
                    };
                    let s = reseal(ok, nk, &aad, sealed, &format!("{table:?} entry {seq}"))?;
                    txn.put_seq(table, t, *seq, &s)?;
                    values += 1;
                }
                match page.last().and_then(|(q, _)| q.checked_add(1)) {
                    Some(n) if page.len() == PAGE => from = n,
                    _ => break,
                }
            }
        }
        // Single values.
        let singles: [(TenantTable, &SecretKey, &SecretKey, Vec<u8>); 7] = [
            (
                TenantTable::AuditHead,
                &old.audit,
                &new.audit,
                crate::audit::head_aad(id),
            ),
            (
                TenantTable::IngestHead,
                &old.catalog,
                &new.catalog,
                value_aad("ingest-head", id),
            ),
            (
                TenantTable::Policy,
                &old.catalog,
                &new.catalog,
                value_aad("policy", id),
            ),
            (
                TenantTable::Holds,
                &old.catalog,
                &new.catalog,
                value_aad("holds", id),
            ),
            (
                TenantTable::DeletionRequests,
                &old.catalog,
                &new.catalog,
                value_aad("deletion-requests", id),
            ),
            (
                TenantTable::Directory,
                &old.identity,
                &new.identity,
                crate::identity::directory_aad(id),
            ),
            (
                TenantTable::Dictionaries,
                &old.catalog,
                &new.catalog,
                crate::dictionary::value_aad(id),
            ),
        ];
        for (table, ok, nk, aad) in singles {
            if let Some(sealed) = txn.tenant_value(table, t)? {
                let s = reseal(ok, nk, &aad, &sealed, &format!("{table:?}"))?;
                txn.put_tenant_value(table, t, &s)?;
                values += 1;
            }
        }
        // Users: keyed by a keyed hash of the user id under the identity subkey.
        for (k, sealed) in txn.hashed_all(HashedTable::Users, t)? {
            let plain = zeroize::Zeroizing::new(crypto::open(
                &old.identity,
                &crate::identity::user_aad(id, &k),
                &sealed,
                "user record",
            )?);
            let uid = crate::identity::user_id_of(&plain)?;
            let nk = crate::identity::user_key_with(&new.identity, &uid);
            let s = crypto::seal(&new.identity, &crate::identity::user_aad(id, &nk), &plain)?;
            txn.remove_hashed(HashedTable::Users, t, &k)?;
            txn.put_hashed(HashedTable::Users, t, &nk, &s)?;
            values += 1;
        }
        // Credentials: keyed by a plain SHA-256 of the token; re-seal only.
        for (k, sealed) in txn.hashed_all(HashedTable::Credentials, t)? {
            let aad = crate::identity::credential_aad(id, &k);
            let s = reseal(&old.identity, &new.identity, &aad, &sealed, "credential")?;
            txn.put_hashed(HashedTable::Credentials, t, &k, &s)?;
            values += 1;
        }
        // The swap, the index rebuild, the audit entry, the record.
        current.wrapped_key = rot.new_wrapped.clone();
        txn.put_tenant(&current)?;
        txn.mark_all_pending(t)?;
        crate::audit::append_entry(
            &mut txn,
            id,
            &new.audit,
            AuditActor::system(frontend),
            AuditAction::KeyRotation,
            format!(
                "tenant key rotated: {} data keys re-wrapped, {values} values re-sealed, index rebuilt",
                messages
            ),
            &[],
            Outcome::Success,
        )?;
        let mut done = rot.clone();
        done.catalog_done = true;
        txn.put_rotation(t, &done)?;
        if fault == RotationFault::BeforeCatalogCommit {
            drop(txn);
            return Err(Error::Io {
                path: "rotation".into(),
                source: std::io::Error::other("injected crash before the catalog commit"),
            });
        }
        txn.commit()?;
        drop(state);
        self.forget_tenant(id);
        Ok((messages, values))
    }

    /// The last step of a rotation whose catalog part is committed: drops
    /// the index directory (under the old key; it is rebuilt from the blobs)
    /// and the rotation record. Called by the rotation and, for a rotation a
    /// crash interrupted, when the tenant is opened. Does not touch the
    /// in-memory tenant state (the caller may hold the opening lock).
    pub(crate) fn finish_rotation(&self, id: &TenantId) -> Result<()> {
        let t = id.as_str();
        let Some(rot) = self.catalog().read()?.rotation(t)? else {
            return Ok(());
        };
        if !rot.catalog_done {
            return Ok(());
        }
        let Some(record) = self.catalog().read()?.tenant(t)? else {
            return Ok(());
        };
        let root = self.data_dir().join("index");
        let dir = root.join(&record.storage_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
        }
        crate::fsutil::fsync_dir(&root).map_err(|source| Error::Io {
            path: root.display().to_string(),
            source,
        })?;
        let mut txn = self.catalog().write()?;
        txn.remove_rotation(t)?;
        txn.commit()?;
        Ok(())
    }
}
