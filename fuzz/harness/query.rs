//! Harness for the search query parser, shared by the `query` fuzz target
//! and `ama-core/tests/fuzz_regressions.rs`.
//!
//! Any text must parse or be refused with a `QueryError`, never panic or
//! overflow the stack; and a query that parses must print (its `Display`)
//! as text that parses back to the same tree.

/// Runs one input; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Ok(q) = ama_core::query::parse(text) else {
        return Ok(());
    };
    let printed = q.to_string();
    match ama_core::query::parse(&printed) {
        Ok(back) if back == q => Ok(()),
        other => Err(format!(
            "{text:?} parsed to {q:?}, printed as {printed:?}, which parsed to {other:?}"
        )),
    }
}
