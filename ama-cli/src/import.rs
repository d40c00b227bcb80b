//! `ama import`: files, Maildirs and mbox files into a tenant, through the
//! engine's shared import pipeline ([`ama_core::import::import_paths`]: a
//! reader thread overlapping with batched, durable ingest).
//!
//! A message that cannot be read or is not mail is *refused*: reported with
//! its path and reason, and the import goes on. A failure of the archive
//! itself (disk, catalog) stops the import; every batch before it is
//! durable, and the summary says how far it got.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ama_core::import::{ImportEvent, ImportOptions, import_paths};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::cli::{Global, ImportArgs};
use crate::output::clean;
use crate::unlock;

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
        if let Err(e) = std::fs::metadata(p)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            anyhow::bail!("{}: no such file or directory", p.display())
        }
    }
    let archive = unlock::open(g)?;
    archive.tenant(&args.tenant)?;

    let start = Instant::now();
    let progress = progress_bar();
    let mut report = Report::default();
    let options = ImportOptions {
        batch: args.batch as usize,
        ..ImportOptions::default()
    };
    let mut seen = 0u64;
    let result = import_paths(&archive, &args.tenant, &args.paths, &options, |ev| {
        match ev {
            ImportEvent::Archived {
                origin,
                receipt,
                size,
            } => {
                if receipt.duplicate {
                    report.duplicates += 1;
                } else {
                    report.imported += 1;
                }
                report.bytes += size;
                // Only --json lists every message; a human summary of a
                // million-message import should not hold them all.
                if args.json {
                    report.messages.push(Imported {
                        path: origin.to_string(),
                        id: receipt.id.to_string(),
                        sha256: receipt.sha256_hex(),
                        duplicate: receipt.duplicate,
                    });
                }
            }
            ImportEvent::Refused { origin, error } => report.refused.push(Refused {
                path: origin.to_string(),
                error,
            }),
        }
        seen += 1;
        progress.set_position(seen);
        if seen.is_multiple_of(100) {
            progress.set_message(format!(
                "{} new, {} duplicates, {} refused, {:.1} MB",
                report.imported,
                report.duplicates,
                report.refused.len(),
                mb(report.bytes)
            ));
        }
        ControlFlow::Continue(())
    })
    .map_err(anyhow::Error::from);
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
    result.map(|_| ()).with_context(|| {
        format!(
            "import stopped after archiving {imported} new messages and {duplicates} duplicates"
        )
    })
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
