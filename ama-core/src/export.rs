//! Export: a tenant, a query result or a list of messages, handed out as the
//! exact bytes that were ingested — as an **mbox** file, as a **zip of
//! `.eml` files** with a manifest, or to any [`ExportSink`] (the CLI's IMAP
//! restore is one).
//!
//! Why it is shaped this way:
//!
//! * **One audited action.** Whatever the format or destination, the messages
//!   are selected, read and handed over by [`Archive::export_to`], which
//!   applies the principal's access rules (an end user exports only mail he
//!   may see; an admin without the auditor role is refused) and records the
//!   whole export as one audit entry (action `export` or `restore`): the
//!   selection, the destination, the message ids handed over and the
//!   outcome, also when it is refused or fails. The listing and the
//!   per-message reads inside use the engine's unaudited internals, so an
//!   export is exactly one entry (`tests/audit.rs` counts).
//! * **Bounded memory.** A query's results are read a page of metadata at a
//!   time (oldest first) and each message's bytes one at a time: at most one
//!   message is held. What grows with the export is small: the ids handed
//!   over (for the audit entry and to skip repeats, 16 bytes each plus set
//!   overhead) and, for a zip, one manifest row per message (id, digest,
//!   date, addresses, subject) until the manifest is written at the end.
//! * **A live archive.** Mail ingested or deleted while an export runs may
//!   or may not be in it. If the results shift under the export (the count
//!   changes, or pages overlap), the query is listed again and what was
//!   skipped is handed over; nothing is handed over twice.
//! * **Byte-exact and checked.** Every message is read through the same path
//!   as `get_raw`: the blob's AES-GCM tag and the SHA-256 recorded at ingest
//!   are checked before a byte is written.
//! * **Nothing at rest.** The engine writes only to the caller's writer: no
//!   temporary file, least of all in the data directory. Where the writer
//!   goes is the caller's choice (the CLI writes `FILE.partial` beside the
//!   destination and renames it on success).
//!
//! ## The mbox format written ([`MboxWriter`])
//!
//! mboxrd: each message starts with a separator line
//! `From <envelope sender> <date>\n`, where the sender is the first
//! delivery's `MAIL FROM` (or `MAILER-DAEMON` when there is none or it is not
//! a plain ASCII address) and the date is the message date ([`crate::MessageMeta::date`]:
//! the `Date` header, else the reception time) in UTC, in `asctime` form
//! (`Thu Oct  3 10:30:00 2024`). Every line of the message matching
//! `^>*From ` gets one more `>`. After the message comes one empty line
//! (`\n`). A reader that undoes this (the mboxrd rule: drop one `>` from every
//! line matching `^>+From `, and drop the one `\n` before the next separator)
//! gets the exact ingested bytes back; that is what `ama import` does, and
//! what Python's `mailbox.mbox` does up to the unquoting (it returns the
//! quoted lines as they are; the caller drops the `>`).
//!
//! One case cannot be represented in any mbox: a message whose last line has
//! no line end (its bytes do not end in `\n`). The separator must start a
//! line, so the exporter writes a `\n` after such a message before the empty
//! line; a reader gets the message back with that one `\n` appended. The
//! exporter reports these messages in [`ExportSummary::newline_added`] (and
//! `ama export` prints them), so the difference is known and explainable. The
//! zip format has no such limit: its `.eml` files are always byte-exact.
//!
//! ## The zip format written ([`ZipExport`])
//!
//! `messages/<id>.eml` for every message (deflate; the entry's time is the
//! message date), then `manifest.csv` and `manifest.json`, each listing for
//! every message its id, SHA-256 (hex), date (RFC 3339, UTC), from, to,
//! subject, size in bytes and path in the zip. The zip is written as a
//! stream (data descriptors, ZIP64 where needed), so the writer need not be
//! seekable. In `manifest.csv` (RFC 4180, UTF-8) a cell that would start with
//! `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with `'`, so a
//! spreadsheet never runs a subject as a formula; `manifest.json` holds the
//! values unchanged.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::access::Principal;
use crate::archive::{Archive, SearchOptions};
use crate::audit::{AuditAction, AuditActor, Outcome as AuditOutcome};
use crate::crypto;
use crate::error::{Error, Result};
use crate::index::Sort;
use crate::message::{Mailbox, MessageId, MessageInfo};
use crate::tenant::TenantId;

/// Ids fetched per search page while resolving a selection.
const ID_PAGE: usize = 1_000;
/// How often a query's results are listed again when the index changed
/// during an export (the later passes hand over only what was skipped).
const LISTING_PASSES: usize = 3;
/// Buffer between the mbox quoting and the caller's writer.
const MBOX_BUFFER: usize = 64 * 1024;

/// Which messages to export.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selection {
    /// Every message of the principal's tenant that the principal may see.
    All,
    /// The messages a query finds (the language of `docs/SEARCH.md`; an
    /// empty query finds every message), oldest first.
    Query(String),
    /// Exactly these messages, in this order (repeats are dropped). Each must
    /// exist and be visible to the principal, or the export fails with
    /// [`Error::NotFound`] before anything is written.
    Ids(Vec<MessageId>),
    /// What the legal hold of this name covers now (auditors), in id order.
    Hold(String),
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selection::All => f.write_str("all messages"),
            Selection::Query(q) => write!(f, "query {q:?}"),
            Selection::Ids(ids) => write!(f, "{} listed message ids", ids.len()),
            Selection::Hold(h) => write!(f, "legal hold {h:?}"),
        }
    }
}

/// The file formats of [`Archive::export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// One mboxrd file (see the module docs).
    Mbox,
    /// A zip of `.eml` files with `manifest.csv` and `manifest.json`.
    Zip,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Mbox => "mbox",
            ExportFormat::Zip => "zip",
        })
    }
}

/// What an export is for; recorded as the audit entry's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportAction {
    /// Messages handed out as files (mbox, zip) or a stream.
    Export,
    /// Messages put back into a user's mailbox (IMAP restore).
    Restore,
}

impl fmt::Display for ExportAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportAction::Export => "export",
            ExportAction::Restore => "restore",
        })
    }
}

/// Why an export failed, apart from the engine's own errors (access, query,
/// a message that fails its integrity check), which keep their own
/// [`Error`] variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Writing to the destination failed (disk full, closed pipe, a server
    /// that refused a message). What was written before is incomplete and
    /// must not be taken for a finished export.
    #[error("export destination failed after {exported} of {selected} messages")]
    Destination {
        /// Messages handed over completely before the failure.
        exported: u64,
        /// Messages selected.
        selected: u64,
        /// The destination's error.
        #[source]
        source: io::Error,
    },
}

/// One message handed to an [`ExportSink`].
#[derive(Debug)]
#[non_exhaustive]
pub struct ExportedMessage<'a> {
    /// Metadata, as the principal may see it.
    pub info: &'a MessageInfo,
    /// The exact ingested bytes (SHA-256 already checked against `info.sha256`).
    pub raw: &'a [u8],
    /// 0-based position in the export (messages handed over before this one).
    pub position: u64,
    /// Messages selected in all (for a query: as counted when the export
    /// started), for progress reports.
    pub selected: u64,
}

/// Where an export's messages go. Implemented by [`MboxWriter`] and
/// [`ZipExport`]; frontends implement it for other destinations (the CLI's
/// IMAP restore).
///
/// Contract: [`ExportSink::message`] is called once per message, in the
/// selection's order, and must have handed the message over completely when
/// it returns `Ok`; [`ExportSink::finish`] is called once after the last
/// message, only if every message succeeded, and must make the result
/// complete (flush, write trailers). After any error neither is called
/// again, and the destination must be treated as incomplete.
pub trait ExportSink {
    /// Hands over one message.
    fn message(&mut self, m: &ExportedMessage<'_>) -> io::Result<()>;
    /// Completes the destination after the last message.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSummary {
    /// Messages selected: handed over plus vanished.
    pub selected: u64,
    /// Messages handed over.
    pub exported: u64,
    /// Raw bytes handed over (the ingested sizes).
    pub bytes: u64,
    /// Selected messages deleted before they could be read (retention or a
    /// deletion running at the same time); not exported.
    pub vanished: Vec<MessageId>,
    /// mbox only: messages whose bytes do not end in `\n`, to which the mbox
    /// format forced one `\n` (see the module docs).
    pub newline_added: Vec<MessageId>,
}

/// How an export ended, for the audit entry.
enum Outcome<'a> {
    Denied(&'a Error),
    Failed(&'a Error),
    Completed,
}

impl Archive {
    /// Exports `selection` as `format` into `out`, as `who`. `destination`
    /// names where `out` goes (a file name), for the audit log.
    ///
    /// `out` receives the export as a stream and is never read or sought;
    /// give it a buffered file or socket. On error the bytes already
    /// written are an incomplete export.
    pub fn export<W: Write>(
        &self,
        who: &Principal,
        selection: &Selection,
        format: ExportFormat,
        destination: &str,
        out: W,
    ) -> Result<ExportSummary> {
        let detail = format!("{format} to {destination}");
        match format {
            ExportFormat::Mbox => {
                let mut sink = MboxWriter::new(out);
                let mut summary =
                    self.export_to(who, selection, ExportAction::Export, &detail, &mut sink)?;
                summary.newline_added = std::mem::take(&mut sink.newline_added);
                Ok(summary)
            }
            ExportFormat::Zip => {
                let mut sink = ZipExport::new(out, who.tenant(), selection);
                self.export_to(who, selection, ExportAction::Export, &detail, &mut sink)
            }
        }
    }

    /// Exports `selection` as `who` into any [`ExportSink`]: the one path
    /// every export and restore takes. Checks access, resolves the selection
    /// to ids, reads each message (integrity-checked) and hands it to
    /// `sink`, then records one audit entry (`action`) with `destination`
    /// (never a password), the ids handed over and the outcome. A refused
    /// principal is recorded too.
    pub fn export_to(
        &self,
        who: &Principal,
        selection: &Selection,
        action: ExportAction,
        destination: &str,
        sink: &mut dyn ExportSink,
    ) -> Result<ExportSummary> {
        let record = |done: &[MessageId], outcome| {
            self.record_export(who, action, selection, destination, done, outcome)
        };
        if let Err(e) = who.mail_scope() {
            record(&[], Outcome::Denied(&e))?;
            return Err(e);
        }
        let mut done = Vec::new();
        let result = self.export_inner(who, selection, sink, &mut done);
        match &result {
            Ok(_) => record(&done, Outcome::Completed)?,
            Err(e) => {
                // The export's own error matters more than a failing audit
                // write; the failed export is not handed out either way.
                let _ = record(&done, Outcome::Failed(e));
            }
        }
        result
    }

    fn export_inner(
        &self,
        who: &Principal,
        selection: &Selection,
        sink: &mut dyn ExportSink,
        done: &mut Vec<MessageId>,
    ) -> Result<ExportSummary> {
        let state = self.state(who.tenant())?;
        let mut summary = ExportSummary::default();
        let mut hand = |info: &MessageInfo, selected: u64, summary: &mut ExportSummary| {
            let raw = match self.get_raw_in(&state, who, info.id) {
                Ok(raw) => raw,
                Err(Error::NotFound(id)) => {
                    summary.vanished.push(id);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let m = ExportedMessage {
                info,
                raw: &raw,
                position: summary.exported,
                selected,
            };
            sink.message(&m)
                .map_err(|source| ExportError::Destination {
                    exported: summary.exported,
                    selected,
                    source,
                })?;
            summary.exported += 1;
            summary.bytes += raw.len() as u64;
            done.push(info.id);
            Ok::<(), Error>(())
        };
        match selection {
            Selection::Ids(_) | Selection::Hold(_) => {
                let ids = match selection {
                    Selection::Hold(name) => self.hold_members(who, name)?,
                    Selection::Ids(ids) => self.checked_ids(who, ids)?,
                    _ => Vec::new(),
                };
                summary.selected = ids.len() as u64;
                let state = self.state(who.tenant())?;
                for id in ids {
                    // Unaudited read: the export records one entry for all.
                    match self.get_in(&state, who, id) {
                        Ok(info) => hand(&info, summary.selected, &mut summary)?,
                        Err(Error::NotFound(_)) => summary.vanished.push(id),
                        Err(e) => return Err(e),
                    }
                }
            }
            Selection::All | Selection::Query(_) => {
                let query = match selection {
                    Selection::Query(q) => q.as_str(),
                    _ => "",
                };
                crate::query::parse(query)?;
                let mut seen = HashSet::new();
                let mut estimate = None;
                for _ in 0..LISTING_PASSES {
                    let changed = self.list_pages(who, query, |page_total, hits| {
                        let selected = *estimate.get_or_insert(page_total as u64);
                        for info in hits {
                            if seen.insert(info.id) {
                                hand(info, selected, &mut summary)?;
                            }
                        }
                        Ok(())
                    })?;
                    if !changed {
                        break;
                    }
                    // The index changed during the pass (mail ingested or
                    // deleted meanwhile): list again and hand over what the
                    // shifted pages skipped.
                }
                summary.selected = summary.exported + summary.vanished.len() as u64;
            }
        }
        sink.finish().map_err(|source| ExportError::Destination {
            exported: summary.exported,
            selected: summary.selected,
            source,
        })?;
        Ok(summary)
    }

    /// The listed ids without repeats, each checked to exist and be visible
    /// to `who` before anything is written.
    fn checked_ids(&self, who: &Principal, ids: &[MessageId]) -> Result<Vec<MessageId>> {
        let state = self.state(who.tenant())?;
        let mut seen = HashSet::with_capacity(ids.len());
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if seen.insert(*id) {
                self.get_in(&state, who, *id)?;
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// One pass over the query's results, oldest first, a page at a time:
    /// `page(total, hits)` for each page. Returns whether the index changed
    /// during the pass (the total moved, or pages overlapped), in which case
    /// a hit may have been skipped.
    // Pages are read without their own audit entries: the export records one.
    fn list_pages(
        &self,
        who: &Principal,
        query: &str,
        mut page: impl FnMut(usize, &[MessageInfo]) -> Result<()>,
    ) -> Result<bool> {
        let state = self.state(who.tenant())?;
        let mut offset = 0;
        let mut first_total = None;
        let mut changed = false;
        let mut pass_seen = HashSet::new();
        loop {
            if offset > crate::archive::MAX_OFFSET {
                return Err(Error::InvalidArgument(format!(
                    "the selection has more than {} messages; export it in parts (narrow the query, e.g. by date)",
                    crate::archive::MAX_OFFSET
                )));
            }
            let results = self.search_in(
                &state,
                who,
                query,
                &SearchOptions {
                    limit: ID_PAGE,
                    offset,
                    sort: Sort::Oldest,
                },
            )?;
            let total = *first_total.get_or_insert(results.total);
            changed |= results.total != total;
            for hit in &results.hits {
                changed |= !pass_seen.insert(hit.id);
            }
            page(total, &results.hits)?;
            offset += ID_PAGE;
            if offset >= results.total {
                return Ok(changed);
            }
        }
    }

    /// Records the export as one audit entry: who, what was selected, where
    /// it went, which messages were handed over, how it ended.
    fn record_export(
        &self,
        who: &Principal,
        action: ExportAction,
        selection: &Selection,
        destination: &str,
        messages: &[MessageId],
        outcome: Outcome<'_>,
    ) -> Result<()> {
        let outcome = match outcome {
            Outcome::Denied(e) => AuditOutcome::Denied(e.to_string()),
            Outcome::Failed(e) => {
                AuditOutcome::Failed(format!("after {} messages: {e}", messages.len()))
            }
            Outcome::Completed => AuditOutcome::Success,
        };
        let action = match action {
            ExportAction::Export => AuditAction::Export,
            ExportAction::Restore => AuditAction::Restore,
        };
        let detail = format!("{selection} to {destination}; {} messages", messages.len());
        let state = self.state(who.tenant())?;
        self.audit_now(
            &state,
            AuditActor::of(who),
            action,
            detail,
            messages,
            outcome,
        )
    }
}

// ----- the writer gate --------------------------------------------------------

/// Passes writes to the caller's writer until the export fails or is dropped
/// unfinished; from then on writes are discarded. A zip writer finishes its
/// archive when dropped and a `BufWriter` flushes: neither may make a failed
/// export look complete, so after a failure nothing more reaches `W`.
struct Gate<W: Write> {
    inner: W,
    open: Arc<AtomicBool>,
}

impl<W: Write> Gate<W> {
    fn new(inner: W) -> (Self, Arc<AtomicBool>) {
        let open = Arc::new(AtomicBool::new(true));
        (
            Gate {
                inner,
                open: open.clone(),
            },
            open,
        )
    }

    fn guard<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if r.is_err() {
            self.open.store(false, Ordering::Relaxed);
        }
        r
    }
}

impl<W: Write> Write for Gate<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.open.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.guard(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.open.load(Ordering::Relaxed) {
            return Ok(());
        }
        let r = self.inner.flush();
        self.guard(r)
    }
}

// ----- mbox -----------------------------------------------------------------

/// Writes messages as one mboxrd stream (see the module docs for the exact
/// format and the one case it cannot represent).
///
/// Dropped before [`ExportSink::finish`] succeeded (a failed export), it
/// writes nothing more to `W`.
pub struct MboxWriter<W: Write> {
    out: io::BufWriter<Gate<W>>,
    open: Arc<AtomicBool>,
    finished: bool,
    newline_added: Vec<MessageId>,
}

impl<W: Write> Drop for MboxWriter<W> {
    fn drop(&mut self) {
        if !self.finished {
            self.open.store(false, Ordering::Relaxed);
        }
    }
}

impl<W: Write> fmt::Debug for MboxWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MboxWriter").finish_non_exhaustive()
    }
}

impl<W: Write> MboxWriter<W> {
    /// An mbox stream into `out`.
    pub fn new(out: W) -> Self {
        let (gate, open) = Gate::new(out);
        MboxWriter {
            out: io::BufWriter::with_capacity(MBOX_BUFFER, gate),
            open,
            finished: false,
            newline_added: Vec::new(),
        }
    }

    /// Messages to which a final `\n` was added so far.
    pub fn newline_added(&self) -> &[MessageId] {
        &self.newline_added
    }
}

impl<W: Write> ExportSink for MboxWriter<W> {
    fn message(&mut self, m: &ExportedMessage<'_>) -> io::Result<()> {
        let sender = m
            .info
            .deliveries
            .first()
            .and_then(|d| d.mail_from.as_deref())
            .filter(|s| is_plain_sender(s))
            .unwrap_or("MAILER-DAEMON");
        writeln!(self.out, "From {sender} {}", asctime(m.info.meta.date))?;
        for line in m.raw.split_inclusive(|&b| b == b'\n') {
            if is_from_line(line) {
                self.out.write_all(b">")?;
            }
            self.out.write_all(line)?;
        }
        if !m.raw.ends_with(b"\n") {
            self.out.write_all(b"\n")?;
            self.newline_added.push(m.info.id);
        }
        self.out.write_all(b"\n")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.finished = true;
        Ok(())
    }
}

/// Whether `line` matches `^>*From ` (and so gets one more `>`).
fn is_from_line(line: &[u8]) -> bool {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    line[quotes..].starts_with(b"From ")
}

/// An envelope sender that can stand in a `From ` line: printable ASCII, no
/// spaces, not empty, not absurdly long.
fn is_plain_sender(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// `Thu Oct  3 10:30:00 2024` (UTC), the date form of mbox separator lines.
/// Dates outside the years 1000-9999 (a broken `Date` header) are written as
/// the Unix epoch.
fn asctime(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .filter(|t| (1000..=9999).contains(&t.year()))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[t.weekday().number_days_from_monday() as usize],
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

// ----- zip ------------------------------------------------------------------

/// What the manifest keeps per message until it is written at the end:
/// compact (about 120 bytes plus the address and subject text), because a
/// zip export holds one per message.
#[derive(Debug, Clone)]
struct Row {
    id: MessageId,
    sha256: [u8; 32],
    date: i64,
    size: u64,
    from: Box<str>,
    to: Box<str>,
    subject: Box<str>,
}

/// One row as written to `manifest.csv` and `manifest.json`; made for one
/// row at a time while the manifests are streamed out.
#[derive(Debug, Serialize)]
struct ManifestRow<'a> {
    id: String,
    sha256: String,
    date: String,
    from: &'a str,
    to: &'a str,
    subject: &'a str,
    size: u64,
    path: String,
}

impl Row {
    fn manifest(&self) -> ManifestRow<'_> {
        ManifestRow {
            id: self.id.to_string(),
            sha256: crypto::hex(&self.sha256),
            date: rfc3339(self.date),
            from: &self.from,
            to: &self.to,
            subject: &self.subject,
            size: self.size,
            path: entry_path(self.id),
        }
    }
}

/// `messages/<id>.eml`.
fn entry_path(id: MessageId) -> String {
    format!("messages/{id}.eml")
}

/// The rows, serialized one at a time (no manifest-sized buffer).
struct Rows<'a>(&'a [Row]);

impl Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&r.manifest())?;
        }
        seq.end()
    }
}

/// `manifest.json`.
#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    version: u32,
    tenant: &'a str,
    selection: &'a str,
    exported_at: String,
    messages: Rows<'a>,
}

/// Writes messages as a zip of `messages/<id>.eml` files followed by
/// `manifest.csv` and `manifest.json` (see the module docs). The zip is
/// streamed: the writer needs no `Seek`.
///
/// Dropped before [`ExportSink::finish`] succeeded (a failed export), it
/// writes nothing more to `W`: no central directory, so the partial zip does
/// not open as a complete one.
pub struct ZipExport<W: Write> {
    zip: Option<ZipOut<W>>,
    open: Arc<AtomicBool>,
    rows: Vec<Row>,
    tenant: String,
    selection: String,
    started: OffsetDateTime,
}

type ZipOut<W> = zip::ZipWriter<zip::write::StreamWriter<Gate<W>>>;

impl<W: Write> Drop for ZipExport<W> {
    fn drop(&mut self) {
        // `finish` takes the writer; if it is still here the export failed
        // (or was never finished).
        if self.zip.is_some() {
            self.open.store(false, Ordering::Relaxed);
        }
    }
}

impl<W: Write> fmt::Debug for ZipExport<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZipExport")
            .field("messages", &self.rows.len())
            .finish_non_exhaustive()
    }
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other),
    }
}

fn closed() -> io::Error {
    io::Error::other("the zip export was already finished")
}

impl<W: Write> ZipExport<W> {
    /// A zip export into `out`; `tenant` and `selection` are noted in
    /// `manifest.json`.
    pub fn new(out: W, tenant: &TenantId, selection: &Selection) -> Self {
        let (gate, open) = Gate::new(out);
        ZipExport {
            zip: Some(zip::ZipWriter::new_stream(gate)),
            open,
            rows: Vec::new(),
            tenant: tenant.to_string(),
            selection: selection.to_string(),
            started: OffsetDateTime::now_utc(),
        }
    }

    fn entry(&mut self, name: &str, when: Option<i64>, large: bool) -> io::Result<&mut ZipOut<W>> {
        let mut options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600)
            .large_file(large);
        if let Some(t) = when.and_then(zip_time) {
            options = options.last_modified_time(t);
        }
        let zip = self.zip.as_mut().ok_or_else(closed)?;
        zip.start_file(name, options).map_err(zip_err)?;
        Ok(zip)
    }

    /// Streams `manifest.csv` and `manifest.json` into the zip, row by row.
    fn write_manifests(&mut self) -> io::Result<()> {
        let now = Some(self.started.unix_timestamp());
        let rows = std::mem::take(&mut self.rows);
        let (tenant, selection) = (self.tenant.clone(), self.selection.clone());
        {
            let mut csv = io::BufWriter::new(self.entry("manifest.csv", now, false)?);
            csv.write_all(b"id,sha256,date,from,to,subject,size,path\r\n")?;
            let mut line = Vec::with_capacity(512);
            for r in &rows {
                let m = r.manifest();
                line.clear();
                let size = m.size.to_string();
                let cells = [
                    m.id.as_str(),
                    &m.sha256,
                    &m.date,
                    m.from,
                    m.to,
                    m.subject,
                    &size,
                    &m.path,
                ];
                for (i, c) in cells.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    csv_cell(&mut line, c);
                }
                line.extend_from_slice(b"\r\n");
                csv.write_all(&line)?;
            }
            csv.flush()?;
        }
        let manifest = Manifest {
            format: "ama-export",
            version: 1,
            tenant: &tenant,
            selection: &selection,
            exported_at: rfc3339(self.started.unix_timestamp()),
            messages: Rows(&rows),
        };
        let mut json = io::BufWriter::new(self.entry("manifest.json", now, false)?);
        serde_json::to_writer_pretty(&mut json, &manifest)?;
        json.flush()
    }
}

impl<W: Write> ExportSink for ZipExport<W> {
    fn message(&mut self, m: &ExportedMessage<'_>) -> io::Result<()> {
        let info = m.info;
        // ZIP64 sizes only where a 4 GiB entry is possible at all.
        let large = m.raw.len() as u64 >= u64::from(u32::MAX) / 2;
        self.entry(&entry_path(info.id), Some(info.meta.date), large)?
            .write_all(m.raw)?;
        self.rows.push(Row {
            id: info.id,
            sha256: info.sha256,
            date: info.meta.date,
            size: m.raw.len() as u64,
            from: addresses(&info.meta.from).into(),
            to: addresses(&info.meta.to).into(),
            subject: info.meta.subject.as_deref().unwrap_or_default().into(),
        });
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.write_manifests()?;
        let zip = self.zip.take().ok_or_else(closed)?;
        // A failing write closes the gate first, so the zip writer's own
        // clean-up (it retries finishing when dropped) writes nothing more.
        let mut out = zip.finish().map_err(zip_err)?;
        out.flush()
    }
}

/// A message date as RFC 3339 UTC (`2024-10-03T10:30:00Z`).
fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// The zip (MS-DOS) time of a message date, if it is in the years 1980-2107.
fn zip_time(unix: i64) -> Option<zip::DateTime> {
    let t = OffsetDateTime::from_unix_timestamp(unix).ok()?;
    zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).ok()?,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
    .ok()
}

/// Address list as written in the manifest: `Name <addr>, addr2`.
fn addresses(list: &[Mailbox]) -> String {
    list.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One RFC 4180 cell, always quoted, with a `'` before a leading character
/// that spreadsheets treat as the start of a formula.
fn csv_cell(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push(b'\'');
    }
    for b in value.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn from_lines_are_recognised_at_any_quoting_depth() {
        for l in [&b"From x"[..], b">From x", b">>>From \n", b"From \r\n"] {
            assert!(is_from_line(l), "{l:?}");
        }
        for l in [
            &b"from x"[..],
            b" From x",
            b">From",
            b"> From x",
            b"From:x",
            b"",
        ] {
            assert!(!is_from_line(l), "{l:?}");
        }
    }

    #[test]
    fn asctime_matches_the_c_library_form() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_727_951_400), "Thu Oct  3 10:30:00 2024");
        assert_eq!(asctime(1_735_689_599), "Tue Dec 31 23:59:59 2024");
        assert_eq!(asctime(i64::MAX), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(-40_000_000_000), "Thu Jan  1 00:00:00 1970");
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        let mut v = Vec::new();
        csv_cell(&mut v, "say \"hi\", then\nleave");
        csv_cell(&mut v, "=HYPERLINK(\"x\")");
        csv_cell(&mut v, "-1");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "\"say \"\"hi\"\", then\nleave\"\"'=HYPERLINK(\"\"x\"\")\"\"'-1\""
        );
    }

    #[test]
    fn senders_with_spaces_or_non_ascii_become_mailer_daemon() {
        assert!(is_plain_sender("alice@example.com"));
        assert!(!is_plain_sender(""));
        assert!(!is_plain_sender("a b@example.com"));
        assert!(!is_plain_sender("jörg@example.com"));
    }

    fn info(n: u128, raw: &[u8]) -> MessageInfo {
        MessageInfo {
            id: MessageId::from_u128(n),
            sha256: crypto::sha256(raw),
            meta: crate::message::MessageMeta {
                message_id: None,
                from: vec![],
                sender: vec![],
                to: vec![],
                cc: vec![],
                bcc: vec![],
                reply_to: vec![],
                subject: Some(format!("message {n}")),
                date: 1_727_951_400,
                header_date: None,
                in_reply_to: vec![],
                references: vec![],
                attachments: vec![],
                size: raw.len() as u64,
                anomalies: vec![],
            },
            deliveries: vec![],
        }
    }

    /// More entries than a zip without ZIP64 can count (65,535): a large
    /// tenant's export must still open, with every entry.
    #[test]
    fn a_zip_with_more_than_65535_messages_opens_completely() {
        const N: u128 = 70_000;
        let mut out = Vec::new();
        let tenant = TenantId::new("big").unwrap();
        let mut zip = ZipExport::new(&mut out, &tenant, &Selection::All);
        for n in 0..N {
            let raw = format!("Subject: message {n}\n\nbody {n}\n").into_bytes();
            let info = info(n, &raw);
            let m = ExportedMessage {
                info: &info,
                raw: &raw,
                position: n as u64,
                selected: N as u64,
            };
            zip.message(&m).unwrap();
        }
        zip.finish().unwrap();
        drop(zip);
        let mut z = zip::ZipArchive::new(io::Cursor::new(&out)).unwrap();
        assert_eq!(z.len() as u128, N + 2);
        let last = entry_path(MessageId::from_u128(N - 1));
        let mut body = String::new();
        io::Read::read_to_string(&mut z.by_name(&last).unwrap(), &mut body).unwrap();
        assert_eq!(
            body,
            format!("Subject: message {}\n\nbody {}\n", N - 1, N - 1)
        );
        let mut json = Vec::new();
        io::Read::read_to_end(&mut z.by_name("manifest.json").unwrap(), &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len() as u128, N);
    }

    #[test]
    fn zip_times_outside_the_dos_range_are_left_out() {
        assert!(zip_time(0).is_none());
        assert!(zip_time(1_727_951_400).is_some());
    }
}
