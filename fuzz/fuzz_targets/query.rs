//! Fuzzes the search query parser with arbitrary text.
//!
//! Queries come straight from users (CLI, HTTP, Python), so `query::parse`
//! must return a `Query` or a `QueryError` for any string, never panic or
//! recurse without bound.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ama_core::query::parse(s);
    }
});
