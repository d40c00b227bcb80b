//! Harness for the decoders of stored values, shared by the `catalog` fuzz
//! target and `ama-core/tests/fuzz_regressions.rs`.
//!
//! Byte 0 picks the kind (`ama_core::fuzz_hooks::STORED_KINDS`: message
//! records, sealed message metadata, audit entries and chain heads, users,
//! credentials, policies, holds, tombstones, ingest-log entries, …; 255 is a
//! backup snapshot manifest, 254 a catalog journal segment); the rest is the stored bytes, as they would be
//! after decryption (sealed values are authenticated first, so this is what
//! a key holder or a bug on the writing side could feed the decoders). Each
//! must decode or refuse without panicking, and what decodes must survive a
//! re-encode/decode cycle unchanged.

use ama_core::BlobKey;
use ama_core::fuzz_hooks;

/// Runs one input; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some((&selector, value)) = data.split_first() else {
        return Ok(());
    };
    if selector == 255 {
        let key =
            BlobKey::parse("snapshots/0000000001/manifest.json").map_err(|e| e.to_string())?;
        let _ = ama_core::backup::parse_manifest(&key, value);
        return Ok(());
    }
    if selector == 254 {
        return journal_segment(value);
    }
    fuzz_hooks::decode_stored_value(selector, value).map(|_| ())
}

/// A journal segment as a backup target holds it: decodes or refuses, and
/// what decodes (the segment and each row) re-encodes to the same bytes.
fn journal_segment(bytes: &[u8]) -> Result<(), String> {
    use ama_core::catalog::journal::{JournalRow, Segment};
    let Ok(segment) = Segment::from_bytes(bytes) else {
        return Ok(());
    };
    let again = segment.to_bytes().map_err(|e| e.to_string())?;
    if Segment::from_bytes(&again).map_err(|e| e.to_string())? != segment {
        return Err("a journal segment changed in a re-encode".into());
    }
    for (_, row) in &segment.rows {
        if let Ok(r) = JournalRow::from_bytes(row) {
            let b = r.to_bytes().map_err(|e| e.to_string())?;
            if JournalRow::from_bytes(&b).map_err(|e| e.to_string())? != r {
                return Err("a journal row changed in a re-encode".into());
            }
        }
    }
    Ok(())
}
