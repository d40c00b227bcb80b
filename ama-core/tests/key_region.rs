//! Regions hold for keys as for mail: a key service tagged with a region
//! serves only tenants pinned to that region. An EU tenant is refused on a
//! US key service at creation (nothing created, no key wrapped) and when an
//! archive is opened on the wrong service (no key unwrapped).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ama_core::crypto::SecretKey;
use ama_core::store::{BlobStore, LocalStore};
use ama_core::{
    Archive, Envelope, Error, KdfParams, KeyError, KeyService, LocalKeyStore, Principal, Region,
    SearchOptions, Source, TenantId, TenantSpec, Unlock,
};

/// The local key store, tagged with a region, counting its use.
struct Tagged {
    inner: Arc<LocalKeyStore>,
    region: Option<Region>,
    calls: AtomicUsize,
}

impl KeyService for Tagged {
    fn wrap_tenant_key(&self, t: &TenantId, k: &SecretKey) -> ama_core::Result<Vec<u8>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.wrap_tenant_key(t, k)
    }
    fn unwrap_tenant_key(&self, t: &TenantId, w: &[u8]) -> ama_core::Result<SecretKey> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_tenant_key(t, w)
    }
    fn destroy_tenant(&self, t: &TenantId) -> ama_core::Result<()> {
        self.inner.destroy_tenant(t)
    }
    fn region(&self) -> Option<Region> {
        self.region.clone()
    }
}

fn tagged(ks: &Arc<LocalKeyStore>, region: Option<Region>) -> Arc<Tagged> {
    Arc::new(Tagged {
        inner: ks.clone(),
        region,
        calls: AtomicUsize::new(0),
    })
}

#[test]
fn a_tenant_cannot_use_a_key_service_of_another_region() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ks = Arc::new(
        LocalKeyStore::create(
            &tmp.path().join("keys.json"),
            &Unlock::passphrase(common::PASS),
            KdfParams::insecure_fast(),
        )
        .unwrap(),
    );
    let store =
        || -> Arc<dyn BlobStore> { Arc::new(LocalStore::open(tmp.path().join("blobs")).unwrap()) };
    let eu = TenantId::new("acme-eu").unwrap();

    // At creation: an EU tenant on a US key service is refused, untouched.
    let us_keys = tagged(&ks, Some(Region::Us));
    let a = Archive::create_with(&data, us_keys.clone(), store(), common::options()).unwrap();
    match a.create_tenant(TenantSpec::new(eu.clone())) {
        Err(Error::Key(KeyError::WrongRegion {
            tenant_region,
            service_region,
            ..
        })) => assert_eq!(
            (tenant_region.as_str(), service_region.as_str()),
            ("eu", "us")
        ),
        other => panic!("EU tenant on a US key service: {other:?}"),
    }
    assert!(a.tenants().unwrap().is_empty(), "nothing was created");
    assert_eq!(
        us_keys.calls.load(Ordering::SeqCst),
        0,
        "no key was wrapped"
    );
    // A US tenant is fine there.
    let us = TenantId::new("acme-us").unwrap();
    let mut spec = TenantSpec::new(us.clone());
    spec.region = Region::Us;
    a.create_tenant(spec).unwrap();
    drop(a);

    // At open: created on an EU (or untagged) service, then opened on a US one.
    let eu_keys = tagged(&ks, Some(Region::Eu));
    let a = Archive::open_with(&data, eu_keys, store(), common::options()).unwrap();
    a.create_tenant(TenantSpec::new(eu.clone())).unwrap();
    a.ingest(
        &eu,
        b"From: a@b.test\r\nSubject: eu mail\r\n\r\nhi\r\n",
        &Envelope::new(Source::Import),
    )
    .unwrap();
    drop(a);
    let us_keys = tagged(&ks, Some(Region::Us));
    let a = Archive::open_with(&data, us_keys.clone(), store(), common::options()).unwrap();
    let err = a
        .search(
            &Principal::auditor(eu.clone()),
            "",
            &SearchOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Key(KeyError::WrongRegion { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("region"), "{err}");
    assert_eq!(
        us_keys.calls.load(Ordering::SeqCst),
        0,
        "no key was unwrapped"
    );
    drop(a);
    // An untagged service serves every region.
    let any = tagged(&ks, None);
    let a = Archive::open_with(&data, any, store(), common::options()).unwrap();
    let found = a
        .search(&Principal::auditor(eu), "", &SearchOptions::default())
        .unwrap();
    assert_eq!(found.total, 1);
}
