#![forbid(unsafe_code)]
//! `ama-bench`: measures the engine on a real corpus, so performance claims
//! and regressions are numbers from one repeatable command rather than
//! impressions.
//!
//! * `import` creates a fresh archive and tenant, feeds a corpus through
//!   [`ama_core::import::import_paths`] — the pipeline `ama import` runs (a
//!   reader thread, a bounded channel of two batches, batches cut at a
//!   message count or 64 MiB) — and prints one
//!   JSON object: throughput, what the archive costs on disk (per part),
//!   peak memory and the machine it ran on.
//! * `search` reopens such an archive and times queries: each one N times,
//!   reporting median and p99 latency, so a change to the index or the query
//!   planner can be judged against the same data.
//! * `generate` writes messages of the deterministic generator
//!   ([`generate`]: real corpus pieces recombined, same seed → same bytes)
//!   to a directory or an mbox file, for other tools.
//! * `scale` imports generated messages straight into a fresh archive (no
//!   files in between) up to a million and more, and reports how the cost
//!   grows: throughput per slice, search latency, peak memory and disk use
//!   at checkpoints.
//!
//! It calls the engine directly (no CLI process, no progress bar) so the
//! numbers are the engine's own. The archive it creates uses a fixed, public
//! passphrase printed in the JSON: bench archives hold test corpora only.

mod generate;
mod scale;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ama_core::import::{ImportOptions, import_paths};
use ama_core::{
    Archive, ArchiveOptions, KdfParams, Principal, SearchOptions, TenantId, TenantSpec, Unlock,
};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

/// The passphrase of every archive `import` creates (printed in its JSON).
const BENCH_PASSPHRASE: &str = "ama-bench-passphrase";

/// The tenant `import` creates.
const BENCH_TENANT: &str = "bench";

#[derive(Debug, Parser)]
#[command(name = "ama-bench", version, about = "Benchmarks of the ama engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import a corpus into a fresh archive and print throughput, disk use and memory as JSON.
    Import(ImportArgs),
    /// Time search queries on an archive and print latencies as JSON.
    Search(SearchArgs),
    /// Write generated messages (deterministic for a seed) to a directory or an mbox file.
    Generate(generate_cmd::GenerateArgs),
    /// Import generated messages into a fresh archive and report how cost grows with size.
    Scale(scale::ScaleArgs),
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The corpus: a directory tree of messages, a Maildir or an mbox file.
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Messages per `ingest_batch` call.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Stop after this many messages of the corpus.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Where to create the archive (must not hold one yet; kept afterwards).
    /// Without it, a temporary directory that is removed at the end unless
    /// `--keep` is given.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Keep the temporary archive when `--data` is not given.
    #[arg(long)]
    keep: bool,
    /// Cheap argon2 parameters for the key store (the default is the
    /// production default, which only costs time at create and open).
    #[arg(long)]
    fast_kdf: bool,
}

#[derive(Debug, clap::Args)]
struct SearchArgs {
    /// The archive's data directory.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Its passphrase (`import` prints it).
    #[arg(long, env = "AMA_PASSPHRASE", default_value = BENCH_PASSPHRASE)]
    passphrase: String,
    /// The tenant to search.
    #[arg(long, default_value = BENCH_TENANT)]
    tenant: String,
    /// How many times each query is run.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Hits per page.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// The queries (each one argument; quote it).
    #[arg(required = true, allow_hyphen_values = true, value_name = "QUERY")]
    queries: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Import(args) => import(&args),
        Command::Search(args) => search(&args),
        Command::Generate(args) => generate_cmd::run(&args),
        Command::Scale(args) => scale::run(&args),
    }
}

// ----- import ----------------------------------------------------------

/// What `import` prints.
#[derive(Debug, Serialize)]
struct ImportReport {
    corpus: String,
    data_dir: String,
    /// Whether the data directory still exists after the run.
    data_kept: bool,
    passphrase: &'static str,
    tenant: &'static str,
    kdf: KdfParams,
    batch: u32,
    /// New messages stored.
    messages: u64,
    /// Messages already stored (their envelope was merged).
    duplicates: u64,
    /// Messages refused by the walker (unreadable, too large) or the engine.
    refused: u64,
    /// Raw bytes of every message archived (new and duplicate).
    bytes: u64,
    /// From the first read to the last commit (archive creation excluded).
    seconds: f64,
    /// Archived messages (new and duplicate) per second.
    msgs_per_s: f64,
    /// `bytes` in MB (10^6) per second.
    mb_per_s: f64,
    /// Creating the archive and tenant (dominated by the KDF).
    create_seconds: f64,
    /// Apparent size of every file under the data directory.
    data_dir_bytes: u64,
    /// The same, per part of the archive.
    data_dir_parts: Parts,
    /// Space allocated on disk for the data directory (512-byte blocks).
    data_dir_disk_bytes: u64,
    /// Peak resident set size of this process (`VmHWM`).
    peak_rss_kib: Option<u64>,
    machine: Machine,
}

/// Apparent bytes per part of a data directory.
#[derive(Debug, Default, Serialize)]
struct Parts {
    blobs: u64,
    catalog: u64,
    index: u64,
    /// Everything else (key store, lock files).
    other: u64,
}

#[derive(Debug, Serialize)]
struct Machine {
    nproc: usize,
    mem_total_kib: Option<u64>,
    cpu: Option<String>,
}

#[derive(Debug, Default)]
struct Counts {
    messages: u64,
    duplicates: u64,
    refused: u64,
    bytes: u64,
}

fn import(args: &ImportArgs) -> anyhow::Result<()> {
    if !args.corpus.exists() {
        bail!("{}: no such file or directory", args.corpus.display());
    }
    // Without --data: a temporary directory, removed when `temp` drops.
    let temp = match &args.data {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("ama-bench-")
                .tempdir()
                .context("cannot create a temporary directory")?,
        ),
    };
    let (dir, kept) = match (&args.data, &temp) {
        (Some(d), _) => (d.clone(), true),
        (None, Some(t)) => (t.path().join("archive"), args.keep),
        (None, None) => bail!("no data directory"),
    };
    let kdf = if args.fast_kdf {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    };

    let created = Instant::now();
    let archive = Archive::create(
        &dir,
        &Unlock::passphrase(BENCH_PASSPHRASE),
        ArchiveOptions {
            kdf,
            ..ArchiveOptions::default()
        },
    )
    .with_context(|| format!("cannot create an archive in {}", dir.display()))?;
    let tenant = TenantId::new(BENCH_TENANT)?;
    archive.create_tenant(TenantSpec::new(tenant.clone()))?;
    let create_seconds = created.elapsed().as_secs_f64();

    let start = Instant::now();
    let counts = ingest_all(&archive, &tenant, args)?;
    let seconds = start.elapsed().as_secs_f64();
    drop(archive);

    let (parts, disk) = measure_dir(&dir)?;
    let archived = counts.messages + counts.duplicates;
    let secs = seconds.max(1e-9);
    let report = ImportReport {
        corpus: args.corpus.display().to_string(),
        data_dir: dir.display().to_string(),
        data_kept: kept,
        passphrase: BENCH_PASSPHRASE,
        tenant: BENCH_TENANT,
        kdf,
        batch: args.batch,
        messages: counts.messages,
        duplicates: counts.duplicates,
        refused: counts.refused,
        bytes: counts.bytes,
        seconds: round(seconds, 3),
        msgs_per_s: round(archived as f64 / secs, 1),
        mb_per_s: round(counts.bytes as f64 / 1e6 / secs, 3),
        create_seconds: round(create_seconds, 3),
        data_dir_bytes: parts.blobs + parts.catalog + parts.index + parts.other,
        data_dir_parts: parts,
        data_dir_disk_bytes: disk,
        peak_rss_kib: proc_field("/proc/self/status", "VmHWM:"),
        machine: machine(),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(t) = temp.filter(|_| kept) {
        // Keep the temporary directory: it is named in the report.
        let _ = t.keep();
    }
    Ok(())
}

/// Imports through the engine's shared pipeline (what `ama import` runs).
fn ingest_all(archive: &Archive, tenant: &TenantId, args: &ImportArgs) -> anyhow::Result<Counts> {
    let options = ImportOptions {
        batch: args.batch as usize,
        limit: args.limit,
        ..ImportOptions::default()
    };
    let summary = import_paths(
        archive,
        tenant,
        std::slice::from_ref(&args.corpus),
        &options,
        |_| std::ops::ControlFlow::Continue(()),
    )
    .context("cannot archive a batch")?;
    Ok(Counts {
        messages: summary.imported,
        duplicates: summary.duplicates,
        refused: summary.refused,
        bytes: summary.bytes,
    })
}

/// Apparent bytes per part and allocated bytes of a data directory.
fn measure_dir(dir: &Path) -> anyhow::Result<(Parts, u64)> {
    let mut parts = Parts::default();
    let mut disk = 0;
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let (bytes, blocks) = tree_size(&entry.path())?;
        disk += blocks;
        let name = entry.file_name();
        let slot = match name.to_str() {
            Some("blobs") => &mut parts.blobs,
            Some("index") => &mut parts.index,
            Some(n) if n.starts_with("catalog") => &mut parts.catalog,
            _ => &mut parts.other,
        };
        *slot += bytes;
    }
    Ok((parts, disk))
}

/// Apparent and allocated bytes under `path` (symbolic links not followed).
fn tree_size(path: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_dir() {
        return Ok((meta.len(), meta.blocks() * 512));
    }
    let mut total = (0, meta.blocks() * 512);
    let entries = fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
    for entry in entries {
        let (bytes, disk) = tree_size(&entry?.path())?;
        total.0 += bytes;
        total.1 += disk;
    }
    Ok(total)
}

// ----- search ----------------------------------------------------------

#[derive(Debug, Serialize)]
struct SearchReport {
    data_dir: String,
    tenant: String,
    runs: u32,
    limit: usize,
    /// Opening the archive (dominated by the KDF).
    open_ms: f64,
    /// Opening the tenant (unwrapping its key, opening its index): paid
    /// once, before the timed runs.
    tenant_open_ms: f64,
    queries: Vec<QueryReport>,
    peak_rss_kib: Option<u64>,
    machine: Machine,
}

#[derive(Debug, Serialize)]
struct QueryReport {
    query: String,
    /// Matching messages.
    total: usize,
    /// Hits on the first page.
    hits: usize,
    /// The first run on its own (cold caches for this query).
    first_ms: f64,
    median_ms: f64,
    /// Nearest-rank 99th percentile (the maximum when runs < 100).
    p99_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

fn search(args: &SearchArgs) -> anyhow::Result<()> {
    let opened = Instant::now();
    let archive = Archive::open(
        &args.data,
        &Unlock::passphrase(args.passphrase.clone()),
        ArchiveOptions::default(),
    )
    .with_context(|| format!("cannot open the archive in {}", args.data.display()))?;
    let open_ms = ms(opened.elapsed());

    let tenant = TenantId::new(args.tenant.clone())?;
    let tenant_opened = Instant::now();
    archive.indexed_count(&tenant)?;
    let tenant_open_ms = ms(tenant_opened.elapsed());

    let who = Principal::auditor(tenant);
    let opts = SearchOptions {
        limit: args.limit,
        ..SearchOptions::default()
    };
    let queries = time_queries(&archive, &who, &args.queries, args.runs, &opts)?;
    let report = SearchReport {
        data_dir: args.data.display().to_string(),
        tenant: args.tenant.clone(),
        runs: args.runs,
        limit: args.limit,
        open_ms: round(open_ms, 1),
        tenant_open_ms: round(tenant_open_ms, 1),
        queries,
        peak_rss_kib: proc_field("/proc/self/status", "VmHWM:"),
        machine: machine(),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Runs each query `runs` times and reports its latencies.
fn time_queries(
    archive: &Archive,
    who: &Principal,
    queries: &[String],
    runs: u32,
    opts: &SearchOptions,
) -> anyhow::Result<Vec<QueryReport>> {
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        let mut times = Vec::with_capacity(runs as usize);
        let mut last = None;
        for _ in 0..runs {
            let t = Instant::now();
            let r = archive
                .search(who, q, opts)
                .with_context(|| format!("query {q:?} failed"))?;
            times.push(ms(t.elapsed()));
            last = Some(r);
        }
        let (total, hits) = last.map_or((0, 0), |r| (r.total, r.hits.len()));
        let first_ms = times.first().copied().unwrap_or(0.0);
        times.sort_by(f64::total_cmp);
        out.push(QueryReport {
            query: q.clone(),
            total,
            hits,
            first_ms: round(first_ms, 3),
            median_ms: round(median(&times), 3),
            p99_ms: round(percentile(&times, 99), 3),
            min_ms: round(times.first().copied().unwrap_or(0.0), 3),
            max_ms: round(times.last().copied().unwrap_or(0.0), 3),
        });
    }
    Ok(out)
}

/// Median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

// ----- generate --------------------------------------------------------

mod generate_cmd {
    use std::path::PathBuf;
    use std::time::Instant;

    use anyhow::Context;

    use crate::generate::{Pool, write_dir, write_mbox};

    #[derive(Debug, clap::Args)]
    pub struct GenerateArgs {
        /// The corpus the pieces are drawn from (repeatable).
        #[arg(long, value_name = "DIR", required = true)]
        pub corpus: Vec<PathBuf>,
        /// How many messages.
        #[arg(long, value_name = "N")]
        pub count: u64,
        /// The seed: the same seed (and corpus) gives the same bytes.
        #[arg(long, default_value_t = 1)]
        pub seed: u64,
        /// A directory (one file per message) or, when the name ends in
        /// `.mbox` or with `--mbox`, one mboxrd file.
        #[arg(long, value_name = "DIR|FILE")]
        pub out: PathBuf,
        /// Write an mbox file whatever the name.
        #[arg(long)]
        pub mbox: bool,
    }

    pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
        let t = Instant::now();
        let pool = Pool::from_corpus(&args.corpus)?;
        let pool_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mbox = args.mbox || args.out.extension().is_some_and(|e| e == "mbox");
        let bytes = if mbox {
            let f = std::fs::File::create(&args.out)
                .with_context(|| format!("cannot create {}", args.out.display()))?;
            write_mbox(
                &pool,
                args.seed,
                args.count,
                &mut std::io::BufWriter::with_capacity(1 << 20, f),
            )?
        } else {
            write_dir(&pool, args.seed, args.count, &args.out)?
        };
        let report = serde_json::json!({
            "out": args.out.display().to_string(),
            "format": if mbox { "mbox" } else { "dir" },
            "count": args.count,
            "seed": args.seed,
            "bytes": bytes,
            "pool": pool.stats(),
            "pool_seconds": crate::round(pool_seconds, 3),
            "seconds": crate::round(t.elapsed().as_secs_f64(), 3),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        Ok(())
    }
}

// ----- helpers ---------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// The number of a `Key:   123 kB` line of a `/proc` file.
fn proc_field(file: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn machine() -> Machine {
    let cpu = fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        mem_total_kib: proc_field("/proc/meminfo", "MemTotal:"),
        cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median(&v), 10.5);
        assert_eq!(percentile(&v, 99), 20.0);
        assert_eq!(percentile(&v, 50), 10.0);
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 99), 198.0);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(percentile(&[], 99), 0.0);
    }

    #[test]
    fn import_then_search_a_tiny_corpus() {
        let corpus = tempfile::tempdir().unwrap();
        for i in 0..3 {
            fs::write(
                corpus.path().join(format!("{i}.eml")),
                format!("From: a@b.test\r\nSubject: energy {i}\r\n\r\nnatural gas\r\n"),
            )
            .unwrap();
        }
        fs::write(
            corpus.path().join("dup.eml"),
            "From: a@b.test\r\nSubject: energy 0\r\n\r\nnatural gas\r\n",
        )
        .unwrap();
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("a");
        let archive = Archive::create(
            &dir,
            &Unlock::passphrase(BENCH_PASSPHRASE),
            ArchiveOptions {
                kdf: KdfParams::insecure_fast(),
                ..ArchiveOptions::default()
            },
        )
        .unwrap();
        let tenant = TenantId::new(BENCH_TENANT).unwrap();
        archive
            .create_tenant(TenantSpec::new(tenant.clone()))
            .unwrap();
        let args = ImportArgs {
            corpus: corpus.path().to_path_buf(),
            batch: 2,
            limit: None,
            data: None,
            keep: false,
            fast_kdf: true,
        };
        let c = ingest_all(&archive, &tenant, &args).unwrap();
        assert_eq!((c.messages, c.duplicates, c.refused), (3, 1, 0));
        let found = archive
            .search(
                &Principal::auditor(tenant),
                "\"natural gas\"",
                &SearchOptions::default(),
            )
            .unwrap();
        assert_eq!(found.total, 3);
        drop(archive);
        let (parts, disk) = measure_dir(&dir).unwrap();
        assert!(parts.blobs > 0 && parts.catalog > 0 && parts.index > 0 && parts.other > 0);
        assert!(disk > 0);
    }
}
