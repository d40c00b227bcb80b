//! The [`BlobStore`] contract as one executable check, run against every
//! backend: local, in-memory, S3 (`ama-store-s3`), replicated — and any
//! store an embedder writes. Like tantivy's directory tests, one suite keeps
//! the backends honest about the same promises.
//!
//! Compiled only with the cargo feature `conformance` (a test helper has no
//! place in a production build). It panics with a message naming the broken
//! promise, so call it from a `#[test]`:
//!
//! ```
//! # #[cfg(feature = "conformance")] {
//! ama_core::store::conformance::run(&ama_core::MemoryStore::new());
//! # }
//! ```
//!
//! Every key the suite writes lies under a fresh random namespace, so it can
//! run against a store (a shared bucket) that already holds other data, and
//! twice against the same store.

use super::{BlobKey, BlobStore};
use crate::error::StoreError;
use crate::message::MessageId;

/// Size of the "large" blob: above the 5 MiB S3 multipart part minimum, so an
/// object store that switches to multipart at 5 MiB exercises it here.
pub const LARGE_BLOB: usize = 6 * 1024 * 1024 + 17;

fn key(s: &str) -> BlobKey {
    match BlobKey::parse(s) {
        Ok(k) => k,
        Err(e) => panic!("conformance suite built an invalid key {s:?}: {e}"),
    }
}

fn ok<T>(r: Result<T, StoreError>, what: &str, store: &dyn BlobStore) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{}: {what} failed: {e} ({e:?})", store.describe()),
    }
}

fn namespace() -> String {
    let mut b = [0u8; 6];
    if crate::crypto::random_fill(&mut b).is_err() {
        panic!("no random numbers for the conformance namespace");
    }
    format!("conf-{}", crate::crypto::hex(&b))
}

/// Runs every check of the contract against `store`; panics on the first
/// broken promise.
pub fn run(store: &dyn BlobStore) {
    let ns = namespace();
    let d = store.describe();
    let k = |s: &str| key(&format!("{ns}/{s}"));

    // put/get round trip, including empty and binary blobs
    let k1 = k("t/abc/00/one");
    ok(store.put(&k1, b"hello"), "put", store);
    assert_eq!(
        ok(store.get(&k1), "get", store),
        b"hello",
        "{d}: round trip"
    );
    let k0 = k("t/abc/00/empty");
    ok(store.put(&k0, b""), "put of an empty blob", store);
    assert_eq!(ok(store.get(&k0), "get", store), b"", "{d}: empty blob");
    let bin: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let kb = k("t/abc/01/bin");
    ok(store.put(&kb, &bin), "put of a binary blob", store);
    assert!(ok(store.get(&kb), "get", store) == bin, "{d}: binary blob");

    // a large blob (multipart in object stores), byte-exact
    let large: Vec<u8> = (0..LARGE_BLOB)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8)
        .collect();
    let kl = k("t/abc/02/large");
    ok(store.put(&kl, &large), "put of a large blob", store);
    let back = ok(store.get(&kl), "get of a large blob", store);
    assert!(
        back.len() == large.len() && back == large,
        "{d}: large blob differs ({} bytes back, {} put)",
        back.len(),
        large.len()
    );
    drop(back);
    ok(store.delete(&kl), "delete", store);

    // overwrite replaces
    ok(store.put(&k1, b"again"), "overwrite", store);
    assert_eq!(ok(store.get(&k1), "get", store), b"again", "{d}: overwrite");

    // missing key: the typed NotFound
    match store.get(&k("t/abc/00/missing")) {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{d}: get of a missing key gave {other:?}, not NotFound"),
    }

    // put_many
    let many: Vec<(BlobKey, Vec<u8>)> = (0..50)
        .map(|i| (k(&format!("t/def/{:02}/m{i}", i % 7)), vec![i as u8; i]))
        .collect();
    ok(store.put_many(&many), "put_many", store);
    for (key, v) in &many {
        assert_eq!(
            &ok(store.get(key), "get", store),
            v,
            "{d}: put_many of {key}"
        );
    }
    ok(store.put_many(&[]), "put_many of nothing", store);

    // list by prefix: sorted, complete, nothing else
    let listed = ok(store.list(&format!("{ns}/t/def/")), "list", store);
    let mut want: Vec<BlobKey> = many.iter().map(|(k, _)| k.clone()).collect();
    want.sort();
    assert_eq!(listed, want, "{d}: list of a prefix");
    assert_eq!(
        ok(store.list(&format!("{ns}/t/abc/00/")), "list", store),
        vec![k0.clone(), k1.clone()],
        "{d}: list of a directory"
    );
    assert_eq!(
        ok(store.list(&format!("{ns}/t/zzz/")), "list", store),
        vec![],
        "{d}: list of an absent prefix"
    );
    assert_eq!(
        ok(store.list(&format!("{ns}/t/abc/00/o")), "list", store),
        vec![k1.clone()],
        "{d}: list of a partial name"
    );

    // get_verified: a copy that passes is returned, one that fails is not
    assert_eq!(
        ok(
            store.get_verified(&k1, &|b| b == b"again"),
            "get_verified",
            store
        ),
        b"again",
        "{d}: get_verified"
    );
    match store.get_verified(&k1, &|_| false) {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("{d}: get_verified with no authentic copy gave {other:?}, not Corrupt"),
    }
    match store.get_verified(&k("t/abc/00/missing"), &|_| true) {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{d}: get_verified of a missing key gave {other:?}, not NotFound"),
    }

    // delete is idempotent
    ok(store.delete(&k1), "delete", store);
    ok(store.delete(&k1), "second delete", store);
    ok(
        store.delete(&k("t/never/put")),
        "delete of a missing key",
        store,
    );
    match store.get(&k1) {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{d}: get after delete gave {other:?}, not NotFound"),
    }
    assert_eq!(
        ok(store.list(&format!("{ns}/t/abc/00/")), "list", store),
        vec![k0.clone()],
        "{d}: list after delete"
    );

    // message keys are valid keys
    let id = match MessageId::generate() {
        Ok(id) => id,
        Err(e) => panic!("message id: {e}"),
    };
    let mk = BlobKey::message(&format!("{}ab", &ns[5..]), id);
    ok(store.put(&mk, b"x"), "put of a message key", store);
    assert_eq!(ok(store.get(&mk), "get", store), b"x", "{d}: message key");
    ok(store.delete(&mk), "delete", store);

    // concurrent use from several threads
    std::thread::scope(|s| {
        for n in 0..4 {
            let (k, d) = (&k, &d);
            s.spawn(move || {
                for i in 0..20 {
                    let key = k(&format!("t/con/{n}/{i}"));
                    ok(store.put(&key, format!("{n}-{i}").as_bytes()), "put", store);
                    assert_eq!(
                        ok(store.get(&key), "get", store),
                        format!("{n}-{i}").as_bytes(),
                        "{d}: concurrent put/get"
                    );
                }
            });
        }
    });
    assert_eq!(
        ok(store.list(&format!("{ns}/t/con/")), "list", store).len(),
        80,
        "{d}: list after concurrent puts"
    );

    // recover (crash clean-up) never touches what is stored
    ok(store.recover(), "recover", store);
    assert_eq!(
        ok(store.list(&format!("{ns}/t/con/")), "list", store).len(),
        80,
        "{d}: list after recover"
    );

    // clean up after ourselves (a shared bucket stays tidy)
    for key in ok(store.list(&format!("{ns}/")), "list", store) {
        ok(store.delete(&key), "delete", store);
    }
    assert_eq!(
        ok(store.list(&format!("{ns}/")), "list", store),
        vec![],
        "{d}: list after deleting everything"
    );
}
