//! Replays every input kept under `fuzz/regressions/smtp/` through the
//! `smtp` fuzz target's harness (`fuzz/harness/smtp.rs`, compiled into this
//! test), so a crash or broken promise found by the fuzzer stays fixed
//! under plain `cargo test`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

#[path = "../../fuzz/harness/smtp.rs"]
mod smtp;

use std::path::PathBuf;

#[test]
fn smtp_regressions() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/smtp");
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        if let Err(e) = smtp::run(&std::fs::read(&path).unwrap()) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
