//! The engine's side of redundant storage: opening an archive on a
//! configured blob store, and repairing the copies of a store that keeps
//! several ([`crate::store::ReplicatedStore`]).
//!
//! Stores only see ciphertext, so only the engine can tell an authentic copy
//! from a damaged one and a blob the catalog still needs from an orphan.
//! [`Archive::repair`] lends the store that judgement (a
//! [`BlobVerifier`] backed by the catalog and the tenant keys) and, for a
//! scan, the list of every blob the catalog references.
//!
//! A child module of `archive` so it can use the blob format and the tenant
//! state without widening their visibility.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use super::{Archive, ArchiveOptions, aad};
use crate::crypto;
use crate::error::{Error, Result};
use crate::keys::{LocalKeyStore, Unlock};
use crate::message::MessageId;
use crate::store::{BlobKey, BlobStore, BlobVerifier, RepairReport, RepairScan};
use crate::tenant::TenantId;

/// What [`Archive::repair`] does beyond draining the repair queue and
/// replaying pending deletions.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions {
    /// Compare every store's listing with the catalog: finds copies that
    /// are missing without having been queued (lost disks, restored backups).
    pub scan: bool,
    /// Also read and authenticate every copy (finds damaged copies; reads
    /// every blob once per store). Implies `scan`.
    pub deep: bool,
}

impl Archive {
    /// Opens the archive in `dir` with its local key store and the given
    /// blob store (instead of the default `DATA/blobs` directory).
    pub fn open_with_store(
        dir: impl AsRef<Path>,
        unlock: &Unlock,
        store: Arc<dyn BlobStore>,
        options: ArchiveOptions,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let ks_path = options.keystore_path(dir);
        if !ks_path.exists() {
            return Err(Error::DataDir {
                path: dir.display().to_string(),
                reason: format!(
                    "not an ama archive, or its key store is elsewhere (no {}; run `ama init` first)",
                    ks_path.display()
                ),
            });
        }
        let ks = Arc::new(LocalKeyStore::open(&ks_path, unlock)?);
        let mut archive = Self::open_with(dir, ks.clone(), store, options)?;
        archive.local_keys = Some(ks);
        Ok(archive)
    }

    /// The blob store in use.
    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// Heals the blob copies: replays deletions that a store missed, writes
    /// queued missing or damaged copies back from an authentic copy, and
    /// with `scan`/`deep` looks for missing and damaged copies itself. A
    /// store with one copy has nothing to repair (the report is empty).
    pub fn repair(&self, options: RepairOptions) -> Result<RepairReport> {
        let verifier = CatalogVerifier::new(self)?;
        let scan = if options.scan || options.deep {
            let rtxn = self.catalog.read()?;
            let mut expected = Vec::new();
            for t in rtxn.tenants()? {
                if rtxn.shred(t.tenant.id.as_str())?.is_some() {
                    // Being destroyed: its blobs are not wanted any more.
                    continue;
                }
                let keys = rtxn
                    .message_ids(t.tenant.id.as_str())?
                    .into_iter()
                    .map(|id| BlobKey::message(&t.storage_id, id))
                    .collect();
                expected.push((format!("t/{}/", t.storage_id), keys));
            }
            Some(RepairScan {
                expected,
                deep: options.deep,
            })
        } else {
            None
        };
        Ok(self.store.repair(&verifier, scan.as_ref())?)
    }
}

/// Judges blobs by the catalog: a blob is wanted while a message record
/// points at it, and authentic when it decrypts under its data key and
/// matches the SHA-256 recorded at ingest.
struct CatalogVerifier<'a> {
    archive: &'a Archive,
    /// storage id → tenant
    tenants: HashMap<String, TenantId>,
}

impl<'a> CatalogVerifier<'a> {
    fn new(archive: &'a Archive) -> Result<Self> {
        let rtxn = archive.catalog.read()?;
        let mut tenants = HashMap::new();
        for r in rtxn.tenants()? {
            // A tenant being destroyed has no key to judge its blobs with.
            if rtxn.shred(r.tenant.id.as_str())?.is_none() {
                tenants.insert(r.storage_id, r.tenant.id);
            }
        }
        Ok(CatalogVerifier { archive, tenants })
    }

    /// The tenant and message a message blob key names.
    fn parse(&self, key: &BlobKey) -> Option<(&TenantId, MessageId)> {
        let mut parts = key.as_str().split('/');
        let (Some("t"), Some(sid)) = (parts.next(), parts.next()) else {
            return None;
        };
        let id = MessageId::from_str(parts.next_back()?).ok()?;
        let tenant = self.tenants.get(sid)?;
        (BlobKey::message(sid, id) == *key).then_some((tenant, id))
    }

    fn check(&self, key: &BlobKey, data: &[u8]) -> Result<bool> {
        let Some((tenant, id)) = self.parse(key) else {
            return Ok(false);
        };
        let state = self.archive.state(tenant)?;
        let (rec, sealed) = self.archive.load(&state, id)?;
        let data_key = crypto::unwrap_key(
            &state.keys.message_keys,
            &aad("data-key", tenant, id),
            &rec.wrapped_key,
            &format!("data key of message {id}"),
        )?;
        let raw = match crate::blob::open(
            &data_key,
            &aad("blob", tenant, id),
            data,
            sealed.meta.size,
            id,
            &|d| state.dictionaries.decoder(d),
        ) {
            Ok(raw) => raw,
            Err(_) => return Ok(false),
        };
        Ok(crypto::sha256(&raw) == sealed.sha256)
    }
}

impl BlobVerifier for CatalogVerifier<'_> {
    fn wanted(&self, key: &BlobKey) -> bool {
        let Some((tenant, id)) = self.parse(key) else {
            return false;
        };
        match self.archive.catalog.read() {
            Ok(r) => !matches!(r.message(tenant.as_str(), id), Ok(None)),
            // When in doubt, keep the copy.
            Err(_) => true,
        }
    }

    fn authentic(&self, key: &BlobKey, data: &[u8]) -> bool {
        self.check(key, data).unwrap_or(false)
    }

    /// The message's retain-until: a copy written back to write-once
    /// storage gets the lock the original has.
    fn lock_until(&self, key: &BlobKey) -> Option<i64> {
        let (tenant, id) = self.parse(key)?;
        self.archive
            .catalog
            .read()
            .ok()?
            .retention(tenant.as_str(), id)
            .ok()
            .flatten()
    }
}
