//! Cryptographic primitives, wrapped so that the rules in DESIGN.md hold by
//! construction:
//!
//! - [`SecretKey`] is neither `Clone` nor `Debug` and is zeroized on drop, so a
//!   key cannot end up in a log line or linger in a copy.
//! - Nonces are never an argument: [`seal`] draws a fresh random 96-bit nonce
//!   for every call. Every key that seals many values is a derived key used
//!   far below the 2^32 random-nonce bound per key; message blobs use a fresh
//!   key each.
//! - Every ciphertext is bound to where it belongs through associated data
//!   (the caller passes a context such as `tenant | message id`), so a sealed
//!   value copied to another record fails authentication.
//!
//! Sealed format (version 1): `0x01 | nonce (12) | AES-256-GCM ciphertext+tag`.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::CryptoError;

/// Length of every symmetric key, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SEAL_VERSION: u8 = 1;

/// Bytes [`seal`] adds to a plaintext.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// A 256-bit secret key. Not `Clone`, not `Debug`; zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = [0u8; KEY_LEN];
        random_fill(&mut k)?;
        Ok(Self(k))
    }

    /// Takes ownership of raw key bytes (the caller's copy should be zeroized).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Derives a subkey with HKDF-SHA256; `label` names its purpose
    /// ("index", "catalog", "dedup", "message-keys", ...). Different labels give
    /// independent keys.
    pub fn derive(&self, label: &str) -> SecretKey {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"ama/v1/hkdf"), &self.0);
        let mut out = [0u8; KEY_LEN];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        if hk.expand(label.as_bytes(), &mut out).is_err() {
            unreachable!("HKDF-SHA256 can always expand to 32 bytes");
        }
        SecretKey(out)
    }

    /// The raw key bytes, for a [`crate::KeyService`] that must move a key
    /// across a process boundary (the remote key service sends a tenant key
    /// to be wrapped over mutually authenticated TLS). Copy it only into
    /// buffers that are zeroized after use.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The raw bytes (tests compare keys through this).
    #[cfg(test)]
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        match Aes256Gcm::new_from_slice(&self.0) {
            Ok(c) => c,
            Err(_) => unreachable!("a 32-byte key is valid for AES-256"),
        }
    }
}

/// Fills `buf` from the operating system's random number generator.
pub fn random_fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// Encrypts and authenticates `plaintext` under `key`, binding `aad`.
pub fn seal(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_fill(&mut nonce)?;
    let ct = key
        .cipher()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Random("AES-GCM encryption failed".into()))?;
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts what [`seal`] produced with the same `key` and `aad`. `what`
/// names the value in the error message.
pub fn open(
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Malformed {
            what: what.into(),
            reason: format!("{} bytes is shorter than the minimum", sealed.len()),
        });
    }
    if sealed[0] != SEAL_VERSION {
        return Err(CryptoError::Malformed {
            what: what.into(),
            reason: format!("unknown format version {}", sealed[0]),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
    key.cipher()
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad,
            },
        )
        .map_err(|_| CryptoError::Authentication { what: what.into() })
}

/// Wraps (encrypts) `key` under `kek`, binding `aad`.
pub fn wrap_key(kek: &SecretKey, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
    seal(kek, aad, &key.0)
}

/// Unwraps what [`wrap_key`] produced.
pub fn unwrap_key(
    kek: &SecretKey,
    aad: &[u8],
    wrapped: &[u8],
    what: &str,
) -> Result<SecretKey, CryptoError> {
    let mut plain = open(kek, aad, wrapped, what)?;
    if plain.len() != KEY_LEN {
        plain.zeroize();
        return Err(CryptoError::Malformed {
            what: what.into(),
            reason: "wrapped key has the wrong length".into(),
        });
    }
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&plain);
    plain.zeroize();
    Ok(SecretKey(k))
}

/// HMAC-SHA256 of `data` under `key`: the keyed hash used for dedup and for
/// opaque names, so equal inputs in two tenants give unrelated values.
pub fn keyed_hash(key: &SecretKey, data: &[u8]) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key.0) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Plain SHA-256 of `data` (the proof digest of a message's raw bytes).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Compresses with zstd (level 3: most of the ratio at a fraction of the cost).
pub fn compress(data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    zstd::bulk::compress(data, 3).map_err(|e| CryptoError::Compression(e.to_string()))
}

/// Decompresses a zstd frame, refusing to grow beyond `limit` bytes.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CryptoError> {
    zstd::bulk::decompress(data, limit).map_err(|e| CryptoError::Compression(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = SecretKey::generate().unwrap();
        let s = seal(&k, b"ctx", b"hello").unwrap();
        assert_eq!(open(&k, b"ctx", &s, "t").unwrap(), b"hello");
        assert!(matches!(
            open(&k, b"other", &s, "t"),
            Err(CryptoError::Authentication { .. })
        ));
        let mut flipped = s.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open(&k, b"ctx", &flipped, "t").is_err());
        assert!(matches!(
            open(&k, b"ctx", &s[..5], "t"),
            Err(CryptoError::Malformed { .. })
        ));
        let k2 = SecretKey::generate().unwrap();
        assert!(open(&k2, b"ctx", &s, "t").is_err());
    }

    #[test]
    fn nonces_differ() {
        let k = SecretKey::generate().unwrap();
        assert_ne!(seal(&k, b"", b"x").unwrap(), seal(&k, b"", b"x").unwrap());
    }

    #[test]
    fn derive_is_deterministic_and_label_separated() {
        let k = SecretKey::from_bytes([7; 32]);
        assert_eq!(k.derive("a").expose(), k.derive("a").expose());
        assert_ne!(k.derive("a").expose(), k.derive("b").expose());
    }

    #[test]
    fn wrap_unwrap() {
        let kek = SecretKey::generate().unwrap();
        let k = SecretKey::generate().unwrap();
        let w = wrap_key(&kek, b"aad", &k).unwrap();
        let u = unwrap_key(&kek, b"aad", &w, "k").unwrap();
        assert_eq!(u.expose(), k.expose());
    }
}
