//! Key management: the [`KeyService`] contract and the local key store.
//!
//! The master key never leaves the key service. The engine only asks it to
//! wrap and unwrap tenant keys; tenant keys, in turn, wrap per-message data
//! keys and derive the catalog, index and dedup subkeys (see
//! `docs/ARCHITECTURE.md`). A remote key service implements the same trait.
//!
//! The local key store is one small JSON file (by default
//! `keys/keystore.json` in the data directory; it can live elsewhere, see
//! [`crate::ArchiveOptions::keystore`]). It holds how to derive the master
//! key (argon2id parameters and salt, or "read a 32-byte key file"), a check
//! value sealed under the master key (so a wrong passphrase is told apart
//! from corrupt data), and, since version 2, one random **key-encryption
//! key (KEK) per tenant**, sealed under the master key. Tenant keys are
//! wrapped under their tenant's KEK, never directly under the master key:
//! that is what makes [`KeyService::destroy_tenant`] possible, since
//! dropping the KEK from this file makes every wrapped tenant key ever
//! handed out for that tenant useless, wherever copies of it are kept.
//!
//! Wrapped tenant key formats:
//! - version 2: `0x02 | seal(KEK of the tenant, "ama/tenant-key/v2/<id>", key)`;
//! - version 1 (archives created before KEKs): `seal(master, "ama/tenant-key/v1/<id>", key)`,
//!   whose first byte is the seal version `0x01`. Still unwrapped; new wraps
//!   are always version 2.
//!
//! Every change to the file (a new KEK, a destroyed tenant, a new master
//! key) takes an exclusive lock on `<file>.lock`, re-reads the file, writes
//! `<file>.tmp`, fsyncs it, renames it over the file and fsyncs the
//! directory: a crash leaves the old file or the new one, never a mix, and
//! two processes sharing a key store (a server and the CLI) do not lose each
//! other's changes. A process notices changes made by another one on its
//! next unwrap (the file's size and modification time are checked).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, KEY_LEN, SecretKey};
use crate::error::{Error, KeyError, Result};
use crate::tenant::{Region, TenantId};

/// Wraps and unwraps tenant keys under a master key the engine never sees.
///
/// Contract: `unwrap_tenant_key(t, wrap_tenant_key(t, k)) == k`; unwrapping
/// with another tenant id, or data altered in any way, fails with
/// [`crate::CryptoError::Authentication`]. Implementations are thread-safe.
pub trait KeyService: Send + Sync {
    /// Wraps `key` for `tenant`; the result is safe to store anywhere.
    /// Fails with [`KeyError::TenantDestroyed`] for a destroyed tenant.
    fn wrap_tenant_key(&self, tenant: &TenantId, key: &SecretKey) -> Result<Vec<u8>>;
    /// Unwraps what [`KeyService::wrap_tenant_key`] returned for the same tenant.
    fn unwrap_tenant_key(&self, tenant: &TenantId, wrapped: &[u8]) -> Result<SecretKey>;
    /// Crypto-shredding: destroys what unwraps `tenant`'s keys.
    ///
    /// Contract: once this returns `Ok`, [`KeyService::unwrap_tenant_key`]
    /// for `tenant` fails with [`KeyError::TenantDestroyed`] for every
    /// wrapped key this service ever returned for the tenant, whichever copy
    /// of the archive's data it comes from (the secret that unwraps them is
    /// gone, not merely flagged); the destruction is durable before this
    /// returns; calling it again (or for a tenant never seen) succeeds.
    fn destroy_tenant(&self, tenant: &TenantId) -> Result<()>;

    /// The region the service keeps its keys in; `None` for an untagged
    /// service (the embedded default), which is not bound to a region. A
    /// tenant pinned to another region is refused at creation and when it
    /// is opened, before a key is wrapped or unwrapped (see [`check_region`]).
    fn region(&self) -> Option<Region> {
        None
    }
}

/// Refuses to use `keys` for `tenant` (pinned to `tenant_region`) when the
/// service is tagged with another region: a tenant's keys stay in its
/// region like its mail. Untagged services serve every tenant.
pub fn check_region(
    keys: &dyn KeyService,
    tenant: &TenantId,
    tenant_region: &Region,
) -> Result<()> {
    match keys.region() {
        Some(r) if r != *tenant_region => Err(KeyError::WrongRegion {
            tenant: tenant.to_string(),
            tenant_region: tenant_region.to_string(),
            service_region: r.to_string(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// How to unlock (or create) a local key store.
pub enum Unlock {
    /// A passphrase; the master key is derived from it with argon2id.
    Passphrase(Zeroizing<String>),
    /// A file holding exactly 32 random bytes: the master key itself.
    KeyFile(PathBuf),
}

impl Unlock {
    /// A passphrase unlock.
    pub fn passphrase(p: impl Into<String>) -> Self {
        Unlock::Passphrase(Zeroizing::new(p.into()))
    }
}

/// argon2id cost parameters, stored in the key store header.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about half a second here, once per open.
    fn default() -> Self {
        KdfParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests and demos (never for real archives).
    pub fn insecure_fast() -> Self {
        KdfParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

/// Minimum passphrase length accepted when creating a key store.
pub const MIN_PASSPHRASE_CHARS: usize = 8;
/// Version 2 adds the per-tenant KEKs; version 1 files are read (and
/// written back as version 2 on their first change).
const KEYSTORE_VERSION: u32 = 2;
const CHECK_AAD: &[u8] = b"ama/keystore/check/v1";
const CHECK_PLAIN: &[u8] = b"ama key store v1";
/// First byte of a version 2 wrapped tenant key.
const WRAP_V2: u8 = 0x02;

#[derive(Serialize, Deserialize, Clone)]
struct KeyStoreFile {
    format: String,
    version: u32,
    /// "passphrase" or "key-file".
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfHeader>,
    /// Hex of the check value sealed under the master key.
    check: String,
    /// Per tenant id: its sealed KEK, or the fact it was destroyed (v2).
    #[serde(default)]
    tenants: BTreeMap<String, TenantEntry>,
}

#[derive(Serialize, Deserialize, Clone)]
struct KdfHeader {
    alg: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct TenantEntry {
    /// Hex of the tenant's KEK sealed under the master key; absent once destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kek: Option<String>,
    /// The tenant was destroyed: nothing of it can be unwrapped any more.
    #[serde(default)]
    destroyed: bool,
}

/// What a local key store knows about one tenant (for `ama keys status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantKeyState {
    /// The store holds a KEK for the tenant.
    Active,
    /// The tenant was destroyed.
    Destroyed,
    /// The store has no entry: the tenant has no key wrapped in format 2
    /// (an archive from before KEKs, or not created yet).
    Unknown,
}

/// The default [`KeyService`]: a master key held in memory only, derived from
/// a passphrase or read from a key file when the archive is opened, and the
/// per-tenant KEKs of the key store file.
pub struct LocalKeyStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    master: SecretKey,
    file: KeyStoreFile,
    /// Unsealed KEKs, by tenant id.
    keks: HashMap<String, SecretKey>,
    /// (size, mtime) of the file when last read, to notice other writers.
    stamp: Option<(u64, SystemTime)>,
}

#[cfg(test)]
thread_local! {
    /// Test hook: fail a key store rewrite after the temporary file is
    /// written and fsynced, before the rename (a simulated crash).
    static FAIL_BEFORE_RENAME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl LocalKeyStore {
    /// The default key store file inside a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("keystore.json")
    }

    /// The key store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a new key store file at `path` (which must not exist).
    pub fn create(path: &Path, unlock: &Unlock, params: KdfParams) -> Result<Self> {
        let (kind, kdf, master) = new_master(unlock, params)?;
        let check = crypto::seal(&master, CHECK_AAD, CHECK_PLAIN)?;
        let file = KeyStoreFile {
            format: "ama-keystore".into(),
            version: KEYSTORE_VERSION,
            kind: kind.into(),
            kdf,
            check: crypto::hex(&check),
            tenants: BTreeMap::new(),
        };
        crate::fsutil::write_new_durable(path, &to_json(path, &file)?)?;
        let stamp = stamp_of(path);
        Ok(LocalKeyStore {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                master,
                file,
                keks: HashMap::new(),
                stamp,
            }),
        })
    }

    /// Opens an existing key store file and unlocks it.
    pub fn open(path: &Path, unlock: &Unlock) -> Result<Self> {
        let stamp = stamp_of(path);
        let file = read_file(path)?;
        let master = match (file.kind.as_str(), unlock) {
            ("passphrase", Unlock::Passphrase(p)) => {
                let hdr = file
                    .kdf
                    .as_ref()
                    .ok_or_else(|| bad(path, "passphrase store without kdf header".into()))?;
                if hdr.alg != "argon2id" {
                    return Err(bad(path, format!("unknown kdf {:?}", hdr.alg)));
                }
                let salt = unhex(&hdr.salt).ok_or_else(|| bad(path, "salt is not hex".into()))?;
                derive_master(p.as_bytes(), &salt, hdr.params)?
            }
            ("key-file", Unlock::KeyFile(f)) => read_key_file(f)?,
            ("passphrase", Unlock::KeyFile(_)) => {
                return Err(KeyError::WrongKind {
                    expected: "passphrase",
                    given: "key file",
                }
                .into());
            }
            ("key-file", Unlock::Passphrase(_)) => {
                return Err(KeyError::WrongKind {
                    expected: "key file",
                    given: "passphrase",
                }
                .into());
            }
            (other, _) => return Err(bad(path, format!("unknown kind {other:?}"))),
        };
        check_master(path, &file, &master)?;
        Ok(LocalKeyStore {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                master,
                file,
                keks: HashMap::new(),
                stamp,
            }),
        })
    }

    /// What the store knows about `tenant`.
    pub fn tenant_state(&self, tenant: &TenantId) -> Result<TenantKeyState> {
        let mut inner = self.lock_inner();
        self.refresh(&mut inner)?;
        Ok(match inner.file.tenants.get(tenant.as_str()) {
            Some(e) if e.destroyed => TenantKeyState::Destroyed,
            Some(e) if e.kek.is_some() => TenantKeyState::Active,
            _ => TenantKeyState::Unknown,
        })
    }

    /// Replaces the master key: derives it from `unlock` (a new passphrase
    /// with new salt, or a new key file), re-seals the check value and
    /// every tenant KEK under it, and rewrites the file atomically (a crash
    /// leaves the old file, openable with the old secret, or the new one).
    /// Afterwards the old passphrase or key file no longer opens the store.
    ///
    /// Tenant keys wrapped in the old format 1 (directly under the master
    /// key) become unreadable: re-wrap them first
    /// ([`crate::Archive::rewrap_tenant_keys`] does, and `ama keys
    /// rotate-master` calls it).
    pub fn rotate_master(&self, unlock: &Unlock, params: KdfParams) -> Result<()> {
        let (kind, kdf, new_master) = new_master(unlock, params)?;
        let mut inner = self.lock_inner();
        let _lock = self.file_lock()?;
        self.reload(&mut inner)?;
        let mut file = inner.file.clone();
        for (tenant, entry) in file.tenants.iter_mut() {
            if let Some(sealed) = &entry.kek {
                let kek = open_kek(&self.path, &inner.master, tenant, sealed)?;
                entry.kek = Some(crypto::hex(&crypto::wrap_key(
                    &new_master,
                    &kek_aad(tenant),
                    &kek,
                )?));
            }
        }
        file.kind = kind.into();
        file.kdf = kdf;
        file.check = crypto::hex(&crypto::seal(&new_master, CHECK_AAD, CHECK_PLAIN)?);
        file.version = KEYSTORE_VERSION;
        self.write(&file)?;
        inner.master = new_master;
        inner.file = file;
        inner.stamp = stamp_of(&self.path);
        Ok(())
    }

    fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // change is applied to the copy in memory only after the file is
        // written), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An exclusive lock on `<file>.lock`, held while the file is changed.
    fn file_lock(&self) -> Result<File> {
        let lp = sibling(&self.path, "lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .map_err(io(&lp))?;
        f.lock().map_err(io(&lp))?;
        Ok(f)
    }

    /// Re-reads the file if another process changed it.
    fn refresh(&self, inner: &mut Inner) -> Result<()> {
        if stamp_of(&self.path) != inner.stamp {
            self.reload(inner)?;
        }
        Ok(())
    }

    fn reload(&self, inner: &mut Inner) -> Result<()> {
        let stamp = stamp_of(&self.path);
        let file = read_file(&self.path)?;
        check_master(&self.path, &file, &inner.master).map_err(|e| match e {
            Error::Key(KeyError::WrongPassphrase) => bad(
                &self.path,
                "its master key was changed by another process; open the archive again".into(),
            ),
            e => e,
        })?;
        inner.keks.retain(|t, _| {
            file.tenants
                .get(t)
                .is_some_and(|e| e.kek.is_some() && !e.destroyed)
        });
        inner.file = file;
        inner.stamp = stamp;
        Ok(())
    }

    /// Writes `file` atomically in place of the key store file.
    fn write(&self, file: &KeyStoreFile) -> Result<()> {
        let json = to_json(&self.path, file)?;
        let tmp = sibling(&self.path, "tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        #[cfg(test)]
        if FAIL_BEFORE_RENAME.with(|c| c.get()) {
            return Err(Error::Io {
                path: tmp.display().to_string(),
                source: std::io::Error::other("injected crash before rename"),
            });
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        let parent = self.path.parent().unwrap_or(Path::new("."));
        crate::fsutil::fsync_dir(parent).map_err(io(parent))?;
        Ok(())
    }

    /// The KEK of `tenant`, unsealed (cached), or `None` if the store has none.
    fn kek<'a>(&self, inner: &'a mut Inner, tenant: &str) -> Result<Option<&'a SecretKey>> {
        if !inner.keks.contains_key(tenant) {
            let Some(sealed) = inner.file.tenants.get(tenant).and_then(|e| e.kek.clone()) else {
                return Ok(None);
            };
            let kek = open_kek(&self.path, &inner.master, tenant, &sealed)?;
            inner.keks.insert(tenant.to_string(), kek);
        }
        Ok(inner.keks.get(tenant))
    }

    fn destroyed(inner: &Inner, tenant: &str) -> bool {
        inner.file.tenants.get(tenant).is_some_and(|e| e.destroyed)
    }
}

impl KeyService for LocalKeyStore {
    fn wrap_tenant_key(&self, tenant: &TenantId, key: &SecretKey) -> Result<Vec<u8>> {
        let t = tenant.as_str();
        let mut inner = self.lock_inner();
        self.refresh(&mut inner)?;
        if Self::destroyed(&inner, t) {
            return Err(KeyError::TenantDestroyed(t.to_string()).into());
        }
        if self.kek(&mut inner, t)?.is_none() {
            // A new tenant (or one from before KEKs): give it a KEK.
            let _lock = self.file_lock()?;
            self.reload(&mut inner)?;
            if Self::destroyed(&inner, t) {
                return Err(KeyError::TenantDestroyed(t.to_string()).into());
            }
            if self.kek(&mut inner, t)?.is_none() {
                let kek = SecretKey::generate()?;
                let sealed = crypto::wrap_key(&inner.master, &kek_aad(t), &kek)?;
                let mut file = inner.file.clone();
                file.version = KEYSTORE_VERSION;
                file.tenants.insert(
                    t.to_string(),
                    TenantEntry {
                        kek: Some(crypto::hex(&sealed)),
                        destroyed: false,
                    },
                );
                self.write(&file)?;
                inner.file = file;
                inner.stamp = stamp_of(&self.path);
                inner.keks.insert(t.to_string(), kek);
            }
        }
        let Some(kek) = self.kek(&mut inner, t)? else {
            return Err(bad(&self.path, format!("KEK of tenant {t} vanished")));
        };
        let mut out = vec![WRAP_V2];
        out.extend(crypto::wrap_key(kek, &wrap_aad_v2(t), key)?);
        Ok(out)
    }

    fn unwrap_tenant_key(&self, tenant: &TenantId, wrapped: &[u8]) -> Result<SecretKey> {
        let t = tenant.as_str();
        let what = format!("key of tenant {tenant}");
        let mut inner = self.lock_inner();
        self.refresh(&mut inner)?;
        if Self::destroyed(&inner, t) {
            return Err(KeyError::TenantDestroyed(t.to_string()).into());
        }
        match wrapped.first() {
            Some(&WRAP_V2) => {
                let Some(kek) = self.kek(&mut inner, t)? else {
                    return Err(KeyError::NoTenantKek(t.to_string()).into());
                };
                Ok(crypto::unwrap_key(
                    kek,
                    &wrap_aad_v2(t),
                    &wrapped[1..],
                    &what,
                )?)
            }
            // Format 1: sealed directly under the master key.
            _ => Ok(crypto::unwrap_key(
                &inner.master,
                &wrap_aad_v1(t),
                wrapped,
                &what,
            )?),
        }
    }

    fn destroy_tenant(&self, tenant: &TenantId) -> Result<()> {
        let t = tenant.as_str();
        let mut inner = self.lock_inner();
        let _lock = self.file_lock()?;
        self.reload(&mut inner)?;
        if Self::destroyed(&inner, t) {
            return Ok(());
        }
        let mut file = inner.file.clone();
        file.version = KEYSTORE_VERSION;
        file.tenants.insert(
            t.to_string(),
            TenantEntry {
                kek: None,
                destroyed: true,
            },
        );
        self.write(&file)?;
        inner.file = file;
        inner.stamp = stamp_of(&self.path);
        inner.keks.remove(t);
        Ok(())
    }
}

fn wrap_aad_v1(tenant: &str) -> Vec<u8> {
    let mut aad = b"ama/tenant-key/v1/".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

fn wrap_aad_v2(tenant: &str) -> Vec<u8> {
    let mut aad = b"ama/tenant-key/v2/".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

fn kek_aad(tenant: &str) -> Vec<u8> {
    let mut aad = b"ama/keystore/kek/v1/".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

fn open_kek(path: &Path, master: &SecretKey, tenant: &str, sealed_hex: &str) -> Result<SecretKey> {
    let sealed =
        unhex(sealed_hex).ok_or_else(|| bad(path, format!("KEK of tenant {tenant} is not hex")))?;
    Ok(crypto::unwrap_key(
        master,
        &kek_aad(tenant),
        &sealed,
        &format!("key-encryption key of tenant {tenant}"),
    )?)
}

fn bad(path: &Path, reason: String) -> Error {
    KeyError::BadKeyStore {
        path: path.display().to_string(),
        reason,
    }
    .into()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn stamp_of(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn to_json(path: &Path, file: &KeyStoreFile) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(file).map_err(|e| bad(path, e.to_string()))
}

fn read_file(path: &Path) -> Result<KeyStoreFile> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    let file: KeyStoreFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(path, e.to_string()))?;
    if file.format != "ama-keystore" {
        return Err(bad(
            path,
            format!("format {:?} is not an ama key store", file.format),
        ));
    }
    if file.version == 0 || file.version > KEYSTORE_VERSION {
        return Err(bad(path, format!("unsupported version {}", file.version)));
    }
    Ok(file)
}

fn check_master(path: &Path, file: &KeyStoreFile, master: &SecretKey) -> Result<()> {
    let check = unhex(&file.check).ok_or_else(|| bad(path, "check value is not hex".into()))?;
    match crypto::open(master, CHECK_AAD, &check, "key store check") {
        Ok(p) if p == CHECK_PLAIN => Ok(()),
        Ok(_) => Err(bad(path, "check value does not match".into())),
        Err(crate::CryptoError::Authentication { .. }) => Err(KeyError::WrongPassphrase.into()),
        Err(e) => Err(e.into()),
    }
}

/// A master key from `unlock` (a fresh salt for a passphrase).
fn new_master(
    unlock: &Unlock,
    params: KdfParams,
) -> Result<(&'static str, Option<KdfHeader>, SecretKey)> {
    Ok(match unlock {
        Unlock::Passphrase(p) => {
            if p.chars().count() < MIN_PASSPHRASE_CHARS {
                return Err(KeyError::WeakPassphrase {
                    min: MIN_PASSPHRASE_CHARS,
                }
                .into());
            }
            let mut salt = [0u8; 16];
            crypto::random_fill(&mut salt)?;
            let master = derive_master(p.as_bytes(), &salt, params)?;
            let hdr = KdfHeader {
                alg: "argon2id".into(),
                params,
                salt: crypto::hex(&salt),
            };
            ("passphrase", Some(hdr), master)
        }
        Unlock::KeyFile(f) => ("key-file", None, read_key_file(f)?),
    })
}

fn derive_master(pass: &[u8], salt: &[u8], p: KdfParams) -> Result<SecretKey> {
    let params = argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(KEY_LEN))
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    let a2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; KEY_LEN];
    a2.hash_password_into(pass, salt, &mut out)
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    Ok(SecretKey::from_bytes(out))
}

fn read_key_file(path: &Path) -> Result<SecretKey> {
    let mut bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    if bytes.len() != KEY_LEN {
        let len = bytes.len();
        bytes.zeroize();
        return Err(KeyError::BadKeyFile {
            path: path.display().to_string(),
            len,
        }
        .into());
    }
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&bytes);
    bytes.zeroize();
    Ok(SecretKey::from_bytes(k))
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_store_round_trip_and_wrong_passphrase() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ks.json");
        let ks = LocalKeyStore::create(
            &p,
            &Unlock::passphrase("correct horse"),
            KdfParams::insecure_fast(),
        )
        .unwrap();
        let t = TenantId::new("acme").unwrap();
        let k = SecretKey::generate().unwrap();
        let w = ks.wrap_tenant_key(&t, &k).unwrap();
        let ks2 = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        assert_eq!(ks2.unwrap_tenant_key(&t, &w).unwrap().expose(), k.expose());
        let other = TenantId::new("other").unwrap();
        assert!(ks2.unwrap_tenant_key(&other, &w).is_err());
        assert!(matches!(
            LocalKeyStore::open(&p, &Unlock::passphrase("wrong horse")),
            Err(Error::Key(KeyError::WrongPassphrase))
        ));
        assert!(matches!(
            LocalKeyStore::create(
                &d.path().join("x"),
                &Unlock::passphrase("short"),
                KdfParams::default()
            ),
            Err(Error::Key(KeyError::WeakPassphrase { .. }))
        ));
    }

    #[test]
    fn key_file_store() {
        let d = tempfile::tempdir().unwrap();
        let kf = d.path().join("master.key");
        std::fs::write(&kf, [9u8; 32]).unwrap();
        let p = d.path().join("ks.json");
        LocalKeyStore::create(&p, &Unlock::KeyFile(kf.clone()), KdfParams::default()).unwrap();
        LocalKeyStore::open(&p, &Unlock::KeyFile(kf.clone())).unwrap();
        std::fs::write(&kf, [8u8; 32]).unwrap();
        assert!(matches!(
            LocalKeyStore::open(&p, &Unlock::KeyFile(kf.clone())),
            Err(Error::Key(KeyError::WrongPassphrase))
        ));
        std::fs::write(&kf, [8u8; 31]).unwrap();
        assert!(matches!(
            LocalKeyStore::open(&p, &Unlock::KeyFile(kf)),
            Err(Error::Key(KeyError::BadKeyFile { len: 31, .. }))
        ));
        assert!(matches!(
            LocalKeyStore::open(&p, &Unlock::passphrase("whatever long")),
            Err(Error::Key(KeyError::WrongKind { .. }))
        ));
    }

    fn store(d: &Path) -> (PathBuf, LocalKeyStore) {
        let p = d.join("ks.json");
        let ks = LocalKeyStore::create(
            &p,
            &Unlock::passphrase("correct horse"),
            KdfParams::insecure_fast(),
        )
        .unwrap();
        (p, ks)
    }

    #[test]
    fn tenant_keys_are_wrapped_under_a_kek_and_destroy_shreds_them() {
        let d = tempfile::tempdir().unwrap();
        let (p, ks) = store(d.path());
        let t = TenantId::new("acme").unwrap();
        let other = TenantId::new("other").unwrap();
        let k = SecretKey::generate().unwrap();
        let w1 = ks.wrap_tenant_key(&t, &k).unwrap();
        let w2 = ks.wrap_tenant_key(&t, &k).unwrap();
        let wo = ks.wrap_tenant_key(&other, &k).unwrap();
        assert_eq!(w1[0], WRAP_V2);
        assert_eq!(ks.tenant_state(&t).unwrap(), TenantKeyState::Active);
        // The file holds the KEK sealed, never the key itself.
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"acme\""));
        // A second handle on the same file (another process) sees the KEK.
        let ks2 = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        assert_eq!(ks2.unwrap_tenant_key(&t, &w2).unwrap().expose(), k.expose());
        // A value wrapped for one tenant does not open as another's.
        assert!(ks.unwrap_tenant_key(&other, &w1).is_err());

        ks.destroy_tenant(&t).unwrap();
        ks.destroy_tenant(&t).unwrap(); // idempotent
        for w in [&w1, &w2] {
            assert!(matches!(
                ks.unwrap_tenant_key(&t, w),
                Err(Error::Key(KeyError::TenantDestroyed(_)))
            ));
            // The other handle notices the change on disk.
            assert!(matches!(
                ks2.unwrap_tenant_key(&t, w),
                Err(Error::Key(KeyError::TenantDestroyed(_)))
            ));
        }
        assert!(matches!(
            ks.wrap_tenant_key(&t, &k),
            Err(Error::Key(KeyError::TenantDestroyed(_)))
        ));
        assert_eq!(ks.tenant_state(&t).unwrap(), TenantKeyState::Destroyed);
        // Durable: a fresh open refuses too, and the KEK is gone from the
        // file, so editing the "destroyed" flag away does not bring it back.
        let ks3 = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        assert!(ks3.unwrap_tenant_key(&t, &w1).is_err());
        let mut file: KeyStoreFile = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert!(file.tenants["acme"].kek.is_none());
        file.tenants.get_mut("acme").unwrap().destroyed = false;
        std::fs::write(&p, serde_json::to_vec(&file).unwrap()).unwrap();
        let ks4 = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        assert!(matches!(
            ks4.unwrap_tenant_key(&t, &w1),
            Err(Error::Key(KeyError::NoTenantKek(_)))
        ));
        // Other tenants are untouched.
        assert_eq!(
            ks4.unwrap_tenant_key(&other, &wo).unwrap().expose(),
            k.expose()
        );
        // Destroying a tenant the store never saw is fine too.
        ks4.destroy_tenant(&TenantId::new("never").unwrap())
            .unwrap();
    }

    /// A version 1 key store file and a tenant key wrapped the old way
    /// (directly under the master key), as archives before KEKs hold them.
    #[test]
    fn version_1_store_and_format_1_wrapped_keys_still_open() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ks.json");
        let mut salt = [0u8; 16];
        crypto::random_fill(&mut salt).unwrap();
        let params = KdfParams::insecure_fast();
        let master = derive_master(b"correct horse", &salt, params).unwrap();
        let v1 = serde_json::json!({
            "format": "ama-keystore",
            "version": 1,
            "kind": "passphrase",
            "kdf": {"alg": "argon2id", "m_cost": params.m_cost, "t_cost": params.t_cost,
                    "p_cost": params.p_cost, "salt": crypto::hex(&salt)},
            "check": crypto::hex(&crypto::seal(&master, CHECK_AAD, CHECK_PLAIN).unwrap()),
        });
        std::fs::write(&p, serde_json::to_vec_pretty(&v1).unwrap()).unwrap();
        let t = TenantId::new("acme").unwrap();
        let k = SecretKey::generate().unwrap();
        let old = crypto::wrap_key(&master, b"ama/tenant-key/v1/acme", &k).unwrap();
        assert_eq!(old[0], 1);
        let ks = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        assert_eq!(ks.unwrap_tenant_key(&t, &old).unwrap().expose(), k.expose());
        assert_eq!(ks.tenant_state(&t).unwrap(), TenantKeyState::Unknown);
        // Re-wrapping moves it to format 2 (and the file to version 2).
        let new = ks.wrap_tenant_key(&t, &k).unwrap();
        assert_eq!(new[0], WRAP_V2);
        let file: KeyStoreFile = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(file.version, 2);
        assert_eq!(ks.unwrap_tenant_key(&t, &new).unwrap().expose(), k.expose());
        // Destroy refuses format 1 values too (by the recorded fact).
        ks.destroy_tenant(&t).unwrap();
        assert!(matches!(
            ks.unwrap_tenant_key(&t, &old),
            Err(Error::Key(KeyError::TenantDestroyed(_)))
        ));
    }

    #[test]
    fn rotate_master_reseals_keks_and_retires_the_old_passphrase() {
        let d = tempfile::tempdir().unwrap();
        let (p, ks) = store(d.path());
        let t = TenantId::new("acme").unwrap();
        let k = SecretKey::generate().unwrap();
        let w = ks.wrap_tenant_key(&t, &k).unwrap();
        ks.rotate_master(
            &Unlock::passphrase("battery staple"),
            KdfParams::insecure_fast(),
        )
        .unwrap();
        assert_eq!(ks.unwrap_tenant_key(&t, &w).unwrap().expose(), k.expose());
        assert!(matches!(
            LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")),
            Err(Error::Key(KeyError::WrongPassphrase))
        ));
        let ks2 = LocalKeyStore::open(&p, &Unlock::passphrase("battery staple")).unwrap();
        assert_eq!(ks2.unwrap_tenant_key(&t, &w).unwrap().expose(), k.expose());
        // To a key file.
        let kf = d.path().join("master.key");
        std::fs::write(&kf, [5u8; 32]).unwrap();
        ks2.rotate_master(&Unlock::KeyFile(kf.clone()), KdfParams::default())
            .unwrap();
        let ks3 = LocalKeyStore::open(&p, &Unlock::KeyFile(kf)).unwrap();
        assert_eq!(ks3.unwrap_tenant_key(&t, &w).unwrap().expose(), k.expose());
        // The first handle still has the old master: it is told to reopen.
        assert!(matches!(
            ks.unwrap_tenant_key(&t, &w),
            Err(Error::Key(KeyError::BadKeyStore { .. }))
        ));
        assert!(matches!(
            ks3.rotate_master(&Unlock::passphrase("short"), KdfParams::insecure_fast()),
            Err(Error::Key(KeyError::WeakPassphrase { .. }))
        ));
    }

    #[test]
    fn a_crash_during_rotate_master_leaves_the_old_store_intact() {
        let d = tempfile::tempdir().unwrap();
        let (p, ks) = store(d.path());
        let t = TenantId::new("acme").unwrap();
        let k = SecretKey::generate().unwrap();
        let w = ks.wrap_tenant_key(&t, &k).unwrap();
        let before = std::fs::read(&p).unwrap();
        FAIL_BEFORE_RENAME.with(|c| c.set(true));
        let r = ks.rotate_master(
            &Unlock::passphrase("battery staple"),
            KdfParams::insecure_fast(),
        );
        FAIL_BEFORE_RENAME.with(|c| c.set(false));
        assert!(r.is_err());
        // The file is byte-identical; the old passphrase still works, the new does not.
        assert_eq!(std::fs::read(&p).unwrap(), before);
        let ks2 = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        assert_eq!(ks2.unwrap_tenant_key(&t, &w).unwrap().expose(), k.expose());
        assert!(LocalKeyStore::open(&p, &Unlock::passphrase("battery staple")).is_err());
        // The handle that failed keeps working with the old key, and a retry succeeds.
        assert_eq!(ks.unwrap_tenant_key(&t, &w).unwrap().expose(), k.expose());
        ks.rotate_master(
            &Unlock::passphrase("battery staple"),
            KdfParams::insecure_fast(),
        )
        .unwrap();
        let ks3 = LocalKeyStore::open(&p, &Unlock::passphrase("battery staple")).unwrap();
        assert_eq!(ks3.unwrap_tenant_key(&t, &w).unwrap().expose(), k.expose());
    }

    /// Two handles on one file (a server and the CLI) each add a tenant: the
    /// file lock and the re-read before each change keep both KEKs.
    #[test]
    fn two_handles_do_not_lose_each_others_keks() {
        let d = tempfile::tempdir().unwrap();
        let (p, ks1) = store(d.path());
        let ks2 = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
        let k = SecretKey::generate().unwrap();
        let wa = ks1.wrap_tenant_key(&a, &k).unwrap();
        let wb = ks2.wrap_tenant_key(&b, &k).unwrap();
        let ks3 = LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")).unwrap();
        assert_eq!(ks3.unwrap_tenant_key(&a, &wa).unwrap().expose(), k.expose());
        assert_eq!(ks3.unwrap_tenant_key(&b, &wb).unwrap().expose(), k.expose());
        assert_eq!(ks1.unwrap_tenant_key(&b, &wb).unwrap().expose(), k.expose());
    }

    #[test]
    fn unsupported_version_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (p, _ks) = store(d.path());
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["version"] = 3.into();
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(matches!(
            LocalKeyStore::open(&p, &Unlock::passphrase("correct horse")),
            Err(Error::Key(KeyError::BadKeyStore { .. }))
        ));
    }
}
