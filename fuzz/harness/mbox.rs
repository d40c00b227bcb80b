//! Harness for the mbox reader of the importer (`ama_core::mailbox`), shared
//! by the `mbox` fuzz target and `ama-core/tests/fuzz_regressions.rs`.
//!
//! Input: byte 0 picks the file name (`.mbox`, `.eml` or no extension, so
//! the reader decides by the first line) and a small size limit; the rest is
//! the file. The file is written to a temporary directory and walked twice,
//! as `ama import` does: once with a limit far above its size, where the
//! messages must equal a simple reference splitter (split at `From ` lines,
//! undo one level of `>From ` quoting, drop the separator blank line), and
//! once with the small limit, where every message handed out must fit it
//! and every other one must be reported as too large, with the same count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ama_core::mailbox::{self, MailboxError, WalkOptions};

/// Runs one input; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some((&mode, contents)) = data.split_first() else {
        return Ok(());
    };
    let name = match mode % 3 {
        0 => "box.mbox",
        1 => "message.eml",
        _ => "mail",
    };
    let small = 8u64 << (mode / 3 % 8);
    let dir = TempDir::new("mbox")?;
    let path = dir.0.join(name);
    std::fs::write(&path, contents).map_err(|e| format!("write {}: {e}", path.display()))?;

    let expected = reference(name, contents);
    let items = walk(&path, 1 << 30)?;
    let got: Vec<Vec<u8>> = items
        .iter()
        .map(|(_, raw)| match raw {
            Ok(m) => Ok(m.clone()),
            Err(e) => Err(format!("unexpected error: {e}")),
        })
        .collect::<Result<_, _>>()?;
    if got != expected {
        return Err(format!(
            "mbox split differs from the reference:\n got: {got:?}\n want: {expected:?}"
        ));
    }
    let origins: Vec<&String> = items.iter().map(|(o, _)| o).collect();
    if name != "message.eml" && (mode % 3 == 0 || contents.starts_with(b"From ")) {
        for (n, origin) in origins.iter().enumerate() {
            let want = format!("{}#{}", path.display(), n + 1);
            if **origin != want {
                return Err(format!("origin {origin:?}, expected {want:?}"));
            }
        }
    }

    let limited = walk(&path, small)?;
    if limited.len() != expected.len() {
        return Err(format!(
            "{} items under a limit of {small}, {} without",
            limited.len(),
            expected.len()
        ));
    }
    for ((_, raw), want) in limited.iter().zip(&expected) {
        match raw {
            Ok(m) if m == want && m.len() as u64 <= small => {}
            Ok(m) => {
                return Err(format!(
                    "under a limit of {small}: got {m:?}, expected {want:?}"
                ));
            }
            Err(MailboxError::TooLarge { limit, .. })
                if *limit == small && want.len() as u64 > small => {}
            Err(e) => return Err(format!("under a limit of {small}: {e} for {want:?}")),
        }
    }
    Ok(())
}

/// One walked item: its origin and its bytes or error.
type Walked = (String, Result<Vec<u8>, MailboxError>);

fn walk(path: &Path, limit: u64) -> Result<Vec<Walked>, String> {
    let options = WalkOptions {
        max_message_size: limit,
    };
    Ok(mailbox::walk(&[path.to_path_buf()], &options)
        .map(|i| (i.origin, i.raw))
        .collect())
}

/// What the file must yield, computed the simple way (whole file in memory).
fn reference(name: &str, contents: &[u8]) -> Vec<Vec<u8>> {
    let mbox = match name {
        "box.mbox" => true,
        "message.eml" => false,
        _ => contents.starts_with(b"From "),
    };
    if !mbox {
        return vec![contents.to_vec()];
    }
    let blank = |m: &[u8]| m.iter().all(u8::is_ascii_whitespace);
    let finish = |mut m: Vec<u8>| {
        if m.ends_with(b"\r\n\r\n") {
            m.truncate(m.len() - 2);
        } else if m.ends_with(b"\n\n") {
            m.truncate(m.len() - 1);
        }
        m
    };
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut started = false;
    for line in contents.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if started || !blank(&cur) {
                out.push(finish(std::mem::take(&mut cur)));
            }
            cur.clear();
            started = true;
            continue;
        }
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            cur.extend_from_slice(&line[1..]);
        } else {
            cur.extend_from_slice(line);
        }
    }
    if started || !blank(&cur) {
        out.push(finish(cur));
    }
    out
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
