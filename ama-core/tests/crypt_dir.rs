//! Tests of the encrypting tantivy directory (`ama_core::crypt_dir`):
//!
//! - tantivy's own directory conformance suite (`src/directory/tests.rs` of
//!   tantivy 0.27, whose module is private), ported to run against
//!   `EncryptedDirectory`, plus reads at arbitrary ranges across blocks;
//! - tampering: every kind of change to a file on disk is an `InvalidData`
//!   error naming the file and the block, never a panic or wrong data;
//! - tantivy end to end: an index on the directory holds no plaintext,
//!   survives a reopen, a merge, and searches concurrent with commits;
//! - an `#[ignore]`d benchmark against `MmapDirectory` on the Enron corpus.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{self, Write};
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ama_core::crypt_dir::{BLOCK_SIZE, EncryptedDirectory, HEADER_LEN, TAG_LEN};
use ama_core::crypto::SecretKey;
use tantivy::HasLen;
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::error::OpenReadError;
use tantivy::directory::{
    Directory, DirectoryClone, Lock, MmapDirectory, TerminatingWrite, WatchCallback,
};
use tantivy::query::QueryParser;
use tantivy::schema::{Field, STORED, Schema, TEXT};
use tantivy::store::Compressor;
use tantivy::{
    Document, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument, doc,
};

const CACHE: usize = 8 * 1024 * 1024;

fn key() -> SecretKey {
    SecretKey::from_bytes([42; 32])
}

fn other_key() -> SecretKey {
    SecretKey::from_bytes([43; 32])
}

fn make_directory() -> (tempfile::TempDir, EncryptedDirectory) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = EncryptedDirectory::open(tmp.path(), key(), CACHE).unwrap();
    (tmp, dir)
}

/// Deterministic, non-repeating test data.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_file(dir: &dyn Directory, name: &str, data: &[u8]) {
    let mut w = dir.open_write(Path::new(name)).unwrap();
    // Uneven chunks, so block boundaries fall inside writes.
    for chunk in data.chunks(7_919) {
        w.write_all(chunk).unwrap();
    }
    w.terminate().unwrap();
}

// ---------------------------------------------------------------------------
// tantivy's directory conformance tests (src/directory/tests.rs), ported
// ---------------------------------------------------------------------------

#[test]
fn conformance_simple() {
    let (_tmp, directory) = make_directory();
    let test_path: &'static Path = Path::new("some_path_for_test");
    let mut write_file = directory.open_write(test_path).unwrap();
    write_file.write_all(&[4]).unwrap();
    write_file.write_all(&[3]).unwrap();
    write_file.write_all(&[7, 3, 5]).unwrap();
    write_file.terminate().unwrap();
    let read_file = directory
        .open_read(test_path)
        .unwrap()
        .read_bytes()
        .unwrap();
    assert_eq!(read_file.as_slice(), &[4u8, 3u8, 7u8, 3u8, 5u8]);
    mem::drop(read_file);
    assert!(directory.delete(test_path).is_ok());
    assert!(!directory.exists(test_path).unwrap());
}

#[test]
fn conformance_rewrite_forbidden() {
    let (_tmp, directory) = make_directory();
    let test_path: &'static Path = Path::new("some_path_for_test");
    let writer = directory.open_write(test_path).unwrap();
    assert!(directory.open_write(test_path).is_err());
    writer.terminate().unwrap();
    assert!(directory.exists(test_path).unwrap());
    assert!(directory.open_write(test_path).is_err());
    assert!(directory.delete(test_path).is_ok());
}

#[test]
fn conformance_write_create_the_file() {
    let (_tmp, directory) = make_directory();
    let test_path: &'static Path = Path::new("some_path_for_test");
    assert!(directory.open_read(test_path).is_err());
    let writer = directory.open_write(test_path).unwrap();
    assert!(directory.exists(test_path).unwrap());
    writer.terminate().unwrap();
    assert!(directory.open_read(test_path).is_ok());
    assert!(directory.delete(test_path).is_ok());
}

#[test]
fn conformance_directory_delete() {
    let (_tmp, directory) = make_directory();
    let test_path: &'static Path = Path::new("some_path_for_test");
    assert!(directory.open_read(test_path).is_err());
    let mut write_file = directory.open_write(test_path).unwrap();
    write_file.write_all(&[1, 2, 3, 4]).unwrap();
    write_file.terminate().unwrap();
    {
        let read_handle = directory
            .open_read(test_path)
            .unwrap()
            .read_bytes()
            .unwrap();
        assert_eq!(read_handle.as_slice(), &[1u8, 2u8, 3u8, 4u8]);
        assert!(directory.delete(test_path).is_ok());
        assert_eq!(read_handle.as_slice(), &[1u8, 2u8, 3u8, 4u8]);
        assert!(directory.delete(Path::new("SomeOtherPath")).is_err());
    }
    assert!(matches!(
        directory.open_read(test_path),
        Err(OpenReadError::FileDoesNotExist(_))
    ));
    assert!(directory.delete(test_path).is_err());
}

#[test]
fn conformance_watch() {
    let (_tmp, directory) = make_directory();
    let counter: Arc<AtomicUsize> = Default::default();
    let (tx, rx) = mpsc::channel();
    let timeout = Duration::from_millis(500);

    let handle = directory
        .watch(WatchCallback::new(move || {
            let val = counter.fetch_add(1, SeqCst);
            tx.send(val + 1).unwrap();
        }))
        .unwrap();

    assert!(
        directory
            .atomic_write(Path::new("meta.json"), b"foo")
            .is_ok()
    );
    assert_eq!(rx.recv_timeout(timeout), Ok(1));

    assert!(
        directory
            .atomic_write(Path::new("meta.json"), b"bar")
            .is_ok()
    );
    assert_eq!(rx.recv_timeout(timeout), Ok(2));

    mem::drop(handle);

    assert!(
        directory
            .atomic_write(Path::new("meta.json"), b"qux")
            .is_ok()
    );
    assert!(rx.recv_timeout(timeout).is_err());
}

#[test]
fn conformance_lock_non_blocking() {
    let (_tmp, directory) = make_directory();
    {
        let lock_a_res = directory.acquire_lock(&Lock {
            filepath: PathBuf::from("a.lock"),
            is_blocking: false,
        });
        assert!(lock_a_res.is_ok());
        let lock_b_res = directory.acquire_lock(&Lock {
            filepath: PathBuf::from("b.lock"),
            is_blocking: false,
        });
        assert!(lock_b_res.is_ok());
        let lock_a_res2 = directory.acquire_lock(&Lock {
            filepath: PathBuf::from("a.lock"),
            is_blocking: false,
        });
        assert!(lock_a_res2.is_err());
    }
    let lock_a_res = directory.acquire_lock(&Lock {
        filepath: PathBuf::from("a.lock"),
        is_blocking: false,
    });
    assert!(lock_a_res.is_ok());
}

#[test]
fn conformance_lock_blocking() {
    let (_tmp, directory) = make_directory();
    let lock_a_res = directory.acquire_lock(&Lock {
        filepath: PathBuf::from("a.lock"),
        is_blocking: true,
    });
    assert!(lock_a_res.is_ok());
    let in_thread = Arc::new(AtomicBool::default());
    let in_thread_clone = in_thread.clone();
    let (sender, receiver) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        in_thread_clone.store(true, SeqCst);
        let _just_sync = receiver.recv();
        drop(lock_a_res);
    });
    {
        // A non-blocking call fails while the thread holds the lock.
        let lock_a_res = directory.acquire_lock(&Lock {
            filepath: PathBuf::from("a.lock"),
            is_blocking: false,
        });
        assert!(lock_a_res.is_err());
    }
    let directory_clone = directory.box_clone();
    let (sender2, receiver2) = mpsc::channel::<()>();
    let join_handle = std::thread::spawn(move || {
        assert!(sender2.send(()).is_ok());
        let lock_a_res = directory_clone.acquire_lock(&Lock {
            filepath: PathBuf::from("a.lock"),
            is_blocking: true,
        });
        assert!(in_thread.load(SeqCst));
        assert!(lock_a_res.is_ok());
    });
    assert!(receiver2.recv().is_ok());
    assert!(sender.send(()).is_ok());
    assert!(join_handle.join().is_ok());
}

#[test]
fn lock_excludes_a_second_directory_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let a = EncryptedDirectory::open(tmp.path(), key(), CACHE).unwrap();
    let b = EncryptedDirectory::open(tmp.path(), key(), CACHE).unwrap();
    let lock = Lock {
        filepath: PathBuf::from(".tantivy-writer.lock"),
        is_blocking: false,
    };
    let held = a.acquire_lock(&lock).unwrap();
    assert!(b.acquire_lock(&lock).is_err());
    drop(held);
    assert!(b.acquire_lock(&lock).is_ok());
}

#[test]
fn atomic_write_and_read_round_trip() {
    let (tmp, directory) = make_directory();
    let p = Path::new("meta.json");
    assert!(matches!(
        directory.atomic_read(p),
        Err(OpenReadError::FileDoesNotExist(_))
    ));
    directory.atomic_write(p, b"first").unwrap();
    assert_eq!(directory.atomic_read(p).unwrap(), b"first");
    // Replacing keeps no trace of the old content and leaves no temp file.
    let big = pattern(3 * BLOCK_SIZE + 5, 1);
    directory.atomic_write(p, &big).unwrap();
    assert_eq!(directory.atomic_read(p).unwrap(), big);
    directory.atomic_write(p, b"").unwrap();
    assert_eq!(directory.atomic_read(p).unwrap(), b"");
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "only meta.json remains");
    // A fresh instance with the same key reads it; the file is not plaintext.
    let again = EncryptedDirectory::open(tmp.path(), key(), CACHE).unwrap();
    again.atomic_write(p, b"{\"segments\":[]}").unwrap();
    assert_eq!(directory.atomic_read(p).unwrap(), b"{\"segments\":[]}");
    let raw = fs::read(tmp.path().join("meta.json")).unwrap();
    assert!(!contains(&raw, b"segments"));
    assert_eq!(&raw[..4], b"AMAI");
}

#[test]
fn file_handle_len_and_reads_at_arbitrary_ranges() {
    let (_tmp, directory) = make_directory();
    let sizes = [
        0,
        1,
        100,
        BLOCK_SIZE - 1,
        BLOCK_SIZE,
        BLOCK_SIZE + 1,
        2 * BLOCK_SIZE,
        3 * BLOCK_SIZE + 17,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("f{i}.idx");
        let data = pattern(size, i as u64 + 10);
        write_file(&directory, &name, &data);
        let handle = directory.get_file_handle(Path::new(&name)).unwrap();
        assert_eq!(handle.len(), size);
        let slice = directory.open_read(Path::new(&name)).unwrap();
        assert_eq!(slice.len(), size);
        assert_eq!(slice.read_bytes().unwrap().as_slice(), &data[..]);
        // Ranges around every block boundary and at the ends.
        let mut points = vec![0, size];
        for b in 0..=size / BLOCK_SIZE {
            for d in [0usize, 1, 2] {
                points.push((b * BLOCK_SIZE + d).min(size));
                points.push((b * BLOCK_SIZE).saturating_sub(d).min(size));
            }
        }
        for &a in &points {
            for &b in &points {
                if a <= b {
                    let got = handle.read_bytes(a..b).unwrap();
                    assert_eq!(got.as_slice(), &data[a..b], "{name} {a}..{b}");
                    let got = slice.read_bytes_slice(a..b).unwrap();
                    assert_eq!(got.as_slice(), &data[a..b], "{name} {a}..{b}");
                }
            }
        }
        // Pseudo-random ranges.
        let r = pattern(400, i as u64 + 99);
        for w in r.chunks(4) {
            let x = (u16::from_le_bytes([w[0], w[1]]) as usize * 7) % (size + 1);
            let y = (u16::from_le_bytes([w[2], w[3]]) as usize * 13) % (size + 1);
            let (a, b) = (x.min(y), x.max(y));
            assert_eq!(handle.read_bytes(a..b).unwrap().as_slice(), &data[a..b]);
        }
        // Out of range: an error, not a panic.
        assert!(handle.read_bytes(0..size + 1).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 2..1;
        assert!(handle.read_bytes(backwards).is_err());
    }
}

#[test]
fn reads_work_with_no_cache_and_with_a_tiny_cache() {
    for cache in [0, 1, BLOCK_SIZE, 2 * BLOCK_SIZE + 1] {
        let tmp = tempfile::tempdir().unwrap();
        let directory = EncryptedDirectory::open(tmp.path(), key(), cache).unwrap();
        let data = pattern(5 * BLOCK_SIZE + 3, 7);
        write_file(&directory, "x.pos", &data);
        let handle = directory.get_file_handle(Path::new("x.pos")).unwrap();
        for (a, b) in [
            (0, 10),
            (BLOCK_SIZE - 5, BLOCK_SIZE + 5),
            (0, data.len()),
            (3 * BLOCK_SIZE + 1, 5 * BLOCK_SIZE + 2),
            (10, 20),
        ] {
            assert_eq!(handle.read_bytes(a..b).unwrap().as_slice(), &data[a..b]);
        }
        assert!(directory.cached_bytes() <= cache, "cache bound {cache}");
    }
}

#[test]
fn handle_survives_delete_and_rewrite_under_the_same_name() {
    let (_tmp, directory) = make_directory();
    let p = Path::new("seg.store");
    let a = pattern(2 * BLOCK_SIZE + 9, 1);
    write_file(&directory, "seg.store", &a);
    let handle = directory.get_file_handle(p).unwrap();
    directory.delete(p).unwrap();
    let b = pattern(2 * BLOCK_SIZE + 9, 2);
    write_file(&directory, "seg.store", &b);
    // The old handle still reads the old file, the new one the new file
    // (the cache is keyed by the random file id, not the name).
    assert_eq!(handle.read_bytes(0..a.len()).unwrap().as_slice(), &a[..]);
    let handle2 = directory.get_file_handle(p).unwrap();
    assert_eq!(handle2.read_bytes(0..b.len()).unwrap().as_slice(), &b[..]);
    assert_eq!(handle.read_bytes(5..50).unwrap().as_slice(), &a[5..50]);
}

#[test]
fn same_content_twice_gives_different_ciphertext() {
    let (tmp, directory) = make_directory();
    let data = pattern(1000, 3);
    write_file(&directory, "a.idx", &data);
    write_file(&directory, "b.idx", &data);
    let a = fs::read(tmp.path().join("a.idx")).unwrap();
    let b = fs::read(tmp.path().join("b.idx")).unwrap();
    assert_eq!(a.len(), HEADER_LEN + data.len() + TAG_LEN);
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

#[test]
fn unterminated_file_is_an_error_not_garbage() {
    let (_tmp, directory) = make_directory();
    let mut w = directory.open_write(Path::new("half.idx")).unwrap();
    w.write_all(&pattern(BLOCK_SIZE + 10, 4)).unwrap();
    w.flush().unwrap();
    let err = io_err(directory.get_file_handle(Path::new("half.idx")));
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    drop(w);
}

/// `meta.json` as version 1 of the format wrote it, under the test key
/// `[42; 32]`: a change of the header layout, key derivation, nonce or
/// associated data that would make existing indexes unreadable fails here.
const V1_FIXTURE: &str = "414d41490100000100f496f9aa9668bb7aeaac59b19d5e106d2b00000000000000cb87f2\
    5468b2b02a15f9f13bcb3f706f0f6afa3b3eca887986ca1f26ee4f18398508cccf295b941a529c2a0cf305c7d6\
    2789f92c4379df5d612ac1";

fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn reads_a_file_written_by_format_v1() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("meta.json"), unhex(V1_FIXTURE)).unwrap();
    let d = fresh(&tmp);
    assert_eq!(
        d.atomic_read(Path::new("meta.json")).unwrap(),
        b"{\"ama\":\"encrypted index format v1 fixture\"}"
    );
    // Bound to its name and its key.
    fs::rename(tmp.path().join("meta.json"), tmp.path().join("other.json")).unwrap();
    assert!(d.atomic_read(Path::new("other.json")).is_err());
    fs::rename(tmp.path().join("other.json"), tmp.path().join("meta.json")).unwrap();
    let wrong = EncryptedDirectory::open(tmp.path(), other_key(), CACHE).unwrap();
    assert!(wrong.atomic_read(Path::new("meta.json")).is_err());
}

// ---------------------------------------------------------------------------
// Tampering
// ---------------------------------------------------------------------------

fn io_err<T: std::fmt::Debug>(r: Result<T, OpenReadError>) -> Arc<io::Error> {
    match r {
        Err(OpenReadError::IoError { io_error, .. }) => io_error,
        other => panic!("expected an io error, got {other:?}"),
    }
}

/// Asserts `e` is InvalidData naming `file` and (if given) the block.
fn assert_auth_error(e: &io::Error, file: &str, block: Option<u64>) {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(file), "{msg}");
    if let Some(b) = block {
        assert!(msg.contains(&format!("block {b} ")), "{msg}");
        assert!(msg.contains("failed authentication"), "{msg}");
    }
}

const NAME: &str = "victim.term";

/// A 3-block file (two full blocks and a short one); returns its path on disk.
fn victim() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let (tmp, directory) = make_directory();
    let data = pattern(2 * BLOCK_SIZE + 1000, 5);
    write_file(&directory, NAME, &data);
    let path = tmp.path().join(NAME);
    (tmp, path, data)
}

fn block_offset(i: usize) -> usize {
    HEADER_LEN + i * (BLOCK_SIZE + TAG_LEN)
}

fn fresh(tmp: &tempfile::TempDir) -> EncryptedDirectory {
    EncryptedDirectory::open(tmp.path(), key(), CACHE).unwrap()
}

#[test]
fn tamper_bit_flip_in_a_block() {
    let (tmp, path, data) = victim();
    let mut raw = fs::read(&path).unwrap();
    raw[block_offset(1) + 1234] ^= 0x04;
    fs::write(&path, &raw).unwrap();
    let dir = fresh(&tmp);
    // The header, size and last block are intact: the file opens...
    let h = dir.get_file_handle(Path::new(NAME)).unwrap();
    // ...block 0 reads, block 1 does not.
    assert_eq!(h.read_bytes(0..100).unwrap().as_slice(), &data[..100]);
    let e = h.read_bytes(BLOCK_SIZE..BLOCK_SIZE + 10).unwrap_err();
    assert_auth_error(&e, NAME, Some(1));
    let e = h.read_bytes(0..data.len()).unwrap_err();
    assert_auth_error(&e, NAME, Some(1));
    // A flipped tag bit too.
    let mut raw = fs::read(&path).unwrap();
    raw[block_offset(1) + 1234] ^= 0x04;
    raw[block_offset(1) + BLOCK_SIZE + 3] ^= 0x80;
    fs::write(&path, &raw).unwrap();
    let h = fresh(&tmp).get_file_handle(Path::new(NAME)).unwrap();
    assert_auth_error(
        &h.read_bytes(BLOCK_SIZE..BLOCK_SIZE + 1).unwrap_err(),
        NAME,
        Some(1),
    );
}

#[test]
fn tamper_swapped_blocks() {
    let (tmp, path, _) = victim();
    let mut raw = fs::read(&path).unwrap();
    let n = BLOCK_SIZE + TAG_LEN;
    let b0: Vec<u8> = raw[block_offset(0)..block_offset(0) + n].to_vec();
    let b1: Vec<u8> = raw[block_offset(1)..block_offset(1) + n].to_vec();
    raw[block_offset(0)..block_offset(0) + n].copy_from_slice(&b1);
    raw[block_offset(1)..block_offset(1) + n].copy_from_slice(&b0);
    fs::write(&path, &raw).unwrap();
    let h = fresh(&tmp).get_file_handle(Path::new(NAME)).unwrap();
    assert_auth_error(&h.read_bytes(0..1).unwrap_err(), NAME, Some(0));
    assert_auth_error(
        &h.read_bytes(BLOCK_SIZE..BLOCK_SIZE + 1).unwrap_err(),
        NAME,
        Some(1),
    );
}

#[test]
fn tamper_block_copied_from_another_file() {
    // Same key, same position, different file: the file id and name differ.
    let (tmp, directory) = make_directory();
    write_file(&directory, "a.idx", &pattern(2 * BLOCK_SIZE, 1));
    write_file(&directory, "b.idx", &pattern(2 * BLOCK_SIZE, 2));
    let mut a = fs::read(tmp.path().join("a.idx")).unwrap();
    let b = fs::read(tmp.path().join("b.idx")).unwrap();
    a[block_offset(0)..block_offset(1)].copy_from_slice(&b[block_offset(0)..block_offset(1)]);
    fs::write(tmp.path().join("a.idx"), &a).unwrap();
    let h = fresh(&tmp).get_file_handle(Path::new("a.idx")).unwrap();
    assert_auth_error(&h.read_bytes(0..1).unwrap_err(), "a.idx", Some(0));
    // A whole file renamed over another one fails too (the name is bound).
    fs::rename(tmp.path().join("b.idx"), tmp.path().join("c.idx")).unwrap();
    let e = io_err(fresh(&tmp).get_file_handle(Path::new("c.idx")));
    assert_auth_error(&e, "c.idx", Some(1));
}

#[test]
fn tamper_is_detected_with_a_warm_cache() {
    // The same directory instance has already decrypted and cached every
    // block of a.idx; a copy of it put in place of b.idx must not be served
    // from that cache.
    let (tmp, directory) = make_directory();
    let a = pattern(2 * BLOCK_SIZE + 10, 1);
    write_file(&directory, "a.idx", &a);
    write_file(&directory, "b.idx", &pattern(2 * BLOCK_SIZE + 10, 2));
    let h = directory.get_file_handle(Path::new("a.idx")).unwrap();
    assert_eq!(h.read_bytes(0..a.len()).unwrap().as_slice(), &a[..]);
    assert!(directory.cached_bytes() > 0);
    fs::copy(tmp.path().join("a.idx"), tmp.path().join("b.idx")).unwrap();
    let e = io_err(directory.get_file_handle(Path::new("b.idx")));
    assert_auth_error(&e, "b.idx", Some(2));
    let e = io_err(directory.atomic_read(Path::new("b.idx")));
    assert_auth_error(&e, "b.idx", Some(2));
}

#[test]
fn tamper_truncation() {
    let (tmp, path, data) = victim();
    let raw = fs::read(&path).unwrap();
    // Cut inside the last block, cut off the whole last block, cut to the header.
    for cut in [raw.len() - 1, block_offset(2), HEADER_LEN, 10] {
        fs::write(&path, &raw[..cut]).unwrap();
        let e = io_err(fresh(&tmp).get_file_handle(Path::new(NAME)));
        assert_auth_error(&e, NAME, None);
    }
    // Drop the last block and fix up the length in the header: block 1 was
    // not sealed as the last block, so it fails authentication.
    let mut cut = raw[..block_offset(2)].to_vec();
    cut[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&(2 * BLOCK_SIZE as u64).to_le_bytes());
    fs::write(&path, &cut).unwrap();
    let e = io_err(fresh(&tmp).get_file_handle(Path::new(NAME)));
    assert_auth_error(&e, NAME, Some(1));
    let e = io_err(fresh(&tmp).atomic_read(Path::new(NAME)));
    assert_auth_error(&e, NAME, None);
    // Sanity: the original still reads.
    fs::write(&path, &raw).unwrap();
    assert_eq!(fresh(&tmp).atomic_read(Path::new(NAME)).unwrap(), data);
}

#[test]
fn tamper_extension() {
    let (tmp, path, _) = victim();
    let raw = fs::read(&path).unwrap();
    // Garbage appended.
    let mut ext = raw.clone();
    ext.extend_from_slice(&[0u8; 100]);
    fs::write(&path, &ext).unwrap();
    let e = io_err(fresh(&tmp).get_file_handle(Path::new(NAME)));
    assert_auth_error(&e, NAME, None);
    // A genuine full block appended, with the header length fixed up: the
    // old last block and the appended one are both out of place.
    let mut ext = raw[..block_offset(2)].to_vec();
    ext.extend_from_slice(&raw[block_offset(1)..block_offset(2)]);
    ext[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&(3 * BLOCK_SIZE as u64).to_le_bytes());
    fs::write(&path, &ext).unwrap();
    let e = io_err(fresh(&tmp).get_file_handle(Path::new(NAME)));
    assert_auth_error(&e, NAME, Some(2));
}

#[test]
fn tamper_header_edits() {
    let (tmp, path, _) = victim();
    let raw = fs::read(&path).unwrap();
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("magic", Box::new(|r| r[0] = b'X')),
        ("version", Box::new(|r| r[4] = 2)),
        (
            "block size",
            Box::new(|r| r[5..9].copy_from_slice(&(32768u32).to_le_bytes())),
        ),
        (
            "block size huge",
            Box::new(|r| r[5..9].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
        ("file id", Box::new(|r| r[9] ^= 1)),
        ("file id nonce part", Box::new(|r| r[20] ^= 1)),
        ("length +1", Box::new(|r| r[25] = r[25].wrapping_add(1))),
        (
            "length huge",
            Box::new(|r| r[25..33].copy_from_slice(&(u64::MAX - 1).to_le_bytes())),
        ),
    ];
    for (what, edit) in cases {
        let mut t = raw.clone();
        edit(&mut t);
        fs::write(&path, &t).unwrap();
        let e = io_err(fresh(&tmp).get_file_handle(Path::new(NAME)));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        assert!(e.to_string().contains(NAME), "{what}: {e}");
    }
    // Editing the file id gets through the format checks and fails authentication.
    let mut t = raw.clone();
    t[12] ^= 0x10;
    fs::write(&path, &t).unwrap();
    let e = io_err(fresh(&tmp).get_file_handle(Path::new(NAME)));
    assert_auth_error(&e, NAME, Some(2));
}

#[test]
fn tamper_wrong_key() {
    let (tmp, _path, _) = victim();
    let dir = EncryptedDirectory::open(tmp.path(), other_key(), CACHE).unwrap();
    let e = io_err(dir.get_file_handle(Path::new(NAME)));
    assert_auth_error(&e, NAME, Some(2));
    assert!(e.to_string().contains("wrong key"));
    let e = io_err(dir.atomic_read(Path::new(NAME)));
    assert_auth_error(&e, NAME, Some(2));
}

#[test]
fn tampered_segment_is_a_tantivy_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, body) = text_schema();
    {
        let index = Index::create(fresh(&tmp), schema.clone(), Default::default()).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 20_000_000).unwrap();
        for i in 0..500 {
            w.add_document(doc!(body => format!("document {i} about energy trading")))
                .unwrap();
        }
        w.commit().unwrap();
    }
    // Flip one byte in the middle of every segment file (one at a time).
    let files: Vec<PathBuf> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            !n.starts_with('.') && n != "meta.json"
        })
        .collect();
    assert!(!files.is_empty());
    for f in files {
        let orig = fs::read(&f).unwrap();
        let mut t = orig.clone();
        let mid = HEADER_LEN + (t.len() - HEADER_LEN) / 2;
        t[mid] ^= 1;
        fs::write(&f, &t).unwrap();
        let outcome = (|| -> tantivy::Result<usize> {
            let index = Index::open(fresh(&tmp))?;
            let reader = index.reader()?;
            let q = QueryParser::for_index(&index, vec![body]).parse_query("energy")?;
            let searcher = reader.searcher();
            let n = searcher.search(&q, &Count)?;
            // Also touch stored documents.
            for (_, addr) in searcher.search(&q, &TopDocs::with_limit(500).order_by_score())? {
                let _: TantivyDocument = searcher.doc(addr)?;
            }
            Ok(n)
        })();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let err = outcome.expect_err(&format!("tampered {name} went unnoticed"));
        assert!(
            err.to_string().contains("failed authentication"),
            "{name}: {err}"
        );
        fs::write(&f, &orig).unwrap();
    }
    // Restored: it works again.
    let index = Index::open(fresh(&tmp)).unwrap();
    let q = QueryParser::for_index(&index, vec![body])
        .parse_query("energy")
        .unwrap();
    assert_eq!(
        index
            .reader()
            .unwrap()
            .searcher()
            .search(&q, &Count)
            .unwrap(),
        500
    );
}

// ---------------------------------------------------------------------------
// tantivy end to end
// ---------------------------------------------------------------------------

fn text_schema() -> (Schema, Field) {
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    (b.build(), body)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` that contains any of `needles`.
fn files_containing(dir: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let raw = fs::read(&p).unwrap();
        if needles.iter().any(|n| contains(&raw, n)) {
            hits.push(p.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    hits
}

const CANARY: &str = "ZqxCanary7731Token";

fn canary_needles() -> Vec<Vec<u8>> {
    vec![
        CANARY.as_bytes().to_vec(),
        CANARY.to_lowercase().into_bytes(),
        CANARY.to_uppercase().into_bytes(),
        // A shorter piece too, in case the term dictionary splits the term.
        b"canary7731".to_vec(),
    ]
}

fn index_canary_docs(dir: impl Into<Box<dyn Directory>>, body: Field, schema: Schema) {
    // An uncompressed doc store keeps the text verbatim, so the control test
    // below finds the canary in a plain index.
    let settings = IndexSettings {
        docstore_compression: Compressor::None,
        ..Default::default()
    };
    let index = Index::create(dir, schema, settings).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 30_000_000).unwrap();
    for i in 0..2000 {
        w.add_document(doc!(body => format!(
            "message {i}: quarterly numbers for the board, secret word {CANARY} do not forward"
        )))
        .unwrap();
    }
    w.commit().unwrap();
    w.wait_merging_threads().unwrap();
}

#[test]
fn end_to_end_index_holds_no_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, body) = text_schema();
    index_canary_docs(fresh(&tmp), body, schema);

    // Reopen with a fresh directory instance (empty cache) and search.
    let index = Index::open(fresh(&tmp)).unwrap();
    let reader = index.reader().unwrap();
    let q = QueryParser::for_index(&index, vec![body])
        .parse_query(&CANARY.to_lowercase())
        .unwrap();
    let searcher = reader.searcher();
    assert_eq!(searcher.search(&q, &Count).unwrap(), 2000);
    let top = searcher
        .search(&q, &TopDocs::with_limit(1).order_by_score())
        .unwrap();
    let stored: TantivyDocument = searcher.doc(top[0].1).unwrap();
    assert!(stored.to_json(&index.schema()).contains(CANARY));

    // No file holds the token, in any case.
    let hits = files_containing(tmp.path(), &canary_needles());
    assert!(hits.is_empty(), "plaintext canary found in {hits:?}");
    for e in fs::read_dir(tmp.path()).unwrap() {
        let p = e.unwrap().path();
        let raw = fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            raw.is_empty() || raw.starts_with(b"AMAI"),
            "{name} is neither a lock file nor encrypted"
        );
        assert!(!contains(&raw, b"quarterly"), "{name}");
    }
}

/// The control for the test above: the same index on `MmapDirectory` does
/// contain the canary, so the scan is able to find it.
#[test]
fn control_plain_mmap_index_does_contain_the_canary() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, body) = text_schema();
    index_canary_docs(MmapDirectory::open(tmp.path()).unwrap(), body, schema);
    let hits = files_containing(tmp.path(), &canary_needles());
    assert!(hits.iter().any(|h| h.ends_with(".store")), "{hits:?}");
}

fn reader_of(index: &Index, policy: ReloadPolicy) -> IndexReader {
    index
        .reader_builder()
        .reload_policy(policy)
        .try_into()
        .unwrap()
}

#[test]
fn merge_works_on_the_encrypted_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, body) = text_schema();
    let index = Index::create(fresh(&tmp), schema, Default::default()).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 20_000_000).unwrap();
    w.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    for c in 0..6 {
        for i in 0..300 {
            w.add_document(doc!(body => format!("commit{c} doc{i} common pipeline gas")))
                .unwrap();
        }
        w.commit().unwrap();
    }
    let ids = index.searchable_segment_ids().unwrap();
    assert_eq!(ids.len(), 6);
    w.merge(&ids).wait().unwrap();
    w.garbage_collect_files().wait().unwrap();
    w.wait_merging_threads().unwrap();

    let index = Index::open(fresh(&tmp)).unwrap();
    assert_eq!(index.searchable_segment_ids().unwrap().len(), 1);
    let reader = reader_of(&index, ReloadPolicy::Manual);
    let parser = QueryParser::for_index(&index, vec![body]);
    let s = reader.searcher();
    assert_eq!(
        s.search(&parser.parse_query("common").unwrap(), &Count)
            .unwrap(),
        1800
    );
    assert_eq!(
        s.search(&parser.parse_query("commit3").unwrap(), &Count)
            .unwrap(),
        300
    );
    assert_eq!(
        s.search(&parser.parse_query("\"pipeline gas\"").unwrap(), &Count)
            .unwrap(),
        1800
    );
    let hits = files_containing(tmp.path(), &[b"pipeline".to_vec()]);
    assert!(hits.is_empty(), "{hits:?}");
}

#[test]
fn concurrent_searches_while_committing() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, body) = text_schema();
    // A small cache, so blocks are evicted and decrypted again under load.
    let dir = EncryptedDirectory::open(tmp.path(), key(), 256 * 1024).unwrap();
    let index = Index::create(dir, schema, Default::default()).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 20_000_000).unwrap();
    w.add_document(doc!(body => "seed document shared"))
        .unwrap();
    w.commit().unwrap();
    // OnCommitWithDelay relies on `watch`, so this also checks the watcher.
    let reader = reader_of(&index, ReloadPolicy::OnCommitWithDelay);
    let query = QueryParser::for_index(&index, vec![body])
        .parse_query("shared")
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (reader, query, done, searches) = (
            reader.clone(),
            query.box_clone(),
            done.clone(),
            searches.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut last = 0;
            while !done.load(SeqCst) {
                let s = reader.searcher();
                let n = s.search(&*query, &Count).unwrap();
                assert!(n >= last, "count went back from {last} to {n}");
                assert_eq!(n as u64, s.num_docs());
                for (_, addr) in s
                    .search(&*query, &TopDocs::with_limit(5).order_by_score())
                    .unwrap()
                {
                    let _: TantivyDocument = s.doc(addr).unwrap();
                }
                last = n;
                searches.fetch_add(1, SeqCst);
            }
        }));
    }
    for c in 0..10 {
        for i in 0..200 {
            w.add_document(doc!(body => format!("commit {c} doc {i} shared words {}", i * c)))
                .unwrap();
        }
        w.commit().unwrap();
    }
    w.wait_merging_threads().unwrap();
    // The watcher reloads the reader: wait for the last commit to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.searcher().search(&query, &Count).unwrap() != 2001 {
        assert!(
            Instant::now() < deadline,
            "reader never saw the last commit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert!(searches.load(SeqCst) > 0);
}

// ---------------------------------------------------------------------------
// Benchmark
// ---------------------------------------------------------------------------

fn corpus_files(root: &Path, limit: usize) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                walk(&e, out);
            } else if e.extension().is_some_and(|x| x == "eml") {
                out.push(e);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.truncate(limit);
    out
}

fn dir_size(p: &Path) -> u64 {
    fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One directory under test: the index built on it, and the timings so far.
struct Setup {
    name: String,
    searcher: tantivy::Searcher,
    parser: QueryParser,
    index_time: Duration,
    cold_open: Duration,
    size: u64,
    times: Vec<Duration>,
    per_query: Vec<(String, Duration)>,
}

fn build(
    name: String,
    make_dir: &dyn Fn() -> Box<dyn Directory>,
    path: &Path,
    docs: &[String],
    first_query: &str,
) -> Setup {
    let (schema, body) = {
        let mut b = Schema::builder();
        let body = b.add_text_field("body", TEXT);
        (b.build(), body)
    };
    let t = Instant::now();
    let index = Index::create(make_dir(), schema, Default::default()).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 100_000_000).unwrap();
    for d in docs {
        w.add_document(doc!(body => d.as_str())).unwrap();
    }
    w.commit().unwrap();
    w.wait_merging_threads().unwrap();
    let index_time = t.elapsed();
    let size = dir_size(path);
    drop(index);

    // Cold open: a fresh directory instance (empty block cache; the OS page
    // cache is warm for both), open the index and a reader, run one query.
    let mut opens = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let index = Index::open(make_dir()).unwrap();
        let reader = reader_of(&index, ReloadPolicy::Manual);
        let query = QueryParser::for_index(&index, vec![body])
            .parse_query(first_query)
            .unwrap();
        reader.searcher().search(&query, &Count).unwrap();
        opens.push(t.elapsed());
    }
    opens.sort();
    let index = Index::open(make_dir()).unwrap();
    Setup {
        name,
        searcher: reader_of(&index, ReloadPolicy::Manual).searcher(),
        parser: QueryParser::for_index(&index, vec![body]),
        index_time,
        cold_open: percentile(&opens, 0.5),
        size,
        times: Vec::new(),
        per_query: Vec::new(),
    }
}

/// `cargo test --release -p ama-core --test crypt_dir -- --ignored --nocapture bench_`
///
/// Runs are interleaved (run i of a query on every directory, then run i+1),
/// so that load from other processes hits all directories alike.
#[test]
#[ignore = "benchmark: needs /work/shared/corpus/enron-inbox, run in release"]
fn bench_enron_mmap_vs_encrypted() {
    let corpus = std::env::var("AMA_BENCH_CORPUS")
        .unwrap_or_else(|_| "/work/shared/corpus/enron-inbox".to_string());
    let runs: usize = std::env::var("AMA_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let files = corpus_files(Path::new(&corpus), 5000);
    assert_eq!(files.len(), 5000);
    let docs: Vec<String> = files
        .iter()
        .map(|p| String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned())
        .collect();
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let queries = [
        "energy",
        "meeting schedule",
        "\"natural gas\"",
        "california AND power",
        "enron OR trading OR contract",
    ];
    println!(
        "corpus: {} messages, {} bytes; {runs} runs per query",
        docs.len(),
        bytes
    );

    let mmap_tmp = tempfile::tempdir().unwrap();
    let big_tmp = tempfile::tempdir().unwrap();
    let small_tmp = tempfile::tempdir().unwrap();
    let mut setups = vec![
        build(
            "MmapDirectory".into(),
            &|| Box::new(MmapDirectory::open(mmap_tmp.path()).unwrap()),
            mmap_tmp.path(),
            &docs,
            queries[0],
        ),
        build(
            "EncryptedDirectory (64 MiB cache)".into(),
            &|| Box::new(EncryptedDirectory::open(big_tmp.path(), key(), 64 << 20).unwrap()),
            big_tmp.path(),
            &docs,
            queries[0],
        ),
        build(
            "EncryptedDirectory (1 MiB cache)".into(),
            &|| Box::new(EncryptedDirectory::open(small_tmp.path(), key(), 1 << 20).unwrap()),
            small_tmp.path(),
            &docs,
            queries[0],
        ),
    ];
    let collector = (TopDocs::with_limit(10).order_by_score(), Count);
    for q in queries {
        let parsed: Vec<_> = setups
            .iter()
            .map(|s| s.parser.parse_query(q).unwrap())
            .collect();
        for (s, query) in setups.iter().zip(&parsed) {
            for _ in 0..3 {
                s.searcher.search(query, &collector).unwrap();
            }
        }
        let mut times = vec![Vec::with_capacity(runs); setups.len()];
        let mut counts = vec![0; setups.len()];
        for _ in 0..runs {
            for (i, (s, query)) in setups.iter().zip(&parsed).enumerate() {
                let t = Instant::now();
                let (top, n) = s.searcher.search(query, &collector).unwrap();
                times[i].push(t.elapsed());
                assert!(!top.is_empty(), "{q} found nothing");
                counts[i] = n;
            }
        }
        assert!(counts.iter().all(|&c| c == counts[0]), "{q}: {counts:?}");
        for (s, mut t) in setups.iter_mut().zip(times) {
            t.sort();
            s.per_query.push((q.to_string(), percentile(&t, 0.5)));
            s.times.extend(t);
        }
    }
    for s in &mut setups {
        s.times.sort();
    }
    let base_median = percentile(&setups[0].times, 0.5).as_secs_f64();
    let base_p99 = percentile(&setups[0].times, 0.99).as_secs_f64();
    println!(
        "{:<34} {:>8} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "directory", "index(s)", "cold open", "median", "p99", "size", "median x", "p99 x"
    );
    for s in &setups {
        let (median, p99) = (percentile(&s.times, 0.5), percentile(&s.times, 0.99));
        println!(
            "{:<34} {:>8.2} {:>10.1?} {:>9.1?} {:>9.1?} {:>10} {:>8.2}x {:>8.2}x",
            s.name,
            s.index_time.as_secs_f64(),
            s.cold_open,
            median,
            p99,
            s.size,
            median.as_secs_f64() / base_median,
            p99.as_secs_f64() / base_p99
        );
    }
    println!("per-query medians:");
    for (qi, q) in queries.iter().enumerate() {
        let row: Vec<String> = setups
            .iter()
            .map(|s| format!("{:>9.1?}", s.per_query[qi].1))
            .collect();
        println!("    {q:<32} {}", row.join(" "));
    }
}
