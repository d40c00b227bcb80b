//! Per-tenant zstd dictionaries: trained once a tenant has enough mail,
//! they make later blobs smaller, every message still reads back byte-exact
//! (after a restart and a tenant key rotation too), a blob's dictionary id
//! cannot be changed unnoticed, and the dictionary itself — made of
//! fragments of mail — never reaches the disk in the clear.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::{Path, PathBuf};

use ama_core::{
    Archive, ArchiveOptions, Envelope, Frontend, MessageId, Principal, Source, TenantId, Unlock,
};

fn options(after: Option<u64>) -> ArchiveOptions {
    ArchiveOptions {
        dictionary_after: after,
        ..common::options()
    }
}

fn create(dir: &Path, after: Option<u64>) -> Archive {
    Archive::create(dir, &Unlock::passphrase(common::PASS), options(after)).unwrap()
}

fn reopen(dir: &Path, after: Option<u64>) -> Archive {
    Archive::open(dir, &Unlock::passphrase(common::PASS), options(after)).unwrap()
}

/// The first `n` enron-inbox messages in a stable order, or None.
fn enron(n: usize) -> Option<Vec<Vec<u8>>> {
    let corpus = common::corpus()?.join("enron-inbox");
    let mut all = common::files_under(&corpus);
    all.retain(|p| p.file_name().is_some_and(|f| f != "SOURCES.tsv"));
    all.sort();
    Some(
        all.iter()
            .take(n)
            .map(|p| std::fs::read(p).unwrap())
            .collect(),
    )
}

fn ingest_all(a: &Archive, t: &TenantId, mails: &[Vec<u8>]) -> Vec<MessageId> {
    let env = Envelope::new(Source::Import);
    let mut ids = Vec::new();
    for chunk in mails.chunks(100) {
        let batch: Vec<(&[u8], Envelope)> =
            chunk.iter().map(|m| (m.as_slice(), env.clone())).collect();
        for r in a.ingest_batch(t, &batch).unwrap() {
            ids.push(r.unwrap().id);
        }
    }
    ids
}

/// Blob files whose header names a dictionary (format v2, id ≠ 0).
fn dictionary_blobs(dir: &Path) -> Vec<PathBuf> {
    let all = common::files_under(&dir.join("blobs"));
    all.into_iter()
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            b.len() > 9 && &b[..5] == b"AMAB\x02" && b[5..9] != [0, 0, 0, 0]
        })
        .collect()
}

#[test]
fn later_blobs_are_smaller_and_every_message_reads_back_byte_exact() {
    let Some(mails) = enron(2_000) else { return };
    let (first, second) = mails.split_at(1_000);
    let with = tempfile::tempdir().unwrap();
    let without = tempfile::tempdir().unwrap();
    let mut stored = Vec::new();
    let mut ids = Vec::new();
    // The first thousand files hold a few duplicates: train at 900 messages,
    // before the second thousand.
    for (dir, after) in [(with.path(), Some(900)), (without.path(), None)] {
        let a = create(dir, after);
        let t = common::tenant(&a, "enron");
        let mut got = ingest_all(&a, &t, first);
        let before = a.stats(&t).unwrap().stored_bytes;
        got.extend(ingest_all(&a, &t, second));
        stored.push(a.stats(&t).unwrap().stored_bytes - before);
        ids.push(got);
    }
    // The second thousand, compressed with the dictionary trained on the
    // first, against the same messages without one.
    let ratio = stored[0] as f64 / stored[1] as f64;
    eprintln!(
        "second 1,000 enron messages: {} bytes with a dictionary, {} without ({ratio:.3})",
        stored[0], stored[1]
    );
    assert!(ratio < 0.9, "the dictionary saved too little: {ratio:.3}");
    assert_eq!(dictionary_blobs(without.path()).len(), 0);
    assert!(dictionary_blobs(with.path()).len() >= 990);

    // After a restart the dictionary comes from the catalog.
    let a = reopen(with.path(), Some(900));
    let t = TenantId::new("enron").unwrap();
    let auditor = Principal::auditor(t.clone());
    for (id, raw) in ids[0].iter().zip(&mails) {
        assert_eq!(&a.get_raw(&auditor, *id).unwrap(), raw);
    }
    assert!(a.verify(&auditor).unwrap().problems.is_empty());
}

fn synthetic(i: usize, canary: &str) -> Vec<u8> {
    format!(
        "From: Clerk {i} <clerk{i}@acme.test>\r\nTo: desk@acme.test\r\n\
         Subject: Daily position {i}\r\nMessage-ID: <pos{i}@acme.test>\r\n\
         Date: Mon, 1 Jun 2026 10:{:02}:00 +0000\r\n\r\n\
         Positions for book {}: {} lots.\r\n\r\n-- \r\nConfidential: {canary} \
         Acme Trading Desk, 1 Harbour Street, disclaimer applies to every message.\r\n",
        i % 60,
        i % 17,
        i * 13 % 1000
    )
    .into_bytes()
}

#[test]
fn a_changed_dictionary_id_is_refused_and_rotation_keeps_mail_readable() {
    let dir = tempfile::tempdir().unwrap();
    let a = create(dir.path(), Some(100));
    let t = common::tenant(&a, "acme");
    let mails: Vec<Vec<u8>> = (0..300).map(|i| synthetic(i, "x")).collect();
    let ids = ingest_all(&a, &t, &mails);
    let auditor = Principal::auditor(t.clone());

    // A tenant key rotation re-seals the dictionary with the rest.
    a.rotate_tenant_key(&t, Frontend::Cli).unwrap();
    drop(a);
    let a = reopen(dir.path(), Some(100));
    for (id, raw) in ids.iter().zip(&mails) {
        assert_eq!(&a.get_raw(&auditor, *id).unwrap(), raw);
    }
    drop(a);

    // Point every dictionary blob at another dictionary id.
    let changed = dictionary_blobs(dir.path());
    assert_eq!(changed.len(), 200);
    for p in &changed {
        let mut b = std::fs::read(p).unwrap();
        b[8] ^= 0x02;
        std::fs::write(p, b).unwrap();
    }
    let a = reopen(dir.path(), Some(100));
    let mut refused = 0;
    for (id, raw) in ids.iter().zip(&mails) {
        match a.get_raw(&auditor, *id) {
            Ok(got) => assert_eq!(&got, raw),
            Err(e) => {
                assert!(e.to_string().contains("authenticat"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, changed.len());
}

#[test]
fn the_dictionary_never_reaches_the_disk_in_the_clear() {
    let canary = format!("Canary{:016x}", rand_u64());
    let mails: Vec<Vec<u8>> = (0..300).map(|i| synthetic(i, &canary)).collect();
    // A dictionary trained on this mail does hold the token: if it were
    // stored as is, the scan below would find it.
    let plain = zstd::dict::from_samples(&mails[..100], 8 * 1024).unwrap();
    assert!(
        plain.windows(canary.len()).any(|w| w == canary.as_bytes()),
        "the decoy dictionary should contain the canary"
    );

    let dir = tempfile::tempdir().unwrap();
    let a = create(dir.path(), Some(100));
    let t = common::tenant(&a, "acme");
    ingest_all(&a, &t, &mails);
    drop(a);
    assert_eq!(dictionary_blobs(dir.path()).len(), 200);
    let all = common::files_under(dir.path());
    for p in all {
        let bytes = std::fs::read(&p).unwrap();
        for form in [canary.clone(), canary.to_lowercase(), canary.to_uppercase()] {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                "{} holds the canary in the clear",
                p.display()
            );
        }
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}
