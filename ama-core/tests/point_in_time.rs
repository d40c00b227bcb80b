//! Point-in-time restore (issue 9, "the catalog journal is replayable"):
//! between two backup runs, every catalog commit is recorded in the
//! journal; a run ships those rows, and a restore `Until` a moment takes
//! the newest snapshot at or before it and replays the rows up to it.
//!
//! The main test walks import, backup, import, delete, user and login,
//! backup, import, and restores to the moment after each step: the restored
//! catalog must hold exactly that step's state (same content digest: every
//! table but the derived ones), its messages byte-identical, and `verify`
//! clean. Damaged or missing segments, a moment before every snapshot, and
//! a destroyed tenant's changes still in the journal are covered too.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ama_core::backup::{self, BackupError, BackupOptions, RestorePoint, RestoreReport};
use ama_core::catalog::Catalog;
use ama_core::catalog::journal::{JournalRow, Op, Segment, Table};
use ama_core::identity::UserSpec;

use ama_core::{
    AccessContext, Archive, ArchiveOptions, BlobStore, Envelope, Error, Frontend, LocalStore,
    MessageId, Principal, Role, SearchOptions, Source, TenantId, Unlock,
};
use time::OffsetDateTime;

fn opts(keystore: &Path) -> ArchiveOptions {
    ArchiveOptions {
        keystore: Some(keystore.to_path_buf()),
        // Read audits commit lazily: their journal ops ride on the next
        // durable commit, and must still be replayed.
        durable_read_audit: false,
        ..common::options()
    }
}

fn unlock() -> Unlock {
    Unlock::passphrase(common::PASS)
}

fn mail(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: alice@acme.test\r\nTo: bob@acme.test\r\nSubject: {tag} number {i}\r\n\
         Message-ID: <{tag}.{i}@acme.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n\
         Body of {tag} {i}.\r\n"
    )
    .into_bytes()
}

/// The state after one step: when it was reached, the catalog digest, and
/// the messages there with their bytes.
struct Step {
    name: &'static str,
    at: OffsetDateTime,
    digest: [u8; 32],
    messages: BTreeMap<MessageId, Vec<u8>>,
}

struct Fixture {
    tmp: tempfile::TempDir,
    keystore: PathBuf,
    archive: Archive,
    acme: TenantId,
    target: LocalStore,
    live: BTreeMap<MessageId, Vec<u8>>,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let keystore = tmp.path().join("secrets").join("keystore.json");
        let archive = Archive::create(tmp.path().join("data"), &unlock(), opts(&keystore)).unwrap();
        let acme = common::tenant(&archive, "acme");
        let target = LocalStore::open(tmp.path().join("backup")).unwrap();
        Fixture {
            tmp,
            keystore,
            archive,
            acme,
            target,
            live: BTreeMap::new(),
        }
    }

    fn import(&mut self, tag: &str, n: usize) -> Vec<MessageId> {
        (0..n)
            .map(|i| {
                let raw = mail(tag, i);
                let id = self
                    .archive
                    .ingest(&self.acme, &raw, &Envelope::new(Source::Import))
                    .unwrap()
                    .id;
                self.live.insert(id, raw);
                id
            })
            .collect()
    }

    /// Records the state now; the next commit is strictly later.
    fn step(&self, name: &'static str) -> Step {
        let digest = self.archive.catalog_digest().unwrap();
        let at = OffsetDateTime::now_utc();
        std::thread::sleep(Duration::from_millis(5));
        Step {
            name,
            at,
            digest,
            messages: self.live.clone(),
        }
    }

    fn backup(&self) -> backup::BackupReport {
        let r = self
            .archive
            .backup(&self.target, &BackupOptions::default())
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        r
    }

    fn restore(&self, point: RestorePoint, name: &str) -> Result<(PathBuf, RestoreReport), Error> {
        let dir = self.tmp.path().join(name);
        let r = backup::restore_at(
            &self.target,
            point,
            &dir,
            &LocalStore::open(dir.join("blobs")).unwrap(),
        )?;
        Ok((dir, r))
    }
}

fn digest_of(dir: &Path) -> [u8; 32] {
    Catalog::open(&dir.join("catalog.redb"))
        .unwrap()
        .content_digest()
        .unwrap()
}

#[test]
fn a_restore_until_each_moment_gives_exactly_the_state_of_that_moment() {
    let mut f = Fixture::new();
    let auditor = Principal::auditor(f.acme.clone());
    let admin = Principal::admin(f.acme.clone());
    let before_all = OffsetDateTime::now_utc() - time::Duration::hours(1);

    // A, then the first backup (it turns the journal on).
    let a = f.import("alpha", 4);
    let r1 = f.backup();
    assert_eq!(r1.journal_rows, 0);
    let s_a = f.step("A backed up");

    // B, a deletion, a user who logs in and searches (lazy read audit).
    f.import("bravo", 3);
    let s_b = f.step("B imported");
    assert!(
        f.archive
            .backup_status(&f.target)
            .unwrap()
            .journal_rows_behind
            > 0,
        "commits since the run are recorded"
    );
    f.live.remove(&a[0]);
    f.archive
        .request_deletion(&auditor, &[a[0]], "erasure request 17")
        .unwrap();
    let s_c = f.step("C deleted");
    f.archive
        .add_user(
            &admin,
            UserSpec {
                id: "carol".into(),
                display_name: None,
                addresses: vec!["bob@acme.test".into()],
                roles: vec![Role::EndUser],
                password: Some("a long and unguessable passphrase 42".into()),
            },
        )
        .unwrap();
    let session = f
        .archive
        .login(
            &f.acme,
            "carol",
            "a long and unguessable passphrase 42",
            &AccessContext::new(Frontend::Http),
        )
        .unwrap();
    let carol = f
        .archive
        .authenticate(&session.token, &AccessContext::new(Frontend::Http))
        .unwrap();
    assert_eq!(
        f.archive
            .search(&carol, "bravo", &SearchOptions::default())
            .unwrap()
            .total,
        3
    );
    // A durable commit after the lazy one: its row carries both.
    f.import("delta", 1);
    let s_d = f.step("user added, logged in, searched, D imported");
    f.import("foxtrot", 1);
    let s_f = f.step("F imported");

    // The second run ships the rows since the first, and prunes them here.
    let r2 = f.backup();
    assert!(r2.journal_rows >= 4, "{}", r2.journal_rows);
    assert_eq!(
        f.archive
            .backup_status(&f.target)
            .unwrap()
            .journal_rows_behind,
        0
    );
    let segments = f.target.list("journal/").unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");

    // E: committed after the last run, so in no backup.
    f.import("echo", 1);
    let after_all = OffsetDateTime::now_utc();

    // Before the first snapshot: refused with where the backup starts.
    let e = f
        .restore(RestorePoint::Until(before_all), "too-early")
        .unwrap_err();
    assert!(
        matches!(e, Error::Backup(BackupError::TooEarly { .. })),
        "{e}"
    );

    for (i, s) in [&s_a, &s_b, &s_c, &s_d, &s_f].into_iter().enumerate() {
        let (dir, r) = f
            .restore(RestorePoint::Until(s.at), &format!("until-{i}"))
            .unwrap();
        assert_eq!(digest_of(&dir), s.digest, "catalog after {:?}", s.name);
        assert_eq!(r.blobs_restored, s.messages.len() as u64, "{}", s.name);
        assert_eq!(r.blobs_never_backed_up, 0);
        let b = Archive::open(&dir, &unlock(), opts(&f.keystore)).unwrap();
        for (id, raw) in &s.messages {
            assert!(
                b.get_raw(&auditor, *id).unwrap() == *raw,
                "{id} after {}",
                s.name
            );
        }
        if !s.messages.contains_key(&a[0]) {
            assert!(matches!(b.get_raw(&auditor, a[0]), Err(Error::NotFound(_))));
        }
        let found = b.search(&auditor, "", &SearchOptions::default()).unwrap();
        assert_eq!(found.total, s.messages.len(), "{}", s.name);
        let report = b.verify(&auditor).unwrap();
        assert!(report.is_clean(), "{}: {:?}", s.name, report.problems);
        assert!(b.verify_audit(&auditor).unwrap().is_intact(), "{}", s.name);
    }
    // The moments between the runs were replayed from snapshot 1; the last
    // one is snapshot 2 itself (nothing was committed between).
    let (_, rb) = f.restore(RestorePoint::Until(s_d.at), "rb").unwrap();
    assert_eq!(rb.snapshot.id, 1);
    assert!(rb.journal_rows > 0 && !rb.ends_before_until);
    let (_, rf) = f.restore(RestorePoint::Until(s_f.at), "rf").unwrap();
    assert_eq!((rf.snapshot.id, rf.journal_rows), (2, 0));

    // After the last run: the newest state, and the report says so.
    let (dir, r) = f.restore(RestorePoint::Until(after_all), "latest").unwrap();
    assert!(r.ends_before_until);
    assert_eq!(digest_of(&dir), s_f.digest);
}

#[test]
fn a_damaged_or_missing_segment_is_refused_with_the_reason() {
    let mut f = Fixture::new();
    f.import("alpha", 2);
    f.backup();
    f.import("bravo", 2);
    let s = f.step("B");
    // A later commit, so the moment lies between the two snapshots.
    f.import("charlie", 1);
    f.backup();
    let seg = f.target.list("journal/").unwrap().remove(0);

    let mut bytes = f.target.get(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    f.target.put(&seg, &bytes).unwrap();
    let e = f.restore(RestorePoint::Until(s.at), "damaged").unwrap_err();
    assert!(
        matches!(&e, Error::Backup(BackupError::Journal { snapshot: 1, reason }) if reason.contains("digest")),
        "{e}"
    );
    assert!(!f.tmp.path().join("damaged/catalog.redb").exists());

    f.target.delete(&seg).unwrap();
    let e = f.restore(RestorePoint::Until(s.at), "missing").unwrap_err();
    assert!(
        matches!(&e, Error::Backup(BackupError::Journal { reason, .. }) if reason.contains("missing")),
        "{e}"
    );
    // The snapshots themselves still restore.
    f.restore(RestorePoint::Snapshot(1), "one").unwrap();
    f.restore(RestorePoint::Latest, "two").unwrap();
}

#[test]
fn segments_that_no_kept_snapshot_needs_are_pruned() {
    let mut f = Fixture::new();
    let keep = BackupOptions { keep: 2 };
    for tag in ["a", "b", "c", "d"] {
        f.import(tag, 1);
        f.archive.backup(&f.target, &keep).unwrap();
    }
    // Snapshots 3 and 4 are kept; only the segment bringing 3 forward to 4
    // (shipped by run 4) is needed.
    let left = f.target.list("journal/").unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    let m = backup::snapshots(&f.target).unwrap();
    let j4 = m.last().unwrap().journal.as_ref().unwrap();
    assert_eq!(left[0].as_str(), j4.segments[0].key);
    // A restored archive's journal is a new one (its history forks there).
    let (dir, _) = f.restore(RestorePoint::Latest, "r").unwrap();
    let restored = Catalog::open(&dir.join("catalog.redb")).unwrap();
    let state = restored.journal_state().unwrap();
    assert_ne!(state.id.as_deref(), Some(j4.id.as_str()));
    assert_eq!(state.last_seq, j4.seq);
}

#[test]
fn a_destroyed_tenants_changes_leave_the_unshipped_journal() {
    let mut f = Fixture::new();
    let other = common::tenant(&f.archive, "other");
    f.backup();
    f.import("acme-mail", 2);
    f.archive
        .ingest(
            &other,
            &mail("other-mail", 0),
            &Envelope::new(Source::Import),
        )
        .unwrap();
    f.archive.destroy_tenant(&other, Frontend::Cli).unwrap();
    f.backup();
    let seg = f.target.list("journal/").unwrap().remove(0);
    let segment = Segment::from_bytes(&f.target.get(&seg).unwrap()).unwrap();
    let mut acme_ops = 0;
    for (_, bytes) in &segment.rows {
        for op in JournalRow::from_bytes(bytes).unwrap().ops {
            if op.tenant() == "other" {
                assert!(
                    matches!(op, Op::Put(Table::Shreds, ..) | Op::PurgeTenant(_)),
                    "a destroyed tenant's change was shipped: {op:?}"
                );
            } else {
                acme_ops += 1;
            }
        }
    }
    assert!(acme_ops > 0);
}

#[test]
fn a_message_added_and_deleted_between_runs_is_counted_and_named_by_verify() {
    let mut f = Fixture::new();
    let auditor = Principal::auditor(f.acme.clone());
    f.import("alpha", 1);
    f.backup();
    let brief = f.import("brief", 1)[0];
    let s = f.step("brief there");
    f.archive
        .request_deletion(&auditor, &[brief], "sent by mistake")
        .unwrap();
    f.backup();
    // The run after the deletion never saw the message: no blob in the backup.
    let (dir, r) = f.restore(RestorePoint::Until(s.at), "between").unwrap();
    assert_eq!(digest_of(&dir), s.digest);
    assert_eq!((r.blobs_restored, r.blobs_never_backed_up), (1, 1));
    // It opens (the missing blob does not stop the re-index), the message is
    // found by what the catalog knows of it, and verify names it.
    let b = Archive::open(&dir, &unlock(), opts(&f.keystore)).unwrap();
    let found = b
        .search(&auditor, "subject:brief", &SearchOptions::default())
        .unwrap();
    assert_eq!(found.hits.iter().map(|h| h.id).collect::<Vec<_>>(), [brief]);
    let report = b.verify(&auditor).unwrap();
    assert!(
        report.problems.iter().any(|(id, _)| *id == Some(brief)),
        "{:?}",
        report.problems
    );
}
