//! Harness for the decoders of stored values, shared by the `catalog` fuzz
//! target and `ama-core/tests/fuzz_regressions.rs`.
//!
//! Byte 0 picks the kind (`ama_core::fuzz_hooks::STORED_KINDS`: message
//! records, sealed message metadata, audit entries and chain heads, users,
//! credentials, policies, holds, tombstones, ingest-log entries, …; 255 is a
//! backup snapshot manifest); the rest is the stored bytes, as they would be
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
    fuzz_hooks::decode_stored_value(selector, value).map(|_| ())
}
