//! Redundant storage through the engine: an archive on three local stores
//! with a write quorum of two (`Archive::open_with_store` +
//! `ReplicatedStore`). A store that fails is a real failure: its directory
//! is replaced by a file, so every operation on it gets an I/O error (as
//! root — which CI is — a read-only directory would not stop a write).
//! The S3 variant (a SeaweedFS process killed mid-import) is in
//! `ama-store-s3/tests/replicated.rs`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ama_core::archive::RepairOptions;
use ama_core::store::{
    BlobKey, BlobStore, LocalStore, Replica, ReplicatedStore, ReplicationOptions,
};
use ama_core::{
    Archive, ArchiveOptions, CryptoError, Envelope, Error, KdfParams, Principal, Region,
    SearchOptions, Source, StoreError, TenantId, TenantSpec, Unlock,
};

const PASS: &str = "correct horse battery staple";

fn unlock() -> Unlock {
    Unlock::passphrase(PASS)
}

fn opts() -> ArchiveOptions {
    ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    }
}

fn mail(i: usize) -> Vec<u8> {
    format!(
        "From: sender{i}@acme.test\r\nTo: team@acme.test\r\nSubject: report {i} zq{i}x\r\n\
         Message-ID: <{i}.repl@acme.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n\
         Figures for item {i}.\r\n"
    )
    .into_bytes()
}

/// Three local stores, a quorum of two, and an archive on them.
struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    roots: Vec<PathBuf>,
    store: Arc<ReplicatedStore>,
    archive: Archive,
    acme: TenantId,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        drop(Archive::create(&data, &unlock(), opts()).unwrap());
        let roots: Vec<PathBuf> = ["a", "b", "c"]
            .iter()
            .map(|n| tmp.path().join(format!("store-{n}")))
            .collect();
        let store = Arc::new(replicated(&data, &roots));
        let archive = Archive::open_with_store(&data, &unlock(), store.clone(), opts()).unwrap();
        let acme = TenantId::new("acme").unwrap();
        archive
            .create_tenant(TenantSpec::new(acme.clone()))
            .unwrap();
        Setup {
            _tmp: tmp,
            data,
            roots,
            store,
            archive,
            acme,
        }
    }

    fn ingest(&self, range: std::ops::Range<usize>) -> Result<usize, Error> {
        let mut n = 0;
        let items: Vec<(Vec<u8>, Envelope)> = range
            .map(|i| {
                (
                    mail(i),
                    Envelope::new(Source::Import).rcpt("team@acme.test"),
                )
            })
            .collect();
        for chunk in items.chunks(500) {
            for r in self.archive.ingest_batch(&self.acme, chunk)? {
                r.unwrap();
                n += 1;
            }
        }
        Ok(n)
    }

    fn found(&self, query: &str) -> usize {
        let who = Principal::auditor(self.acme.clone());
        self.archive
            .search(&who, query, &SearchOptions::default())
            .unwrap()
            .total
    }

    fn keys_in(&self, i: usize) -> Vec<BlobKey> {
        LocalStore::open(&self.roots[i])
            .unwrap()
            .list("t/")
            .unwrap()
    }
}

fn replicated(data: &Path, roots: &[PathBuf]) -> ReplicatedStore {
    let replicas = ["a", "b", "c"]
        .iter()
        .zip(roots)
        .map(|(n, root)| {
            Replica::new(
                *n,
                Arc::new(LocalStore::open(root).unwrap()) as Arc<dyn BlobStore>,
            )
            .unwrap()
        })
        .collect();
    ReplicatedStore::open(
        replicas,
        ReplicationOptions::majority(3),
        data.join("replication"),
    )
    .unwrap()
}

/// The store's directory becomes a file: every operation on it fails.
fn break_store(root: &Path) {
    let aside = root.with_extension("aside");
    std::fs::rename(root, &aside).unwrap();
    std::fs::write(root, b"this store is down").unwrap();
}

fn mend_store(root: &Path) {
    std::fs::remove_file(root).unwrap();
    std::fs::rename(root.with_extension("aside"), root).unwrap();
}

#[test]
fn one_store_down_during_import_quorum_holds_and_repair_catches_up() {
    let s = Setup::new();
    assert_eq!(s.ingest(0..1000).unwrap(), 1000);
    break_store(&s.roots[2]);
    // 2,000 more while store c is down: quorum 2 of 3 holds.
    assert_eq!(s.ingest(1000..3000).unwrap(), 2000);
    assert_eq!(s.found(""), 3000);
    assert_eq!(s.found("zq2999x"), 1);
    assert_eq!(
        s.store.backlog().unwrap(),
        (2000, 0),
        "c's copies are queued"
    );
    mend_store(&s.roots[2]);
    assert_eq!(s.keys_in(2).len(), 1000);

    let report = s.archive.repair(RepairOptions::default()).unwrap();
    assert_eq!(report.copies_restored, 2000, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    let want = s.keys_in(0);
    assert_eq!(want.len(), 3000);
    assert_eq!(s.keys_in(1), want);
    assert_eq!(s.keys_in(2), want);
    // A deep scan (every copy read and authenticated) finds nothing more.
    let deep = s
        .archive
        .repair(RepairOptions {
            scan: true,
            deep: true,
        })
        .unwrap();
    assert_eq!(
        (deep.missing_found, deep.corrupt_found, deep.copies_restored),
        (0, 0, 0),
        "{deep:?}"
    );
    assert!(deep.is_clean(), "{deep:?}");
    // Each store alone now serves every message, byte-exact.
    drop(s.archive);
    for only in 0..3 {
        let store: Arc<dyn BlobStore> = Arc::new(LocalStore::open(&s.roots[only]).unwrap());
        let a = Archive::open_with_store(&s.data, &unlock(), store, opts()).unwrap();
        let who = Principal::auditor(s.acme.clone());
        // The engine's integrity check (every message decrypted against its
        // logged digest) passes on each store alone.
        let v = a.verify(&who).unwrap();
        assert!(v.is_clean(), "store {only}: {:?}", v.problems);
        assert_eq!(v.verified, 3000, "store {only}");
        let hits = a
            .search(
                &who,
                "zq2500x OR zq10x OR zq1999x",
                &SearchOptions::default(),
            )
            .unwrap();
        assert_eq!(hits.total, 3, "store {only}");
        for h in hits.hits {
            let raw = a.get_raw(&who, h.id).unwrap();
            assert!(raw.starts_with(b"From: sender"));
        }
    }
}

#[test]
fn two_stores_down_ingest_fails_clearly_and_nothing_is_acknowledged() {
    let s = Setup::new();
    s.ingest(0..100).unwrap();
    break_store(&s.roots[1]);
    break_store(&s.roots[2]);
    let err = s.ingest(100..400).unwrap_err();
    match &err {
        Error::Store(StoreError::Quorum {
            needed,
            acknowledged,
            failed,
        }) => {
            assert_eq!((*needed, *acknowledged), (2, 1));
            assert_eq!(failed.len(), 2, "{failed:?}");
            assert!(failed[0].starts_with("b: ") && failed[1].starts_with("c: "));
        }
        other => panic!("expected a quorum error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("write quorum not reached: 1 of the 2 required copies"),
        "{text}"
    );
    // Nothing of the batch exists: not counted, not found, not queued.
    assert_eq!(s.archive.stats(&s.acme).unwrap().messages, 100);
    assert_eq!(s.found(""), 100);
    assert_eq!(s.found("zq150x"), 0);
    assert_eq!(s.store.backlog().unwrap(), (0, 0));
    // With the stores back, the same mail goes in (it was never recorded,
    // so it is not a "duplicate" of anything).
    mend_store(&s.roots[1]);
    mend_store(&s.roots[2]);
    let Setup {
        _tmp,
        data,
        roots,
        store,
        archive,
        acme,
    } = s;
    drop((archive, store));
    let store = Arc::new(replicated(&data, &roots));
    let archive = Archive::open_with_store(&data, &unlock(), store, opts()).unwrap();
    let r = archive
        .ingest_batch(
            &acme,
            &[(
                mail(150),
                Envelope::new(Source::Import).rcpt("team@acme.test"),
            )],
        )
        .unwrap();
    assert!(!r[0].as_ref().unwrap().duplicate);
}

#[test]
fn a_corrupted_copy_is_skipped_and_repair_rewrites_it() {
    let s = Setup::new();
    s.ingest(0..20).unwrap();
    let who = Principal::auditor(s.acme.clone());
    let hit = &s
        .archive
        .search(&who, "zq7x", &SearchOptions::default())
        .unwrap()
        .hits[0];
    let key = s
        .keys_in(0)
        .into_iter()
        .find(|k| k.as_str().ends_with(&hit.id.to_string()))
        .unwrap();
    // Flip one byte of the copy in store a (the first one read).
    let path_a = s.roots[0].join(key.as_str());
    let good = std::fs::read(&path_a).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&path_a, &bad).unwrap();
    // The read skips it and returns the right bytes.
    assert_eq!(s.archive.get_raw(&who, hit.id).unwrap(), mail(7));
    assert_eq!(
        s.store.backlog().unwrap(),
        (1, 0),
        "the damaged copy is queued"
    );
    let r = s.archive.repair(RepairOptions::default()).unwrap();
    assert_eq!(r.copies_restored, 1, "{r:?}");
    assert_eq!(std::fs::read(&path_a).unwrap(), good);

    // Damage nobody has read yet is found by a deep scan.
    let other = &s.keys_in(2)[3];
    let path_c = s.roots[2].join(other.as_str());
    let good_c = std::fs::read(&path_c).unwrap();
    std::fs::write(&path_c, &good_c[..good_c.len() - 1]).unwrap();
    let r = s
        .archive
        .repair(RepairOptions {
            scan: true,
            deep: true,
        })
        .unwrap();
    assert_eq!((r.corrupt_found, r.copies_restored), (1, 1), "{r:?}");
    assert_eq!(std::fs::read(&path_c).unwrap(), good_c);

    // A copy missing without anyone noticing is found by a scan.
    std::fs::remove_file(s.roots[1].join(other.as_str())).unwrap();
    let r = s
        .archive
        .repair(RepairOptions {
            scan: true,
            deep: false,
        })
        .unwrap();
    assert_eq!((r.missing_found, r.copies_restored), (1, 1), "{r:?}");

    // Every copy damaged: the read fails with the authentication error.
    for root in &s.roots {
        std::fs::write(root.join(key.as_str()), &bad).unwrap();
    }
    match s.archive.get_raw(&who, hit.id) {
        Err(Error::Crypto(CryptoError::Authentication { .. })) => {}
        other => panic!("all copies damaged: {other:?}"),
    }
    let r = s.archive.repair(RepairOptions::default()).unwrap();
    assert_eq!(r.unrecoverable, vec![key.to_string()]);
    assert!(!r.is_clean());
}

#[test]
fn deletion_reaches_a_store_that_was_down() {
    let s = Setup::new();
    s.ingest(0..5).unwrap();
    let key = s.keys_in(0)[0].clone();
    break_store(&s.roots[2]);
    s.store.delete(&key).unwrap();
    assert_eq!(s.store.backlog().unwrap(), (0, 1));
    mend_store(&s.roots[2]);
    // Back but not yet repaired: its stale copy is neither served nor listed.
    assert!(s.roots[2].join(key.as_str()).exists());
    assert!(matches!(
        s.store.get(&key),
        Err(StoreError::NotFound { .. })
    ));
    assert!(!s.store.list("t/").unwrap().contains(&key));
    let r = s.archive.repair(RepairOptions::default()).unwrap();
    assert_eq!(r.deletions_replayed, 1);
    assert!(!s.roots[2].join(key.as_str()).exists());
    assert_eq!(s.store.backlog().unwrap(), (0, 0));
}

#[test]
fn the_repair_queue_survives_a_restart_and_holds_no_plaintext() {
    let s = Setup::new();
    break_store(&s.roots[1]);
    s.ingest(0..50).unwrap();
    let Setup {
        _tmp,
        data,
        roots,
        store,
        archive,
        ..
    } = s;
    drop((archive, store));
    let queue = std::fs::read(data.join("replication/replication.redb")).unwrap();
    for needle in ["acme", "sender1", "zq1x", "Figures", "report"] {
        assert!(
            !queue.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} in the repair queue"
        );
    }
    mend_store(&roots[1]);
    let store = Arc::new(replicated(&data, &roots));
    assert_eq!(store.backlog().unwrap(), (50, 0), "queue reopened");
    let archive = Archive::open_with_store(&data, &unlock(), store.clone(), opts()).unwrap();
    let r = archive.repair(RepairOptions::default()).unwrap();
    assert_eq!(r.copies_restored, 50);
    let b = LocalStore::open(&roots[1]).unwrap();
    assert_eq!(b.list("t/").unwrap().len(), 50);
}

#[test]
fn a_tenant_cannot_use_a_store_of_another_region() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    drop(Archive::create(&data, &unlock(), opts()).unwrap());
    let us_store: Arc<dyn BlobStore> = Arc::new(
        LocalStore::open(tmp.path().join("us"))
            .unwrap()
            .with_region(Region::Us),
    );
    let eu_store: Arc<dyn BlobStore> = Arc::new(
        LocalStore::open(tmp.path().join("eu"))
            .unwrap()
            .with_region(Region::Eu),
    );

    // At configuration time: an EU tenant on a US store is refused.
    let a = Archive::open_with_store(&data, &unlock(), us_store.clone(), opts()).unwrap();
    let eu = TenantId::new("acme-eu").unwrap();
    match a.create_tenant(TenantSpec::new(eu.clone())) {
        Err(Error::Store(StoreError::WrongRegion {
            tenant_region,
            store_region,
            ..
        })) => {
            assert_eq!(
                (tenant_region.as_str(), store_region.as_str()),
                ("eu", "us")
            );
        }
        other => panic!("EU tenant on a US store: {other:?}"),
    }
    assert!(a.tenants().unwrap().is_empty(), "nothing was created");
    drop(a);

    // At write time: created on an EU store, then pointed at a US store.
    let a = Archive::open_with_store(&data, &unlock(), eu_store.clone(), opts()).unwrap();
    a.create_tenant(TenantSpec::new(eu.clone())).unwrap();
    drop(a);
    let a = Archive::open_with_store(&data, &unlock(), us_store.clone(), opts()).unwrap();
    let env = Envelope::new(Source::Import).rcpt("team@acme.test");
    let err = a.ingest(&eu, &mail(1), &env).unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::WrongRegion { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(us_store.list("").unwrap(), vec![], "not a byte moved");
    assert_eq!(a.stats(&eu).unwrap().messages, 0);

    // Replicas of one set must share a region.
    let mixed = ReplicatedStore::open(
        vec![
            Replica::new("eu", eu_store).unwrap(),
            Replica::new("us", us_store).unwrap(),
        ],
        ReplicationOptions::majority(2),
        tmp.path().join("state"),
    );
    assert!(matches!(mixed, Err(StoreError::Config(_))));
}

#[test]
fn an_archive_configured_for_other_stores_is_not_opened_on_the_default_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    drop(Archive::create(&data, &unlock(), opts()).unwrap());
    std::fs::write(data.join("stores.json"), b"{}").unwrap();
    match Archive::open(&data, &unlock(), opts()) {
        Err(Error::DataDir { reason, .. }) => assert!(reason.contains("stores.json"), "{reason}"),
        other => panic!("opened on DATA/blobs despite stores.json: {other:?}"),
    }
}
