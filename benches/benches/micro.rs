#![forbid(unsafe_code)]
//! Criterion micro-benchmarks of the steps of the ingest and read paths, on
//! a few real corpus messages: where `ama-bench import` says how fast the
//! whole pipeline is, these say which step a change made faster or slower.
//!
//! * `parse` — `ama_core::parse::parse` (mail-parser plus our extraction);
//! * `seal` — zstd then AES-256-GCM, the two calls the blob writer makes
//!   (`crypto::compress`, `crypto::seal`);
//! * `open` — the reverse (`crypto::open`, `crypto::decompress`);
//! * `index_add` — adding the sample messages to a tenant's encrypted
//!   tantivy index and committing (the tenant index is private to the
//!   engine: reached through the hidden `ama_core::index::bench_hook`);
//! * `search` — `Archive::search` on an archive of 2,000 corpus messages.
//!
//! The corpus is `../shared/corpus` (or `$AMA_CORPUS`); without it the
//! benchmarks say SKIPPED and do nothing, so `cargo bench --no-run` and CI
//! builds need no data. Run: `cargo bench -p ama-bench --bench micro`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ama_core::crypto::{self, SecretKey};
use ama_core::index::bench_hook::BenchIndex;
use ama_core::{
    Archive, ArchiveOptions, Envelope, KdfParams, MessageId, MessageInfo, Principal, SearchOptions,
    Source, TenantId, TenantSpec, Unlock,
};
use criterion::{BenchmarkId, Criterion, Throughput};

/// Messages in the archive the `search` group queries.
const SEARCH_ARCHIVE: usize = 2_000;

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("AMA_CORPUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        PathBuf::from,
    );
    dir.join("enron-inbox").is_dir().then_some(dir)
}

/// Every regular file under `dir`, sorted (so the samples do not depend on
/// the order the file system lists them in).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Named samples: the smallest, median and largest message of one Enron
/// custodian's inbox, and the first SpamAssassin message with an attachment.
fn samples(corpus: &Path) -> Vec<(String, Vec<u8>)> {
    let mut enron: Vec<Vec<u8>> = files(&corpus.join("enron-inbox/allen-p"))
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    enron.sort_by_key(Vec::len);
    let mut out = Vec::new();
    if !enron.is_empty() {
        let n = enron.len();
        for (name, i) in [("small", 0), ("median", n / 2), ("large", n - 1)] {
            out.push((format!("{name}-{}B", enron[i].len()), enron[i].clone()));
        }
    }
    let attached = files(&corpus.join("spamassassin"))
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .find(|raw| !ama_core::parse::parse(raw, 0).meta.attachments.is_empty());
    if let Some(raw) = attached {
        out.push((format!("attachment-{}B", raw.len()), raw));
    }
    out
}

fn bench_steps(c: &mut Criterion, samples: &[(String, Vec<u8>)]) {
    let key = SecretKey::from_bytes([7; 32]);
    let aad = b"tenant|message-id";

    let mut g = c.benchmark_group("parse");
    for (name, raw) in samples {
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), raw, |b, raw| {
            b.iter(|| ama_core::parse::parse(raw, 0));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("seal");
    for (name, raw) in samples {
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), raw, |b, raw| {
            b.iter(|| {
                let z = crypto::compress(raw).expect("compress");
                crypto::seal(&key, aad, &z).expect("seal")
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("open");
    for (name, raw) in samples {
        let sealed =
            crypto::seal(&key, aad, &crypto::compress(raw).expect("compress")).expect("seal");
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &sealed, |b, sealed| {
            b.iter(|| {
                let z = crypto::open(&key, aad, sealed, "bench blob").expect("open");
                crypto::decompress(&z, raw.len()).expect("decompress")
            });
        });
    }
    g.finish();

    // Index: the samples added and committed once per iteration, into an
    // index that grows as a real one does.
    let dir = tempfile::tempdir().expect("temp dir");
    let index = BenchIndex::open(&dir.path().join("index"), &key).expect("open index");
    let parsed: Vec<(MessageInfo, ama_core::parse::MessageText)> = samples
        .iter()
        .map(|(_, raw)| {
            let p = ama_core::parse::parse(raw, 0);
            let info = MessageInfo {
                id: MessageId::from_u128(0),
                sha256: crypto::sha256(raw),
                meta: p.meta,
                deliveries: Vec::new(),
            };
            (info, p.text)
        })
        .collect();
    let mut g = c.benchmark_group("index_add");
    // Each iteration is a durable tantivy commit (~0.1 s here): fewer samples.
    g.sample_size(10);
    g.throughput(Throughput::Elements(parsed.len() as u64));
    let mut next = 1u128;
    g.bench_function(format!("{}_messages_and_commit", parsed.len()), |b| {
        b.iter(|| {
            let docs: Vec<(MessageInfo, &ama_core::parse::MessageText)> = parsed
                .iter()
                .map(|(info, text)| {
                    let mut info = info.clone();
                    info.id = MessageId::from_u128(next);
                    next += 1;
                    (info, text)
                })
                .collect();
            let refs: Vec<(&MessageInfo, &ama_core::parse::MessageText)> =
                docs.iter().map(|(i, t)| (i, *t)).collect();
            index.add_and_commit(&refs).expect("add and commit");
        });
    });
    g.finish();
}

fn bench_search(c: &mut Criterion, corpus: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = Archive::create(
        dir.path().join("a"),
        &Unlock::passphrase("ama-bench-passphrase"),
        ArchiveOptions {
            kdf: KdfParams::insecure_fast(),
            ..ArchiveOptions::default()
        },
    )
    .expect("create archive");
    let tenant = TenantId::new("bench").expect("tenant id");
    archive
        .create_tenant(TenantSpec::new(tenant.clone()))
        .expect("create tenant");
    let raws: Vec<Vec<u8>> = files(&corpus.join("enron-inbox"))
        .iter()
        .take(SEARCH_ARCHIVE)
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    let envelope = Envelope::new(Source::Import);
    for chunk in raws.chunks(500) {
        let items: Vec<(&[u8], Envelope)> = chunk
            .iter()
            .map(|r| (r.as_slice(), envelope.clone()))
            .collect();
        archive.ingest_batch(&tenant, &items).expect("ingest");
    }
    let who = Principal::auditor(tenant);
    let opts = SearchOptions::default();
    let mut g = c.benchmark_group("search");
    for q in [
        "energy",
        "\"natural gas\"",
        "from:phillip.allen@enron.com",
        "after:2001-10-01 before:2001-11-01",
        "subject:meeting -has:attachment",
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(q), q, |b, q| {
            b.iter(|| archive.search(&who, q, &opts).expect("search"));
        });
    }
    g.finish();
}

fn main() {
    let Some(corpus) = corpus() else {
        eprintln!("SKIPPED: no corpus at ../shared/corpus (set AMA_CORPUS)");
        return;
    };
    let samples = samples(&corpus);
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench_steps(&mut c, &samples);
    bench_search(&mut c, &corpus);
    c.final_summary();
}
