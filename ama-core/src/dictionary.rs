//! Per-tenant zstd dictionaries: smaller blobs for the same mail.
//!
//! Why: most business mail is a few kilobytes, and one message alone gives
//! zstd little to learn from. On enron-inbox, zstd -3 per message stores
//! 0.43× of the raw bytes; a tenant's mail shares header names and values
//! (its domains, relays, X-headers), signatures and disclaimers, and a
//! dictionary trained on the tenant's own mail brings that to about 0.32×
//! (docs/PERFORMANCE.md).
//!
//! How:
//! - A tenant's dictionary is trained once it first holds
//!   [`ArchiveOptions::dictionary_after`](crate::ArchiveOptions::dictionary_after)
//!   messages, from its oldest messages (at most [`SAMPLES`], each cut to
//!   [`SAMPLE_BYTES`]), right after the ingest commit that crossed the mark.
//!   Later blobs name it (blob format v2, the `blob` module); earlier ones
//!   keep theirs. Blobs are never rewritten: they are write-once.
//! - It is kept in the catalog sealed under the tenant's catalog key: a
//!   dictionary is made of fragments of mail and is as secret as the mail.
//!   It is re-sealed by a tenant key rotation and removed with the tenant's
//!   other rows when the tenant is destroyed; backups carry it inside the
//!   catalog copy. It is never deleted while the tenant exists, as blobs
//!   that name it need it.
//! - Ids start at 1 and only grow, so a later retraining can add a
//!   dictionary and leave the old ones to the blobs that use them.
//! - Training is best effort: the messages that crossed the mark are
//!   already committed, so a failure (a blob that cannot be read, too
//!   little text to learn from) is not the ingest's failure. It is tried
//!   again once the tenant has doubled.
//! - Its cost falls once per tenant on the ingest call that crosses the
//!   mark: reading back up to [`SAMPLES`] blobs and training (about a
//!   second for enron mail on a local disk; on S3 each sample is a GET, so
//!   seconds more). Later blobs each prepare a zstd context with the
//!   dictionary; a per-thread context would save that, and is not done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::archive::{Archive, TenantState};
use crate::blob::{Encoder, LEVEL};
use crate::catalog::{self, Catalog, TenantTable};
use crate::crypto::{self, SecretKey};
use crate::error::{CryptoError, Result};
use crate::tenant::TenantId;

/// Messages read to train a dictionary, at most.
pub const SAMPLES: usize = 2_000;
/// Bytes taken from the start of each sample (headers and the start of the
/// body: what messages share; attachments are base64 noise to a dictionary).
pub const SAMPLE_BYTES: usize = 32 * 1024;
/// The largest dictionary trained (zstd's own default size).
pub const MAX_DICTIONARY_BYTES: usize = 112_640;

/// The sealed catalog value: every dictionary of a tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StoredDictionaries {
    pub(crate) dictionaries: Vec<StoredDictionary>,
}

/// One trained dictionary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredDictionary {
    /// Its id (1, 2, …), named by the blobs compressed with it.
    pub(crate) id: u32,
    /// When it was trained (Unix seconds).
    pub(crate) created_at: i64,
    /// How many messages it was trained on.
    pub(crate) samples: u32,
    /// The zstd dictionary.
    pub(crate) bytes: Vec<u8>,
}

/// Associated data of the sealed value.
pub(crate) fn value_aad(t: &TenantId) -> Vec<u8> {
    format!("ama/dictionaries/v1|{t}").into_bytes()
}

/// An open tenant's dictionaries, prepared for use.
pub(crate) struct Dictionaries {
    loaded: RwLock<Loaded>,
    /// Held while training, so that two ingests do not both train.
    training: Mutex<()>,
}

#[derive(Default)]
struct Loaded {
    /// The dictionary new blobs are compressed with.
    current: Option<Encoder>,
    decoders: HashMap<u32, Arc<DecoderDictionary<'static>>>,
    /// Message count below which training is not tried (again).
    retry_at: u64,
}

impl Dictionaries {
    /// Loads (and prepares) the tenant's dictionaries from the catalog.
    pub(crate) fn load(catalog: &Catalog, t: &TenantId, key: &SecretKey) -> Result<Self> {
        let mut loaded = Loaded::default();
        if let Some(stored) = read(catalog, t, key)? {
            for d in stored.dictionaries {
                loaded.add(&d);
            }
        }
        Ok(Dictionaries {
            loaded: RwLock::new(loaded),
            training: Mutex::new(()),
        })
    }

    /// The dictionary to compress new blobs with, if the tenant has one.
    pub(crate) fn encoder(&self) -> Option<Encoder> {
        self.loaded.read().ok()?.current.clone()
    }

    /// The dictionary with this id, prepared for decompression.
    pub(crate) fn decoder(&self, id: u32) -> Option<Arc<DecoderDictionary<'static>>> {
        self.loaded.read().ok()?.decoders.get(&id).cloned()
    }
}

impl Loaded {
    fn add(&mut self, d: &StoredDictionary) {
        self.decoders
            .insert(d.id, Arc::new(DecoderDictionary::copy(&d.bytes)));
        if self.current.as_ref().is_none_or(|(id, _)| d.id > *id) {
            self.current = Some((d.id, Arc::new(EncoderDictionary::copy(&d.bytes, LEVEL))));
        }
    }
}

fn read(catalog: &Catalog, t: &TenantId, key: &SecretKey) -> Result<Option<StoredDictionaries>> {
    match catalog
        .read()?
        .tenant_value(TenantTable::Dictionaries, t.as_str())?
    {
        None => Ok(None),
        Some(sealed) => {
            let what = "tenant dictionaries";
            let plain = crypto::open(key, &value_aad(t), &sealed, what)?;
            Ok(Some(catalog::decode_value(&plain, what)?))
        }
    }
}

impl Archive {
    /// Trains the tenant's first dictionary if it now holds enough
    /// messages and has none (see the module docs). Called after an ingest
    /// commit; cheap when there is nothing to do. Returns whether a
    /// dictionary was added.
    pub(crate) fn train_dictionary_if_due(&self, state: &TenantState) -> bool {
        let Some(after) = self.options().dictionary_after else {
            return false;
        };
        let t = &state.record.tenant.id;
        let dicts = &state.dictionaries;
        let retry_at = match dicts.loaded.read() {
            Ok(l) if l.current.is_none() => l.retry_at.max(after),
            _ => return false,
        };
        let Ok(_training) = dicts.training.try_lock() else {
            return false;
        };
        let messages = match self.catalog().read().and_then(|r| r.stats(t.as_str())) {
            Ok(s) => s.messages,
            Err(_) => return false,
        };
        if messages < retry_at || dicts.encoder().is_some() {
            return false;
        }
        match self.train_dictionary(state) {
            Ok(()) => true,
            Err(_) => {
                if let Ok(mut l) = dicts.loaded.write() {
                    l.retry_at = messages.saturating_mul(2);
                }
                false
            }
        }
    }

    fn train_dictionary(&self, state: &TenantState) -> Result<()> {
        let t = &state.record.tenant.id;
        let ids = self
            .catalog()
            .read()?
            .first_message_ids(t.as_str(), SAMPLES)?;
        let mut samples = Vec::with_capacity(ids.len());
        for id in ids {
            // A message that cannot be read now (a store hiccup) is just
            // not a sample; the reader of that message will hear of it.
            let Ok(Some(rec)) = self
                .catalog()
                .read()
                .and_then(|r| r.message(t.as_str(), id))
            else {
                continue;
            };
            let Ok(info) = self.info_of(state, id, &rec) else {
                continue;
            };
            if let Ok(mut raw) = self.read_blob_of(state, id, &rec, &info) {
                raw.truncate(SAMPLE_BYTES);
                samples.push(raw);
            }
        }
        let total: usize = samples.iter().map(Vec::len).sum();
        // zstd wants about 100× the dictionary size in samples; with less,
        // train a smaller dictionary rather than none.
        let size = (total / 20).clamp(1024, MAX_DICTIONARY_BYTES);
        let bytes = zstd::dict::from_samples(&samples, size)
            .map_err(|e| CryptoError::Compression(format!("training a dictionary: {e}")))?;
        let key = &state.keys.catalog;
        let mut txn = self.catalog().write()?;
        let mut stored = match txn.tenant_value(TenantTable::Dictionaries, t.as_str())? {
            None => StoredDictionaries::default(),
            Some(sealed) => {
                let what = "tenant dictionaries";
                catalog::decode_value(&crypto::open(key, &value_aad(t), &sealed, what)?, what)?
            }
        };
        let id = stored
            .dictionaries
            .iter()
            .map(|d| d.id)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| CryptoError::Compression("no dictionary id left".into()))?;
        let new = StoredDictionary {
            id,
            created_at: OffsetDateTime::now_utc().unix_timestamp(),
            samples: u32::try_from(samples.len()).unwrap_or(u32::MAX),
            bytes,
        };
        stored.dictionaries.push(new.clone());
        let sealed = crypto::seal(key, &value_aad(t), &catalog::encode_value(&stored)?)?;
        txn.put_tenant_value(TenantTable::Dictionaries, t.as_str(), &sealed)?;
        txn.commit()?;
        if let Ok(mut l) = state.dictionaries.loaded.write() {
            l.add(&new);
        }
        Ok(())
    }
}
