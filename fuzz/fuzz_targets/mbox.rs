//! Fuzzes the importer's mbox splitting (ama_core::mailbox) against a reference splitter;
//! see harness/mbox.rs.
//!
//! The harness is shared with the test that replays `regressions/mbox/` under
//! `cargo test`, so a fixed finding is checked through the same entry point.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/mbox.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::run(data) {
        panic!("mbox: {e}");
    }
});
