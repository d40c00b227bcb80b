//! Replays every input kept under `fuzz/regressions/<target>/` through the
//! same entry point as its fuzz target, so a crash found by the fuzzers
//! (which need nightly) stays fixed under plain `cargo test`.
//!
//! The harnesses of the newer targets live in `fuzz/harness/` and are
//! compiled into this test as they are into the fuzz targets. `parse_mail`
//! is replayed by the unit test `parse::tests::fuzz_regressions_do_not_panic`,
//! and `smtp` by `ama-smtp/tests/fuzz_regressions.rs`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

#[path = "../../fuzz/harness/catalog.rs"]
mod catalog;
#[path = "../../fuzz/harness/decrypt.rs"]
mod decrypt;
#[path = "../../fuzz/harness/maildir.rs"]
mod maildir;
#[path = "../../fuzz/harness/mbox.rs"]
mod mbox;
#[path = "../../fuzz/harness/query.rs"]
mod query;

use std::path::PathBuf;

use ama_core::{
    Archive, ArchiveOptions, Envelope, Error, KdfParams, Source, TenantId, TenantSpec, Unlock,
};

/// The kept inputs of one target (`.gitkeep` and other dot files skipped).
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

/// Runs every kept input of `target` through `run`; all must pass.
fn replay(target: &str, run: impl Fn(&[u8]) -> Result<(), String>) {
    let failures: Vec<String> = inputs(target)
        .into_iter()
        .filter_map(|(p, data)| run(&data).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mbox_regressions() {
    replay("mbox", mbox::run);
}

#[test]
fn maildir_regressions() {
    replay("maildir", maildir::run);
}

#[test]
fn decrypt_regressions() {
    replay("decrypt", decrypt::run);
}

#[test]
fn catalog_regressions() {
    replay("catalog", catalog::run);
}

#[test]
fn query_regressions() {
    replay("query", query::run);
}

/// As the `ingest` target: one archive, every input ingested; refusing it
/// (`Error::Ingest`) is fine, any other error or a panic is not.
#[test]
fn ingest_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let options = ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        max_message_size: 1 << 20,
        ..ArchiveOptions::default()
    };
    let archive =
        Archive::create(dir.path(), &Unlock::passphrase("fuzz passphrase"), options).unwrap();
    let tenant = TenantId::new("fuzz").unwrap();
    archive
        .create_tenant(TenantSpec::new(tenant.clone()))
        .unwrap();
    replay("ingest", |data| {
        let envelope = Envelope::new(Source::Import).rcpt("fuzz@fuzz.test");
        match archive.ingest(&tenant, data, &envelope) {
            Ok(_) | Err(Error::Ingest(_)) => Ok(()),
            Err(e) => Err(format!("non-ingest error: {e} ({e:?})")),
        }
    });
}
