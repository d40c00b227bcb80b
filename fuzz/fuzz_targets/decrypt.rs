//! Fuzzes decryption of hostile ciphertext: sealed values, wrapped keys, message blobs
//! and encrypted index files; see harness/decrypt.rs.
//!
//! The harness is shared with the test that replays `regressions/decrypt/` under
//! `cargo test`, so a fixed finding is checked through the same entry point.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/decrypt.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::run(data) {
        panic!("decrypt: {e}");
    }
});
