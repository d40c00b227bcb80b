//! Narrow entry points for the fuzz targets in `fuzz/` and for the tests
//! that replay their regression inputs (`tests/fuzz_regressions.rs`).
//!
//! Why this module exists: the decoders of what the catalog stores (message
//! records, sealed message metadata, audit and ingest-log entries, users,
//! credentials, policies, …) and the blob format are private to the engine,
//! yet they are exactly the code that reads bytes from disk, a backup or an
//! object store. A fuzzer outside the crate can only reach them through
//! here. Hidden from the documentation and not part of the API: no
//! stability promise, no other caller.

use serde::{Serialize, de::DeserializeOwned};

use crate::archive::SealedMessage;
use crate::audit::{AuditEntry, AuditHead};
use crate::catalog::{self, MessageRecord, RotationRecord, ShredRecord, TenantRecord, TenantStats};
use crate::crypto::SecretKey;
use crate::identity::{Credential, DirectoryConfig, UserRecord};
use crate::message::MessageId;
use crate::retention::{DeletionRequest, Hold, LogEntry, LogHead, RetentionPolicy, Tombstone};

/// The kinds of stored values [`decode_stored_value`] knows, in selector order.
pub const STORED_KINDS: &[&str] = &[
    "tenant record",
    "message record",
    "shred record",
    "rotation record",
    "tenant stats",
    "sealed message metadata",
    "audit entry",
    "audit chain head",
    "user record",
    "credential record",
    "directory configuration",
    "retention policy",
    "legal holds",
    "deletion requests",
    "tombstone",
    "ingest log entry",
    "ingest log head",
];

/// Decodes `value` (a stored value as the catalog keeps it: version byte,
/// then postcard) as the kind `STORED_KINDS[selector % len]`.
///
/// Returns `Ok(true)` if it decoded, `Ok(false)` if it was refused with an
/// error (both fine), and `Err` with a description when an invariant breaks:
/// a decoded value must encode again, and that encoding must decode to a
/// value with the same encoding (so nothing read from disk is silently
/// changed by a read-modify-write cycle). A panic is a finding as well.
pub fn decode_stored_value(selector: u8, value: &[u8]) -> Result<bool, String> {
    let kind = STORED_KINDS[usize::from(selector) % STORED_KINDS.len()];
    match usize::from(selector) % STORED_KINDS.len() {
        0 => round_trip::<TenantRecord>(kind, value),
        1 => round_trip::<MessageRecord>(kind, value),
        2 => round_trip::<ShredRecord>(kind, value),
        3 => round_trip::<RotationRecord>(kind, value),
        4 => round_trip::<TenantStats>(kind, value),
        5 => round_trip::<SealedMessage>(kind, value),
        6 => round_trip::<AuditEntry>(kind, value),
        7 => round_trip::<AuditHead>(kind, value),
        8 => round_trip::<UserRecord>(kind, value),
        9 => round_trip::<Credential>(kind, value),
        10 => round_trip::<DirectoryConfig>(kind, value),
        11 => round_trip::<RetentionPolicy>(kind, value),
        12 => round_trip::<Vec<Hold>>(kind, value),
        13 => round_trip::<Vec<DeletionRequest>>(kind, value),
        14 => round_trip::<Tombstone>(kind, value),
        15 => round_trip::<LogEntry>(kind, value),
        _ => round_trip::<LogHead>(kind, value),
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(kind: &str, value: &[u8]) -> Result<bool, String> {
    let Ok(v) = catalog::decode_value::<T>(value, kind) else {
        return Ok(false);
    };
    let once = catalog::encode_value(&v)
        .map_err(|e| format!("{kind}: a decoded value does not encode again: {e}"))?;
    let again: T = catalog::decode_value(&once, kind)
        .map_err(|e| format!("{kind}: its own encoding does not decode: {e}"))?;
    let twice = catalog::encode_value(&again)
        .map_err(|e| format!("{kind}: a re-decoded value does not encode: {e}"))?;
    if once != twice {
        return Err(format!(
            "{kind}: encode(decode(encode(v))) differs from encode(v)"
        ));
    }
    Ok(true)
}

/// Seals `raw` into a message blob exactly as ingest does without a
/// dictionary (zstd, then AES-256-GCM under `key`, bound to `aad` and the
/// blob header).
pub fn seal_blob(key: &SecretKey, aad: &[u8], raw: &[u8]) -> crate::Result<Vec<u8>> {
    crate::blob::seal(key, aad, raw, None)
}

/// Opens a message blob of any version exactly as reading a message does,
/// with `size` as the raw size recorded in the catalog (the decompression
/// limit) and no tenant dictionaries.
pub fn open_blob(key: &SecretKey, aad: &[u8], blob: &[u8], size: u64) -> crate::Result<Vec<u8>> {
    crate::blob::open(key, aad, blob, size, MessageId::from_u128(0), &|_| None)
}
