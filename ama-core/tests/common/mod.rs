//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ama_core::{Archive, ArchiveOptions, KdfParams, TenantId, TenantSpec, Unlock};

pub const PASS: &str = "correct horse battery staple";

pub fn options() -> ArchiveOptions {
    ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    }
}

pub fn create(dir: &Path) -> Archive {
    Archive::create(dir, &Unlock::passphrase(PASS), options()).unwrap()
}

pub fn reopen(dir: &Path) -> Archive {
    Archive::open(dir, &Unlock::passphrase(PASS), options()).unwrap()
}

pub fn tenant(a: &Archive, id: &str) -> TenantId {
    let t = TenantId::new(id).unwrap();
    a.create_tenant(TenantSpec::new(t.clone())).unwrap();
    t
}

/// `../shared/corpus`, or None (with a message) when it is absent.
pub fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: the shared corpus is not at {} (it lives beside the repository)",
            p.display()
        );
        None
    }
}

/// Quotes a value for the query language (a phrase with `\"` and `\\` escaped).
pub fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Every file under `dir`, recursively (none if `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
