//! `ama import`: files, Maildirs and mbox files into a tenant.
//!
//! Reading and ingesting overlap: a reader thread drives the engine's lazy
//! [`ama_core::mailbox::walk`] and hands batches to this thread through a
//! bounded channel of two batches, while this thread parses, encrypts and
//! commits the previous ones with [`ama_core::Archive::ingest_batch`]. The
//! channel bound keeps memory flat however large the import: at most the
//! batch being read, two queued and the one being ingested are held. A batch
//! is also cut at [`MAX_BATCH_BYTES`], so 500 large messages do not add up
//! to gigabytes.
//!
//! A message that cannot be read or is not mail is *refused*: reported with
//! its path and reason, and the import goes on. A failure of the archive
//! itself (disk, catalog) stops the import; every batch before it is
//! durable, and the summary says how far it got.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ama_core::mailbox::{self, WalkOptions};
use ama_core::{Archive, Envelope, Source};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::cli::{Global, ImportArgs};
use crate::output::clean;
use crate::unlock;

/// A batch is handed over once it holds this many bytes of mail, even if it
/// has fewer messages than `--batch`.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// How many batches may wait between the reader and the ingester.
const QUEUED_BATCHES: usize = 2;

/// What the reader found: per message, where it came from and its bytes or
/// why they could not be read.
type Batch = Vec<(String, Result<Vec<u8>, String>)>;

/// One archived message of the import.
#[derive(Debug, Serialize)]
struct Imported {
    path: String,
    id: String,
    sha256: String,
    duplicate: bool,
}

/// One refused message.
#[derive(Debug, Serialize)]
struct Refused {
    path: String,
    error: String,
}

/// The outcome, as printed by `--json`.
#[derive(Debug, Default, Serialize)]
struct Report {
    /// New messages (duplicates not counted).
    imported: u64,
    /// Messages already in the archive (their envelope was merged).
    duplicates: u64,
    refused: Vec<Refused>,
    messages: Vec<Imported>,
    seconds: f64,
    /// Raw bytes of every message archived by this run, duplicates included
    /// (what was read, hashed and checked; the throughput is computed from it).
    bytes: u64,
    /// Set when the import was stopped by an archive failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `ama import`
pub fn run(g: &Global, args: &ImportArgs) -> anyhow::Result<()> {
    // Check every path before unlocking, so a typo is reported before any
    // work (and before any partial import).
    for p in &args.paths {
        match std::fs::metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!("{}: no such file or directory", p.display())
            }
            _ => {}
        }
    }
    let archive = unlock::open(g)?;
    archive.tenant(&args.tenant)?;

    let start = Instant::now();
    let progress = progress_bar();
    let mut report = Report::default();
    let result = ingest_all(&archive, args, &progress, &mut report);
    progress.finish_and_clear();
    report.seconds = start.elapsed().as_secs_f64();
    if let Err(e) = &result {
        report.error = Some(crate::render_error(e));
    }

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        out.write_all(b"\n")?;
    } else {
        summary(&mut out, &report, result.is_err())?;
    }
    out.flush()?;
    let (imported, duplicates) = (report.imported, report.duplicates);
    result.with_context(|| {
        format!(
            "import stopped after archiving {imported} new messages and {duplicates} duplicates"
        )
    })
}

/// Reads on a helper thread, ingests here.
fn ingest_all(
    archive: &Archive,
    args: &ImportArgs,
    progress: &ProgressBar,
    report: &mut Report,
) -> anyhow::Result<()> {
    let walk = mailbox::walk(
        &args.paths,
        &WalkOptions {
            max_message_size: archive.options().max_message_size,
        },
    );
    let batch_len = args.batch as usize;
    let (tx, rx) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
    let reader = std::thread::Builder::new()
        .name("ama-import-reader".into())
        .spawn(move || {
            let mut batch: Batch = Vec::with_capacity(batch_len);
            let mut bytes = 0usize;
            for item in walk {
                let raw = item.raw.map_err(|e| e.to_string());
                if let Ok(r) = &raw {
                    bytes += r.len();
                }
                batch.push((item.origin, raw));
                if batch.len() >= batch_len || bytes >= MAX_BATCH_BYTES {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_len));
                    bytes = 0;
                    if tx.send(full).is_err() {
                        return; // the ingester stopped
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
        })
        .context("cannot start the reader thread")?;

    let mut result = Ok(());
    for batch in rx.iter() {
        if let Err(e) = ingest(archive, args, batch, progress, report) {
            result = Err(e);
            break;
        }
    }
    drop(rx); // unblocks the reader if it is waiting to send
    if reader.join().is_err() {
        result = result.and(Err(anyhow::anyhow!("the reader thread failed")));
    }
    result
}

/// One batch: refusals of the reader are recorded, the rest is ingested in
/// one engine call.
fn ingest(
    archive: &Archive,
    args: &ImportArgs,
    batch: Batch,
    progress: &ProgressBar,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = batch.len() as u64;
    let mut origins = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    let envelope = Envelope::new(Source::Import);
    for (origin, raw) in batch {
        match raw {
            Ok(raw) => {
                origins.push(origin);
                items.push((raw, envelope.clone()));
            }
            Err(error) => report.refused.push(Refused {
                path: origin,
                error,
            }),
        }
    }
    if !items.is_empty() {
        let results = archive
            .ingest_batch(&args.tenant, &items)
            .with_context(|| format!("cannot archive the batch starting with {}", origins[0]))?;
        for ((origin, (raw, _)), r) in origins.into_iter().zip(&items).zip(results) {
            match r {
                Ok(receipt) => {
                    if receipt.duplicate {
                        report.duplicates += 1;
                    } else {
                        report.imported += 1;
                    }
                    report.bytes += raw.len() as u64;
                    // Only --json lists every message; a human summary of a
                    // million-message import should not hold them all.
                    if args.json {
                        report.messages.push(Imported {
                            path: origin,
                            id: receipt.id.to_string(),
                            sha256: receipt.sha256_hex(),
                            duplicate: receipt.duplicate,
                        });
                    }
                }
                Err(e) => report.refused.push(Refused {
                    path: origin,
                    error: e.to_string(),
                }),
            }
        }
    }
    progress.inc(n);
    progress.set_message(format!(
        "{} new, {} duplicates, {} refused, {:.1} MB",
        report.imported,
        report.duplicates,
        report.refused.len(),
        mb(report.bytes)
    ));
    Ok(())
}

/// A spinner with a message count and rate, only when a person watches stderr.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {elapsed} {pos} messages ({rate}) {msg}")
    {
        pb.set_style(style.with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} msg/s", state.per_sec());
            },
        ));
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// The human summary.
fn summary(out: &mut impl Write, r: &Report, stopped: bool) -> anyhow::Result<()> {
    let archived = r.imported + r.duplicates;
    let secs = r.seconds.max(1e-6);
    writeln!(
        out,
        "{}imported {} ({:.2} MB in {:.2} s, {:.0} msg/s, {:.2} MB/s), duplicates {}, refused {}",
        if stopped { "STOPPED: " } else { "" },
        r.imported,
        mb(r.bytes),
        r.seconds,
        archived as f64 / secs,
        mb(r.bytes) / secs,
        r.duplicates,
        r.refused.len()
    )?;
    for f in &r.refused {
        writeln!(out, "  refused {}: {}", clean(&f.path), clean(&f.error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_mentions_every_refusal() {
        let r = Report {
            imported: 2,
            duplicates: 1,
            refused: vec![Refused {
                path: "a/b.eml".into(),
                error: "empty message".into(),
            }],
            seconds: 0.5,
            bytes: 2_000_000,
            ..Report::default()
        };
        let mut out = Vec::new();
        summary(&mut out, &r, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("imported 2 (2.00 MB in 0.50 s, 6 msg/s, 4.00 MB/s)"));
        assert!(text.contains("duplicates 1, refused 1"));
        assert!(text.contains("refused a/b.eml: empty message"));
    }
}
