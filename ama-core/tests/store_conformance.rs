//! The `BlobStore` contract (`ama_core::store::conformance`), run against
//! the stores of this crate. Other store crates (S3) call the same suite.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use ama_core::store::{
    BlobKey, BlobStore, BlobVerifier, LocalStore, MemoryStore, Replica, ReplicatedStore,
    ReplicationOptions, conformance,
};

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
    let s = MemoryStore::new();
    conformance::run(&s);
    // Twice against the same store: the suite keeps to its own namespace.
    conformance::run(&s);
}

#[test]
fn local_store_conforms() {
    let d = tempfile::tempdir().unwrap();
    conformance::run(&LocalStore::open(d.path()).unwrap());
    // A crash leftover (in ~tmp/) is never listed and is cleaned up by
    // recover; an older build's leftover beside the blobs is never listed.
    let s = LocalStore::open(d.path()).unwrap();
    s.put(&BlobKey::parse("t/abc/00/kept").unwrap(), b"x")
        .unwrap();
    std::fs::write(d.path().join("~tmp/99-0"), b"half").unwrap();
    std::fs::write(d.path().join("t/abc/00/stray.tmp"), b"half").unwrap();
    assert_eq!(s.list("").unwrap().len(), 1);
    let s = LocalStore::open(d.path()).unwrap();
    assert!(d.path().join("~tmp/99-0").exists(), "open removes nothing");
    s.recover().unwrap();
    assert!(!d.path().join("~tmp/99-0").exists());
    assert_eq!(s.list("t/abc/").unwrap().len(), 1);
}

fn replicated(dir: &std::path::Path, stores: Vec<(&str, Arc<dyn BlobStore>)>) -> ReplicatedStore {
    let replicas = stores
        .into_iter()
        .map(|(n, s)| Replica::new(n, s).unwrap())
        .collect();
    ReplicatedStore::open(replicas, ReplicationOptions::majority(3), dir.join("state")).unwrap()
}

#[test]
fn replicated_store_conforms() {
    let d = tempfile::tempdir().unwrap();
    let local: Arc<dyn BlobStore> = Arc::new(LocalStore::open(d.path().join("b")).unwrap());
    let r = replicated(
        d.path(),
        vec![
            ("a", Arc::new(MemoryStore::new())),
            ("b", local),
            ("c", Arc::new(MemoryStore::new())),
        ],
    );
    conformance::run(&r);
    assert_eq!(
        r.backlog().unwrap(),
        (0, 0),
        "nothing failed, nothing queued"
    );
}

#[test]
fn replicated_store_conforms_with_one_store_down() {
    let d = tempfile::tempdir().unwrap();
    // A local store whose directory has been replaced by a file: every
    // operation on it fails with an I/O error (as root, a read-only
    // directory would not stop writes).
    let broken = d.path().join("broken");
    let local: Arc<dyn BlobStore> = Arc::new(LocalStore::open(&broken).unwrap());
    std::fs::remove_dir(&broken).unwrap();
    std::fs::write(&broken, b"not a directory").unwrap();
    let r = replicated(
        d.path(),
        vec![
            ("a", Arc::new(MemoryStore::new())),
            ("b", local),
            ("c", Arc::new(MemoryStore::new())),
        ],
    );
    conformance::run(&r);
    let (missing, deletes) = r.backlog().unwrap();
    // The suite deletes what it wrote: no copy is owed any more, but the
    // deletions the broken store missed are pending.
    assert_eq!(missing, 0, "a deleted blob is never repaired back");
    assert!(deletes > 0, "deletions it missed are pending");
    // The store comes back; repair replays the deletions.
    std::fs::remove_file(&broken).unwrap();
    std::fs::create_dir(&broken).unwrap();
    struct Any;
    impl BlobVerifier for Any {
        fn wanted(&self, _: &BlobKey) -> bool {
            true
        }
        fn authentic(&self, _: &BlobKey, _: &[u8]) -> bool {
            true
        }
    }
    let report = r.repair(&Any, None).unwrap();
    assert_eq!(report.deletions_replayed, deletes);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(r.backlog().unwrap(), (0, 0));
}
