//! Keys live in memory only while needed: with `ArchiveOptions::key_ttl`,
//! a tenant whose key is older than the limit is closed (its derived keys
//! dropped) once no call uses it, and the next use asks the key service
//! again. Checked with a key service that counts its unwraps.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ama_core::crypto::SecretKey;
use ama_core::store::LocalStore;
use ama_core::{
    Archive, ArchiveOptions, Envelope, KdfParams, KeyService, LocalKeyStore, Principal,
    SearchOptions, Source, TenantId, TenantSpec, Unlock,
};

/// The local key store, counting how often a tenant key is unwrapped.
struct Counting {
    inner: LocalKeyStore,
    unwraps: AtomicUsize,
}

impl KeyService for Counting {
    fn wrap_tenant_key(&self, t: &TenantId, k: &SecretKey) -> ama_core::Result<Vec<u8>> {
        self.inner.wrap_tenant_key(t, k)
    }
    fn unwrap_tenant_key(&self, t: &TenantId, w: &[u8]) -> ama_core::Result<SecretKey> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_tenant_key(t, w)
    }
    fn destroy_tenant(&self, t: &TenantId) -> ama_core::Result<()> {
        self.inner.destroy_tenant(t)
    }
}

fn archive(dir: &std::path::Path, ttl: Option<Duration>) -> (Archive, Arc<Counting>) {
    let keys = Arc::new(Counting {
        inner: LocalKeyStore::create(
            &dir.join("keys.json"),
            &Unlock::passphrase(common::PASS),
            KdfParams::insecure_fast(),
        )
        .unwrap(),
        unwraps: AtomicUsize::new(0),
    });
    let store = Arc::new(LocalStore::open(dir.join("archive/blobs")).unwrap());
    let a = Archive::create_with(
        dir.join("archive"),
        keys.clone(),
        store,
        ArchiveOptions {
            key_ttl: ttl,
            ..common::options()
        },
    )
    .unwrap();
    (a, keys)
}

fn mail(subject: &str) -> Vec<u8> {
    format!("From: a@acme.test\r\nTo: b@acme.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@t>\r\nDate: Tue, 1 Oct 2024 10:00:00 +0000\r\n\r\nbody\r\n").into_bytes()
}

#[test]
fn expired_keys_are_dropped_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, keys) = archive(dir.path(), Some(Duration::from_millis(300)));
    let t = TenantId::new("acme").unwrap();
    a.create_tenant(TenantSpec::new(t.clone())).unwrap();
    let au = Principal::auditor(t.clone());
    a.ingest(&t, &mail("first"), &Envelope::new(Source::Import))
        .unwrap();
    let opened = keys.unwraps.load(Ordering::SeqCst);
    assert!(opened >= 1);
    // Within the limit: no new unwrap.
    assert_eq!(
        a.search(&au, "", &SearchOptions::default()).unwrap().total,
        1
    );
    assert_eq!(keys.unwraps.load(Ordering::SeqCst), opened);
    std::thread::sleep(Duration::from_millis(400));
    // An idle tenant past the limit is closed by the periodic call...
    assert_eq!(a.expire_keys(), 1);
    assert_eq!(a.expire_keys(), 0);
    // ...and the next use unwraps its key again; nothing was lost.
    a.ingest(&t, &mail("second"), &Envelope::new(Source::Import))
        .unwrap();
    assert_eq!(keys.unwraps.load(Ordering::SeqCst), opened + 1);
    assert_eq!(
        a.search(&au, "", &SearchOptions::default()).unwrap().total,
        2
    );
    // A use past the limit reopens by itself, without the periodic call.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        a.search(&au, "subject:second", &SearchOptions::default())
            .unwrap()
            .total,
        1
    );
    assert_eq!(keys.unwraps.load(Ordering::SeqCst), opened + 2);
}

#[test]
fn without_a_limit_keys_stay_while_the_archive_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (a, keys) = archive(dir.path(), None);
    let t = TenantId::new("acme").unwrap();
    a.create_tenant(TenantSpec::new(t.clone())).unwrap();
    a.ingest(&t, &mail("first"), &Envelope::new(Source::Import))
        .unwrap();
    let opened = keys.unwraps.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(a.expire_keys(), 0);
    a.search(&Principal::auditor(t), "", &SearchOptions::default())
        .unwrap();
    assert_eq!(keys.unwraps.load(Ordering::SeqCst), opened);
}
