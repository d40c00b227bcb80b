//! Fuzzes the search query parser with arbitrary text.
//!
//! Queries come straight from users (CLI, HTTP, Python), so `query::parse`
//! must return a `Query` or a `QueryError` for any string, never panic or
//! recurse without bound; and what parses must print (`Display`) as a query
//! that parses back to the same tree. The harness (`harness/query.rs`) is
//! shared with the test that replays `regressions/query/` under `cargo test`.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/query.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::run(data) {
        panic!("query: {e}");
    }
});
