//! Fuzzes the SMTP/LMTP protocol state machine (ama_smtp::proto) through every phase,
//! including DATA and BDAT; see harness/smtp.rs for the input layout and the checks.
//!
//! The harness is shared with the test that replays `regressions/smtp/` under
//! `cargo test`, so a fixed finding is checked through the same entry point.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/smtp.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::run(data) {
        panic!("smtp: {e}");
    }
});
