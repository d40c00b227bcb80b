//! Harness for the Maildir walk of the importer (`ama_core::mailbox`), shared
//! by the `maildir` fuzz target and `ama-core/tests/fuzz_regressions.rs`.
//!
//! Input: a list of entries `place (1) | name length (1) | name | content
//! length (1) | content`, turned into a real Maildir in a temporary
//! directory: files with arbitrary names (any bytes but `/` and NUL) in
//! `cur/`, `new/`, `tmp/`, Maildir++ subfolders, the root, hidden files and
//! directories inside `cur/`. Walking it must give exactly the files of
//! `cur/` then `new/` (sorted by name, dot files skipped), then the same for
//! each subfolder in name order, each byte-exact and named by its path;
//! `tmp/`, the root's files and directories inside `cur/` are not mail.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ama_core::mailbox::{self, WalkOptions};

/// Maildir++ subfolders the input can place files in (plus the root, "").
const FOLDERS: &[&str] = &["", ".Archive", ".Archive.2001", ".Sent"];

/// File name -> content, sorted by name as the walk sorts.
type Files = BTreeMap<Vec<u8>, Vec<u8>>;

/// Runs one input; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    let dir = TempDir::new("maildir")?;
    let root = dir.0.join("Maildir");
    mkdir(&root.join("cur"))?;
    // folder -> [cur, new] -> name -> content: what the walk must return.
    let mut expected: BTreeMap<Vec<u8>, [Files; 2]> = BTreeMap::new();
    expected.insert(Vec::new(), Default::default());
    let mut dirs_in_cur: Vec<PathBuf> = Vec::new();

    let mut rest = data;
    while let [place, len, tail @ ..] = rest {
        let (name, tail) = tail.split_at(usize::from(*len % 48).min(tail.len()));
        let Some((&clen, tail)) = tail.split_first() else {
            break;
        };
        let (content, tail) = tail.split_at(usize::from(clen).min(tail.len()));
        rest = tail;

        let mut name: Vec<u8> = name
            .iter()
            .copied()
            .filter(|&b| b != b'/' && b != 0)
            .collect();
        if name.is_empty() || name == b"." || name == b".." {
            name = b"m".to_vec();
        }
        let folder = FOLDERS[usize::from(*place >> 3) % FOLDERS.len()];
        let fdir = root.join(folder);
        match place & 7 {
            // A message in cur/ or new/.
            0..=3 => {
                let sub = if place & 1 == 0 { "cur" } else { "new" };
                let d = fdir.join(sub);
                let file = d.join(OsStr::from_bytes(&name));
                if dirs_in_cur.contains(&file) {
                    continue;
                }
                mkdir(&d)?;
                std::fs::write(&file, content)
                    .map_err(|e| format!("write {}: {e}", file.display()))?;
                let slot = expected.entry(folder.as_bytes().to_vec()).or_default();
                if name[0] != b'.' {
                    slot[usize::from(place & 1)].insert(name, content.to_vec());
                }
            }
            // tmp/ and the folder's own directory: never mail.
            4 | 5 => {
                let d = if place & 7 == 4 {
                    fdir.join("tmp")
                } else {
                    fdir.clone()
                };
                mkdir(&d)?;
                let file = d.join(OsStr::from_bytes(&name));
                if !file.is_dir() && !is_maildir_part(&file, &root) {
                    std::fs::write(&file, content)
                        .map_err(|e| format!("write {}: {e}", file.display()))?;
                }
            }
            // A directory inside cur/: skipped.
            _ => {
                let d = fdir.join("cur").join(OsStr::from_bytes(&name));
                if !d.exists() {
                    mkdir(&d)?;
                    dirs_in_cur.push(d);
                }
                expected.entry(folder.as_bytes().to_vec()).or_default();
            }
        }
    }

    let mut want: Vec<(String, Vec<u8>)> = Vec::new();
    for (folder, subs) in &expected {
        for (i, files) in subs.iter().enumerate() {
            for (name, content) in files {
                let p = root
                    .join(OsStr::from_bytes(folder))
                    .join(if i == 0 { "cur" } else { "new" })
                    .join(OsStr::from_bytes(name));
                want.push((p.display().to_string(), content.clone()));
            }
        }
    }
    let options = WalkOptions {
        max_message_size: 1 << 20,
    };
    let mut got: Vec<(String, Vec<u8>)> = Vec::new();
    for item in mailbox::walk(std::slice::from_ref(&root), &options) {
        let raw = item
            .raw
            .map_err(|e| format!("{}: unexpected error {e}", item.origin))?;
        got.push((item.origin, raw));
    }
    if got != want {
        return Err(format!("Maildir walk:\n got: {got:?}\n want: {want:?}"));
    }
    Ok(())
}

/// Whether `file` would shadow a part of the Maildir structure.
fn is_maildir_part(file: &Path, root: &Path) -> bool {
    FOLDERS.iter().any(|f| {
        let d = root.join(f);
        file == d || file == d.join("cur") || file == d.join("new") || file == d.join("tmp")
    })
}

fn mkdir(d: &Path) -> Result<(), String> {
    std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))
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
