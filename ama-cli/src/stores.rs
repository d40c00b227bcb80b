//! Where the archive keeps its blobs, and `ama repair`.
//!
//! Every command opens the archive through [`crate::unlock::open`], which
//! asks [`configured`] for the blob store: the file given with `--stores`
//! (or `AMA_STORES`), else `DATA/stores.json`, else the embedded default
//! (`DATA/blobs`). The format is `ama_store_s3::config` (local directories
//! and S3 buckets, region tags, a write quorum for several stores); it
//! never holds a secret — S3 credentials come from the environment.
//! `ama init --stores FILE` checks the file (S3 buckets reachable with the
//! credentials in the environment) before creating anything, and copies it
//! to `DATA/stores.json` so later commands need no flag.

use std::io::Write;

use ama_core::LocalKeyStore;
use ama_core::archive::RepairOptions;
use ama_store_s3::config::{OpenStores, StoresConfig};
use anyhow::Context;

use crate::cli::{Global, RepairArgs};

fn load(g: &Global) -> anyhow::Result<Option<StoresConfig>> {
    Ok(match &g.stores {
        Some(p) => Some(StoresConfig::load(p)?),
        None => StoresConfig::load_in(&g.data)?,
    })
}

/// The configured stores of an existing archive; `None` for the default.
pub fn configured(g: &Global) -> anyhow::Result<Option<OpenStores>> {
    // Not an archive (yet): let the engine say so, and create nothing.
    // (An archive on a key service has a catalog but no key store.)
    if !LocalKeyStore::path_in(&g.data).exists() && !g.data.join("catalog.redb").exists() {
        return Ok(None);
    }
    let Some(config) = load(g)? else {
        return Ok(None);
    };
    Ok(Some(
        config
            .open(&g.data)
            .context("cannot open the blob stores")?,
    ))
}

/// For `ama init --stores FILE`: checks the configuration and every S3
/// bucket (reachable, credentials accepted) before the archive is created.
pub fn prepare(g: &Global) -> anyhow::Result<Option<StoresConfig>> {
    let Some(path) = &g.stores else {
        return Ok(None);
    };
    let config = StoresConfig::load(path)?;
    let opened = config
        .open(&g.data)
        .context("cannot open the blob stores")?;
    for s3 in &opened.s3 {
        use ama_core::BlobStore;
        s3.check()
            .with_context(|| format!("store {} is not usable", s3.describe()))?;
    }
    Ok(Some(config))
}

/// Writes the checked configuration into the new archive.
pub fn install(g: &Global, config: &StoresConfig) -> anyhow::Result<()> {
    config
        .save_in(&g.data)
        .context("cannot write stores.json")?;
    Ok(())
}

/// `ama repair`
pub fn repair(g: &Global, args: &RepairArgs) -> anyhow::Result<()> {
    let archive = crate::unlock::open(g)?;
    let store = archive.blob_store().describe();
    let report = archive.repair(RepairOptions {
        scan: args.scan || args.deep,
        deep: args.deep,
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(m) = v.as_object_mut() {
            m.insert("store".into(), store.clone().into());
            m.insert("clean".into(), report.is_clean().into());
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "store                 {store}")?;
        for (label, n) in [
            ("copies restored", report.copies_restored),
            ("deletions replayed", report.deletions_replayed),
            ("missing found", report.missing_found),
            ("damaged found", report.corrupt_found),
            ("unreferenced dropped", report.dropped_unreferenced),
            ("unreferenced blobs", report.unreferenced_blobs),
            ("copies still queued", report.still_queued),
            ("deletions pending", report.deletions_pending),
        ] {
            writeln!(out, "{label:<21} {n}")?;
        }
        for k in &report.unrecoverable {
            writeln!(out, "unrecoverable         {k}")?;
        }
        for f in &report.failed_stores {
            writeln!(out, "failed store          {f}")?;
        }
    }
    out.flush()?;
    if !report.is_clean() {
        anyhow::bail!(
            "repair incomplete: {} copies still queued, {} deletions pending, {} blobs without an authentic copy, {} stores failing; run `ama repair` again once the stores are back",
            report.still_queued,
            report.deletions_pending,
            report.unrecoverable.len(),
            report.failed_stores.len()
        );
    }
    eprintln!("repair complete: every copy is in place");
    Ok(())
}
