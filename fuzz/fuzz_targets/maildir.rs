//! Fuzzes the importer's Maildir walk (ama_core::mailbox) over real directories with
//! arbitrary file names and contents; see harness/maildir.rs.
//!
//! The harness is shared with the test that replays `regressions/maildir/` under
//! `cargo test`, so a fixed finding is checked through the same entry point.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/maildir.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::run(data) {
        panic!("maildir: {e}");
    }
});
