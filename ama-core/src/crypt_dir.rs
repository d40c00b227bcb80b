//! An encrypting tantivy [`Directory`]: the full-text index of a tenant is
//! stored as AES-256-GCM ciphertext, so that no plaintext term, posting or
//! stored field of mail ever reaches the disk ("no plaintext at rest").
//!
//! # Why a directory and not disk encryption
//!
//! Every other piece of a tenant's data is sealed under a key derived from the
//! tenant key; the index must be too, so that destroying the tenant key makes
//! the index unreadable and backups of the data directory never hold
//! plaintext. tantivy reaches its files only through the [`Directory`] trait,
//! so encrypting there covers every file it writes (segments, `meta.json`,
//! `.managed.json`) without touching tantivy.
//!
//! # File format (version 1)
//!
//! ```text
//! header (33 bytes, little-endian):
//!   "AMAI" | version u8 (= 1) | block size u32 (= 65536) | file id (16 random bytes)
//!   | plaintext length u64   (u64::MAX while the writer has not terminated)
//! blocks:  block i = AES-256-GCM(ciphertext of plaintext bytes [i*B, min((i+1)*B, len))) | tag (16)
//!          there are max(1, ceil(len / B)) blocks: an empty file has one empty block,
//!          so every file has a last block that authenticates its length.
//! ```
//!
//! - **Key**: each file has its own AES-256 key, `HMAC-SHA256(K_files, "ama/index-file/v1" |
//!   file id)` where `K_files = HKDF(index key, "index/file-keys")`. The file id is
//!   drawn fresh for every file written (also when a name such as `meta.json` is
//!   rewritten), so a (key, nonce) pair is never reused.
//! - **Nonce**: `file id[0..4] | block number u64 (big-endian)`: unique within the file's key.
//! - **Associated data** of block *i*: `"AMAI" | version | block size | file id | name length
//!   u32 | name | i u64 | last u8 | length u64` where `length` is the plaintext length for
//!   the last block and 0 for the others. Blocks are therefore bound to their file (name and
//!   id), their position and to whether they end the file; the last block authenticates the
//!   total length (the STREAM construction). Swapped, reordered, dropped, appended or edited
//!   blocks, an edited header and a wrong key all fail authentication. The length cannot be
//!   bound into every block because blocks are sealed while the file is streamed out and the
//!   length is only known at the end.
//! - **Names** are kept as tantivy chooses them (`meta.json`, `<segment uuid>.idx`, ...):
//!   they carry random segment ids and the kind of file, never personal data. The name is
//!   bound into every block, so renaming one file over another is detected.
//! - What stays visible: file names, file sizes (the plaintext length, as for any
//!   encryption), and the empty lock files tantivy creates.
//!
//! # Reads
//!
//! [`Directory::get_file_handle`] checks the header and the file size and authenticates the
//! last block (so truncation and extension are reported when the file is opened); the
//! returned [`FileHandle`] then decrypts only the blocks a read covers. Decrypted blocks go
//! to an LRU cache shared by all clones of the directory and bounded in bytes. A read inside
//! one block returns a slice of the cached block without copying; a read across blocks
//! assembles a new buffer (large reads, over a quarter of the cache, bypass the cache so a
//! segment load does not evict the hot postings). Unlike `MmapDirectory`, the bytes tantivy
//! keeps for the lifetime of a segment reader (term dictionaries, fast fields, field norms)
//! are heap copies, outside the cache bound; a small long-lived slice inside one block keeps
//! that whole block alive. Cache entries are keyed by a digest of everything the block was
//! authenticated against (file id, name, length, block size), so a file copied or renamed on
//! disk is never served blocks that were authenticated for another file.
//!
//! Decrypted buffers are zeroized when the last reference to them goes away: the cache
//! zeroizes what it evicts if nobody else holds it, and otherwise parks the buffer and
//! zeroizes it at a later sweep once tantivy has dropped it (best effort: a buffer still
//! held when the directory is dropped is freed without zeroizing, and tantivy's own
//! in-memory structures are never zeroized). Per-file keys are zeroized after use, but the
//! AES key schedules held by open files and writers are not: that needs the `zeroize`
//! feature of `aes-gcm`, which the workspace does not enable.
//!
//! # Writes and durability
//!
//! [`Directory::open_write`] encrypts block by block as the data arrives (one block of
//! plaintext in memory), and on `terminate` seals the last block, writes the length into
//! the header and `fsync`s the file. As with `MmapDirectory`, the directory entry is durable
//! after [`Directory::sync_directory`]. [`Directory::atomic_write`] writes a temporary file
//! in the same directory, `fsync`s it, renames it over the target and `fsync`s the directory.
//! A crash in between can leave a `.<name>.<random>.ama-tmp` file behind: ciphertext, never
//! read, not removed automatically.
//!
//! # Locks and watching
//!
//! Locks are delegated to an inner [`MmapDirectory`] on the same path (`flock`-based lock
//! files, empty), so they exclude other processes exactly as tantivy's default does. Watch
//! callbacks fire when `meta.json` is written through [`Directory::atomic_write`] of this
//! process (as in tantivy's `RamDirectory`); commits made by another process are not
//! noticed (ama has one writer per index, in the process that searches it).
//!
//! ```
//! use ama_core::crypt_dir::EncryptedDirectory;
//! use ama_core::crypto::SecretKey;
//! use tantivy::schema::{Schema, TEXT};
//! use tantivy::{Index, IndexWriter, doc};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let tenant_key = SecretKey::generate()?;
//! let dir = EncryptedDirectory::open(tmp.path(), tenant_key.derive("index"), 32 << 20)?;
//! let mut schema = Schema::builder();
//! let body = schema.add_text_field("body", TEXT);
//! let index = Index::open_or_create(dir, schema.build())?;
//! let mut writer: IndexWriter = index.writer(15_000_000)?;
//! writer.add_document(doc!(body => "quarterly numbers"))?;
//! writer.commit()?;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::{fmt, iter};

use aes_gcm::aead::Nonce;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Tag};
use tantivy::directory::error::{
    DeleteError, LockError, OpenDirectoryError, OpenReadError, OpenWriteError,
};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes,
    TerminatingWrite, WatchCallback, WatchCallbackList, WatchHandle, WritePtr,
};
use tantivy::{HasLen, Index};
use zeroize::Zeroize;

use crate::crypto::{self, SecretKey};

/// Magic bytes opening every encrypted index file.
pub const MAGIC: &[u8; 4] = b"AMAI";
/// Version of the encrypted index file format.
pub const FORMAT_VERSION: u8 = 1;
/// Plaintext bytes per block.
pub const BLOCK_SIZE: usize = 64 * 1024;
/// Length of the file header.
pub const HEADER_LEN: usize = 4 + 1 + 4 + FILE_ID_LEN + 8;
/// Bytes of authentication tag after each block's ciphertext.
pub const TAG_LEN: usize = 16;

const FILE_ID_LEN: usize = 16;
const LEN_OFFSET: u64 = (4 + 1 + 4 + FILE_ID_LEN) as u64;
const UNTERMINATED: u64 = u64::MAX;
const MIN_BLOCK_SIZE: usize = 512;
const MAX_BLOCK_SIZE: usize = 16 * 1024 * 1024;
const FILE_KEY_LABEL: &str = "index/file-keys";
const FILE_KEY_CONTEXT: &[u8] = b"ama/index-file/v1";
const META_FILE: &str = "meta.json";
const TEMP_SUFFIX: &str = ".ama-tmp";

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

// ---------------------------------------------------------------------------
// Directory
// ---------------------------------------------------------------------------

/// A tantivy [`Directory`] on a local directory that encrypts every file with
/// AES-256-GCM under keys derived from the tenant's index key (see the module
/// docs for the format). Cheap to clone: clones share the key, the block cache
/// and the watchers.
#[derive(Clone)]
pub struct EncryptedDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// `HKDF(index key, "index/file-keys")`: per-file keys are derived from it.
    file_keys: SecretKey,
    cache: BlockCache,
    watchers: WatchCallbackList,
    /// Used only for its `flock`-based locks.
    locks: MmapDirectory,
}

impl fmt::Debug for EncryptedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedDirectory({:?})", self.inner.root)
    }
}

impl EncryptedDirectory {
    /// Opens the encrypted directory at `path`, which must exist. `key` is the
    /// tenant's index key (HKDF label "index"); `cache_bytes` bounds the cache
    /// of decrypted blocks shared by every clone (0 disables caching).
    pub fn open(
        path: &Path,
        key: SecretKey,
        cache_bytes: usize,
    ) -> Result<Self, OpenDirectoryError> {
        let locks = MmapDirectory::open(path)?;
        let root = path
            .canonicalize()
            .map_err(|e| OpenDirectoryError::wrap_io_error(e, path.to_path_buf()))?;
        Ok(EncryptedDirectory {
            inner: Arc::new(Inner {
                root,
                file_keys: key.derive(FILE_KEY_LABEL),
                cache: BlockCache::new(cache_bytes),
                watchers: WatchCallbackList::default(),
                locks,
            }),
        })
    }

    /// The directory's path on disk.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Bytes of decrypted blocks currently held by the cache.
    pub fn cached_bytes(&self) -> usize {
        self.inner.cache.used()
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.inner.root.join(path)
    }

    fn file_cipher(&self, file_id: &[u8; FILE_ID_LEN]) -> Aes256Gcm {
        let mut input = Vec::with_capacity(FILE_KEY_CONTEXT.len() + FILE_ID_LEN);
        input.extend_from_slice(FILE_KEY_CONTEXT);
        input.extend_from_slice(file_id);
        let mut key = crypto::keyed_hash(&self.inner.file_keys, &input);
        let cipher = match Aes256Gcm::new_from_slice(&key) {
            Ok(c) => c,
            Err(_) => unreachable!("a 32-byte key is valid for AES-256"),
        };
        key.zeroize();
        cipher
    }

    /// Starts an encrypted file in `file` (already created) for `name`.
    fn writer(&self, file: File, name: &str, path: PathBuf) -> io::Result<EncryptedWriter> {
        let mut file_id = [0u8; FILE_ID_LEN];
        crypto::random_fill(&mut file_id).map_err(io::Error::other)?;
        let geometry = Geometry {
            block_size: BLOCK_SIZE,
            file_id,
            aad_prefix: aad_prefix(BLOCK_SIZE, &file_id, name),
        };
        let mut w = EncryptedWriter {
            file,
            path,
            cipher: self.file_cipher(&file_id),
            geometry,
            buf: Vec::with_capacity(BLOCK_SIZE + TAG_LEN),
            block_no: 0,
            total: 0,
            failed: false,
        };
        let mut header = [0u8; HEADER_LEN];
        write_header(&mut header, BLOCK_SIZE, &file_id, UNTERMINATED);
        w.file.write_all(&header)?;
        Ok(w)
    }

    /// Opens and checks the encrypted file `path` (relative to the root):
    /// header, size, and the authenticity of its last block.
    fn open_file(&self, path: &Path) -> Result<EncryptedFile, OpenReadError> {
        let name = name_of(path).map_err(|e| OpenReadError::wrap_io_error(e, path.into()))?;
        let file = File::open(self.resolve(path)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                OpenReadError::FileDoesNotExist(path.to_path_buf())
            } else {
                OpenReadError::wrap_io_error(e, path.to_path_buf())
            }
        })?;
        EncryptedFile::open(self, file, name)
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }
}

/// Opens the existing tantivy index in `path` on an [`EncryptedDirectory`]
/// (see [`EncryptedDirectory::open`] for `key` and `cache_bytes`).
pub fn open_index(path: &Path, key: SecretKey, cache_bytes: usize) -> tantivy::Result<Index> {
    Index::open(EncryptedDirectory::open(path, key, cache_bytes)?)
}

fn name_of(path: &Path) -> io::Result<&str> {
    path.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("index file name {path:?} is not UTF-8"),
        )
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cache.clear();
    }
}

impl Directory for EncryptedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(self.open_file(path)?))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        fs::remove_file(self.resolve(path)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                DeleteError::FileDoesNotExist(path.to_path_buf())
            } else {
                DeleteError::IoError {
                    io_error: Arc::new(e),
                    filepath: path.to_path_buf(),
                }
            }
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.resolve(path)
            .try_exists()
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let wrap = |e| OpenWriteError::wrap_io_error(e, path.to_path_buf());
        let name = name_of(path).map_err(wrap)?;
        let full = self.resolve(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    OpenWriteError::FileAlreadyExists(path.to_path_buf())
                } else {
                    wrap(e)
                }
            })?;
        let writer = self.writer(file, name, path.to_path_buf()).map_err(wrap)?;
        // Our writer buffers a whole block itself; tantivy's `ManagedDirectory`
        // unwraps this `BufWriter` and adds its own anyway.
        Ok(io::BufWriter::with_capacity(0, Box::new(writer)))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let file = self.open_file(path)?;
        file.read_all()
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let name = name_of(path)?;
        let target = self.resolve(path);
        let parent = target
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?
            .to_path_buf();
        let file_name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_string_lossy()
            .into_owned();
        let mut rnd = [0u8; 8];
        crypto::random_fill(&mut rnd).map_err(io::Error::other)?;
        let temp = parent.join(format!(".{file_name}.{}{TEMP_SUFFIX}", crypto::hex(&rnd)));
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            let mut w = self.writer(file, name, path.to_path_buf())?;
            w.write_all(data)?;
            w.finish()?;
            fs::rename(&temp, &target)?;
            File::open(&parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
        if name == META_FILE {
            drop(self.inner.watchers.broadcast());
        }
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.locks.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(self.inner.watchers.subscribe(watch_callback))
    }

    fn sync_directory(&self) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(&self.inner.root)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Format helpers
// ---------------------------------------------------------------------------

/// What is needed to seal or open the blocks of one file.
struct Geometry {
    block_size: usize,
    file_id: [u8; FILE_ID_LEN],
    aad_prefix: Vec<u8>,
}

impl Geometry {
    fn nonce(&self, block_no: u64) -> Nonce<Aes256Gcm> {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.file_id[..4]);
        n[4..].copy_from_slice(&block_no.to_be_bytes());
        Nonce::<Aes256Gcm>::from(n)
    }

    fn aad(&self, block_no: u64, last: bool, total_len: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.aad_prefix.len() + 17);
        aad.extend_from_slice(&self.aad_prefix);
        aad.extend_from_slice(&block_no.to_le_bytes());
        aad.push(u8::from(last));
        aad.extend_from_slice(&(if last { total_len } else { 0 }).to_le_bytes());
        aad
    }
}

fn aad_prefix(block_size: usize, file_id: &[u8; FILE_ID_LEN], name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + 1 + 4 + FILE_ID_LEN + 4 + name.len());
    p.extend_from_slice(MAGIC);
    p.push(FORMAT_VERSION);
    p.extend_from_slice(&(block_size as u32).to_le_bytes());
    p.extend_from_slice(file_id);
    p.extend_from_slice(&(name.len() as u32).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

fn write_header(
    out: &mut [u8; HEADER_LEN],
    block_size: usize,
    file_id: &[u8; FILE_ID_LEN],
    len: u64,
) {
    out[..4].copy_from_slice(MAGIC);
    out[4] = FORMAT_VERSION;
    out[5..9].copy_from_slice(&(block_size as u32).to_le_bytes());
    out[9..9 + FILE_ID_LEN].copy_from_slice(file_id);
    out[9 + FILE_ID_LEN..].copy_from_slice(&len.to_le_bytes());
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(any(unix, windows)))]
fn read_at(_file: &File, _buf: &mut [u8], _offset: u64) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positioned reads are not implemented on this platform",
    ))
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A zero-filled shared buffer that we can still write into (it has one owner).
fn new_buffer(len: usize) -> Arc<[u8]> {
    iter::repeat_n(0u8, len).collect()
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

/// Seals plaintext block by block as it arrives; at most one block of
/// plaintext is held.
struct EncryptedWriter {
    file: File,
    path: PathBuf,
    cipher: Aes256Gcm,
    geometry: Geometry,
    buf: Vec<u8>,
    block_no: u64,
    total: u64,
    failed: bool,
}

impl EncryptedWriter {
    fn seal_block(&mut self, last: bool) -> io::Result<()> {
        let nonce = self.geometry.nonce(self.block_no);
        let aad = self.geometry.aad(self.block_no, last, self.total);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, &aad, self.buf.as_mut_slice().into())
            .map_err(|_| io::Error::other(format!("{:?}: encryption failed", self.path)))?;
        self.buf.extend_from_slice(&tag);
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        self.block_no += 1;
        Ok(())
    }

    /// Seals the last block, records the length in the header and fsyncs.
    fn finish(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(format!(
                "{:?}: an earlier write failed",
                self.path
            )));
        }
        self.failed = true;
        self.seal_block(true)?;
        self.file.seek(SeekFrom::Start(LEN_OFFSET))?;
        self.file.write_all(&self.total.to_le_bytes())?;
        self.file.sync_data()?;
        Ok(())
    }
}

impl Write for EncryptedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other(format!(
                "{:?}: writer already failed or terminated",
                self.path
            )));
        }
        let block_size = self.geometry.block_size;
        let mut rest = data;
        while !rest.is_empty() {
            // A full block is sealed only once more data follows: if the file
            // ends on a block boundary, that full block is the last one.
            if self.buf.len() == block_size
                && let Err(e) = self.seal_block(false)
            {
                self.failed = true;
                return Err(e);
            }
            let take = (block_size - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            self.total += take as u64;
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Data is only durable after `terminate`; a partial block cannot be sealed early.
        Ok(())
    }
}

impl TerminatingWrite for EncryptedWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.finish()
    }
}

impl Drop for EncryptedWriter {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

/// An open, checked encrypted file: the [`FileHandle`] tantivy reads from.
struct EncryptedFile {
    file: File,
    name: String,
    cipher: Aes256Gcm,
    geometry: Geometry,
    len: usize,
    num_blocks: u64,
    /// SHA-256 of the associated-data prefix (magic, version, block size,
    /// file id, name) and the length: what a cached block was authenticated
    /// against. Keying the cache on the file id alone would let a file
    /// renamed or copied on disk be served blocks authenticated for another.
    ident: [u8; 32],
    dir: Arc<Inner>,
}

impl fmt::Debug for EncryptedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedFile({:?}, len={})", self.name, self.len)
    }
}

impl EncryptedFile {
    fn open(dir: &EncryptedDirectory, file: File, name: &str) -> io::Result<EncryptedFile> {
        let mut header = [0u8; HEADER_LEN];
        let size = file.metadata()?.len();
        if size < HEADER_LEN as u64 {
            return Err(invalid_data(format!(
                "index file {name:?}: {size} bytes is too short for the header (truncated)"
            )));
        }
        read_at(&file, &mut header, 0)?;
        if &header[..4] != MAGIC {
            return Err(invalid_data(format!(
                "index file {name:?}: not an encrypted index file (bad magic)"
            )));
        }
        if header[4] != FORMAT_VERSION {
            return Err(invalid_data(format!(
                "index file {name:?}: unknown format version {}",
                header[4]
            )));
        }
        let mut b4 = [0u8; 4];
        b4.copy_from_slice(&header[5..9]);
        let block_size = u32::from_le_bytes(b4) as usize;
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(invalid_data(format!(
                "index file {name:?}: invalid block size {block_size}"
            )));
        }
        let mut file_id = [0u8; FILE_ID_LEN];
        file_id.copy_from_slice(&header[9..9 + FILE_ID_LEN]);
        let mut b8 = [0u8; 8];
        b8.copy_from_slice(&header[9 + FILE_ID_LEN..]);
        let len = u64::from_le_bytes(b8);
        if len == UNTERMINATED {
            return Err(invalid_data(format!(
                "index file {name:?}: the file was never completed (writer not terminated)"
            )));
        }
        let num_blocks = len.div_ceil(block_size as u64).max(1);
        let expected = num_blocks
            .checked_mul(TAG_LEN as u64)
            .and_then(|t| t.checked_add(len))
            .and_then(|t| t.checked_add(HEADER_LEN as u64));
        if expected != Some(size) {
            return Err(invalid_data(format!(
                "index file {name:?}: {size} bytes on disk, but the header's length {len} \
                 needs {} (truncated, extended or edited)",
                expected.map_or_else(|| "an impossible size".to_string(), |e| e.to_string())
            )));
        }
        let len = usize::try_from(len)
            .map_err(|_| invalid_data(format!("index file {name:?}: too large")))?;
        let prefix = aad_prefix(block_size, &file_id, name);
        let mut ident_input = prefix.clone();
        ident_input.extend_from_slice(&(len as u64).to_le_bytes());
        let f = EncryptedFile {
            file,
            name: name.to_string(),
            cipher: dir.file_cipher(&file_id),
            geometry: Geometry {
                block_size,
                file_id,
                aad_prefix: prefix,
            },
            len,
            num_blocks,
            ident: crypto::sha256(&ident_input),
            dir: Arc::clone(&dir.inner),
        };
        // Authenticating the last block checks the length in the header and
        // that nothing was cut off or appended; tantivy reads the footer there
        // next anyway, so it stays cached.
        f.cached_block(num_blocks - 1)?;
        Ok(f)
    }

    fn block_range(&self, block_no: u64) -> Range<usize> {
        let bs = self.geometry.block_size;
        let start = block_no as usize * bs;
        start..(start + bs).min(self.len)
    }

    /// Reads and decrypts block `block_no` into `out` (exactly its plaintext length).
    fn decrypt_into(&self, block_no: u64, out: &mut [u8]) -> io::Result<()> {
        let bs = self.geometry.block_size as u64;
        let offset = HEADER_LEN as u64 + block_no * (bs + TAG_LEN as u64);
        let mut tag = [0u8; TAG_LEN];
        let read = read_at(&self.file, out, offset)
            .and_then(|()| read_at(&self.file, &mut tag, offset + out.len() as u64));
        if let Err(e) = read {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid_data(format!(
                    "index file {:?}: block {block_no} of {} is truncated",
                    self.name, self.num_blocks
                ))
            } else {
                e
            });
        }
        let last = block_no + 1 == self.num_blocks;
        let nonce = self.geometry.nonce(block_no);
        let aad = self.geometry.aad(block_no, last, self.len as u64);
        let tag = Tag::from(tag);
        if self
            .cipher
            .decrypt_inout_detached(&nonce, &aad, out.into(), &tag)
            .is_err()
        {
            out.zeroize();
            return Err(invalid_data(format!(
                "index file {:?}: block {block_no} of {} failed authentication \
                 (tampered, reordered, truncated or extended file, or wrong key)",
                self.name, self.num_blocks
            )));
        }
        Ok(())
    }

    /// The plaintext of one block, from the cache or decrypted (and cached).
    fn cached_block(&self, block_no: u64) -> io::Result<Arc<[u8]>> {
        let key = (self.ident, block_no);
        if let Some(b) = self.dir.cache.get(&key) {
            return Ok(b);
        }
        let mut block = new_buffer(self.block_range(block_no).len());
        let out = Arc::get_mut(&mut block)
            .ok_or_else(|| io::Error::other("fresh block buffer is shared"))?;
        self.decrypt_into(block_no, out)?;
        self.dir.cache.insert(key, Arc::clone(&block));
        Ok(block)
    }

    /// Decrypts `range` into `out`, block by block. Cached blocks are copied;
    /// missing blocks wholly inside the range are decrypted straight into
    /// `out` without being cached unless `use_cache` (large reads would flush
    /// the cache); the partial blocks at the ends are always cached.
    fn fill(&self, range: Range<usize>, out: &mut [u8], use_cache: bool) -> io::Result<()> {
        let bs = self.geometry.block_size;
        let first = (range.start / bs) as u64;
        let last = ((range.end - 1) / bs) as u64;
        for b in first..=last {
            let br = self.block_range(b);
            let lo = range.start.max(br.start);
            let hi = range.end.min(br.end);
            let dst = &mut out[lo - range.start..hi - range.start];
            if let Some(block) = self.dir.cache.get(&(self.ident, b)) {
                dst.copy_from_slice(&block[lo - br.start..hi - br.start]);
            } else if lo == br.start && hi == br.end && !use_cache {
                self.decrypt_into(b, dst)?;
            } else {
                let block = self.cached_block(b)?;
                dst.copy_from_slice(&block[lo - br.start..hi - br.start]);
            }
        }
        Ok(())
    }

    /// The whole file, bypassing the cache (for `atomic_read`).
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; self.len];
        if self.len > 0
            && let Err(e) = self.fill(0..self.len, &mut out, false)
        {
            out.zeroize();
            return Err(e);
        }
        Ok(out)
    }
}

impl HasLen for EncryptedFile {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for EncryptedFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.start > range.end || range.end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "index file {:?}: read of {range:?} outside its {} bytes",
                    self.name, self.len
                ),
            ));
        }
        if range.is_empty() {
            return Ok(OwnedBytes::empty());
        }
        let bs = self.geometry.block_size;
        let first = range.start / bs;
        if first == (range.end - 1) / bs {
            // Inside one block: a slice of the cached block, no copy.
            let block = self.cached_block(first as u64)?;
            let start = first * bs;
            return Ok(OwnedBytes::new(block).slice(range.start - start..range.end - start));
        }
        let mut buf = new_buffer(range.len());
        let out =
            Arc::get_mut(&mut buf).ok_or_else(|| io::Error::other("fresh buffer is shared"))?;
        let use_cache = range.len() <= self.dir.cache.capacity / 4;
        if let Err(e) = self.fill(range, out, use_cache) {
            out.zeroize();
            return Err(e);
        }
        self.dir.cache.track(Arc::clone(&buf));
        Ok(OwnedBytes::new(buf))
    }
}

// ---------------------------------------------------------------------------
// Block cache
// ---------------------------------------------------------------------------

/// (identity of the file version, block number); see [`EncryptedFile::ident`].
type BlockKey = ([u8; 32], u64);

/// A bounded LRU cache of decrypted blocks, keyed by the identity of the file
/// (a digest of everything its blocks are authenticated against) and the
/// block number: a rewritten file never hits stale blocks, and a file copied
/// or renamed on disk never hits blocks authenticated under another name.
/// It also keeps the buffers that are still referenced elsewhere after
/// eviction, to zeroize them once they are released.
struct BlockCache {
    capacity: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    map: HashMap<BlockKey, (Arc<[u8]>, u64)>,
    order: BTreeMap<u64, BlockKey>,
    tick: u64,
    used: usize,
    /// Plaintext buffers still held outside the cache, zeroized once released.
    parked: Vec<Arc<[u8]>>,
    sweep_at: usize,
}

const MIN_SWEEP: usize = 64;

impl BlockCache {
    fn new(capacity: usize) -> Self {
        BlockCache {
            capacity,
            state: Mutex::new(CacheState {
                sweep_at: MIN_SWEEP,
                ..CacheState::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // The state stays consistent even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn used(&self) -> usize {
        self.lock().used
    }

    fn get(&self, key: &BlockKey) -> Option<Arc<[u8]>> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        let (block, old) = match st.map.get_mut(key) {
            Some((block, t)) => {
                let old = *t;
                *t = tick;
                (Arc::clone(block), old)
            }
            None => return None,
        };
        st.order.remove(&old);
        st.order.insert(tick, *key);
        Some(block)
    }

    fn insert(&self, key: BlockKey, block: Arc<[u8]>) {
        let mut st = self.lock();
        if block.len() > self.capacity {
            st.park(block);
            return;
        }
        st.tick += 1;
        let tick = st.tick;
        st.used += block.len();
        if let Some((old, t)) = st.map.insert(key, (block, tick)) {
            st.order.remove(&t);
            st.used -= old.len();
            st.park(old);
        }
        st.order.insert(tick, key);
        while st.used > self.capacity {
            let Some((_, k)) = st.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = st.map.remove(&k) {
                st.used -= old.len();
                st.park(old);
            }
        }
    }

    /// Remembers a plaintext buffer handed out uncached, to zeroize it later.
    fn track(&self, buf: Arc<[u8]>) {
        self.lock().park(buf);
    }

    fn clear(&self) {
        let mut st = self.lock();
        let blocks: Vec<_> = st.map.drain().map(|(_, (b, _))| b).collect();
        st.order.clear();
        st.used = 0;
        st.parked.extend(blocks);
        st.sweep();
    }
}

impl CacheState {
    fn park(&mut self, mut buf: Arc<[u8]>) {
        if let Some(bytes) = Arc::get_mut(&mut buf) {
            bytes.zeroize();
            return;
        }
        self.parked.push(buf);
        if self.parked.len() >= self.sweep_at {
            self.sweep();
        }
    }

    /// Zeroizes and frees the parked buffers nobody else holds any more.
    fn sweep(&mut self) {
        self.parked.retain_mut(|b| match Arc::get_mut(b) {
            Some(bytes) => {
                bytes.zeroize();
                false
            }
            None => true,
        });
        self.sweep_at = (self.parked.len() * 2).max(MIN_SWEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_oldest_and_respects_capacity() {
        let c = BlockCache::new(10);
        let k = |n| ([0u8; 32], n);
        c.insert(k(1), Arc::from(vec![1u8; 4]));
        c.insert(k(2), Arc::from(vec![2u8; 4]));
        assert!(c.get(&k(1)).is_some()); // 1 is now the most recent
        c.insert(k(3), Arc::from(vec![3u8; 4]));
        assert!(c.get(&k(2)).is_none());
        assert!(c.get(&k(1)).is_some());
        assert!(c.get(&k(3)).is_some());
        assert_eq!(c.used(), 8);
        c.insert(k(4), Arc::from(vec![4u8; 11])); // larger than the cache
        assert!(c.get(&k(4)).is_none());
    }

    #[test]
    fn evicted_blocks_are_zeroized_once_released() {
        let c = BlockCache::new(4);
        let held: Arc<[u8]> = Arc::from(vec![7u8; 4]);
        c.insert(([0; 32], 0), Arc::clone(&held));
        c.insert(([0; 32], 1), Arc::from(vec![8u8; 4]));
        // Still held by us, so it is parked, not zeroized.
        assert_eq!(&held[..], &[7u8; 4]);
        assert_eq!(c.lock().parked.len(), 1);
        drop(held);
        c.lock().sweep();
        assert!(c.lock().parked.is_empty());
    }
}
