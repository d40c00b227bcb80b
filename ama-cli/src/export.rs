//! `ama export` and `ama restore`: a tenant, a query result or a list of
//! messages out of the archive, as an mbox or zip file, or back into an IMAP
//! folder. Both go through the engine's one export path
//! ([`ama_core::Archive::export_to`]), which checks access, reads every
//! message integrity-checked and records the whole run as one audit entry.
//!
//! The export file is plaintext mail, so:
//!
//! * it is written to `FILE.partial` beside `FILE` (mode 0600), fsync'ed,
//!   and only then renamed to `FILE`: an interrupted or failed export never
//!   looks complete, and its partial file is removed;
//! * an existing `FILE` is never overwritten without `--force`;
//! * a destination inside the data directory is refused: nothing in
//!   plaintext may rest there;
//! * Ctrl-C or SIGTERM stops the export after the current message and
//!   removes the partial file (a second Ctrl-C exits at once).
//!
//! The summary names the SHA-256 of the finished file, so whoever receives
//! it can check it arrived unchanged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ama_core::export::{ExportedMessage, MboxWriter, ZipExport};
use ama_core::{ExportAction, ExportSink, ExportSummary, MessageId, Selection, TenantId};
use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Usage;
use crate::cli::Global;
use crate::imap::{ImapTarget, ImapUrl};
use crate::output::clean;
use crate::unlock;

/// Which messages (`--query` or `--ids`; neither means every message).
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only the messages this query finds (docs/SEARCH.md), e.g.
    /// "from:alice@acme.test after:2024-01-01". Default: every message.
    #[arg(
        long,
        value_name = "QUERY",
        allow_hyphen_values = true,
        conflicts_with = "ids"
    )]
    pub query: Option<String>,
    /// Exactly these messages: archive ids as printed by import and search
    /// (several after one --ids, or --ids repeated).
    #[arg(long, value_name = "ARCHIVE_ID", num_args = 1..)]
    pub ids: Vec<MessageId>,
    /// What the legal hold of this name covers (auditors).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["query", "ids"])]
    pub hold: Option<String>,
}

/// Export file format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// One mboxrd file.
    Mbox,
    /// A zip of .eml files with manifest.csv and manifest.json.
    Zip,
}

/// `ama export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The tenant to export from.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// Which messages.
    #[command(flatten)]
    pub select: SelectArgs,
    /// File format.
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// The file to write (written as FILE.partial, renamed when complete).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite FILE (and a left-over FILE.partial) if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ama restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The tenant to restore from.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// Which messages.
    #[command(flatten)]
    pub select: SelectArgs,
    /// The target folder: imaps://USER@HOST[:PORT]/FOLDER (imap:// only to
    /// a loopback address). The password is read from AMA_IMAP_PASSWORD.
    /// The folder is created if it does not exist.
    #[arg(long, value_name = "URL")]
    pub imap: ImapUrl,
    /// Also trust this CA certificate (PEM) for the server's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub imap_ca: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The selection, with the query checked before anything is opened (a typo
/// is a usage error, exit code 2).
fn selection(s: &SelectArgs) -> anyhow::Result<Selection> {
    if !s.ids.is_empty() {
        return Ok(Selection::Ids(s.ids.clone()));
    }
    if let Some(h) = &s.hold {
        return Ok(Selection::Hold(h.clone()));
    }
    match &s.query {
        Some(q) => {
            if let Err(e) = ama_core::query::parse(q) {
                return Err(Usage(format!("bad query: {e}")).into());
            }
            Ok(Selection::Query(q.clone()))
        }
        None => Ok(Selection::All),
    }
}

/// Set by Ctrl-C or SIGTERM; the sinks check it before each message. A
/// second signal ends the program at once (the `.partial` name still says
/// the file is incomplete).
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            for _ in 0..2 {
                let sigterm = async {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = sigterm => {}
                }
                if set.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
            }
        });
    });
    flag
}

fn interrupted() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "interrupted (Ctrl-C or SIGTERM)",
    )
}

/// A bar with the message count, only when a person watches stderr.
fn progress_bar() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed} [{bar:30}] {pos}/{len} messages ({per_sec}) {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Wraps a sink with the progress bar and the interrupt check.
struct Watched<'a> {
    inner: &'a mut dyn ExportSink,
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
}

impl ExportSink for Watched<'_> {
    fn message(&mut self, m: &ExportedMessage<'_>) -> io::Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        if self.bar.length() != Some(m.selected) {
            self.bar.set_length(m.selected);
        }
        self.inner.message(m)?;
        self.bar.inc(1);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        self.inner.finish()
    }
}

/// Counts and hashes what passes through to the file.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `FILE.partial`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Refuses a destination inside the data directory (plaintext at rest).
fn refuse_inside_data_dir(data: &Path, out: &Path) -> anyhow::Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().with_context(|| {
        format!(
            "cannot write {}: its directory does not exist",
            out.display()
        )
    })?;
    if let Ok(data) = data.canonicalize()
        && parent.starts_with(&data)
    {
        return Err(Usage(format!(
            "{} is inside the data directory {}: an export is plaintext mail and must not rest there",
            out.display(),
            data.display()
        ))
        .into());
    }
    Ok(())
}

/// Creates `FILE.partial` (mode 0600). A left-over one is an error unless
/// `force`.
fn create_partial(partial: &Path, force: bool) -> anyhow::Result<File> {
    if force {
        match std::fs::remove_file(partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", partial.display()));
            }
        }
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                anyhow::Error::from(Usage(format!(
                    "{} exists (left by an interrupted export?): remove it or use --force",
                    partial.display()
                )))
            } else {
                anyhow::Error::from(e).context(format!("cannot create {}", partial.display()))
            }
        })
}

/// Moves the finished `partial` to `out` (never over an existing file
/// unless `force`) and makes the rename durable.
fn publish(partial: &Path, out: &Path, force: bool) -> anyhow::Result<()> {
    if force {
        std::fs::rename(partial, out)
    } else {
        // A hard link fails if `out` appeared meanwhile: no silent overwrite.
        std::fs::hard_link(partial, out).and_then(|()| std::fs::remove_file(partial))
    }
    .with_context(|| format!("cannot move {} to {}", partial.display(), out.display()))?;
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The outcome of `ama export`, as printed by `--json`.
#[derive(Debug, Serialize)]
struct ExportReport {
    tenant: String,
    format: &'static str,
    out: String,
    selection: String,
    selected: u64,
    exported: u64,
    /// Raw bytes of the exported messages.
    bytes: u64,
    /// Size of the written file.
    file_bytes: u64,
    sha256: String,
    seconds: f64,
    /// Selected messages deleted while the export ran (not in the file).
    vanished: Vec<String>,
    /// mbox: messages without a final line break, to which one was added.
    newline_added: Vec<String>,
}

fn ids(v: &[MessageId]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// `ama export`
pub fn export(g: &Global, args: &ExportArgs) -> anyhow::Result<()> {
    let selection = selection(&args.select)?;
    let out = &args.out;
    if out.exists() && !args.force {
        return Err(Usage(format!(
            "{} exists: choose another file or use --force to overwrite it",
            out.display()
        ))
        .into());
    }
    refuse_inside_data_dir(&g.data, out)?;
    let archive = unlock::open(g)?;
    archive.tenant(&args.tenant)?;
    let who = unlock::operator(&args.tenant);

    let partial = partial_path(out);
    let file = create_partial(&partial, args.force)?;
    let stop = interrupt_flag();
    let start = Instant::now();
    let bar = progress_bar();
    let mut writer = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let (format, destination) = match args.format {
        FormatArg::Mbox => ("mbox", format!("mbox file {}", out.display())),
        FormatArg::Zip => ("zip", format!("zip file {}", out.display())),
    };
    let result = (|| -> anyhow::Result<(ExportSummary, Vec<MessageId>)> {
        let run = |inner: &mut dyn ExportSink| {
            let mut sink = Watched {
                inner,
                bar: bar.clone(),
                stop: stop.clone(),
            };
            archive.export_to(
                &who,
                &selection,
                ExportAction::Export,
                &destination,
                &mut sink,
            )
        };
        let (summary, newline_added) = match args.format {
            FormatArg::Mbox => {
                let mut sink = MboxWriter::new(&mut writer);
                let summary = run(&mut sink)?;
                (summary, sink.newline_added().to_vec())
            }
            FormatArg::Zip => {
                let mut sink = ZipExport::new(&mut writer, &args.tenant, &selection);
                (run(&mut sink)?, Vec::new())
            }
        };
        writer.flush()?;
        Ok((summary, newline_added))
    })();
    bar.finish_and_clear();
    let (summary, newline_added) = match result.and_then(|r| {
        let Hashing { inner, .. } = &mut writer;
        inner.get_ref().sync_all()?;
        Ok(r)
    }) {
        Ok(r) => r,
        Err(e) => {
            drop(writer);
            let _ = std::fs::remove_file(&partial);
            return Err(e.context(format!(
                "export failed; {} was not written (the partial file was removed)",
                out.display()
            )));
        }
    };
    let sha256 = hex(&writer.hash.clone().finalize());
    let file_bytes = writer.bytes;
    drop(writer);
    publish(&partial, out, args.force)?;

    let report = ExportReport {
        tenant: args.tenant.to_string(),
        format,
        out: out.display().to_string(),
        selection: selection.to_string(),
        selected: summary.selected,
        exported: summary.exported,
        bytes: summary.bytes,
        file_bytes,
        sha256,
        seconds: start.elapsed().as_secs_f64(),
        vanished: ids(&summary.vanished),
        newline_added: ids(&newline_added),
    };
    let mut stdout = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &report)?;
        stdout.write_all(b"\n")?;
    } else {
        export_summary(&mut stdout, &report)?;
    }
    stdout.flush()?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// The human summary of an export.
fn export_summary(out: &mut impl Write, r: &ExportReport) -> io::Result<()> {
    writeln!(
        out,
        "exported {} messages ({:.2} MB) of tenant {} to {} ({}, {:.2} MB) in {:.2} s",
        r.exported,
        mb(r.bytes),
        r.tenant,
        clean(&r.out),
        r.format,
        mb(r.file_bytes),
        r.seconds
    )?;
    writeln!(out, "sha256 {}  {}", r.sha256, clean(&r.out))?;
    if !r.newline_added.is_empty() {
        writeln!(
            out,
            "note: {} messages do not end with a line break; the mbox format forced one after each (the zip format keeps them exact): {}",
            r.newline_added.len(),
            some_ids(&r.newline_added)
        )?;
    }
    if !r.vanished.is_empty() {
        writeln!(
            out,
            "note: {} selected messages were deleted while the export ran and are not in it: {}",
            r.vanished.len(),
            some_ids(&r.vanished)
        )?;
    }
    Ok(())
}

/// At most [`SHOWN_IDS`] ids for a person; `--json` lists them all.
fn some_ids(ids: &[String]) -> String {
    let mut s = ids
        .iter()
        .take(SHOWN_IDS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    if ids.len() > SHOWN_IDS {
        s.push_str(&format!(
            " … and {} more (--json lists all)",
            ids.len() - SHOWN_IDS
        ));
    }
    s
}

/// Ids listed in a human summary line.
const SHOWN_IDS: usize = 10;

/// Appends each message to the IMAP folder.
struct ImapSink<'a> {
    target: &'a mut ImapTarget,
}

impl ExportSink for ImapSink<'_> {
    fn message(&mut self, m: &ExportedMessage<'_>) -> io::Result<()> {
        self.target
            .append(m.raw, Some(m.info.meta.date))
            .map_err(|e| io::Error::other(format!("APPEND of message {} failed: {e}", m.info.id)))
    }
}

/// The outcome of `ama restore`, as printed by `--json`.
#[derive(Debug, Serialize)]
struct RestoreReport {
    tenant: String,
    imap: String,
    folder_created: bool,
    selection: String,
    selected: u64,
    restored: u64,
    bytes: u64,
    seconds: f64,
    vanished: Vec<String>,
}

/// `ama restore`
pub fn restore(g: &Global, args: &RestoreArgs) -> anyhow::Result<()> {
    let selection = selection(&args.select)?;
    let password = crate::imap::password()?;
    let archive = unlock::open(g)?;
    archive.tenant(&args.tenant)?;
    let who = unlock::operator(&args.tenant);
    let url = args.imap.to_string();
    let mut target = ImapTarget::connect(&args.imap, &password, args.imap_ca.as_deref())?;
    drop(password);
    let folder_created = target.created;

    let stop = interrupt_flag();
    let start = Instant::now();
    let bar = progress_bar();
    let result = {
        let mut imap = ImapSink {
            target: &mut target,
        };
        let mut sink = Watched {
            inner: &mut imap,
            bar: bar.clone(),
            stop,
        };
        archive.export_to(&who, &selection, ExportAction::Restore, &url, &mut sink)
    };
    bar.finish_and_clear();
    target.logout();
    let summary = result.with_context(|| format!("restore to {url} stopped"))?;

    let report = RestoreReport {
        tenant: args.tenant.to_string(),
        imap: url,
        folder_created,
        selection: selection.to_string(),
        selected: summary.selected,
        restored: summary.exported,
        bytes: summary.bytes,
        seconds: start.elapsed().as_secs_f64(),
        vanished: ids(&summary.vanished),
    };
    let mut stdout = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &report)?;
        stdout.write_all(b"\n")?;
    } else {
        writeln!(
            stdout,
            "restored {} messages ({:.2} MB) of tenant {} to {}{} in {:.2} s",
            report.restored,
            mb(report.bytes),
            report.tenant,
            clean(&report.imap),
            if folder_created {
                " (folder created)"
            } else {
                ""
            },
            report.seconds
        )?;
        if !report.vanished.is_empty() {
            writeln!(
                stdout,
                "note: {} selected messages were deleted meanwhile and were not restored: {}",
                report.vanished.len(),
                some_ids(&report.vanished)
            )?;
        }
    }
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_name_is_beside_the_file() {
        assert_eq!(
            partial_path(Path::new("/x/y/out.zip")),
            PathBuf::from("/x/y/out.zip.partial")
        );
        assert_eq!(
            partial_path(Path::new("a.mbox")),
            PathBuf::from("a.mbox.partial")
        );
    }

    #[test]
    fn summary_names_the_odd_messages() {
        let r = ExportReport {
            tenant: "acme".into(),
            format: "mbox",
            out: "a.mbox".into(),
            selection: "all messages".into(),
            selected: 3,
            exported: 2,
            bytes: 2_000_000,
            file_bytes: 2_000_100,
            sha256: "ab".repeat(32),
            seconds: 0.5,
            vanished: vec!["V1".into()],
            newline_added: vec!["N1".into()],
        };
        let mut out = Vec::new();
        export_summary(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("exported 2 messages (2.00 MB) of tenant acme to a.mbox (mbox"));
        assert!(text.contains(&format!("sha256 {}  a.mbox", "ab".repeat(32))));
        assert!(text.contains("line break") && text.contains("N1"));
        assert!(text.contains("deleted") && text.contains("V1"));
    }

    #[test]
    fn long_id_lists_are_cut_for_people() {
        let ids: Vec<String> = (0..25).map(|i| format!("ID{i}")).collect();
        let s = some_ids(&ids);
        assert!(s.starts_with("ID0 ID1 "), "{s}");
        assert!(s.contains("ID9 … and 15 more"), "{s}");
        assert!(!s.contains("ID10"), "{s}");
        assert_eq!(some_ids(&ids[..2]), "ID0 ID1");
    }
}
