//! An in-memory [`BlobStore`]: for tests and for embedding where the caller
//! handles durability itself. Not durable across restarts, by design.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{BlobKey, BlobStore};
use crate::error::StoreError;

/// Blobs in a `BTreeMap` behind a lock.
#[derive(Default)]
pub struct MemoryStore {
    blobs: RwLock<BTreeMap<BlobKey, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned() -> StoreError {
        StoreError::Io {
            key: "memory".into(),
            source: std::io::Error::other("lock poisoned by a panic in another thread"),
        }
    }
}

impl BlobStore for MemoryStore {
    fn put(&self, key: &BlobKey, data: &[u8]) -> Result<(), StoreError> {
        self.blobs
            .write()
            .map_err(|_| Self::poisoned())?
            .insert(key.clone(), data.to_vec());
        Ok(())
    }

    fn get(&self, key: &BlobKey) -> Result<Vec<u8>, StoreError> {
        self.blobs
            .read()
            .map_err(|_| Self::poisoned())?
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        self.blobs
            .write()
            .map_err(|_| Self::poisoned())?
            .remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
        Ok(self
            .blobs
            .read()
            .map_err(|_| Self::poisoned())?
            .keys()
            .filter(|k| k.as_str().starts_with(prefix))
            .cloned()
            .collect())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
