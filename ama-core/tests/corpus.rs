//! Golden test over the real corpus: every message under `../shared/corpus`
//! (all folders) is imported; `get_raw` returns exactly the file's bytes and
//! a search for its Message-ID finds it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::HashMap;

use ama_core::import::{ImportEvent, ImportOptions, import_paths};
use ama_core::{MessageId, Principal, SearchOptions};

fn is_provenance(origin: &str) -> bool {
    origin.ends_with("SOURCES.tsv") || origin.ends_with("README.md") || origin.ends_with("COPYING")
}

#[test]
fn every_corpus_message_round_trips_and_is_found_by_message_id() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 150,000 audited reads follow: their entries need not each be fsync'ed.
    let opts = ama_core::ArchiveOptions {
        durable_read_audit: false,
        ..common::options()
    };
    let a = ama_core::Archive::create(
        dir.path(),
        &ama_core::Unlock::passphrase(common::PASS),
        opts,
    )
    .unwrap();
    let t = common::tenant(&a, "corpus");
    let auditor = Principal::auditor(t.clone());

    let mut folders: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(
        folders.len() >= 3,
        "expected the corpus folders, got {folders:?}"
    );

    // Through the same import pipeline `ama import` uses.
    let mut ids: HashMap<String, MessageId> = HashMap::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut files = 0usize;
    import_paths(&a, &t, &folders, &ImportOptions::default(), |ev| {
        match ev {
            ImportEvent::Archived {
                origin, receipt, ..
            } => {
                if !is_provenance(origin) {
                    files += 1;
                    ids.insert(origin.to_string(), receipt.id);
                }
            }
            ImportEvent::Refused { origin, error } => {
                // The corpus' provenance files are not mail (and are refused or
                // archived as text; either way they are not part of the check).
                if !is_provenance(origin) {
                    files += 1;
                    refused.push((origin.to_string(), error));
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(files > 50_000, "only {files} corpus files found");
    // The one file in the corpus that is not an Internet message is an
    // Outlook .msg (OLE2) file named .eml; it must be refused with a reason
    // that says so. Everything else must be archived.
    assert_eq!(refused.len(), 1, "refused: {refused:?}");
    assert!(refused[0].0.ends_with("mail_outlook_1.eml"), "{refused:?}");
    assert!(refused[0].1.contains("Outlook"), "{refused:?}");

    let mut missing_mid = 0;
    let mut not_found = Vec::new();
    for (origin, id) in &ids {
        let want = std::fs::read(origin).unwrap();
        let got = a.get_raw(&auditor, *id).unwrap();
        assert!(got == want, "{origin}: bytes differ after the round trip");
        let info = a.get(&auditor, *id).unwrap();
        let Some(mid) = &info.meta.message_id else {
            missing_mid += 1;
            continue;
        };
        let q = format!("message-id:{}", common::quote(mid));
        let r = a
            .search(
                &auditor,
                &q,
                &SearchOptions {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{origin}: query {q:?} failed: {e}"));
        if !r.hits.iter().any(|h| h.id == *id) {
            not_found.push((origin.clone(), mid.clone()));
        }
    }
    assert!(
        not_found.is_empty(),
        "{} messages not found by Message-ID, e.g. {:?}",
        not_found.len(),
        &not_found[..not_found.len().min(10)]
    );
    eprintln!(
        "corpus: {files} files, {} distinct messages, {missing_mid} without Message-ID",
        a.stats(&t).unwrap().messages
    );
}
