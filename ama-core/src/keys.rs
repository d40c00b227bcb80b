//! Key management: the [`KeyService`] contract and the local key store.
//!
//! The master key never leaves the key service. The engine only asks it to
//! wrap and unwrap tenant keys; tenant keys, in turn, wrap per-message data
//! keys and derive the catalog, index and dedup subkeys (see
//! `docs/ARCHITECTURE.md`). A remote key service (issue "no plaintext at
//! rest") implements the same trait.
//!
//! The local key store is one small JSON file, `keys/keystore.json`, holding
//! no key at all: only how to derive the master key (argon2id parameters and
//! salt, or "read a 32-byte key file") and a check value sealed under the
//! master key, so a wrong passphrase is told apart from corrupt data.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, KEY_LEN, SecretKey};
use crate::error::{Error, KeyError, Result};
use crate::tenant::TenantId;

/// Wraps and unwraps tenant keys under a master key the engine never sees.
///
/// Contract: `unwrap_tenant_key(t, wrap_tenant_key(t, k)) == k`; unwrapping
/// with another tenant id, or data altered in any way, fails with
/// [`crate::CryptoError::Authentication`]. Implementations are thread-safe.
pub trait KeyService: Send + Sync {
    /// Wraps `key` for `tenant`; the result is safe to store anywhere.
    fn wrap_tenant_key(&self, tenant: &TenantId, key: &SecretKey) -> Result<Vec<u8>>;
    /// Unwraps what [`KeyService::wrap_tenant_key`] returned for the same tenant.
    fn unwrap_tenant_key(&self, tenant: &TenantId, wrapped: &[u8]) -> Result<SecretKey>;
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
const KEYSTORE_VERSION: u32 = 1;
const CHECK_AAD: &[u8] = b"ama/keystore/check/v1";
const CHECK_PLAIN: &[u8] = b"ama key store v1";

#[derive(Serialize, Deserialize)]
struct KeyStoreFile {
    format: String,
    version: u32,
    /// "passphrase" or "key-file".
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfHeader>,
    /// Hex of the check value sealed under the master key.
    check: String,
}

#[derive(Serialize, Deserialize)]
struct KdfHeader {
    alg: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

/// The default [`KeyService`]: a master key held in memory only, derived from
/// a passphrase or read from a key file when the archive is opened.
pub struct LocalKeyStore {
    master: SecretKey,
}

impl LocalKeyStore {
    /// The key store file inside a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("keystore.json")
    }

    /// Creates a new key store file at `path` (which must not exist).
    pub fn create(path: &Path, unlock: &Unlock, params: KdfParams) -> Result<Self> {
        let (kind, kdf, master) = match unlock {
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
        };
        let check = crypto::seal(&master, CHECK_AAD, CHECK_PLAIN)?;
        let file = KeyStoreFile {
            format: "ama-keystore".into(),
            version: KEYSTORE_VERSION,
            kind: kind.into(),
            kdf,
            check: crypto::hex(&check),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::BadKeyStore {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        crate::fsutil::write_new_durable(path, &json)?;
        Ok(LocalKeyStore { master })
    }

    /// Opens an existing key store file and unlocks it.
    pub fn open(path: &Path, unlock: &Unlock) -> Result<Self> {
        let bad = |reason: String| -> Error {
            KeyError::BadKeyStore {
                path: path.display().to_string(),
                reason,
            }
            .into()
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let file: KeyStoreFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != "ama-keystore" {
            return Err(bad(format!(
                "format {:?} is not an ama key store",
                file.format
            )));
        }
        if file.version != KEYSTORE_VERSION {
            return Err(bad(format!("unsupported version {}", file.version)));
        }
        let check = unhex(&file.check).ok_or_else(|| bad("check value is not hex".into()))?;
        let master = match (file.kind.as_str(), unlock) {
            ("passphrase", Unlock::Passphrase(p)) => {
                let hdr = file
                    .kdf
                    .as_ref()
                    .ok_or_else(|| bad("passphrase store without kdf header".into()))?;
                if hdr.alg != "argon2id" {
                    return Err(bad(format!("unknown kdf {:?}", hdr.alg)));
                }
                let salt = unhex(&hdr.salt).ok_or_else(|| bad("salt is not hex".into()))?;
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
            (other, _) => return Err(bad(format!("unknown kind {other:?}"))),
        };
        match crypto::open(&master, CHECK_AAD, &check, "key store check") {
            Ok(p) if p == CHECK_PLAIN => Ok(LocalKeyStore { master }),
            Ok(_) => Err(bad("check value does not match".into())),
            Err(crate::CryptoError::Authentication { .. }) => Err(KeyError::WrongPassphrase.into()),
            Err(e) => Err(e.into()),
        }
    }

    fn aad(tenant: &TenantId) -> Vec<u8> {
        let mut aad = b"ama/tenant-key/v1/".to_vec();
        aad.extend_from_slice(tenant.as_str().as_bytes());
        aad
    }
}

impl KeyService for LocalKeyStore {
    fn wrap_tenant_key(&self, tenant: &TenantId, key: &SecretKey) -> Result<Vec<u8>> {
        Ok(crypto::wrap_key(&self.master, &Self::aad(tenant), key)?)
    }

    fn unwrap_tenant_key(&self, tenant: &TenantId, wrapped: &[u8]) -> Result<SecretKey> {
        Ok(crypto::unwrap_key(
            &self.master,
            &Self::aad(tenant),
            wrapped,
            &format!("key of tenant {tenant}"),
        )?)
    }
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
}
