//! Harness for decryption of hostile ciphertext, shared by the `decrypt`
//! fuzz target and `ama-core/tests/fuzz_regressions.rs`.
//!
//! Byte 0 picks what is attacked:
//!
//! * 0: the input as a sealed value (`crypto::open`), a wrapped key
//!   (`crypto::unwrap_key`) and a message blob (blob open, with a recorded
//!   size from the input), all under a key the input cannot know: each must
//!   be refused with an error;
//! * 1: the input as the *plaintext* of a correctly sealed (version 1) blob, i.e. a
//!   hostile zstd frame that passed authentication (a stolen key, or a bug
//!   on the writing side): the blob must open to at most the recorded size
//!   or be refused, without allocating more than that size;
//! * 2: a real blob of the input's bytes, then one byte of it changed as the
//!   input says: it must open to the original only if nothing changed;
//! * 3: the input as a file of the encrypted full-text index
//!   (`crypt_dir`): opening and reading it must fail;
//! * 4: a real index file of the input's bytes with one byte changed: reads
//!   must fail unless nothing changed, then give back the original.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use ama_core::crypt_dir::EncryptedDirectory;
use ama_core::crypto::{self, SecretKey};
use ama_core::fuzz_hooks;
use tantivy::directory::{Directory, TerminatingWrite};

/// A key drawn once per process: no input can have been sealed under it.
fn unknown_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::generate().unwrap_or_else(|_| SecretKey::from_bytes([0x5a; 32])))
}

/// Runs one input; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    let aad = b"ama/fuzz|tenant|message";
    match mode % 5 {
        0 => {
            let key = unknown_key();
            if crypto::open(key, aad, rest, "fuzz value").is_ok() {
                return Err("crypto::open accepted a value it did not seal".into());
            }
            if crypto::unwrap_key(key, aad, rest, "fuzz key").is_ok() {
                return Err("crypto::unwrap_key accepted a key it did not wrap".into());
            }
            let size = u64::from(rest.first().copied().unwrap_or(0)) << 12;
            if fuzz_hooks::open_blob(key, aad, rest, size).is_ok() {
                return Err("a blob not sealed under the key opened".into());
            }
        }
        1 => {
            let (size, frame) = split_size(rest);
            let key = SecretKey::from_bytes([7; 32]);
            // A version 1 blob (still read): header, then seal(zstd frame).
            let mut blob = b"AMAB\x01".to_vec();
            blob.extend(crypto::seal(&key, aad, frame).map_err(|e| e.to_string())?);
            if let Ok(raw) = fuzz_hooks::open_blob(&key, aad, &blob, size)
                && raw.len() as u64 > size
            {
                return Err(format!(
                    "a blob opened to {} bytes, over its size {size}",
                    raw.len()
                ));
            }
        }
        2 => {
            let (at, xor, raw) = split_edit(rest);
            let key = SecretKey::from_bytes([9; 32]);
            let mut blob = fuzz_hooks::seal_blob(&key, aad, raw).map_err(|e| e.to_string())?;
            let size = raw.len() as u64;
            match fuzz_hooks::open_blob(&key, aad, &blob, size) {
                Ok(back) if back == raw => {}
                other => return Err(format!("a fresh blob did not open to its bytes: {other:?}")),
            }
            let i = at % blob.len();
            blob[i] ^= xor;
            let opened = fuzz_hooks::open_blob(&key, aad, &blob, size);
            if xor != 0 && opened.is_ok() {
                return Err(format!(
                    "blob byte {i} changed (^{xor:#04x}) and it still opened"
                ));
            }
        }
        3 => {
            let dir = TempDir::new("decrypt")?;
            std::fs::write(dir.0.join("x.idx"), rest).map_err(|e| e.to_string())?;
            let d = EncryptedDirectory::open(
                &dir.0,
                SecretKey::from_bytes(*unknown_key().expose_secret()),
                1 << 16,
            )
            .map_err(|e| e.to_string())?;
            if let Ok(h) = d.get_file_handle(Path::new("x.idx")) {
                let len = h.len();
                if h.read_bytes(0..len).is_ok() {
                    return Err("an index file not written under the key was read".into());
                }
            }
        }
        _ => {
            let (at, xor, raw) = split_edit(rest);
            let dir = TempDir::new("decrypt")?;
            let d = EncryptedDirectory::open(&dir.0, SecretKey::from_bytes([3; 32]), 1 << 16)
                .map_err(|e| e.to_string())?;
            let name = Path::new("seg.idx");
            let mut w = d.open_write(name).map_err(|e| e.to_string())?;
            w.write_all(raw).map_err(|e| e.to_string())?;
            w.terminate().map_err(|e| e.to_string())?;
            let file = dir.0.join(name);
            let mut bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
            let i = at % bytes.len();
            bytes[i] ^= xor;
            std::fs::write(&file, &bytes).map_err(|e| e.to_string())?;
            // A fresh directory: nothing cached from the write.
            let d = EncryptedDirectory::open(&dir.0, SecretKey::from_bytes([3; 32]), 1 << 16)
                .map_err(|e| e.to_string())?;
            let read = d
                .get_file_handle(name)
                .map_err(|e| e.to_string())
                .and_then(|h| h.read_bytes(0..h.len()).map_err(|e| e.to_string()));
            match read {
                Ok(back) if xor != 0 => {
                    return Err(format!(
                        "index file byte {i} changed (^{xor:#04x}) and it still read ({} bytes)",
                        back.len()
                    ));
                }
                Ok(back) if back.as_slice() != raw => {
                    return Err("an index file read back different bytes".into());
                }
                Err(e) if xor == 0 => return Err(format!("an intact index file failed: {e}")),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A recorded size (u16 little-endian, in 16-byte units: up to 1 MiB) and the rest.
fn split_size(data: &[u8]) -> (u64, &[u8]) {
    match data {
        [a, b, rest @ ..] => (u64::from(u16::from_le_bytes([*a, *b])) * 16, rest),
        _ => (0, data),
    }
}

/// Where to change a byte (u16), how (xor mask), and the original bytes.
fn split_edit(data: &[u8]) -> (usize, u8, &[u8]) {
    match data {
        [a, b, x, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), *x, rest),
        _ => (0, 0, data),
    }
}

/// A fresh directory under a tmpfs if there is one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Result<Self, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "ama-fuzz-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
