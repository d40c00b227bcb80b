//! Fuzzes the message checker and parser with arbitrary bytes.
//!
//! Everything the SMTP node, the HTTP API or an import hands to the engine
//! goes through `parse::check` and then `parse::parse`, so both must cope
//! with any byte sequence: refuse it cleanly or parse it, never panic, hang
//! or blow up memory. The 1 MiB limit keeps the fuzzer's inputs in range.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if ama_core::parse::check(data, 1 << 20).is_ok() {
        let _ = ama_core::parse::parse(data, 0);
    }
});
