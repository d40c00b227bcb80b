//! The embedded default [`BlobStore`]: one file per blob under a directory.
//!
//! Writes go to a temporary file in `~tmp/` under the root that is
//! fsync'ed and then renamed into place; the directories touched are
//! fsync'ed after the renames, once per directory per batch. A crash leaves
//! at most stray files in `~tmp/`, which are never read and are removed by
//! [`BlobStore::recover`] (the archive calls it once it holds the catalog's
//! lock: opening a store must not remove another process's writes in
//! flight). They live in their own directory (a name no key
//! can take: `~` is not allowed in keys) so that this clean-up is one
//! directory listing: a fresh `ama search` used to stat every blob file here
//! (docs/PERFORMANCE.md). Stray `*.tmp` files beside blobs, left by builds
//! before 2026-11-23, are ignored.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BlobKey, BlobStore};
use crate::error::StoreError;
use crate::fsutil::fsync_dir;

/// How many threads fsync the files of one batch.
const SYNC_THREADS: usize = 8;
/// The directory of files being written, under the root.
const TMP_DIR: &str = "~tmp";

/// Blobs as files under a root directory.
pub struct LocalStore {
    root: PathBuf,
    region: Option<crate::tenant::Region>,
    /// Numbers temporary file names.
    written: AtomicU64,
}

fn io_err(key: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Io {
        key: key.to_string(),
        source,
    }
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(root.display()))?;
        Ok(LocalStore {
            root,
            region: None,
            written: AtomicU64::new(0),
        })
    }

    /// A store at `root` without touching the disk: for a replica that may
    /// be unavailable when the archive opens (the others carry on; this
    /// one's errors surface on use and its copies are queued for repair).
    /// Directories are created by the first write.
    pub fn deferred(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            region: None,
            written: AtomicU64::new(0),
        }
    }

    /// Tags the store with the region its disk is in: tenants of other
    /// regions may not write to it.
    pub fn with_region(mut self, region: crate::tenant::Region) -> Self {
        self.region = Some(region);
        self
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Writes the temporary file for `key` (not yet synced); returns (tmp,
    /// final). `made` holds the directories this batch already created.
    fn write_tmp(
        &self,
        key: &BlobKey,
        data: &[u8],
        made: &mut BTreeSet<PathBuf>,
    ) -> Result<(File, PathBuf, PathBuf), StoreError> {
        let path = self.path(key);
        let tmp_dir = self.root.join(TMP_DIR);
        for dir in [path.parent().unwrap_or(&self.root), &tmp_dir] {
            if !made.contains(dir) {
                fs::create_dir_all(dir).map_err(io_err(key))?;
                made.insert(dir.to_path_buf());
            }
        }
        let n = self.written.fetch_add(1, Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("{}-{n}", std::process::id()));
        let mut f = File::create(&tmp).map_err(io_err(key))?;
        f.write_all(data).map_err(io_err(key))?;
        Ok((f, tmp, path))
    }

    fn collect(&self, dir: &Path, out: &mut Vec<BlobKey>) -> Result<(), StoreError> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(dir.display())(e)),
        };
        for e in rd {
            let e = e.map_err(io_err(dir.display()))?;
            let p = e.path();
            let ft = e.file_type().map_err(io_err(p.display()))?;
            if ft.is_dir() {
                if dir == self.root && e.file_name() == TMP_DIR {
                    continue;
                }
                self.collect(&p, out)?;
            } else if p.extension().is_none_or(|x| x != "tmp")
                && let Some(k) = p
                    .strip_prefix(&self.root)
                    .ok()
                    .and_then(|rel| rel.to_str())
                    .and_then(|s| BlobKey::parse(s).ok())
            {
                out.push(k);
            }
        }
        Ok(())
    }
}

impl BlobStore for LocalStore {
    /// Removes the files of writes a crash interrupted (`~tmp/`).
    fn recover(&self) -> Result<(), StoreError> {
        let Ok(rd) = fs::read_dir(self.root.join(TMP_DIR)) else {
            return Ok(());
        };
        for e in rd.flatten() {
            let _ = fs::remove_file(e.path());
        }
        Ok(())
    }

    fn put(&self, key: &BlobKey, data: &[u8]) -> Result<(), StoreError> {
        self.put_many(&[(key.clone(), data.to_vec())])
    }

    fn put_many(&self, items: &[(BlobKey, Vec<u8>)]) -> Result<(), StoreError> {
        let mut written = Vec::with_capacity(items.len());
        let mut made = BTreeSet::new();
        for (k, v) in items {
            written.push((k, self.write_tmp(k, v, &mut made)?));
        }
        // fsync the files from several threads: the file system merges
        // concurrent syncs into fewer journal commits.
        let threads = SYNC_THREADS.min(written.len()).max(1);
        let chunk = written.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = written
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        for (k, (f, _, _)) in part {
                            f.sync_data().map_err(io_err(k))?;
                        }
                        Ok::<(), StoreError>(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| StoreError::Io {
                    key: "fsync".into(),
                    source: std::io::Error::other("fsync thread panicked"),
                })??;
            }
            Ok::<(), StoreError>(())
        })?;
        // Rename into place, then make the new entries (and any new
        // directories) durable: each directory once.
        let mut dirs = BTreeSet::new();
        for (k, (_, tmp, path)) in &written {
            fs::rename(tmp, path).map_err(io_err(k))?;
            let mut d = path.parent();
            while let Some(dir) = d {
                if !dirs.insert(dir.to_path_buf()) || dir == self.root {
                    break;
                }
                d = dir.parent();
            }
        }
        for d in dirs.iter().rev() {
            fsync_dir(d).map_err(io_err(d.display()))?;
        }
        Ok(())
    }

    fn get(&self, key: &BlobKey) -> Result<Vec<u8>, StoreError> {
        fs::read(self.path(key)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound {
                    key: key.to_string(),
                }
            } else {
                io_err(key)(e)
            }
        })
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(d) = path.parent() {
                    fsync_dir(d).map_err(io_err(key))?;
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(key)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
        // Walk only the deepest directory the prefix names completely.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            BlobKey::parse(dir_part)?;
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        self.collect(&start, &mut out)?;
        out.retain(|k| k.as_str().starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }

    fn region(&self) -> Option<crate::tenant::Region> {
        self.region.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_live_apart_and_strays_are_removed_by_recover() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        let k = BlobKey::parse("t/abc/01/one").unwrap();
        s.put(&k, b"data").unwrap();
        // Nothing is left in the temporary directory after a write.
        let tmp = dir.path().join(TMP_DIR);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        // A crash's leftover is never listed and is removed by recover.
        fs::write(tmp.join("123-0"), b"half written").unwrap();
        assert_eq!(s.list("").unwrap(), vec![k.clone()]);
        // So is an older build's stray beside the blobs (ignored, not read).
        fs::write(dir.path().join("t/abc/01/two.tmp"), b"old stray").unwrap();
        drop(s);
        let s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            1,
            "open alone removes nothing"
        );
        s.recover().unwrap();
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(s.list("").unwrap(), vec![k.clone()]);
        assert_eq!(s.get(&k).unwrap(), b"data");
        // A key that looks like the temporary directory cannot exist.
        assert!(BlobKey::parse("~tmp/x").is_err());
    }
}
