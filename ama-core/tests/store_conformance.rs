//! The `BlobStore` contract, run against every backend. A new backend
//! (S3, replicated, backup) adds one line at the bottom.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use ama_core::store::{BlobKey, BlobStore, LocalStore, MemoryStore};
use ama_core::{MessageId, StoreError};

fn key(s: &str) -> BlobKey {
    BlobKey::parse(s).unwrap()
}

fn conformance(store: &dyn BlobStore) {
    // put/get round trip, including empty and binary blobs
    let k1 = key("t/abc/00/one");
    store.put(&k1, b"hello").unwrap();
    assert_eq!(store.get(&k1).unwrap(), b"hello");
    let k0 = key("t/abc/00/empty");
    store.put(&k0, b"").unwrap();
    assert_eq!(store.get(&k0).unwrap(), b"");
    let bin: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let kb = key("t/abc/01/bin");
    store.put(&kb, &bin).unwrap();
    assert_eq!(store.get(&kb).unwrap(), bin);
    // overwrite replaces
    store.put(&k1, b"again").unwrap();
    assert_eq!(store.get(&k1).unwrap(), b"again");
    // missing key
    assert!(matches!(
        store.get(&key("t/abc/00/missing")),
        Err(StoreError::NotFound { .. })
    ));
    // put_many
    let many: Vec<(BlobKey, Vec<u8>)> = (0..50)
        .map(|i| (key(&format!("t/def/{:02}/m{i}", i % 7)), vec![i as u8; i]))
        .collect();
    store.put_many(&many).unwrap();
    for (k, v) in &many {
        assert_eq!(&store.get(k).unwrap(), v);
    }
    // list by prefix, sorted, complete, nothing else
    let listed = store.list("t/def/").unwrap();
    let mut want: Vec<BlobKey> = many.iter().map(|(k, _)| k.clone()).collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(
        store.list("t/abc/00/").unwrap(),
        vec![k0.clone(), k1.clone()]
    );
    assert_eq!(store.list("t/zzz/").unwrap(), vec![]);
    assert_eq!(store.list("t/abc/00/o").unwrap(), vec![k1.clone()]);
    // delete is idempotent
    store.delete(&k1).unwrap();
    store.delete(&k1).unwrap();
    assert!(matches!(store.get(&k1), Err(StoreError::NotFound { .. })));
    // message keys are valid keys
    let mk = BlobKey::message("0123abcd", MessageId::generate().unwrap());
    store.put(&mk, b"x").unwrap();
    assert_eq!(store.get(&mk).unwrap(), b"x");
    // concurrent use
    std::thread::scope(|s| {
        for n in 0..4 {
            s.spawn(move || {
                for i in 0..20 {
                    let k = key(&format!("t/con/{n}/{i}"));
                    store.put(&k, format!("{n}-{i}").as_bytes()).unwrap();
                    assert_eq!(store.get(&k).unwrap(), format!("{n}-{i}").as_bytes());
                }
            });
        }
    });
    assert_eq!(store.list("t/con/").unwrap().len(), 80);
}

#[test]
fn keys_are_validated() {
    for bad in [
        "", "/a", "a/", "a//b", "a/../b", "./a", "a b", "a/é", "a\\b",
    ] {
        assert!(BlobKey::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn memory_store_conforms() {
    conformance(&MemoryStore::new());
}

#[test]
fn local_store_conforms() {
    let d = tempfile::tempdir().unwrap();
    conformance(&LocalStore::open(d.path()).unwrap());
    // A crash leftover is never listed and is cleaned up on open.
    std::fs::write(d.path().join("t/abc/00/stray.tmp"), b"half").unwrap();
    let s = LocalStore::open(d.path()).unwrap();
    assert!(!d.path().join("t/abc/00/stray.tmp").exists());
    assert!(
        s.list("t/abc/")
            .unwrap()
            .iter()
            .all(|k| !k.as_str().ends_with(".tmp"))
    );
}
