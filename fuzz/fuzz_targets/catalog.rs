//! Fuzzes the decoders of stored catalog values (records, sealed metadata, audit
//! entries, users, policies, ...) and backup manifests; see harness/catalog.rs.
//!
//! The harness is shared with the test that replays `regressions/catalog/` under
//! `cargo test`, so a fixed finding is checked through the same entry point.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/catalog.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::run(data) {
        panic!("catalog: {e}");
    }
});
