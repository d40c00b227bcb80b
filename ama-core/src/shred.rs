//! Crypto-shredding: destroying a tenant for good.
//!
//! Why in this order: deleting files is never certain to reach every copy
//! (backups, snapshots, a replaced disk, a second blob store that was
//! down), but everything a tenant ever stored is sealed under keys that
//! derive from its tenant key. So [`Archive::destroy_tenant`]
//!
//! 1. records the intent in the catalog (`shreds` table, kept for good) and
//!    in the tenant's own audit log;
//! 2. asks the key service to destroy the tenant key
//!    ([`crate::KeyService::destroy_tenant`]): from then on no copy of the
//!    tenant's mail, catalog values, index or spool files can be decrypted
//!    with any key that remains;
//! 3. only then deletes the data: blobs in every store, the index directory,
//!    spool files, and every catalog row of the tenant; and drops it from
//!    the in-memory state.
//!
//! Each step is recorded, so an interruption after step 2 is resumed by
//! calling it again (the tenant is then reported as destroyed, with
//! leftovers to purge). A destroyed tenant's id is not reused.

use std::path::Path;

use time::OffsetDateTime;

use crate::archive::Archive;
use crate::audit::{AuditAction, AuditActor, Frontend, Outcome};
use crate::catalog::{ShredPhase, ShredRecord};
use crate::error::{Error, KeyError, Result, TenantError};
use crate::store::BlobKey;
use crate::tenant::TenantId;

/// What [`Archive::destroy_tenant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShredReport {
    /// The tenant.
    pub tenant: TenantId,
    /// Blobs deleted (in every copy the store keeps).
    pub blobs_deleted: usize,
    /// Spool files of the tenant deleted.
    pub spool_files_deleted: usize,
    /// Whether this finished an earlier, interrupted destruction.
    pub resumed: bool,
}

/// A tenant that is being or was destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestroyedTenant {
    /// The tenant id.
    pub id: String,
    /// Who asked (frontend, and user if any).
    pub by: String,
    /// When it was asked (Unix seconds).
    pub requested_at: i64,
    /// When its data was gone (Unix seconds); `None` while leftovers remain.
    pub finished_at: Option<i64>,
    /// Whether the key is destroyed (always, unless the destruction was
    /// interrupted before the key service answered).
    pub key_destroyed: bool,
}

impl DestroyedTenant {
    /// Whether data is left to purge (`ama tenant destroy ID` again does it).
    pub fn has_leftovers(&self) -> bool {
        self.finished_at.is_none()
    }
}

impl Archive {
    /// Destroys a tenant: its key first (in the key service), then all of its
    /// data (see the module docs). Cannot be undone. Calling it again for a
    /// tenant whose destruction was interrupted finishes it; for a tenant
    /// already destroyed it does nothing and says so (`resumed`, zero counts).
    pub fn destroy_tenant(&self, id: &TenantId, frontend: Frontend) -> Result<ShredReport> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let existing = self.catalog().read()?.shred(id.as_str())?;
        let mut rec = match existing {
            Some(rec) => rec,
            None => {
                let record = self
                    .catalog()
                    .read()?
                    .tenant(id.as_str())?
                    .ok_or_else(|| TenantError::Unknown(id.to_string()))?;
                let rec = ShredRecord {
                    tenant: id.to_string(),
                    storage_id: record.storage_id.clone(),
                    by: frontend.to_string(),
                    requested_at: now,
                    finished_at: None,
                    phase: ShredPhase::Intent,
                };
                // The intent, in the tenant's log too while it can still be
                // written (it goes with the tenant; the shred record stays).
                let state = match self.state(id) {
                    Ok(s) => Some(s),
                    Err(Error::Key(KeyError::TenantDestroyed(_))) => None,
                    Err(e) => return Err(e),
                };
                let mut txn = self.catalog().write()?;
                txn.put_shred(&rec)?;
                if let Some(state) = &state {
                    crate::audit::append_entry(
                        &mut txn,
                        id,
                        &state.keys.audit,
                        AuditActor::system(frontend),
                        AuditAction::Deletion,
                        format!("tenant {id} is being destroyed: key first, then all data"),
                        &[],
                        Outcome::Success,
                    )?;
                }
                txn.commit()?;
                rec
            }
        };
        if rec.phase == ShredPhase::Done {
            return Ok(ShredReport {
                tenant: id.clone(),
                blobs_deleted: 0,
                spool_files_deleted: 0,
                resumed: true,
            });
        }
        let resumed = rec.phase == ShredPhase::KeyDestroyed;
        if rec.phase == ShredPhase::Intent {
            // Nothing is readable in memory after this either.
            self.forget_tenant(id);
            self.key_service().destroy_tenant(id)?;
            rec.phase = ShredPhase::KeyDestroyed;
            let mut txn = self.catalog().write()?;
            txn.put_shred(&rec)?;
            txn.commit()?;
        }
        self.forget_tenant(id);

        // The data. Blobs first: the catalog rows are what lists them for a
        // `repair` scan, so they go last.
        let prefix = format!("t/{}/", rec.storage_id);
        let mut blobs_deleted = 0;
        for key in self.store().list(&prefix)? {
            self.store().delete(&key)?;
            blobs_deleted += 1;
        }
        // A message blob whose listing a store missed: by its catalog id.
        for mid in self.catalog().read()?.message_ids(id.as_str())? {
            let key = BlobKey::message(&rec.storage_id, mid);
            match self.store().delete(&key) {
                Ok(()) | Err(crate::StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let index_root = self.data_dir().join("index");
        remove_tree_with_prefix(&index_root, &rec.storage_id)?;
        let mut spool_files_deleted = 0;
        for dir in [
            self.data_dir().join("spool"),
            self.data_dir().join("spool").join("failed"),
        ] {
            spool_files_deleted += purge_spool(&dir, id)?;
        }
        let mut txn = self.catalog().write()?;
        txn.purge_tenant(id.as_str())?;
        rec.phase = ShredPhase::Done;
        rec.finished_at = Some(OffsetDateTime::now_utc().unix_timestamp());
        txn.put_shred(&rec)?;
        txn.commit()?;
        self.forget_tenant(id);
        Ok(ShredReport {
            tenant: id.clone(),
            blobs_deleted,
            spool_files_deleted,
            resumed,
        })
    }

    /// Every tenant that is being or was destroyed, by id.
    pub fn destroyed_tenants(&self) -> Result<Vec<DestroyedTenant>> {
        Ok(self
            .catalog()
            .read()?
            .shreds()?
            .into_iter()
            .map(|r| DestroyedTenant {
                id: r.tenant,
                by: r.by,
                requested_at: r.requested_at,
                finished_at: r.finished_at,
                key_destroyed: r.phase != ShredPhase::Intent,
            })
            .collect())
    }
}

/// Removes `root/<storage id>` and any staging directory of it
/// (`<storage id>.*`, from a key rotation).
fn remove_tree_with_prefix(root: &Path, storage_id: &str) -> Result<()> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(root, e)),
    };
    for e in entries {
        let e = e.map_err(|e| io(root, e))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == storage_id || name.starts_with(&format!("{storage_id}.")) {
            let p = e.path();
            std::fs::remove_dir_all(&p).map_err(|e| io(&p, e))?;
        }
    }
    crate::fsutil::fsync_dir(root).map_err(|e| io(root, e))?;
    Ok(())
}

/// Deletes the spool files of `tenant` in `dir` (format of `ama-smtp`'s
/// spool: `"AMAS" | 0x01 | u8 len | tenant id | sealed`). Returns how many.
fn purge_spool(dir: &Path, tenant: &TenantId) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(dir, e)),
    };
    let want = tenant.as_str().as_bytes();
    let mut n = 0;
    for e in entries {
        let e = e.map_err(|e| io(dir, e))?;
        let p = e.path();
        if !e.file_type().map_err(|e| io(&p, e))?.is_file() {
            continue;
        }
        let mut head = [0u8; 6 + 64];
        let read = {
            use std::io::Read;
            let mut f = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
            let mut got = 0;
            loop {
                let k = f.read(&mut head[got..]).map_err(|e| io(&p, e))?;
                if k == 0 {
                    break;
                }
                got += k;
                if got == head.len() {
                    break;
                }
            }
            got
        };
        let h = &head[..read];
        let ours = h.len() >= 6
            && &h[..4] == b"AMAS"
            && usize::from(h[5]) == want.len()
            && h.get(6..6 + want.len()) == Some(want);
        if ours {
            std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
            n += 1;
        }
    }
    if n > 0 {
        crate::fsutil::fsync_dir(dir).map_err(|e| io(dir, e))?;
    }
    Ok(n)
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}
