//! `ama backup init|run|status` and `ama restore-from-backup`.
//!
//! A backup target is a directory, or a store file in the format of
//! `stores.json` (`ama_store_s3::config`: a local directory or an S3
//! bucket, credentials from the environment). `ama backup init --to T`
//! records it in `DATA/backup.json` (format `ama-backup-target` v1, no
//! secret), so that a cron job runs plain `ama backup run`. The engine
//! ([`ama_core::backup`]) copies only ciphertext; restoring needs the key
//! store (`--keystore`) or the key service (`--key-service …`), which are
//! never in the backup.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ama_core::backup::{self, BackupOptions, RestorePoint};
use ama_core::{BlobStore, LocalStore};
use ama_store_s3::config::StoresConfig;
use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::Usage;
use crate::cli::Global;

/// The file in the data directory.
const FILE: &str = "backup.json";
const FORMAT: &str = "ama-backup-target";
const VERSION: u32 = 1;

/// `ama backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Record the backup target (and how many snapshots to keep) in DATA/backup.json.
    Init {
        /// The target: a directory, or a store file in the stores.json format.
        #[arg(long, value_name = "TARGET")]
        to: PathBuf,
        /// Snapshots to keep (older ones, and blobs only they reference, are deleted).
        #[arg(long, value_name = "N", default_value_t = backup::DEFAULT_KEEP,
              value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
        keep: usize,
    },
    /// Copy the blobs the target lacks and write a new catalog snapshot.
    Run(BackupRunArgs),
    /// The newest snapshot and how many blobs the target is behind.
    Status(BackupTargetArgs),
}

/// Which target (default: DATA/backup.json).
#[derive(Debug, Args)]
pub struct BackupTargetArgs {
    /// The target (a directory, or a store file); default: DATA/backup.json.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ama backup run`
#[derive(Debug, Args)]
pub struct BackupRunArgs {
    /// Which target.
    #[command(flatten)]
    pub target: BackupTargetArgs,
    /// Snapshots to keep (default: DATA/backup.json's, else 7).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub keep: Option<usize>,
}

/// `ama restore-from-backup`
#[derive(Debug, Args)]
pub struct RestoreFromBackupArgs {
    /// The backup target (a directory, or a store file).
    #[arg(long, value_name = "TARGET")]
    pub from: PathBuf,
    /// The new data directory (must not hold an archive).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The snapshot to restore (default: the newest).
    #[arg(long, value_name = "ID", conflicts_with = "until")]
    pub snapshot: Option<u64>,
    /// Restore the state at this moment (RFC 3339, e.g. 2026-11-23T09:30:00Z,
    /// or a date for its midnight UTC): the newest snapshot at or before it,
    /// brought forward with the catalog journal up to it.
    #[arg(long, value_name = "TIME", value_parser = crate::cli::parse_since)]
    pub until: Option<time::OffsetDateTime>,
}

/// `DATA/backup.json`
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    format: String,
    version: u32,
    target: PathBuf,
    keep: usize,
}

fn load(data: &Path) -> anyhow::Result<Option<TargetFile>> {
    let path = data.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        anyhow::bail!("{}: not an {FORMAT} file", path.display());
    }
    match v.get("version").and_then(|v| v.as_u64()) {
        Some(1) => {}
        other => anyhow::bail!(
            "{}: version {other:?} is not supported (this build reads version {VERSION})",
            path.display()
        ),
    }
    let f: TargetFile =
        serde_json::from_value(v).with_context(|| format!("{} is malformed", path.display()))?;
    if f.keep == 0 {
        anyhow::bail!("{}: keep must be at least 1", path.display());
    }
    Ok(Some(f))
}

/// Opens a target: a store file (stores.json format) or a directory. A
/// target inside the data directory is refused: losing the disk would lose
/// both, and pruning would work on the archive's own blobs.
fn open_target(g: &Global, target: &Path) -> anyhow::Result<Arc<dyn BlobStore>> {
    if target.is_file() {
        let config = StoresConfig::load(target)?;
        if config.stores.len() != 1 {
            return Err(Usage(format!(
                "{}: a backup target is one store (found {})",
                target.display(),
                config.stores.len()
            ))
            .into());
        }
        return Ok(config
            .open(&g.data)
            .with_context(|| format!("cannot open the backup target {}", target.display()))?
            .store);
    }
    std::fs::create_dir_all(target)
        .with_context(|| format!("cannot create the backup directory {}", target.display()))?;
    if let (Ok(t), Ok(d)) = (target.canonicalize(), g.data.canonicalize())
        && (t.starts_with(&d) || d.starts_with(&t))
    {
        return Err(Usage(format!(
            "the backup directory {} overlaps the data directory {}; put it on another disk",
            target.display(),
            g.data.display()
        ))
        .into());
    }
    Ok(Arc::new(LocalStore::open(target)?))
}

fn target_of(g: &Global, args: &BackupTargetArgs) -> anyhow::Result<(Arc<dyn BlobStore>, usize)> {
    let file = load(&g.data)?;
    let keep = file.as_ref().map_or(backup::DEFAULT_KEEP, |f| f.keep);
    let path = match (&args.to, &file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => f.target.clone(),
        (None, None) => {
            return Err(Usage(format!(
                "no backup target: give --to, or record one with `ama backup init --to TARGET` (DATA/{FILE})"
            ))
            .into());
        }
    };
    Ok((open_target(g, &path)?, keep))
}

/// `ama backup …`
pub fn run(g: &Global, command: &BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Init { to, keep } => init(g, to, *keep),
        BackupCommand::Run(args) => backup_run(g, args),
        BackupCommand::Status(args) => status(g, args),
    }
}

fn init(g: &Global, to: &Path, keep: usize) -> anyhow::Result<()> {
    // The archive must exist (and open) before it gets a backup target.
    drop(crate::unlock::open(g)?);
    let target = if to.is_absolute() {
        to.to_path_buf()
    } else {
        std::env::current_dir()?.join(to)
    };
    let store = open_target(g, &target)?;
    let file = TargetFile {
        format: FORMAT.into(),
        version: VERSION,
        target,
        keep,
    };
    let path = g.data.join(FILE);
    let tmp = g.data.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "backup target {} recorded in {} (keep {keep} snapshots); run `ama backup run`",
        store.describe(),
        path.display()
    );
    Ok(())
}

fn backup_run(g: &Global, args: &BackupRunArgs) -> anyhow::Result<()> {
    let archive = crate::unlock::open(g)?;
    let (target, keep) = target_of(g, &args.target)?;
    let keep = args.keep.unwrap_or(keep);
    let r = archive
        .backup(target.as_ref(), &BackupOptions { keep })
        .with_context(|| format!("backup to {} failed", target.describe()))?;
    let mut out = std::io::stdout().lock();
    if args.target.json {
        crate::output::json_line(&mut out, &r)?;
    } else {
        writeln!(out, "target            {}", target.describe())?;
        writeln!(out, "snapshot          {}", r.snapshot.id)?;
        writeln!(out, "blobs referenced  {}", r.snapshot.blob_count)?;
        writeln!(out, "blobs copied      {}", r.blobs_copied)?;
        writeln!(out, "blobs present     {}", r.blobs_present)?;
        writeln!(out, "snapshots pruned  {}", r.snapshots_pruned.len())?;
        writeln!(out, "blobs pruned      {}", r.blobs_pruned)?;
        writeln!(out, "journal rows      {}", r.journal_rows)?;
        if r.snapshot.blobs_missing > 0 {
            writeln!(
                out,
                "blobs missing     {} (deleted on the primary during the run)",
                r.snapshot.blobs_missing
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

fn status(g: &Global, args: &BackupTargetArgs) -> anyhow::Result<()> {
    let archive = crate::unlock::open(g)?;
    let (target, _) = target_of(g, args)?;
    let s = archive.backup_status(target.as_ref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        crate::output::json_line(&mut out, &s)?;
    } else {
        writeln!(out, "target            {}", s.target)?;
        match &s.last {
            Some(m) => writeln!(
                out,
                "last snapshot     {} ({}, {} blobs)",
                m.id,
                crate::output::short_date(m.created_unix),
                m.blob_count
            )?,
            None => writeln!(out, "last snapshot     none")?,
        }
        writeln!(out, "snapshots         {}", s.snapshots.len())?;
        writeln!(out, "blobs referenced  {}", s.blobs_referenced)?;
        writeln!(out, "blobs behind      {}", s.blobs_behind)?;
        writeln!(
            out,
            "journal behind    {} rows, {} bytes (shipped by the next run)",
            s.journal_rows_behind, s.journal_bytes_behind
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `ama restore-from-backup`: the catalog and blobs from the backup, the
/// keys from the key store or key service given on the command line; the
/// archive is then opened once, which rebuilds every index.
pub fn restore(g: &Global, args: &RestoreFromBackupArgs) -> anyhow::Result<()> {
    let mut dest = g.clone();
    dest.data = args.to.clone();
    if args.to.join("catalog.redb").exists() {
        return Err(Usage(format!(
            "{} already holds an archive; restore into a new directory",
            args.to.display()
        ))
        .into());
    }
    // Where the restored blobs go: --stores (recorded in the new archive), else DIR/blobs.
    std::fs::create_dir_all(&args.to)
        .with_context(|| format!("cannot create {}", args.to.display()))?;
    let stores = crate::stores::prepare(&dest)?;
    let store: Arc<dyn BlobStore> = match &stores {
        Some(c) => c.open(&args.to)?.store,
        None => Arc::new(LocalStore::open(args.to.join("blobs"))?),
    };
    let source = open_target(&dest, &args.from)?;
    let point = match (args.until, args.snapshot) {
        (Some(t), _) => RestorePoint::Until(t),
        (None, Some(id)) => RestorePoint::Snapshot(id),
        (None, None) => RestorePoint::Latest,
    };
    let r = backup::restore_at(source.as_ref(), point, &args.to, store.as_ref())
        .with_context(|| format!("restore from {} failed", source.describe()))?;
    drop(store);
    if let Some(c) = &stores {
        crate::stores::install(&dest, c)?;
    }
    if let Some(remote) = crate::keyservice::configured(&dest)? {
        remote
            .save_in(&args.to)
            .context("cannot write key-service.json")?;
    }
    // Opening rebuilds the indexes (and proves the keys fit).
    let archive = crate::unlock::open(&dest).with_context(|| {
        format!(
            "the catalog and blobs are restored in {}, but the archive does not open with the \
             keys given (--keystore / --key-service)",
            args.to.display()
        )
    })?;
    let mut messages = 0;
    let tenants = archive.tenants()?;
    for t in &tenants {
        // A tenant destroyed before the snapshot has no index to count.
        if let Ok(n) = archive.indexed_count(&t.id) {
            messages += n;
        }
    }
    let as_of = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.as_of_micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    eprintln!(
        "restored snapshot {} + {} journal rows (the state as of {as_of}, {} blobs) into {}: \
         {} tenants, {} messages indexed; check with `ama verify --data {}`",
        r.snapshot.id,
        r.journal_rows,
        r.blobs_restored,
        args.to.display(),
        tenants.len(),
        messages,
        args.to.display()
    );
    if r.ends_before_until {
        eprintln!(
            "note: the backup holds nothing after {as_of}; changes after it were never shipped \
             (the next `ama backup run` on the primary ships them)"
        );
    }
    if r.blobs_never_backed_up > 0 {
        eprintln!(
            "warning: {} messages of that moment were added and deleted between two backup runs; \
             their content was never backed up (`ama verify` names them)",
            r.blobs_never_backed_up
        );
    }
    Ok(())
}
