//! Importing files, directories, mbox files and Maildirs into a tenant: the
//! one pipeline the CLI, the Python package and the benchmarks share.
//!
//! Reading and ingesting overlap: a reader thread drives the lazy
//! [`crate::mailbox::walk`] and hands batches through a bounded channel to
//! the calling thread, which parses, encrypts and commits the previous ones
//! with [`Archive::ingest_batch`]. The channel bound keeps memory flat
//! however large the import: at most the batch being read, the queued ones
//! and the one being ingested are held. A batch is also cut at
//! [`ImportOptions::max_batch_bytes`].
//!
//! A message that cannot be read or is not mail is *refused*: reported with
//! its origin and reason, and the import goes on. A failure of the archive
//! itself (disk, catalog) stops the import with that error; every batch
//! reported before it is durable.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::mpsc;

use crate::archive::Archive;
use crate::error::Result;
use crate::mailbox::{self, WalkOptions};
use crate::message::{Envelope, Receipt, Source};
use crate::tenant::TenantId;

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Messages per batch (one durable commit each).
    pub batch: usize,
    /// A batch is handed over once it holds this many bytes, even if shorter.
    pub max_batch_bytes: usize,
    /// Batches that may wait between the reader and the ingester.
    pub queued_batches: usize,
    /// The source recorded in each message's envelope.
    pub source: Source,
    /// Stop after this many messages found (for trials and benchmarks).
    pub limit: Option<u64>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch: 500,
            max_batch_bytes: 64 * 1024 * 1024,
            queued_batches: 2,
            source: Source::Import,
            limit: None,
        }
    }
}

/// What happened to one message, reported in the order of the walk.
#[derive(Debug)]
pub enum ImportEvent<'a> {
    /// Archived (new or duplicate); durable.
    Archived {
        /// File path, or `FILE#N` for the N-th message of an mbox.
        origin: &'a str,
        /// The receipt.
        receipt: &'a Receipt,
        /// Raw size in bytes.
        size: u64,
    },
    /// Not archived, and why.
    Refused {
        /// File path, or `FILE#N`.
        origin: &'a str,
        /// The reason, for a person.
        error: String,
    },
}

/// Totals of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// True when the caller stopped the import early (every message
    /// reported before was archived durably).
    pub stopped: bool,
    /// New messages.
    pub imported: u64,
    /// Messages already archived (their envelope was merged).
    pub duplicates: u64,
    /// Messages refused.
    pub refused: u64,
    /// Raw bytes archived, duplicates included.
    pub bytes: u64,
}

type Batch = Vec<(String, std::result::Result<Vec<u8>, String>)>;

/// Imports everything under `paths` into `tenant`, calling `on_event` for
/// each message once its batch is durable (or once it is refused). On an
/// archive failure, returns the error; what was reported before is archived.
///
/// `on_event` returning [`ControlFlow::Break`] stops the import: the rest of
/// a batch already committed is still reported, nothing later is archived.
/// For Ctrl-C in Python, or a progress callback that wants out; the summary
/// then says `stopped`.
pub fn import_paths(
    archive: &Archive,
    tenant: &TenantId,
    paths: &[PathBuf],
    options: &ImportOptions,
    mut on_event: impl FnMut(ImportEvent<'_>) -> ControlFlow<()>,
) -> Result<ImportSummary> {
    archive.tenant(tenant)?;
    let limit = usize::try_from(options.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let walk = mailbox::walk(
        paths,
        &WalkOptions {
            max_message_size: archive.options().max_message_size,
        },
    )
    .take(limit);
    let batch_len = options.batch.max(1);
    let max_bytes = options.max_batch_bytes.max(1);
    let (tx, rx) = mpsc::sync_channel::<Batch>(options.queued_batches);
    let envelope = Envelope::new(options.source);
    let mut summary = ImportSummary::default();

    std::thread::scope(|s| {
        s.spawn(move || {
            let mut batch: Batch = Vec::with_capacity(batch_len);
            let mut bytes = 0usize;
            for item in walk {
                let raw = item.raw.map_err(|e| e.to_string());
                if let Ok(r) = &raw {
                    bytes += r.len();
                }
                batch.push((item.origin, raw));
                if batch.len() >= batch_len || bytes >= max_bytes {
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
        });

        // Owned here, so it is dropped when this closure returns (also on an
        // error), which unblocks a reader waiting to send before the scope
        // joins it.
        let rx = rx;
        for batch in rx.iter() {
            let mut origins = Vec::with_capacity(batch.len());
            let mut items = Vec::with_capacity(batch.len());
            for (origin, raw) in batch {
                match raw {
                    Ok(raw) => {
                        origins.push(origin);
                        items.push((raw, envelope.clone()));
                    }
                    Err(error) => {
                        summary.refused += 1;
                        if on_event(ImportEvent::Refused {
                            origin: &origin,
                            error,
                        })
                        .is_break()
                        {
                            summary.stopped = true;
                        }
                    }
                }
            }
            if summary.stopped {
                break;
            }
            if items.is_empty() {
                continue;
            }
            let results = archive.ingest_batch(tenant, &items)?;
            for ((origin, (raw, _)), r) in origins.iter().zip(&items).zip(results) {
                match r {
                    Ok(receipt) => {
                        if receipt.duplicate {
                            summary.duplicates += 1;
                        } else {
                            summary.imported += 1;
                        }
                        summary.bytes += raw.len() as u64;
                        if on_event(ImportEvent::Archived {
                            origin,
                            receipt: &receipt,
                            size: raw.len() as u64,
                        })
                        .is_break()
                        {
                            summary.stopped = true;
                        }
                    }
                    Err(e) => {
                        summary.refused += 1;
                        if on_event(ImportEvent::Refused {
                            origin,
                            error: e.to_string(),
                        })
                        .is_break()
                        {
                            summary.stopped = true;
                        }
                    }
                }
            }
            if summary.stopped {
                break;
            }
        }
        Ok(summary)
    })
}
