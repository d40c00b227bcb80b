//! Stored formats carry a version, and an archive written by an older build
//! must stay readable. `fixtures/archive-v1/` is a small archive written by
//! the first format version (key store v1, catalog format 1, blob v1; its
//! index deliberately left out, so opening it also rebuilds the index). This
//! test opens a copy with today's build and checks every message byte-exact
//! and findable. Regenerate only when adding a new version's fixture:
//! `AMA_WRITE_FIXTURE=1 cargo test -p ama-core --test format_v1`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::{Path, PathBuf};

use ama_core::{Archive, Envelope, Principal, SearchOptions, Source, TenantId, Unlock};
use time::macros::datetime;

const FIXTURE_PASS: &str = "fixture passphrase v1";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive-v1")
}

fn messages() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "plain".into(),
            b"From: Old Timer <old@fixture.test>\r\nTo: new@fixture.test\r\nSubject: written by format one\r\nMessage-ID: <v1-a@fixture.test>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nkept across versions\r\n".to_vec(),
        ),
        (
            "binary-ish".into(),
            b"From: x@fixture.test\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\nContent-Type: text/plain; charset=latin1\n\n\xe4\xf6\xfc 8-bit body\n".to_vec(),
        ),
    ]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn an_archive_written_by_format_v1_opens_and_reads() {
    let fixture = fixture_dir();
    if std::env::var_os("AMA_WRITE_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(&fixture);
        let a = Archive::create(
            &fixture,
            &Unlock::passphrase(FIXTURE_PASS),
            common::options(),
        )
        .unwrap();
        let t = common::tenant(&a, "fixture");
        for (_, raw) in messages() {
            let env = Envelope::new(Source::Import)
                .rcpt("bcc@fixture.test")
                .received_at(datetime!(2026-11-22 10:00 UTC));
            a.ingest(&t, &raw, &env).unwrap();
        }
        drop(a);
        std::fs::remove_dir_all(fixture.join("index")).unwrap();
        std::fs::create_dir_all(fixture.join("index")).unwrap();
        std::fs::write(fixture.join("index/.gitkeep"), b"").unwrap();
        eprintln!("wrote {}", fixture.display());
    }
    assert!(
        fixture.join("keys/keystore.json").exists(),
        "fixture missing"
    );

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let a = Archive::open(
        dir.path(),
        &Unlock::passphrase(FIXTURE_PASS),
        common::options(),
    )
    .unwrap();
    let t = TenantId::new("fixture").unwrap();
    let au = Principal::auditor(t.clone());
    let all = a.search(&au, "", &SearchOptions::default()).unwrap();
    assert_eq!(all.total, 2);
    for (name, raw) in messages() {
        let hit = all
            .hits
            .iter()
            .find(|h| h.meta.size == raw.len() as u64)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(a.get_raw(&au, hit.id).unwrap(), raw, "{name}");
    }
    assert_eq!(
        a.search(
            &au,
            "to:bcc@fixture.test subject:\"format one\"",
            &SearchOptions::default()
        )
        .unwrap()
        .total,
        1
    );
    assert_eq!(a.stats(&t).unwrap().messages, 2);
    // Written before the archive kept an ingest log: opening it backfilled
    // the log, so verify accounts for both messages instead of calling them
    // gaps, and each has an inclusion proof.
    let report = a.verify(&au).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.verified, 2);
    for h in &all.hits {
        let proof = a.proof(&au, h.id).unwrap();
        ama_core::proof::check(&proof, &a.get_raw(&au, h.id).unwrap()).unwrap();
    }
}
