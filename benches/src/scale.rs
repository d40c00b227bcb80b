//! `ama-bench scale`: how the cost of an archive grows with its size.
//!
//! Generated messages ([`crate::generate`]) go straight from the generator
//! into a fresh archive — no files in between, so a million messages need
//! neither a million files nor the memory to hold them — in the shape of
//! `ama import`: a producer thread fills batches, a bounded channel of two
//! batches, [`Archive::ingest_batch`] with its durable (fsync) commit per
//! batch on the calling thread.
//!
//! It records the import throughput of every slice (100,000 messages by
//! default), and at checkpoints (10k, 100k, 1M by default) pauses the clock
//! to time a set of queries (median and p99), read the peak and current
//! resident memory and the load average, and measure the data directory.
//! Progress goes to stderr as one JSON line per slice and checkpoint (so a
//! long run can be watched, and a failed one still leaves its numbers); the
//! full report goes to stdout at the end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ama_core::{
    Archive, ArchiveOptions, Envelope, KdfParams, Principal, SearchOptions, Source, TenantId,
    TenantSpec, Unlock,
};
use anyhow::Context;
use serde::Serialize;

use crate::generate::{Pool, PoolStats};
use crate::{
    BENCH_PASSPHRASE, BENCH_TENANT, Machine, Parts, QueryReport, machine, measure_dir, proc_field,
    round, time_queries,
};

/// One message in this many is also parsed by the producer, to count
/// generated messages that the engine flags with anomalies.
const SAMPLE_EVERY: u64 = 100;

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// The corpus the generator draws its pieces from (repeatable).
    #[arg(long, value_name = "DIR", required = true)]
    pub corpus: Vec<PathBuf>,
    /// How many messages to import.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Messages per `ingest_batch` call.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Throughput is reported per slice of this many messages.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub every: u64,
    /// Message counts at which queries are timed and memory and disk measured
    /// (comma-separated; the final count is always one).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub at: Vec<u64>,
    /// Times each query is run at a checkpoint.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// The queries (repeatable); without it, a fixed set covering a common
    /// word, a rare word, a phrase, a sender, a date range, an attachment
    /// filter and a combination.
    #[arg(long = "query", value_name = "QUERY")]
    pub queries: Vec<String>,
    /// Where to create the archive (must not hold one; kept afterwards).
    /// Without it, a temporary directory removed at the end.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Cheap argon2 parameters (only affects the time to create the archive).
    #[arg(long)]
    pub fast_kdf: bool,
}

#[derive(Debug, Serialize)]
struct ScaleReport {
    count: u64,
    seed: u64,
    corpus: Vec<String>,
    batch: u64,
    data_dir: String,
    pool: PoolStats,
    pool_seconds: f64,
    create_seconds: f64,
    /// Import time only (checkpoints excluded).
    import_seconds: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
    messages: u64,
    duplicates: u64,
    refused: u64,
    /// A few refusal reasons.
    refusals: Vec<String>,
    bytes: u64,
    anomaly_sample: AnomalySample,
    slices: Vec<Slice>,
    checkpoints: Vec<Checkpoint>,
    peak_rss_kib: Option<u64>,
    machine: Machine,
}

#[derive(Debug, Default, Serialize)]
struct AnomalySample {
    /// Generated messages parsed by the producer (one in `SAMPLE_EVERY`).
    checked: u64,
    /// Of those, parsed without any anomaly.
    clean: u64,
    /// Anomalies by kind.
    by_kind: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
struct Slice {
    /// Messages archived at the end of the slice.
    upto: u64,
    messages: u64,
    seconds: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
    /// `/proc/loadavg` (1, 5, 15 minutes) at the end of the slice: other
    /// work on the machine shows here.
    loadavg: Option<String>,
}

#[derive(Debug, Serialize)]
struct Checkpoint {
    messages: u64,
    import_seconds: f64,
    peak_rss_kib: Option<u64>,
    rss_kib: Option<u64>,
    data_dir_bytes: u64,
    data_dir_parts: Parts,
    data_dir_disk_bytes: u64,
    /// Raw bytes archived so far.
    raw_bytes: u64,
    measure_seconds: f64,
    loadavg: Option<String>,
    queries: Vec<QueryReport>,
}

/// A batch from the producer: messages, and the anomaly sample taken.
struct Batch {
    messages: Vec<Vec<u8>>,
    sample: AnomalySample,
}

pub fn run(args: &ScaleArgs) -> anyhow::Result<()> {
    let report = scale(args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn scale(args: &ScaleArgs) -> anyhow::Result<ScaleReport> {
    let t = Instant::now();
    let pool = Pool::from_corpus(&args.corpus)?;
    let pool_seconds = t.elapsed().as_secs_f64();
    progress(&serde_json::json!({"pool": pool.stats(), "pool_seconds": round(pool_seconds, 2)}));

    let temp = match &args.data {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("ama-bench-scale-")
                .tempdir()
                .context("cannot create a temporary directory")?,
        ),
    };
    let dir = match (&args.data, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().join("archive"),
        (None, None) => anyhow::bail!("no data directory"),
    };
    let created = Instant::now();
    let archive = Archive::create(
        &dir,
        &Unlock::passphrase(BENCH_PASSPHRASE),
        ArchiveOptions {
            kdf: if args.fast_kdf {
                KdfParams::insecure_fast()
            } else {
                KdfParams::default()
            },
            ..ArchiveOptions::default()
        },
    )
    .with_context(|| format!("cannot create an archive in {}", dir.display()))?;
    let tenant = TenantId::new(BENCH_TENANT)?;
    archive.create_tenant(TenantSpec::new(tenant.clone()))?;
    let create_seconds = created.elapsed().as_secs_f64();

    let queries = if args.queries.is_empty() {
        default_queries(&pool)
    } else {
        args.queries.clone()
    };
    let mut checkpoints_at: Vec<u64> = args
        .at
        .iter()
        .copied()
        .filter(|&n| n > 0 && n < args.count)
        .chain([args.count])
        .collect();
    checkpoints_at.sort_unstable();
    checkpoints_at.dedup();

    let mut report = ScaleReport {
        count: args.count,
        seed: args.seed,
        corpus: args
            .corpus
            .iter()
            .map(|c| c.display().to_string())
            .collect(),
        batch: args.batch,
        data_dir: dir.display().to_string(),
        pool: pool.stats().clone(),
        pool_seconds: round(pool_seconds, 3),
        create_seconds: round(create_seconds, 3),
        import_seconds: 0.0,
        msgs_per_s: 0.0,
        mb_per_s: 0.0,
        messages: 0,
        duplicates: 0,
        refused: 0,
        refusals: Vec::new(),
        bytes: 0,
        anomaly_sample: AnomalySample::default(),
        slices: Vec::new(),
        checkpoints: Vec::new(),
        peak_rss_kib: None,
        machine: machine(),
    };

    let (tx, rx) = mpsc::sync_channel::<Batch>(2);
    let boundaries = {
        let mut b: Vec<u64> = (1..)
            .map(|k| k * args.every)
            .take_while(|&n| n < args.count)
            .chain(checkpoints_at.iter().copied())
            .collect();
        b.sort_unstable();
        b.dedup();
        b
    };
    let who = Principal::auditor(tenant.clone());
    let opts = SearchOptions::default();
    let envelope = Envelope::new(Source::Import);

    std::thread::scope(|s| -> anyhow::Result<()> {
        let pool = &pool;
        let (seed, count, batch_len) = (args.seed, args.count, args.batch);
        let boundaries = &boundaries;
        s.spawn(move || {
            let mut next = 0u64;
            while next < count {
                // Cut batches at slice and checkpoint boundaries, so each
                // measurement sees exactly its message count.
                let stop = boundaries
                    .iter()
                    .copied()
                    .find(|&b| b > next)
                    .unwrap_or(count)
                    .min(next + batch_len);
                let mut batch = Batch {
                    messages: Vec::with_capacity((stop - next) as usize),
                    sample: AnomalySample::default(),
                };
                for i in next..stop {
                    let m = pool.message(seed, i);
                    if i % SAMPLE_EVERY == 0 {
                        let p = ama_core::parse::parse(&m, 0);
                        batch.sample.checked += 1;
                        batch.sample.clean += u64::from(p.meta.anomalies.is_empty());
                        for a in &p.meta.anomalies {
                            *batch.sample.by_kind.entry(a.as_str()).or_default() += 1;
                        }
                    }
                    batch.messages.push(m);
                }
                next = stop;
                if tx.send(batch).is_err() {
                    return;
                }
            }
        });

        let rx = rx;
        let mut archived = 0u64;
        let mut import_time = Duration::ZERO;
        let mut slice_start = (0u64, Duration::ZERO, 0u64);
        let mut next_checkpoint = checkpoints_at.iter().copied().peekable();
        let mut next_slice = args.every;
        let mut started = Instant::now();
        for batch in rx.iter() {
            let items: Vec<(Vec<u8>, Envelope)> = batch
                .messages
                .into_iter()
                .map(|m| (m, envelope.clone()))
                .collect();
            let results = archive
                .ingest_batch(&tenant, &items)
                .context("cannot archive a batch")?;
            for ((raw, _), r) in items.iter().zip(results) {
                match r {
                    Ok(receipt) => {
                        if receipt.duplicate {
                            report.duplicates += 1;
                        } else {
                            report.messages += 1;
                        }
                        report.bytes += raw.len() as u64;
                    }
                    Err(e) => {
                        report.refused += 1;
                        if report.refusals.len() < 10 {
                            report.refusals.push(e.to_string());
                        }
                    }
                }
            }
            archived += items.len() as u64;
            let s = &mut report.anomaly_sample;
            s.checked += batch.sample.checked;
            s.clean += batch.sample.clean;
            for (k, v) in batch.sample.by_kind {
                *s.by_kind.entry(k).or_default() += v;
            }
            drop(items);

            if archived >= next_slice || archived == args.count {
                import_time += started.elapsed();
                started = Instant::now();
                let (from, t0, b0) = slice_start;
                let secs = (import_time - t0).as_secs_f64().max(1e-9);
                let slice = Slice {
                    upto: archived,
                    messages: archived - from,
                    seconds: round(secs, 3),
                    msgs_per_s: round((archived - from) as f64 / secs, 1),
                    mb_per_s: round((report.bytes - b0) as f64 / 1e6 / secs, 3),
                    loadavg: loadavg(),
                };
                progress(&serde_json::json!({"slice": &slice}));
                report.slices.push(slice);
                slice_start = (archived, import_time, report.bytes);
                while next_slice <= archived {
                    next_slice += args.every;
                }
            }
            if next_checkpoint.peek() == Some(&archived) {
                next_checkpoint.next();
                import_time += started.elapsed();
                let measured = Instant::now();
                let queries = time_queries(&archive, &who, &queries, args.runs, &opts)?;
                let (parts, disk) = measure_dir(&dir)?;
                let cp = Checkpoint {
                    messages: archived,
                    import_seconds: round(import_time.as_secs_f64(), 3),
                    peak_rss_kib: proc_field("/proc/self/status", "VmHWM:"),
                    rss_kib: proc_field("/proc/self/status", "VmRSS:"),
                    data_dir_bytes: parts.blobs + parts.catalog + parts.index + parts.other,
                    data_dir_parts: parts,
                    data_dir_disk_bytes: disk,
                    raw_bytes: report.bytes,
                    measure_seconds: round(measured.elapsed().as_secs_f64(), 3),
                    loadavg: loadavg(),
                    queries,
                };
                progress(&serde_json::json!({"checkpoint": &cp}));
                report.checkpoints.push(cp);
                started = Instant::now();
            }
        }
        import_time += started.elapsed();
        let secs = import_time.as_secs_f64().max(1e-9);
        report.import_seconds = round(secs, 3);
        report.msgs_per_s = round(archived as f64 / secs, 1);
        report.mb_per_s = round(report.bytes as f64 / 1e6 / secs, 3);
        Ok(())
    })?;
    drop(archive);
    report.peak_rss_kib = proc_field("/proc/self/status", "VmHWM:");
    Ok(report)
}

/// The query set: a common word, a rarer word, a phrase, one sender, a
/// month, messages with attachments, and a combination.
fn default_queries(pool: &Pool) -> Vec<String> {
    vec![
        "energy".into(),
        "kerosene".into(),
        "\"natural gas\"".into(),
        format!("from:{}", pool.sender_address(0)),
        "after:2010-03-01 before:2010-04-01".into(),
        "has:attachment".into(),
        "subject:meeting -has:attachment".into(),
    ]
}

fn loadavg() -> Option<String> {
    let t = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn progress(v: &serde_json::Value) {
    eprintln!("{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_run_on_a_tiny_pool_reports_slices_and_checkpoints() {
        let corpus = tempfile::tempdir().unwrap();
        for (i, body) in [
            "energy prices rose",
            "natural gas meeting",
            "kerosene spill",
        ]
        .iter()
        .enumerate()
        {
            std::fs::write(
                corpus.path().join(format!("{i}.eml")),
                format!(
                    "From: s{i}@a.example\r\nTo: r{i}@b.example\r\nSubject: meeting {i}\r\n\r\n{body}\r\n"
                ),
            )
            .unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let args = ScaleArgs {
            corpus: vec![corpus.path().to_path_buf()],
            count: 250,
            seed: 5,
            batch: 40,
            every: 100,
            at: vec![30, 100],
            runs: 2,
            queries: Vec::new(),
            data: Some(data.path().join("a")),
            fast_kdf: true,
        };
        let r = scale(&args).unwrap();
        assert_eq!((r.messages, r.duplicates, r.refused), (250, 0, 0));
        let upto: Vec<u64> = r.slices.iter().map(|s| s.upto).collect();
        assert_eq!(upto, [100, 200, 250]);
        let at: Vec<u64> = r.checkpoints.iter().map(|c| c.messages).collect();
        assert_eq!(at, [30, 100, 250]);
        assert_eq!(r.anomaly_sample.checked, 3);
        assert_eq!(r.anomaly_sample.clean, 3, "{:?}", r.anomaly_sample.by_kind);
        let last = &r.checkpoints[2];
        assert_eq!(last.queries.len(), 7);
        assert!(
            last.queries
                .iter()
                .find(|q| q.query == "energy")
                .unwrap()
                .total
                > 0
        );
        assert!(last.queries[3].total > 0, "the sender query matches");
        assert!(last.data_dir_bytes > 0 && last.peak_rss_kib.is_some());
        let archive = Archive::open(
            data.path().join("a"),
            &Unlock::passphrase(BENCH_PASSPHRASE),
            ArchiveOptions::default(),
        )
        .unwrap();
        let tenant = TenantId::new(BENCH_TENANT).unwrap();
        assert_eq!(archive.indexed_count(&tenant).unwrap(), 250);
    }
}
