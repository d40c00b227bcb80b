//! Blob stores: where the encrypted message blobs live.
//!
//! A [`BlobStore`] is a flat, durable map from [`BlobKey`] to bytes. It only
//! ever sees ciphertext and opaque keys, so any backend (local disk, S3,
//! a backup bucket, a replica in another building) is untrusted storage.
//! Every backend must pass the same conformance suite
//! (`tests/store_conformance.rs`).

mod local;
mod memory;

pub use local::LocalStore;
pub use memory::MemoryStore;

use crate::error::StoreError;
use crate::message::MessageId;

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
}
