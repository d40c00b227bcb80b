//! Backups: a copy of the archive on any [`BlobStore`] that only ever holds
//! ciphertext, with numbered point-in-time snapshots, and a restore that
//! rebuilds a working archive from it plus the key store or key service.
//!
//! Why it needs no key: message blobs are already sealed under per-message
//! data keys, and the catalog's values are sealed per tenant; the catalog
//! holds the tenant keys only *wrapped* by the key store / key service. So
//! a backup is the blobs (copied verbatim, same opaque keys `t/<storage
//! id>/…`) plus a consistent copy of the catalog file. The key store, the
//! key service's configuration, the spool and the index are never copied:
//! restoring needs the keys from where they live, and the index is derived
//! data that the restored archive rebuilds.
//!
//! Layout on the target (all keys valid [`BlobKey`]s):
//!
//! ```text
//! t/<storage id>/…                    message blobs (as in the primary store)
//! snapshots/<id, 10 digits>/catalog        redb copy of the catalog
//! snapshots/<id>/blobs                     the blob keys the catalog references, one a line
//! snapshots/<id>/manifest.json             SnapshotManifest (written last: the commit point)
//! journal/<journal id>/<first>-<last>      catalog journal rows (20-digit sequence numbers)
//! ```
//!
//! Point in time between snapshots: the first run turns the catalog
//! journal on ([`crate::catalog::journal`]); each run ships the rows
//! recorded since the last one as a segment, names it (with its digest) in
//! the new manifest, and prunes them from the primary. A restore
//! [`RestorePoint::Until`] a moment takes the newest snapshot at or before
//! it and replays the rows committed up to that moment.
//!
//! [`Archive::backup`] is a catch-up scan, so it is resumable and
//! idempotent: it copies exactly the referenced blobs the target lacks,
//! then writes a snapshot; a run that stops half way leaves copied blobs
//! (skipped next time) and no manifest (the snapshot does not exist). It
//! then keeps the last `keep` snapshots and deletes the blobs no kept
//! snapshot references — so a message deleted (or a tenant destroyed) on
//! the primary leaves the backup once every snapshot older than the
//! deletion has aged out.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::archive::Archive;
use crate::catalog::journal::{JournalRow, Segment};
use crate::catalog::{self, Catalog, JournalState, StoredRows};
use crate::crypto;
use crate::error::{Error, Result, StoreError};
use crate::store::{BlobKey, BlobStore};

/// The `format` field of a snapshot manifest.
pub const MANIFEST_FORMAT: &str = "ama-backup-snapshot";
/// The manifest version this build writes (and the newest it reads).
pub const MANIFEST_VERSION: u32 = 2;
/// Snapshots kept by default.
pub const DEFAULT_KEEP: usize = 7;
/// Blobs copied per `put_many`.
const BATCH: usize = 64;
/// Largest manifest or blob list read back (a bound on what a damaged or
/// hostile target can make us allocate beyond the catalog itself).
const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// What went wrong with a backup or a restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The target holds no snapshot (no `ama backup run` yet).
    #[error("the backup target {target} holds no snapshot")]
    NoSnapshot {
        /// The target.
        target: String,
    },
    /// The requested snapshot is not on the target.
    #[error("snapshot {id} is not on the backup target (snapshots there: {available})")]
    UnknownSnapshot {
        /// The requested snapshot.
        id: u64,
        /// The ids that are there.
        available: String,
    },
    /// A manifest could not be read, or is of an unknown format or version.
    #[error("backup manifest {key}: {reason}")]
    Manifest {
        /// Where it is on the target.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot's catalog or blob list does not match its manifest.
    #[error("snapshot {id}: the {what} does not match the digest in its manifest (damaged backup)")]
    Digest {
        /// The snapshot.
        id: u64,
        /// `catalog` or `blob list`.
        what: &'static str,
    },
    /// A blob the snapshot references is missing from the target.
    #[error("snapshot {id}: {count} referenced blobs are missing from the backup (first: {first})")]
    MissingBlobs {
        /// The snapshot.
        id: u64,
        /// How many.
        count: u64,
        /// The first missing key.
        first: String,
    },
    /// The restore destination already holds an archive.
    #[error("cannot restore into {path}: {reason}")]
    Destination {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// `keep` must be at least 1.
    #[error("keep must be at least 1 snapshot")]
    Keep,
    /// No snapshot on the target is as old as the requested moment.
    #[error(
        "no snapshot on the backup target is from {until} or earlier (the earliest holds the state of {earliest})"
    )]
    TooEarly {
        /// The requested moment (RFC 3339).
        until: String,
        /// The earliest moment a restore can reach, or "none".
        earliest: String,
    },
    /// A journal segment is missing, damaged, or rows are missing between two
    /// that are there: the moment cannot be reached exactly.
    #[error("journal of snapshot {snapshot}: {reason}")]
    Journal {
        /// The snapshot the restore starts from.
        snapshot: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Describes one snapshot (`snapshots/<id>/manifest.json`, versioned JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Format version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// Snapshot number, increasing from 1.
    pub id: u64,
    /// When the catalog copy was taken (Unix seconds, UTC).
    pub created_unix: i64,
    /// Format version of the catalog copy.
    pub catalog_format: u32,
    /// SHA-256 (hex) of the catalog copy.
    pub catalog_sha256: String,
    /// Size of the catalog copy in bytes.
    pub catalog_bytes: u64,
    /// Message blobs the snapshot references (all present on the target).
    pub blob_count: u64,
    /// SHA-256 (hex) of the blob list.
    pub blobs_sha256: String,
    /// Referenced blobs that could not be copied because the primary
    /// deleted them while the run was under way (their messages were
    /// deleted right after the catalog copy); a restore of this snapshot
    /// lacks them.
    #[serde(default)]
    pub blobs_missing: u64,
    /// The catalog journal at this snapshot (version 2; absent from version 1
    /// manifests, whose snapshots restore only as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalManifest>,
}

impl SnapshotManifest {
    /// The moment whose state the snapshot holds, in Unix microseconds: the
    /// commit time of the last journal row it includes, else when it was taken.
    pub fn as_of_micros(&self) -> i64 {
        match &self.journal {
            Some(j) => j.seq_micros.unwrap_or(j.created_micros),
            None => self.created_unix.saturating_mul(1_000_000),
        }
    }
}

/// The journal side of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalManifest {
    /// The journal's id (a restored archive starts a new one).
    pub id: String,
    /// The snapshot includes every row up to this sequence number.
    pub seq: u64,
    /// Commit time of row `seq` (Unix microseconds), if there is one.
    pub seq_micros: Option<i64>,
    /// When the snapshot was taken (Unix microseconds).
    pub created_micros: i64,
    /// Segments this run shipped: the rows since the previous snapshot.
    pub segments: Vec<SegmentRef>,
}

/// One shipped journal segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Its key on the target.
    pub key: String,
    /// First and last sequence numbers in it.
    pub first: u64,
    /// Last sequence number.
    pub last: u64,
    /// Commit time of its last row (Unix microseconds).
    pub last_micros: i64,
    /// SHA-256 (hex) of the segment object.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Settings of [`Archive::backup`].
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Snapshots to keep (the newest); older ones and the blobs only they
    /// reference are deleted from the target. At least 1.
    pub keep: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions { keep: DEFAULT_KEEP }
    }
}

/// What a backup run did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot: SnapshotManifest,
    /// Blobs copied to the target in this run.
    pub blobs_copied: u64,
    /// Referenced blobs that were already on the target.
    pub blobs_present: u64,
    /// Snapshots deleted because more than `keep` were there.
    pub snapshots_pruned: Vec<u64>,
    /// Blobs deleted from the target because no kept snapshot references them.
    pub blobs_pruned: u64,
    /// Journal rows shipped in this run (and pruned from the primary).
    pub journal_rows: u64,
}

/// Where a backup target stands against the live archive.
#[derive(Debug, Clone, Serialize)]
pub struct BackupStatus {
    /// The target.
    pub target: String,
    /// Snapshot ids on the target, oldest first.
    pub snapshots: Vec<u64>,
    /// The newest snapshot.
    pub last: Option<SnapshotManifest>,
    /// Blobs the live catalog references.
    pub blobs_referenced: u64,
    /// Of those, blobs the target does not hold yet (copied by the next run).
    pub blobs_behind: u64,
    /// Catalog journal rows recorded since the last run (shipped by the next).
    pub journal_rows_behind: u64,
    /// Their size in bytes.
    pub journal_bytes_behind: u64,
}

/// Which state a restore rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// The newest snapshot.
    Latest,
    /// One snapshot, as it was taken.
    Snapshot(u64),
    /// The state at a moment: the newest snapshot at or before it, brought
    /// forward with the journal rows committed up to it.
    Until(OffsetDateTime),
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: SnapshotManifest,
    /// Blobs written to the destination store.
    pub blobs_restored: u64,
    /// Journal rows replayed on top of the snapshot.
    pub journal_rows: u64,
    /// The moment whose state was rebuilt (Unix microseconds).
    pub as_of_micros: i64,
    /// Whether the backup ends before the requested moment (its newest state
    /// was restored: nothing later was shipped).
    pub ends_before_until: bool,
    /// Messages of the restored state whose blob the backup never got: added
    /// and deleted between two backup runs. Their catalog entries are there,
    /// their content is not (`ama verify` names them).
    pub blobs_never_backed_up: u64,
}

fn snap_key(id: u64, file: &str) -> Result<BlobKey> {
    Ok(BlobKey::parse(&format!("snapshots/{id:010}/{file}"))?)
}

fn manifest_err(key: &BlobKey, reason: impl std::fmt::Display) -> Error {
    BackupError::Manifest {
        key: key.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

/// Parses a manifest, refusing another format or a newer version.
pub fn parse_manifest(key: &BlobKey, bytes: &[u8]) -> Result<SnapshotManifest> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(manifest_err(key, "too large"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| manifest_err(key, format!("not JSON: {e}")))?;
    let format = v.get("format").and_then(|f| f.as_str());
    if format != Some(MANIFEST_FORMAT) {
        return Err(manifest_err(
            key,
            format!("format {format:?}, expected {MANIFEST_FORMAT:?}"),
        ));
    }
    match v.get("version").and_then(|v| v.as_u64()) {
        Some(1 | 2) => {}
        Some(n) => {
            return Err(manifest_err(
                key,
                format!("version {n} is not supported (this build reads up to {MANIFEST_VERSION})"),
            ));
        }
        None => return Err(manifest_err(key, "no version")),
    }
    serde_json::from_value(v).map_err(|e| manifest_err(key, e))
}

/// Every snapshot on `target` (those with a manifest), oldest first.
pub fn snapshots(target: &dyn BlobStore) -> Result<Vec<SnapshotManifest>> {
    let mut out = Vec::new();
    for key in target.list("snapshots/")? {
        if !key.as_str().ends_with("/manifest.json") {
            continue;
        }
        let m = parse_manifest(&key, &target.get(&key)?)?;
        if snap_key(m.id, "manifest.json")? != key {
            return Err(manifest_err(&key, format!("names snapshot {}", m.id)));
        }
        out.push(m);
    }
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// The blob keys a catalog references (tenants being destroyed excluded).
fn referenced(catalog: &Catalog) -> Result<BTreeSet<BlobKey>> {
    let rtxn = catalog.read()?;
    let mut keys = BTreeSet::new();
    for t in rtxn.tenants()? {
        if rtxn.shred(t.tenant.id.as_str())?.is_some() {
            continue;
        }
        for id in rtxn.message_ids(t.tenant.id.as_str())? {
            keys.insert(BlobKey::message(&t.storage_id, id));
        }
    }
    Ok(keys)
}

fn blob_list(keys: &BTreeSet<BlobKey>) -> Vec<u8> {
    let mut out = String::new();
    for k in keys {
        out.push_str(k.as_str());
        out.push('\n');
    }
    out.into_bytes()
}

fn parse_blob_list(id: u64, bytes: &[u8]) -> Result<Vec<BlobKey>> {
    let bad = |reason: String| -> Error {
        BackupError::Manifest {
            key: format!("snapshots/{id:010}/blobs"),
            reason,
        }
        .into()
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| BlobKey::parse(l).map_err(|e| bad(e.to_string())))
        .collect()
}

/// Copies `keys` from `from` to `to` in batches; returns (copied, not found in `from`).
fn copy_blobs<'a>(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    keys: impl Iterator<Item = &'a BlobKey>,
) -> Result<(u64, Vec<BlobKey>)> {
    let mut copied = 0;
    let mut missing = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    for key in keys {
        match from.get(key) {
            Ok(data) => batch.push((key.clone(), data)),
            Err(StoreError::NotFound { .. }) => missing.push(key.clone()),
            Err(e) => return Err(e.into()),
        }
        if batch.len() == BATCH {
            to.put_many(&batch)?;
            copied += batch.len() as u64;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        to.put_many(&batch)?;
        copied += batch.len() as u64;
    }
    Ok((copied, missing))
}

fn present(target: &dyn BlobStore) -> Result<HashSet<BlobKey>> {
    Ok(target.list("t/")?.into_iter().collect())
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn rfc3339_micros(m: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{m} µs after 1970"))
}

/// Ships the journal rows a snapshot saw as one segment
/// (`journal/<id>/<first>-<last>`); none when there are none.
fn ship_journal(
    target: &dyn BlobStore,
    state: &JournalState,
    rows: StoredRows,
) -> Result<Vec<SegmentRef>> {
    let (Some(id), Some(first), Some(last)) = (
        state.id.as_ref(),
        rows.first().map(|r| r.0),
        rows.last().map(|r| r.0),
    ) else {
        return Ok(Vec::new());
    };
    let last_micros = JournalRow::from_bytes(&rows[rows.len() - 1].1)?.time_micros;
    let bytes = Segment {
        journal_id: id.clone(),
        rows,
    }
    .to_bytes()?;
    let key = BlobKey::parse(&format!("journal/{id}/{first:020}-{last:020}"))?;
    target.put(&key, &bytes)?;
    Ok(vec![SegmentRef {
        key: key.to_string(),
        first,
        last,
        last_micros,
        sha256: crypto::hex(&crypto::sha256(&bytes)),
        bytes: bytes.len() as u64,
    }])
}

/// The journal rows after `base` (same journal id) that the snapshots after
/// it shipped, checked against their manifests' digests, in order.
fn journal_after(
    target: &dyn BlobStore,
    base: &SnapshotManifest,
    later: &[SnapshotManifest],
) -> Result<(std::collections::BTreeMap<u64, Vec<u8>>, u64)> {
    let mut rows = std::collections::BTreeMap::new();
    let Some(bj) = &base.journal else {
        return Ok((rows, 0));
    };
    let err = |reason: String| -> Error {
        BackupError::Journal {
            snapshot: base.id,
            reason,
        }
        .into()
    };
    // The highest row a later snapshot of the same journal holds: rows up
    // to it must all be found.
    let mut known = bj.seq;
    for m in later {
        let Some(j) = m.journal.as_ref().filter(|j| j.id == bj.id) else {
            continue;
        };
        known = known.max(j.seq);
        for seg in j.segments.iter().filter(|s| s.last > bj.seq) {
            let key = BlobKey::parse(&seg.key)?;
            let bytes = match target.get(&key) {
                Ok(b) => b,
                Err(StoreError::NotFound { .. }) => {
                    return Err(err(format!("segment {key} is missing from the target")));
                }
                Err(e) => return Err(e.into()),
            };
            if crypto::hex(&crypto::sha256(&bytes)) != seg.sha256 {
                return Err(err(format!(
                    "segment {key} does not match the digest in snapshot {}'s manifest",
                    m.id
                )));
            }
            let segment = Segment::from_bytes(&bytes)?;
            if segment.journal_id != bj.id {
                return Err(err(format!("segment {key} belongs to another journal")));
            }
            for (seq, row) in segment.rows {
                if seq > bj.seq {
                    rows.insert(seq, row);
                }
            }
        }
    }
    Ok((rows, known))
}

impl Archive {
    /// Backs the archive up to `target`: copies every referenced message
    /// blob the target lacks, writes a new catalog snapshot with its
    /// manifest, then keeps the newest `options.keep` snapshots and deletes
    /// blobs no kept snapshot references. Nothing written holds a key.
    pub fn backup(&self, target: &dyn BlobStore, options: &BackupOptions) -> Result<BackupReport> {
        if options.keep == 0 {
            return Err(BackupError::Keep.into());
        }
        // One run per target at a time (docs/BACKUP.md): what an
        // interrupted run left half-written on the target can go.
        target.recover()?;
        // From the first run on, the catalog records every commit, so the
        // next run can ship what happened in between.
        self.catalog().enable_journal()?;
        let existing = snapshots(target)?;
        let id = existing.last().map_or(1, |m| m.id + 1);

        // 1. A consistent catalog copy, in a scratch file beside the catalog.
        let scratch = self.data_dir().join("backup-snapshot.redb.tmp");
        let io = |source| Error::Io {
            path: scratch.display().to_string(),
            source,
        };
        match std::fs::remove_file(&scratch) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let created = OffsetDateTime::now_utc();
        let created_unix = created.unix_timestamp();
        let (journal, journal_rows) = self.catalog().snapshot_to(&scratch)?;
        let result = (|| {
            let keys = referenced(&Catalog::open(&scratch)?)?;
            let bytes = std::fs::read(&scratch).map_err(io)?;
            Ok::<_, Error>((keys, bytes))
        })();
        let _ = std::fs::remove_file(&scratch);
        let (keys, catalog_bytes) = result?;

        // 2. The blobs the target lacks.
        let have = present(target)?;
        let todo: Vec<&BlobKey> = keys.iter().filter(|k| !have.contains(*k)).collect();
        let blobs_present = (keys.len() - todo.len()) as u64;
        let (blobs_copied, missing) = copy_blobs(self.store(), target, todo.into_iter())?;

        // 3. The journal rows since the last run, then the snapshot; the
        //    manifest last, so it exists only when complete.
        let shipped_rows = journal_rows.len() as u64;
        let segments = ship_journal(target, &journal, journal_rows)?;
        let list = blob_list(&keys);
        let manifest = SnapshotManifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            id,
            created_unix,
            catalog_format: catalog::FORMAT_VERSION,
            catalog_sha256: crypto::hex(&crypto::sha256(&catalog_bytes)),
            catalog_bytes: catalog_bytes.len() as u64,
            blob_count: keys.len() as u64 - missing.len() as u64,
            blobs_sha256: crypto::hex(&crypto::sha256(&list)),
            blobs_missing: missing.len() as u64,
            journal: journal.id.clone().map(|jid| JournalManifest {
                id: jid,
                seq: journal.last_seq,
                seq_micros: journal.last_micros,
                created_micros: micros(created),
                segments,
            }),
        };
        target.put(&snap_key(id, "catalog")?, &catalog_bytes)?;
        target.put(&snap_key(id, "blobs")?, &list)?;
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Manifest {
            key: format!("snapshot {id}"),
            reason: e.to_string(),
        })?;
        target.put(&snap_key(id, "manifest.json")?, &json)?;
        // Shipped: the primary no longer needs the rows.
        if shipped_rows > 0 {
            self.catalog().prune_journal(journal.last_seq)?;
        }

        // 4. Retention of snapshots, then of blobs.
        let mut kept: Vec<u64> = existing.iter().map(|m| m.id).collect();
        kept.push(id);
        let drop_n = kept.len().saturating_sub(options.keep);
        let pruned: Vec<u64> = kept.drain(..drop_n).collect();
        for &old in &pruned {
            // Manifest first: a half-pruned snapshot is no snapshot.
            target.delete(&snap_key(old, "manifest.json")?)?;
            target.delete(&snap_key(old, "catalog")?)?;
            target.delete(&snap_key(old, "blobs")?)?;
        }
        // Leftovers of runs that stopped before their manifest.
        for key in target.list("snapshots/")? {
            let sid = key
                .as_str()
                .split('/')
                .nth(1)
                .and_then(|s| s.parse::<u64>().ok());
            if sid.is_none_or(|s| !kept.contains(&s)) {
                target.delete(&key)?;
            }
        }
        // Segments are needed to bring a kept snapshot forward to the next:
        // those named by every kept manifest but the oldest.
        let oldest_kept = kept.first().copied().unwrap_or(id);
        let wanted_segments: HashSet<&str> = existing
            .iter()
            .chain(std::iter::once(&manifest))
            .filter(|m| m.id != oldest_kept && kept.contains(&m.id))
            .filter_map(|m| m.journal.as_ref())
            .flat_map(|j| j.segments.iter().map(|s| s.key.as_str()))
            .collect();
        for key in target.list("journal/")? {
            if !wanted_segments.contains(key.as_str()) {
                target.delete(&key)?;
            }
        }
        let mut wanted: HashSet<BlobKey> = keys.into_iter().collect();
        for &k in &kept {
            if k == id {
                continue;
            }
            let bytes = target.get(&snap_key(k, "blobs")?)?;
            wanted.extend(parse_blob_list(k, &bytes)?);
        }
        let mut blobs_pruned = 0;
        for key in target.list("t/")? {
            if !wanted.contains(&key) {
                target.delete(&key)?;
                blobs_pruned += 1;
            }
        }
        Ok(BackupReport {
            snapshot: manifest,
            blobs_copied,
            blobs_present,
            snapshots_pruned: pruned,
            blobs_pruned,
            journal_rows: shipped_rows,
        })
    }

    /// How far `target` is behind the live archive.
    pub fn backup_status(&self, target: &dyn BlobStore) -> Result<BackupStatus> {
        let snaps = snapshots(target)?;
        let keys = referenced(self.catalog())?;
        let have = present(target)?;
        let journal = self.catalog().journal_state()?;
        Ok(BackupStatus {
            target: target.describe(),
            snapshots: snaps.iter().map(|m| m.id).collect(),
            last: snaps.last().cloned(),
            blobs_referenced: keys.len() as u64,
            blobs_behind: keys.iter().filter(|k| !have.contains(*k)).count() as u64,
            journal_rows_behind: journal.rows,
            journal_bytes_behind: journal.bytes,
        })
    }
}

/// Rebuilds an archive in `dest_dir` from snapshot `snapshot` (default: the
/// newest) on `target`; see [`restore_at`].
pub fn restore(
    target: &dyn BlobStore,
    snapshot: Option<u64>,
    dest_dir: &Path,
    dest_store: &dyn BlobStore,
) -> Result<RestoreReport> {
    let point = snapshot.map_or(RestorePoint::Latest, RestorePoint::Snapshot);
    restore_at(target, point, dest_dir, dest_store)
}

/// Rebuilds an archive in `dest_dir` from `target` as it was at `point`:
/// the snapshot's catalog copy (checked against its manifest's SHA-256)
/// becomes `dest_dir/catalog.redb`, brought forward with the journal rows
/// committed up to the moment for [`RestorePoint::Until`]; every blob the
/// result references is copied to `dest_store`, and every tenant is marked
/// for re-indexing, so opening the archive (with the key store or key
/// service that holds its keys — never in the backup) rebuilds the indexes.
/// The catalog is written last: a restore that fails leaves no archive and
/// can simply be run again. The restored archive's journal gets a new id:
/// its history forks from the backup's here.
pub fn restore_at(
    target: &dyn BlobStore,
    point: RestorePoint,
    dest_dir: &Path,
    dest_store: &dyn BlobStore,
) -> Result<RestoreReport> {
    let dest_err = |reason: String| -> Error {
        BackupError::Destination {
            path: dest_dir.display().to_string(),
            reason,
        }
        .into()
    };
    let catalog_path = dest_dir.join("catalog.redb");
    if catalog_path.exists() {
        return Err(dest_err(
            "it already holds an archive (catalog.redb)".into(),
        ));
    }
    let snaps = snapshots(target)?;
    let no_snapshot = || -> Error {
        BackupError::NoSnapshot {
            target: target.describe(),
        }
        .into()
    };
    let manifest = match point {
        RestorePoint::Latest => snaps.last().cloned().ok_or_else(no_snapshot)?,
        RestorePoint::Snapshot(id) => {
            snaps.iter().find(|m| m.id == id).cloned().ok_or_else(|| {
                BackupError::UnknownSnapshot {
                    id,
                    available: if snaps.is_empty() {
                        "none".into()
                    } else {
                        snaps
                            .iter()
                            .map(|m| m.id.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                }
            })?
        }
        RestorePoint::Until(t) => {
            if snaps.is_empty() {
                return Err(no_snapshot());
            }
            let until = micros(t);
            snaps
                .iter()
                .rev()
                .find(|m| m.as_of_micros() <= until)
                .cloned()
                .ok_or_else(|| BackupError::TooEarly {
                    until: rfc3339_micros(until),
                    earliest: snaps
                        .iter()
                        .map(SnapshotManifest::as_of_micros)
                        .min()
                        .map_or_else(|| "none".into(), rfc3339_micros),
                })?
        }
    };
    let id = manifest.id;
    let catalog_bytes = target.get(&snap_key(id, "catalog")?)?;
    if crypto::hex(&crypto::sha256(&catalog_bytes)) != manifest.catalog_sha256 {
        return Err(BackupError::Digest {
            id,
            what: "catalog",
        }
        .into());
    }
    let list = target.get(&snap_key(id, "blobs")?)?;
    if crypto::hex(&crypto::sha256(&list)) != manifest.blobs_sha256 {
        return Err(BackupError::Digest {
            id,
            what: "blob list",
        }
        .into());
    }
    let snapshot_keys: HashSet<BlobKey> = parse_blob_list(id, &list)?.into_iter().collect();

    // The journal rows to replay: committed after the snapshot, up to the moment.
    let mut replay: Vec<(u64, JournalRow)> = Vec::new();
    let mut ends_before_until = false;
    if let RestorePoint::Until(t) = point {
        let until = micros(t);
        let later: Vec<SnapshotManifest> = snaps.iter().filter(|m| m.id > id).cloned().collect();
        let (rows, known) = journal_after(target, &manifest, &later)?;
        let mut next = manifest.journal.as_ref().map_or(0, |j| j.seq) + 1;
        ends_before_until = true;
        for (seq, bytes) in rows {
            if seq != next {
                return Err(BackupError::Journal {
                    snapshot: id,
                    reason: format!("rows {next} to {} are missing from the backup", seq - 1),
                }
                .into());
            }
            let row = JournalRow::from_bytes(&bytes)?;
            if row.time_micros > until {
                ends_before_until = false;
                break;
            }
            replay.push((seq, row));
            next += 1;
        }
        if ends_before_until && next <= known {
            return Err(BackupError::Journal {
                snapshot: id,
                reason: format!("rows {next} to {known} are missing from the backup"),
            }
            .into());
        }
    }
    let as_of_micros = replay
        .last()
        .map_or_else(|| manifest.as_of_micros(), |(_, r)| r.time_micros);

    std::fs::create_dir_all(dest_dir).map_err(|e| dest_err(e.to_string()))?;
    let tmp = dest_dir.join("catalog.redb.restoring");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(dest_err(e.to_string())),
    }
    crate::fsutil::write_new_durable(&tmp, &catalog_bytes)?;
    let (blobs_restored, blobs_never_backed_up) = {
        let catalog = Catalog::open(&tmp)?;
        catalog.replay(&replay)?;
        // The blobs of the state restored: the snapshot's, less what the
        // journal deleted, plus what it added.
        let keys = referenced(&catalog)?;
        let (copied, missing) = copy_blobs(target, dest_store, keys.iter())?;
        // Blobs the manifest already counts as missing (deleted during the
        // run) are expected; any other gap of the snapshot is a damaged
        // backup. A blob the journal added but the backup never got (added
        // and deleted between two runs) is reported.
        let (old, new): (Vec<&BlobKey>, Vec<&BlobKey>) =
            missing.iter().partition(|k| snapshot_keys.contains(*k));
        if old.len() as u64 > manifest.blobs_missing {
            drop(catalog);
            let _ = std::fs::remove_file(&tmp);
            return Err(BackupError::MissingBlobs {
                id,
                count: old.len() as u64,
                first: old[0].to_string(),
            }
            .into());
        }
        // The index is derived data: rebuild every tenant's on first open.
        let tenants = catalog.read()?.tenants()?;
        let mut txn = catalog.write()?;
        for t in tenants {
            if txn.shred(t.tenant.id.as_str())?.is_none() {
                txn.mark_all_pending(t.tenant.id.as_str())?;
            }
        }
        txn.commit()?;
        (copied, new.len() as u64)
    };
    std::fs::rename(&tmp, &catalog_path).map_err(|e| dest_err(e.to_string()))?;
    crate::fsutil::fsync_dir(dest_dir).map_err(|e| dest_err(e.to_string()))?;
    Ok(RestoreReport {
        snapshot: manifest,
        blobs_restored,
        journal_rows: replay.len() as u64,
        as_of_micros,
        ends_before_until,
        blobs_never_backed_up,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> BlobKey {
        BlobKey::parse("snapshots/0000000001/manifest.json").unwrap()
    }

    /// A manifest as version 1 wrote it (fixture: keep reading it).
    const V1: &str = r#"{
  "format": "ama-backup-snapshot",
  "version": 1,
  "id": 1,
  "created_unix": 1795000000,
  "catalog_format": 1,
  "catalog_sha256": "00",
  "catalog_bytes": 10,
  "blob_count": 3,
  "blobs_sha256": "11"
}"#;

    #[test]
    fn reads_a_v1_manifest() {
        let m = parse_manifest(&key(), V1.as_bytes()).expect("v1 parses");
        assert_eq!((m.id, m.blob_count, m.blobs_missing), (1, 3, 0));
    }

    #[test]
    fn refuses_a_newer_version_and_another_format() {
        let newer = V1.replace("\"version\": 1", "\"version\": 3");
        let e = parse_manifest(&key(), newer.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("version 3 is not supported"), "{e}");
        let other = V1.replace("ama-backup-snapshot", "something-else");
        let e = parse_manifest(&key(), other.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
        let e = parse_manifest(&key(), b"\xff not json").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = parse_manifest(&key(), &vec![b' '; MAX_MANIFEST_BYTES + 1]).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn a_bad_blob_list_line_is_refused() {
        assert!(parse_blob_list(1, b"t/abc/00000/000/x\n../etc/passwd\n").is_err());
        assert!(parse_blob_list(1, b"\xff\xfe").is_err());
        assert_eq!(parse_blob_list(1, b"t/a/b\n\n").unwrap().len(), 1);
    }
}
