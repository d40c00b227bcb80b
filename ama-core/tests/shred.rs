//! Crypto-shredding: `destroy_tenant` destroys the key first, then the data;
//! a copy of the data directory taken before is unreadable afterwards; an
//! interrupted destruction is reported and finished; erasing one message
//! leaves nothing that unwraps its data key.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ama_core::store::{BlobKey, BlobStore, LocalStore};
use ama_core::{
    Archive, ArchiveOptions, Envelope, Error, Frontend, KeyError, LocalKeyStore, MessageId,
    Principal, SearchOptions, Source, StoreError, TenantId, TenantKeyState, Unlock,
};

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@acme.test\r\nTo: bob@acme.test\r\nSubject: {subject}\r\n\
         Date: Mon, 2 Jan 2012 10:00:00 +0000\r\nMessage-ID: <{subject}@acme.test>\r\n\r\n\
         body of {subject}\r\n"
    )
    .into_bytes()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn options_with(ks: &Path) -> ArchiveOptions {
    ArchiveOptions {
        keystore: Some(ks.to_path_buf()),
        ..common::options()
    }
}

fn ingest(a: &Archive, t: &TenantId, n: usize) -> Vec<MessageId> {
    (0..n)
        .map(|i| {
            a.ingest(
                t,
                &mail(&format!("{t}-canary-{i}")),
                &Envelope::new(Source::Import),
            )
            .unwrap()
            .id
        })
        .collect()
}

fn is_destroyed<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Key(KeyError::TenantDestroyed(_))))
}

#[test]
fn destroy_makes_a_backup_taken_before_unreadable_and_leaves_other_tenants_alone() {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let ks = keys.path().join("keystore.json");
    let unlock = Unlock::passphrase(common::PASS);
    let a = Archive::create(data.path(), &unlock, options_with(&ks)).unwrap();
    assert!(!LocalKeyStore::path_in(data.path()).exists());
    let acme = common::tenant(&a, "acme");
    let other = common::tenant(&a, "other");
    let acme_ids = ingest(&a, &acme, 3);
    let other_ids = ingest(&a, &other, 2);
    let acme_sid = storage_dir_of(data.path(), &a, &acme);

    // The backup: the data directory without the key store.
    let backup = tempfile::tempdir().unwrap();
    drop(a);
    copy_dir(data.path(), backup.path());
    let a = Archive::open(data.path(), &unlock, options_with(&ks)).unwrap();

    let report = a.destroy_tenant(&acme, Frontend::Cli).unwrap();
    assert!(!report.resumed);
    assert_eq!(report.blobs_deleted, 3);
    assert_eq!(
        a.local_key_store().unwrap().tenant_state(&acme).unwrap(),
        TenantKeyState::Destroyed
    );
    // Gone from the live archive, on record as destroyed.
    assert!(a.tenants().unwrap().iter().all(|t| t.id != acme));
    let d = a.destroyed_tenants().unwrap();
    assert_eq!(d.len(), 1);
    assert!(d[0].key_destroyed && !d[0].has_leftovers());
    let acme_op = Principal::operator(acme.clone());
    assert!(is_destroyed(a.get_raw(&acme_op, acme_ids[0])));
    assert!(!data.path().join("index").join(&acme_sid).exists());
    assert!(
        common::files_under(&data.path().join("blobs"))
            .iter()
            .all(|p| !p.to_string_lossy().contains(&acme_sid))
    );
    // Idempotent; the id is not reused.
    assert!(a.destroy_tenant(&acme, Frontend::Cli).unwrap().resumed);
    assert!(is_destroyed(
        a.create_tenant(ama_core::TenantSpec::new(acme.clone()))
    ));
    // The other tenant is untouched.
    let op = Principal::operator(other.clone());
    for id in &other_ids {
        assert!(a.get_raw(&op, *id).is_ok());
    }
    let hits = a.search(&op, "canary", &SearchOptions::default()).unwrap();
    assert_eq!(hits.total, 2);
    assert!(a.verify(&op).unwrap().is_clean());
    assert!(a.verify_audit(&op).unwrap().is_intact());
    drop(a);

    // The backup with the key store that remains: acme's mail, catalog
    // values and index are all under its tenant key, which no longer unwraps.
    let b = Archive::open(backup.path(), &unlock, options_with(&ks)).unwrap();
    assert!(backup.path().join("index").join(&acme_sid).exists());
    for id in &acme_ids {
        assert!(is_destroyed(b.get_raw(&acme_op, *id)));
        assert!(is_destroyed(b.get(&acme_op, *id)));
    }
    assert!(is_destroyed(b.search(
        &acme_op,
        "canary",
        &SearchOptions::default()
    )));
    assert!(is_destroyed(b.audit_entries(&acme_op, &Default::default())));
    drop(b);
    let cat = ama_core::catalog::Catalog::open(&backup.path().join("catalog.redb")).unwrap();
    let wrapped = cat
        .read()
        .unwrap()
        .tenant("acme")
        .unwrap()
        .unwrap()
        .wrapped_key;
    drop(cat);
    let ks_now = LocalKeyStore::open(&ks, &unlock).unwrap();
    use ama_core::KeyService;
    assert!(is_destroyed(ks_now.unwrap_tenant_key(&acme, &wrapped)));
    // Even with the "destroyed" mark edited out of the key store, the
    // tenant's KEK is not in it any more.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&ks).unwrap()).unwrap();
    v["tenants"]["acme"]["destroyed"] = false.into();
    let forged = keys.path().join("forged.json");
    std::fs::write(&forged, serde_json::to_vec(&v).unwrap()).unwrap();
    let ks_forged = LocalKeyStore::open(&forged, &unlock).unwrap();
    assert!(matches!(
        ks_forged.unwrap_tenant_key(&acme, &wrapped),
        Err(Error::Key(KeyError::NoTenantKek(_)))
    ));
    // The other tenant in the backup still reads.
    let b = Archive::open(backup.path(), &unlock, options_with(&ks)).unwrap();
    assert!(b.get_raw(&op, other_ids[0]).is_ok());
}

/// The index directory name (the storage id) of a tenant.
fn storage_dir_of(data: &Path, a: &Archive, t: &TenantId) -> String {
    let _ = a;
    let _ = t;
    let mut dirs: Vec<String> = std::fs::read_dir(data.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    // Created first: acme. Tell them apart by the blob prefix instead.
    let blobs = common::files_under(&data.join("blobs"));
    dirs.into_iter()
        .find(|d| {
            blobs
                .iter()
                .filter(|p| p.to_string_lossy().contains(d.as_str()))
                .count()
                == 3
        })
        .unwrap()
}

/// A blob store whose deletes can be made to fail.
struct FlakyStore {
    inner: LocalStore,
    broken: AtomicBool,
}

impl BlobStore for FlakyStore {
    fn put(&self, k: &BlobKey, d: &[u8]) -> Result<(), StoreError> {
        self.inner.put(k, d)
    }
    fn get(&self, k: &BlobKey) -> Result<Vec<u8>, StoreError> {
        self.inner.get(k)
    }
    fn delete(&self, k: &BlobKey) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                key: k.to_string(),
                source: std::io::Error::other("store down"),
            });
        }
        self.inner.delete(k)
    }
    fn list(&self, p: &str) -> Result<Vec<BlobKey>, StoreError> {
        self.inner.list(p)
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[test]
fn an_interrupted_destroy_is_reported_and_finished_by_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let unlock = Unlock::passphrase(common::PASS);
    let ks_path = LocalKeyStore::path_in(dir.path());
    let ks = Arc::new(
        LocalKeyStore::create(&ks_path, &unlock, ama_core::KdfParams::insecure_fast()).unwrap(),
    );
    let store = Arc::new(FlakyStore {
        inner: LocalStore::open(dir.path().join("blobs")).unwrap(),
        broken: AtomicBool::new(false),
    });
    let a = Archive::open_with(dir.path(), ks.clone(), store.clone(), common::options()).unwrap();
    let acme = common::tenant(&a, "acme");
    let other = common::tenant(&a, "other");
    let ids = ingest(&a, &acme, 2);
    ingest(&a, &other, 1);
    store.broken.store(true, Ordering::SeqCst);
    assert!(matches!(
        a.destroy_tenant(&acme, Frontend::Cli),
        Err(Error::Store(_))
    ));
    // The key is gone already; the tenant is reported with leftovers.
    let d = a.destroyed_tenants().unwrap();
    assert!(d[0].key_destroyed && d[0].has_leftovers());
    assert!(is_destroyed(
        a.get_raw(&Principal::operator(acme.clone()), ids[0])
    ));
    drop(a);
    // Reopening works (the leftovers are skipped), other tenants are fine.
    let a = Archive::open_with(dir.path(), ks.clone(), store.clone(), common::options()).unwrap();
    assert_eq!(a.tenants().unwrap().len(), 1);
    store.broken.store(false, Ordering::SeqCst);
    let r = a.destroy_tenant(&acme, Frontend::Cli).unwrap();
    assert!(r.resumed);
    assert_eq!(r.blobs_deleted, 2);
    assert!(!a.destroyed_tenants().unwrap()[0].has_leftovers());
    let op = Principal::operator(other.clone());
    assert!(a.verify(&op).unwrap().is_clean());
}

#[test]
fn destroy_of_an_unknown_tenant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    assert!(matches!(
        a.destroy_tenant(&TenantId::new("nobody").unwrap(), Frontend::Cli),
        Err(Error::Tenant(ama_core::TenantError::Unknown(_)))
    ));
}

/// Erasing one message drops its wrapped data key from the catalog: an
/// old copy of its blob, with the catalog as it is after the deletion,
/// holds nothing that decrypts it.
#[test]
fn erasing_a_message_destroys_its_data_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let ids = ingest(&a, &t, 2);
    let blobs_before: Vec<(PathBuf, Vec<u8>)> = common::files_under(&dir.path().join("blobs"))
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    drop(a);
    let cat = ama_core::catalog::Catalog::open(&dir.path().join("catalog.redb")).unwrap();
    let wrapped = cat
        .read()
        .unwrap()
        .message("acme", ids[0])
        .unwrap()
        .unwrap()
        .wrapped_key;
    drop(cat);
    let a = common::reopen(dir.path());
    // Everything past its retention (none set: default) is swept far in the future.
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 200);
    let op = Principal::operator(t.clone());
    let hold_other = ama_core::HoldScope::ids([ids[1]]);
    a.place_hold(&op, "keep-one", hold_other, "test").unwrap();
    let swept = a.sweep(&t, Some(far)).unwrap();
    assert_eq!(swept.deleted, vec![ids[0]]);
    assert!(matches!(a.get_raw(&op, ids[0]), Err(Error::NotFound(_))));
    assert!(a.get_raw(&op, ids[1]).is_ok());
    drop(a);
    // The old blob copies exist (a backup), but no record holds the key.
    assert_eq!(blobs_before.len(), 2);
    let cat = ama_core::catalog::Catalog::open(&dir.path().join("catalog.redb")).unwrap();
    assert!(
        cat.read()
            .unwrap()
            .message("acme", ids[0])
            .unwrap()
            .is_none()
    );
    drop(cat);
    // Not even in a stale page of the database file.
    let db = std::fs::read(dir.path().join("catalog.redb")).unwrap();
    assert!(
        !db.windows(wrapped.len()).any(|w| w == wrapped.as_slice()),
        "the wrapped data key of an erased message is still in catalog.redb"
    );
}
