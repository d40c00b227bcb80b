//! Backups (`ama_core::backup`): an archive with its key store outside the
//! data directory is backed up to a local-directory target, the data
//! directory is deleted, and a restore from the backup plus the key store
//! gives back every message byte-identical and searchable. The backup is
//! scanned for plaintext; runs are idempotent; older snapshots restore the
//! state of their time; damaged backups and bad destinations are refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ama_core::backup::{self, BackupError, BackupOptions};
use ama_core::{
    Archive, ArchiveOptions, BlobStore, DeletionOutcome, Envelope, Error, LocalStore, MessageId,
    Principal, SearchOptions, Source, TenantId, TenantSpec, Unlock,
};

/// Messages taken from the corpus (a slice keeps the test quick).
const SLICE: usize = 120;

fn opts(keystore: &Path) -> ArchiveOptions {
    ArchiveOptions {
        keystore: Some(keystore.to_path_buf()),
        ..common::options()
    }
}

fn unlock() -> Unlock {
    Unlock::passphrase(common::PASS)
}

/// A slice of `../shared/corpus/enron-inbox` (None: skipped, with a message).
fn corpus_slice() -> Option<Vec<PathBuf>> {
    let corpus = common::corpus()?;
    let mut files = Vec::new();
    let mut users: Vec<PathBuf> = std::fs::read_dir(corpus.join("enron-inbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    users.sort();
    for u in users {
        let mut stack = vec![u];
        while let Some(d) = stack.pop() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        if files.len() >= SLICE {
            break;
        }
    }
    files.truncate(SLICE);
    Some(files)
}

const CANARY_SUBJECT: &str = "canarysubjectqz41x";
const CANARY_BODY: &str = "canarybodytokenqz73y";

fn canary_mail(i: usize) -> Vec<u8> {
    format!(
        "From: alice@acme.test\r\nTo: bob@acme.test\r\nSubject: {CANARY_SUBJECT} {i}\r\n\
         Message-ID: <{i}.canary@acme.test>\r\n\r\n{CANARY_BODY} number {i}\r\n"
    )
    .into_bytes()
}

/// Words of a message's Subject and body worth looking for in the backup:
/// long, purely alphabetic (so they cannot be a random hit in ciphertext).
fn tokens(raw: &[u8], out: &mut BTreeSet<String>) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((&text, ""));
    let subject = head
        .lines()
        .find_map(|l| l.strip_prefix("Subject:"))
        .unwrap_or("");
    for w in subject
        .split(|c: char| !c.is_ascii_alphabetic())
        .chain(body.split(|c: char| !c.is_ascii_alphabetic()).take(200))
    {
        if w.len() >= 9 {
            out.insert(w.to_string());
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn all(a: &Archive, who: &Principal) -> usize {
    a.search(who, "", &SearchOptions::default()).unwrap().total
}

#[test]
fn restore_after_losing_the_data_directory_gives_every_message_back() {
    let Some(files) = corpus_slice() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let keystore = tmp.path().join("secrets").join("keystore.json");
    let backup_dir = tmp.path().join("backup");
    let target = LocalStore::open(&backup_dir).unwrap();

    let a = Archive::create(&data, &unlock(), opts(&keystore)).unwrap();
    let acme = TenantId::new("acme").unwrap();
    a.create_tenant(TenantSpec::new(acme.clone())).unwrap();
    let auditor = Principal::auditor(acme.clone());

    let mut originals: BTreeMap<MessageId, Vec<u8>> = BTreeMap::new();
    let mut canary_tokens = BTreeSet::new();
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        let r = a
            .ingest(&acme, &raw, &Envelope::new(Source::Import))
            .unwrap();
        if r.duplicate {
            continue;
        }
        tokens(&raw, &mut canary_tokens);
        originals.insert(r.id, raw);
    }
    let mut canary_ids = Vec::new();
    for i in 0..3 {
        let raw = canary_mail(i);
        let r = a
            .ingest(&acme, &raw, &Envelope::new(Source::Import))
            .unwrap();
        canary_ids.push(r.id);
        originals.insert(r.id, raw);
    }
    canary_tokens.insert(CANARY_SUBJECT.into());
    canary_tokens.insert(CANARY_BODY.into());
    assert!(
        canary_tokens.len() > 50,
        "too few tokens: {canary_tokens:?}"
    );
    let n = originals.len() as u64;

    // First run copies everything, the second nothing.
    let keep = BackupOptions { keep: 3 };
    let r1 = a.backup(&target, &keep).unwrap();
    assert_eq!(
        (r1.snapshot.id, r1.blobs_copied, r1.snapshot.blob_count),
        (1, n, n)
    );
    let r2 = a.backup(&target, &keep).unwrap();
    assert_eq!(
        (r2.snapshot.id, r2.blobs_copied, r2.blobs_present),
        (2, 0, n)
    );
    assert_eq!((r2.blobs_pruned, r2.snapshots_pruned.len()), (0, 0));
    let st = a.backup_status(&target).unwrap();
    assert_eq!((st.blobs_behind, st.blobs_referenced), (0, n));
    assert_eq!(st.snapshots, [1, 2]);

    // Deleted after snapshot 2: gone from the next snapshot, still in 2.
    let gone = canary_ids[0];
    match a
        .request_deletion(&auditor, &[gone], "erasure request")
        .unwrap()
    {
        DeletionOutcome::Done { deleted, .. } => assert_eq!(deleted, [gone]),
        other => panic!("{other:?}"),
    }
    // A message after the snapshot is behind until the next run.
    let late = canary_mail(99);
    let late_id = a
        .ingest(&acme, &late, &Envelope::new(Source::Import))
        .unwrap()
        .id;
    assert_eq!(a.backup_status(&target).unwrap().blobs_behind, 1);
    let r3 = a.backup(&target, &keep).unwrap();
    assert_eq!(
        (r3.snapshot.id, r3.blobs_copied, r3.snapshot.blob_count),
        (3, 1, n)
    );
    // Snapshot 2 still references the deleted message's blob.
    assert_eq!(r3.blobs_pruned, 0);
    drop(a);

    // Canary scan: no Subject or body word of any ingested message is in
    // any file of the backup (blobs, catalog copies, manifests, lists).
    // (The scan does see plaintext where there is some.)
    assert!(contains(&originals[&canary_ids[1]], CANARY_BODY.as_bytes()));
    let backup_files = common::files_under(&backup_dir);
    assert!(backup_files.len() as u64 >= n + 9);
    for f in &backup_files {
        let bytes = std::fs::read(f).unwrap();
        for t in &canary_tokens {
            assert!(
                !contains(&bytes, t.as_bytes()),
                "plaintext token {t:?} in backup file {}",
                f.display()
            );
        }
    }
    // ... and none is a key store.
    assert!(backup_files.iter().all(|f| !f.ends_with("keystore.json")));

    // Lose the data directory.
    std::fs::remove_dir_all(&data).unwrap();

    // Restore the newest snapshot: every message byte-identical and found.
    let restored = tmp.path().join("restored");
    let rr = backup::restore(
        &target,
        None,
        &restored,
        &LocalStore::open(restored.join("blobs")).unwrap(),
    )
    .unwrap();
    assert_eq!((rr.snapshot.id, rr.blobs_restored), (3, n));
    let b = Archive::open(&restored, &unlock(), opts(&keystore)).unwrap();
    for (id, raw) in &originals {
        if *id == gone {
            assert!(matches!(b.get_raw(&auditor, *id), Err(Error::NotFound(_))));
        } else {
            assert!(b.get_raw(&auditor, *id).unwrap() == *raw, "{id} differs");
        }
    }
    assert_eq!(b.get_raw(&auditor, late_id).unwrap(), late);
    assert_eq!(all(&b, &auditor) as u64, n);
    let hits = b
        .search(
            &auditor,
            &format!("subject:{CANARY_SUBJECT}"),
            &SearchOptions::default(),
        )
        .unwrap();
    assert_eq!(hits.total, 3); // canaries 1, 2 and 99
    let (first, mid) = originals
        .keys()
        .filter(|id| !canary_ids.contains(id))
        .find_map(|id| Some((id, b.get(&auditor, *id).unwrap().meta.message_id?)))
        .unwrap();
    let found = b
        .search(
            &auditor,
            &format!("message-id:{}", common::quote(&mid)),
            &SearchOptions::default(),
        )
        .unwrap();
    assert!(found.hits.iter().any(|h| h.id == *first));
    let report = b.verify(&auditor).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    drop(b);

    // Point in time: snapshot 2 still has the deleted message, not the late one.
    let then = tmp.path().join("then");
    backup::restore(
        &target,
        Some(2),
        &then,
        &LocalStore::open(then.join("blobs")).unwrap(),
    )
    .unwrap();
    let c = Archive::open(&then, &unlock(), opts(&keystore)).unwrap();
    assert_eq!(c.get_raw(&auditor, gone).unwrap(), originals[&gone]);
    assert!(matches!(
        c.get_raw(&auditor, late_id),
        Err(Error::NotFound(_))
    ));
    assert_eq!(all(&c, &auditor) as u64, n);
    assert!(c.verify(&auditor).unwrap().is_clean());
}

/// A small archive (no corpus needed) and a backup of it.
struct Small {
    tmp: tempfile::TempDir,
    keystore: PathBuf,
    data: PathBuf,
    backup_dir: PathBuf,
    archive: Archive,
    acme: TenantId,
    ids: Vec<MessageId>,
}

fn small() -> Small {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let keystore = tmp.path().join("keystore.json");
    let backup_dir = tmp.path().join("backup");
    let archive = Archive::create(&data, &unlock(), opts(&keystore)).unwrap();
    let acme = TenantId::new("acme").unwrap();
    archive
        .create_tenant(TenantSpec::new(acme.clone()))
        .unwrap();
    let ids = (0..4)
        .map(|i| {
            archive
                .ingest(&acme, &canary_mail(i), &Envelope::new(Source::Import))
                .unwrap()
                .id
        })
        .collect();
    Small {
        tmp,
        keystore,
        data,
        backup_dir,
        archive,
        acme,
        ids,
    }
}

fn restore_into(
    s: &Small,
    target: &LocalStore,
    snapshot: Option<u64>,
    name: &str,
) -> Result<PathBuf, Error> {
    let dir = s.tmp.path().join(name);
    backup::restore(
        target,
        snapshot,
        &dir,
        &LocalStore::open(dir.join("blobs")).unwrap(),
    )?;
    Ok(dir)
}

#[test]
fn keep_bounds_how_long_a_deleted_message_stays_in_the_backup() {
    let s = small();
    let target = LocalStore::open(&s.backup_dir).unwrap();
    let keep = BackupOptions { keep: 2 };
    s.archive.backup(&target, &keep).unwrap();
    let auditor = Principal::auditor(s.acme.clone());
    s.archive
        .request_deletion(&auditor, &[s.ids[0]], "erasure")
        .unwrap();
    let r2 = s.archive.backup(&target, &keep).unwrap();
    assert_eq!((r2.blobs_pruned, r2.snapshots_pruned.len()), (0, 0));
    // Snapshot 1 ages out with the third run: the blob leaves the backup.
    let r3 = s.archive.backup(&target, &keep).unwrap();
    assert_eq!(r3.snapshots_pruned, [1]);
    assert_eq!(r3.blobs_pruned, 1);
    assert_eq!(s.archive.backup_status(&target).unwrap().snapshots, [2, 3]);
    assert_eq!(target.list("t/").unwrap().len(), 3);
    assert!(matches!(
        restore_into(&s, &target, Some(1), "one"),
        Err(Error::Backup(BackupError::UnknownSnapshot { id: 1, .. }))
    ));
    assert!(matches!(
        s.archive.backup(&target, &BackupOptions { keep: 0 }),
        Err(Error::Backup(BackupError::Keep))
    ));
}

#[test]
fn damaged_backups_and_occupied_destinations_are_refused() {
    let s = small();
    let target = LocalStore::open(&s.backup_dir).unwrap();
    // Nothing backed up yet.
    assert!(matches!(
        restore_into(&s, &target, None, "r0"),
        Err(Error::Backup(BackupError::NoSnapshot { .. }))
    ));
    s.archive
        .backup(&target, &BackupOptions::default())
        .unwrap();

    // Into an existing archive: refused, nothing touched.
    assert!(matches!(
        backup::restore(
            &target,
            None,
            &s.data,
            &LocalStore::open(s.data.join("blobs")).unwrap()
        ),
        Err(Error::Backup(BackupError::Destination { .. }))
    ));

    // A lost blob: refused, and no catalog is left behind.
    let blob = target.list("t/").unwrap().remove(0);
    target.delete(&blob).unwrap();
    assert!(matches!(
        restore_into(&s, &target, None, "r1"),
        Err(Error::Backup(BackupError::MissingBlobs { count: 1, .. }))
    ));
    assert!(!s.tmp.path().join("r1/catalog.redb").exists());
    // A run repairs the gap (it copies what the target lacks).
    assert_eq!(
        s.archive
            .backup(&target, &BackupOptions::default())
            .unwrap()
            .blobs_copied,
        1
    );

    // A damaged catalog copy or blob list.
    let cat = ama_core::BlobKey::parse("snapshots/0000000002/catalog").unwrap();
    let mut bytes = target.get(&cat).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    target.put(&cat, &bytes).unwrap();
    assert!(matches!(
        restore_into(&s, &target, Some(2), "r2"),
        Err(Error::Backup(BackupError::Digest {
            id: 2,
            what: "catalog"
        }))
    ));
    let list = ama_core::BlobKey::parse("snapshots/0000000001/blobs").unwrap();
    target.put(&list, b"t/evil\n").unwrap();
    assert!(matches!(
        restore_into(&s, &target, Some(1), "r3"),
        Err(Error::Backup(BackupError::Digest {
            id: 1,
            what: "blob list"
        }))
    ));
    // A manifest of a newer version.
    let man = ama_core::BlobKey::parse("snapshots/0000000001/manifest.json").unwrap();
    let text = String::from_utf8(target.get(&man).unwrap()).unwrap();
    target
        .put(
            &man,
            text.replace("\"version\": 2", "\"version\": 9").as_bytes(),
        )
        .unwrap();
    assert!(matches!(
        restore_into(&s, &target, None, "r4"),
        Err(Error::Backup(BackupError::Manifest { .. }))
    ));
    let _ = &s.keystore;
}

#[test]
fn a_restore_without_the_key_store_opens_nothing() {
    let s = small();
    let target = LocalStore::open(&s.backup_dir).unwrap();
    s.archive
        .backup(&target, &BackupOptions::default())
        .unwrap();
    let dir = restore_into(&s, &target, None, "r").unwrap();
    // The backup holds no key: a fresh key store (another master key) cannot
    // unwrap the tenant key, and with none at all the archive does not open.
    assert!(Archive::open(&dir, &unlock(), common::options()).is_err());
    let other = s.tmp.path().join("other-keystore.json");
    drop(
        ama_core::LocalKeyStore::create(&other, &unlock(), ama_core::KdfParams::insecure_fast())
            .unwrap(),
    );
    // Opening rebuilds the indexes, which needs the tenant key: refused.
    let e = Archive::open(&dir, &unlock(), opts(&other)).err().unwrap();
    assert!(matches!(e, Error::Key(_)), "{e}");
    // With the right key store it works.
    let auditor = Principal::auditor(s.acme.clone());
    let c = Archive::open(&dir, &unlock(), opts(&s.keystore)).unwrap();
    assert_eq!(c.get_raw(&auditor, s.ids[1]).unwrap(), canary_mail(1));
}

#[test]
fn a_catalog_with_an_unknown_table_is_not_snapshotted() {
    let s = small();
    let target = LocalStore::open(&s.backup_dir).unwrap();
    drop(s.archive);
    {
        let db = redb::Database::create(s.data.join("catalog.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("future");
            w.open_table(def).unwrap().insert("k", "v").unwrap();
        }
        w.commit().unwrap();
    }
    let a = Archive::open(&s.data, &unlock(), opts(&s.keystore)).unwrap();
    let e = a.backup(&target, &BackupOptions::default()).unwrap_err();
    assert!(e.to_string().contains("future"), "{e}");
    assert!(target.list("snapshots/").unwrap().is_empty());
}

#[test]
fn destroying_a_tenant_makes_its_snapshots_unreadable_and_prunes_its_blobs() {
    let s = small();
    let target = LocalStore::open(&s.backup_dir).unwrap();
    let keep = BackupOptions { keep: 1 };
    s.archive.backup(&target, &keep).unwrap();
    s.archive
        .destroy_tenant(&s.acme, ama_core::Frontend::Cli)
        .unwrap();

    // The snapshot still holds the wrapped tenant key, but the KEK that
    // unwraps it is gone from the key store: the restore does not open.
    let dir = restore_into(&s, &target, Some(1), "after-destroy").unwrap();
    // (It opens — a destroyed tenant is skipped — but nothing of it reads.)
    let b = Archive::open(&dir, &unlock(), opts(&s.keystore)).unwrap();
    let auditor = Principal::auditor(s.acme.clone());
    for id in &s.ids {
        let e = b.get_raw(&auditor, *id).unwrap_err();
        assert!(matches!(e, Error::Key(_)), "{e}");
    }
    let e = b
        .search(&auditor, "", &SearchOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::Key(_)), "{e}");
    drop(b);

    // The next run leaves the tenant out, and with keep = 1 its blobs go.
    let r = s.archive.backup(&target, &keep).unwrap();
    assert_eq!((r.snapshot.blob_count, r.blobs_pruned), (0, 4));
    assert!(target.list("t/").unwrap().is_empty());
}
