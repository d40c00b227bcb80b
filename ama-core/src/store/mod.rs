//! Blob stores: where the encrypted message blobs live.
//!
//! A [`BlobStore`] is a flat, durable map from [`BlobKey`] to bytes. It only
//! ever sees ciphertext and opaque keys, so any backend (local disk, S3,
//! a backup bucket, a replica in another building) is untrusted storage.
//! Every backend must pass the same conformance suite
//! (`conformance::run`, feature `conformance`; `tests/store_conformance.rs`
//! runs it for the stores of this crate, `ama-store-s3` for S3).
//!
//! Because stores only hold ciphertext, they cannot tell an intact blob from
//! an altered one. The engine can: it hands a check to
//! [`BlobStore::get_verified`] (on reads) and a [`BlobVerifier`] to
//! [`BlobStore::repair`], so a store with several copies
//! ([`ReplicatedStore`]) can skip a damaged copy and heal it from a good one.
//!
//! Stores may carry a [`Region`]; [`check_region`] is the rule that a tenant's
//! data never goes to a store of another region.

#[cfg(feature = "conformance")]
pub mod conformance;
mod local;
mod memory;
mod replicated;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use replicated::{Replica, ReplicatedStore, ReplicationOptions};

use serde::Serialize;

use crate::error::StoreError;
use crate::message::MessageId;
use crate::tenant::{Region, TenantId};

/// A blob's name in a store: `t/<tenant storage id>/<bucket>/<sub>/<message id>`.
/// It reveals neither the tenant's name nor anything about the message.
///
/// The directories are time buckets taken from the id's timestamp prefix:
/// `<bucket>` (5 characters) spans about 9 hours and `<sub>` (3 more) about
/// one second. Messages ingested together land in one directory, so a batch
/// costs one or two directory syncs, and old mail sits in old directories.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    /// The key of a message blob.
    pub fn message(tenant_storage_id: &str, id: MessageId) -> Self {
        let id = id.to_string();
        BlobKey(format!(
            "t/{tenant_storage_id}/{}/{}/{id}",
            &id[..5],
            &id[5..8]
        ))
    }

    /// A key from a string; only `[A-Za-z0-9._-]` segments separated by `/`,
    /// no empty, `.` or `..` segment.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let ok = !s.is_empty()
            && s.len() <= 512
            && s.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
            });
        if ok {
            Ok(BlobKey(s.to_string()))
        } else {
            Err(StoreError::InvalidKey(s.chars().take(80).collect()))
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Durable storage of immutable blobs.
///
/// Contract, checked by the conformance suite for every backend:
/// - [`put`](BlobStore::put) returns only when the blob is durable (survives
///   a crash or power loss) and is atomic: a reader sees the whole blob or
///   none. Putting the same key again replaces it atomically.
/// - [`put_many`](BlobStore::put_many) is durable for all blobs when it
///   returns; on error, some may have been written (they are unreferenced
///   until the catalog commits, and the caller may retry).
/// - [`get`](BlobStore::get) returns exactly the bytes put, or
///   [`StoreError::NotFound`].
/// - [`delete`](BlobStore::delete) is durable and idempotent (deleting a
///   missing key is not an error).
/// - [`list`](BlobStore::list) returns every key under a prefix, sorted.
/// - Implementations are `Send + Sync` and safe to call from many threads.
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `key`, durably and atomically.
    fn put(&self, key: &BlobKey, data: &[u8]) -> Result<(), StoreError>;

    /// Stores many blobs; durable for all of them when it returns. Backends
    /// override this to share the cost of durability across the batch.
    fn put_many(&self, items: &[(BlobKey, Vec<u8>)]) -> Result<(), StoreError> {
        for (k, v) in items {
            self.put(k, v)?;
        }
        Ok(())
    }

    /// Reads the blob under `key`.
    fn get(&self, key: &BlobKey) -> Result<Vec<u8>, StoreError>;

    /// Deletes the blob under `key`, durably; no error if it is absent.
    fn delete(&self, key: &BlobKey) -> Result<(), StoreError>;

    /// Every key that starts with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError>;

    /// A short description for messages and `ama stats` (e.g. `local:/data/blobs`).
    fn describe(&self) -> String;

    /// Reads a copy of the blob for which `verify` returns true.
    ///
    /// The store only sees ciphertext; `verify` is the engine's
    /// authentication check. A store with several copies tries them in turn
    /// and skips (and queues for repair) copies that are missing or fail.
    /// Errors: [`StoreError::NotFound`] when no copy exists,
    /// [`StoreError::Corrupt`] when copies exist but none passes. The
    /// default reads the one copy and checks it.
    fn get_verified(
        &self,
        key: &BlobKey,
        verify: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, StoreError> {
        let data = self.get(key)?;
        if verify(&data) {
            Ok(data)
        } else {
            Err(StoreError::Corrupt {
                key: key.to_string(),
                reason: "the only copy failed its authentication check".into(),
            })
        }
    }

    /// Removes what interrupted writes left behind (temporary files). Call
    /// it only as the store's one writer: the archive does, once it holds
    /// the catalog's lock, so a second process opening the same archive
    /// (and refused) cannot remove the first one's writes in flight. The
    /// default has nothing to clean.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The region the store keeps its data in; `None` for an untagged store
    /// (the embedded default), which is not bound to a region.
    fn region(&self) -> Option<Region> {
        None
    }

    /// Whether the store is **write-once** (WORM): it can lock a blob
    /// against deletion and overwriting until a date
    /// ([`set_retention`](BlobStore::set_retention)), and refuses
    /// ([`StoreError::Locked`]) to delete it before then. S3 with Object
    /// Lock is; the default (local disk, memory) is not.
    fn object_lock(&self) -> bool {
        false
    }

    /// Locks the blob under `key` until `until` (Unix seconds): until then
    /// the store refuses to delete or overwrite it, whoever asks. A lock is
    /// only ever extended: a date at or before the current lock (or in the
    /// past) changes nothing and is not an error. Durable when it returns.
    /// The engine calls it before a message is acknowledged and whenever a
    /// message's retain-until grows. Stores without write-once support
    /// return [`StoreError::Unsupported`] (the default); callers check
    /// [`object_lock`](BlobStore::object_lock) first.
    fn set_retention(&self, key: &BlobKey, until: i64) -> Result<(), StoreError> {
        let _ = (key, until);
        Err(StoreError::Unsupported {
            store: self.describe(),
            what: "write-once retention (object lock)".into(),
        })
    }

    /// [`set_retention`](BlobStore::set_retention) for many blobs; backends
    /// override it to send the requests in parallel.
    fn set_retention_many(&self, items: &[(BlobKey, i64)]) -> Result<(), StoreError> {
        for (k, until) in items {
            self.set_retention(k, *until)?;
        }
        Ok(())
    }

    /// The date (Unix seconds) until which the store keeps the blob locked,
    /// if a lock is in force; `None` when it is not locked (or absent, or
    /// the store has no locks — the default).
    fn retention(&self, key: &BlobKey) -> Result<Option<i64>, StoreError> {
        let _ = key;
        Ok(None)
    }

    /// Brings every copy up to date: replays pending deletions, rewrites
    /// copies that are queued as missing or damaged from an authentic copy,
    /// and with `scan` looks for missing (and, if `deep`, damaged) copies
    /// itself. Only stores that keep several copies have anything to do; the
    /// default reports nothing.
    fn repair(
        &self,
        verifier: &dyn BlobVerifier,
        scan: Option<&RepairScan>,
    ) -> Result<RepairReport, StoreError> {
        let _ = (verifier, scan);
        Ok(RepairReport::default())
    }
}

/// The engine's judgement of blobs, for [`BlobStore::repair`]: only the
/// engine holds the keys that tell an authentic blob from an altered one.
pub trait BlobVerifier: Sync {
    /// Whether `key` is still referenced (the catalog points at it). An
    /// unreferenced blob (a write whose catalog commit never happened, a
    /// deleted message) is not copied around.
    fn wanted(&self, key: &BlobKey) -> bool;

    /// Whether `data` is the authentic blob under `key` (its authentication
    /// tag and the digest recorded at ingest hold).
    fn authentic(&self, key: &BlobKey, data: &[u8]) -> bool;

    /// Until when a copy written back to a write-once store must be locked
    /// (the message's retain-until), if at all. The default: no lock.
    fn lock_until(&self, key: &BlobKey) -> Option<i64> {
        let _ = key;
        None
    }
}

/// What a repair scan looks at, beyond the repair queue.
#[derive(Debug, Clone, Default)]
pub struct RepairScan {
    /// Key prefixes with every key the catalog expects under each (one
    /// entry per tenant: `t/<storage id>/` and its message blobs).
    pub expected: Vec<(String, Vec<BlobKey>)>,
    /// Also read every copy and check it (finds damaged copies; reads
    /// everything once per store).
    pub deep: bool,
}

/// What a repair did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Copies written back from an authentic copy.
    pub copies_restored: u64,
    /// Deletions carried out on stores that were down when the blob was deleted.
    pub deletions_replayed: u64,
    /// Copies a scan found missing.
    pub missing_found: u64,
    /// Copies found damaged (failing authentication).
    pub corrupt_found: u64,
    /// Queue entries dropped because nothing references the blob any more.
    pub dropped_unreferenced: u64,
    /// Blobs present in a store that nothing references (left in place).
    pub unreferenced_blobs: u64,
    /// Copies still to be written (their store is still failing).
    pub still_queued: u64,
    /// Deletions still to be carried out (their store is still failing).
    pub deletions_pending: u64,
    /// Keys of which no authentic copy is left anywhere.
    pub unrecoverable: Vec<String>,
    /// Stores that failed during the repair, with their errors.
    pub failed_stores: Vec<String>,
}

impl RepairReport {
    /// True when every copy is in place and nothing is left to do.
    pub fn is_clean(&self) -> bool {
        self.still_queued == 0
            && self.deletions_pending == 0
            && self.unrecoverable.is_empty()
            && self.failed_stores.is_empty()
    }
}

/// Refuses a write of `tenant`'s data (pinned to `tenant_region`) to `store`
/// when the store is tagged with another region. Untagged stores accept
/// every tenant. Called before a byte moves: at tenant creation and at the
/// start of every ingest.
pub fn check_region(
    store: &dyn BlobStore,
    tenant: &TenantId,
    tenant_region: &Region,
) -> Result<(), StoreError> {
    match store.region() {
        Some(r) if r != *tenant_region => Err(StoreError::WrongRegion {
            tenant: tenant.to_string(),
            tenant_region: tenant_region.to_string(),
            store: store.describe(),
            store_region: r.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Reads `key` through [`BlobStore::get_verified`] with `open` (decrypt and
/// check) as the test, and returns what `open` made of the first authentic
/// copy. If no copy passes, the error is `open`'s own (an authentication
/// error says more than "corrupt"), so a single-copy store behaves exactly
/// as a plain `get` followed by `open`. Each copy is opened once.
pub(crate) fn get_authentic<T, E: From<StoreError>>(
    store: &dyn BlobStore,
    key: &BlobKey,
    open: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<T, E> {
    let good: std::cell::RefCell<Option<T>> = std::cell::RefCell::new(None);
    let first_err: std::cell::RefCell<Option<E>> = std::cell::RefCell::new(None);
    let verdict = store.get_verified(key, &|blob| match open(blob) {
        Ok(v) => {
            *good.borrow_mut() = Some(v);
            true
        }
        Err(e) => {
            first_err.borrow_mut().get_or_insert(e);
            false
        }
    });
    match (verdict, good.into_inner(), first_err.into_inner()) {
        (Ok(_), Some(v), _) => Ok(v),
        // A store that returned a copy without asking: open it now.
        (Ok(blob), None, _) => open(&blob),
        (Err(StoreError::Corrupt { .. }), _, Some(e)) => Err(e),
        (Err(e), _, _) => Err(e.into()),
    }
}
