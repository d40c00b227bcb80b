//! The durable, encrypted spool between `250` and the archive.
//!
//! Why a spool: the archive's durable commit is most efficient for batches,
//! but an SMTP client waits for its `250` per message. So an accepted
//! message is first written to its own spool file — sealed with the
//! tenant's spool key ([`Archive::spool_seal`]), so no mail is plaintext on
//! disk — and fsync'ed; only then is `250` answered. A committer thread
//! takes the messages of all sessions that arrive together and makes them
//! durable as a group (write all, fsync all from several threads at
//! once, rename all, one directory fsync): concurrent sessions share the
//! cost of the disk flush. A worker thread then ingests spooled messages
//! in batches with [`Archive::ingest_batch`] and deletes a spool file only
//! after the batch's commit returned. On start, leftover files are
//! ingested before the node accepts connections; ingesting twice is
//! harmless (dedup by bytes).
//!
//! File format (`DIR/<queue id>[-<part>]`): `"AMAS" | 0x01 | u8 len |
//! tenant id | sealed`, where `sealed` = spool_seal(tenant, file name,
//! payload) and payload = `0x01 | i128 received-at ns | u32 len | mail from
//! (u32::MAX = none) | u32 n | n × (u32 len | rcpt) | raw message`. Files
//! are written as `.tmp-<name>` and renamed when durable, so a complete name
//! always holds a complete entry; `.tmp-*` files are unacknowledged and
//! removed on start. Entries the archive refuses for good, or that cannot
//! be opened, are moved to `DIR/failed/` — never deleted.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ama_core::{Archive, Envelope, MessageId, Source, TenantId};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::SmtpError;

const FILE_MAGIC: &[u8; 4] = b"AMAS";
const FILE_VERSION: u8 = 1;
const PAYLOAD_VERSION: u8 = 1;
/// Most messages in one ingest batch.
const INGEST_BATCH: usize = 256;
/// Most bytes in one ingest batch.
const INGEST_BATCH_BYTES: usize = 32 << 20;
/// Most requests in one group commit.
const COMMIT_GROUP: usize = 512;
/// Most threads that fsync the files of one group commit.
const SYNC_THREADS: usize = 8;

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The spool directory.
    pub dir: PathBuf,
    /// Most bytes accepted but not yet archived that are held in memory;
    /// sessions wait (the client sees a slower `250`) beyond it.
    pub memory_budget: usize,
}

/// A message part for one tenant, waiting to be archived.
struct Pending {
    tenant: TenantId,
    name: String,
    envelope: Envelope,
    raw: Arc<Vec<u8>>,
    _permit: Option<OwnedSemaphorePermit>,
}

struct CommitRequest {
    files: Vec<(String, Vec<u8>)>,
    pending: Vec<Pending>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The spool: accepts messages durably and feeds them to the archive.
pub struct Spool {
    dir: PathBuf,
    archive: Arc<Archive>,
    commit_tx: Mutex<Option<std_mpsc::Sender<CommitRequest>>>,
    budget: Arc<Semaphore>,
    budget_units: u32,
    in_flight: Arc<AtomicUsize>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens the spool directory (created if missing), ingests what an
    /// earlier run left in it, and starts the committer and the worker.
    /// Blocking: call it before serving (or from `spawn_blocking`).
    pub fn open(archive: Arc<Archive>, options: &SpoolOptions) -> Result<Self, SmtpError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(SmtpError::spool(&dir))?;
        recover(&archive, &dir)?;
        let (commit_tx, commit_rx) = std_mpsc::channel::<CommitRequest>();
        let (work_tx, work_rx) = std_mpsc::channel::<Pending>();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let committer = {
            let dir = dir.clone();
            std::thread::Builder::new()
                .name("ama-spool-commit".into())
                .spawn(move || committer(&dir, &commit_rx, &work_tx))
                .map_err(SmtpError::spool(&options.dir))?
        };
        let worker = {
            let dir = dir.clone();
            let archive = archive.clone();
            let in_flight = in_flight.clone();
            std::thread::Builder::new()
                .name("ama-spool-ingest".into())
                .spawn(move || worker(&archive, &dir, &work_rx, &in_flight))
                .map_err(SmtpError::spool(&options.dir))?
        };
        // Budget in KiB units (a semaphore counts u32 permits).
        let units = u32::try_from((options.memory_budget / 1024).max(1)).unwrap_or(u32::MAX);
        Ok(Spool {
            dir,
            archive,
            commit_tx: Mutex::new(Some(commit_tx)),
            budget: Arc::new(Semaphore::new(units as usize)),
            budget_units: units,
            in_flight,
            threads: Mutex::new(vec![committer, worker]),
        })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Messages accepted (or being accepted) and not yet archived.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Makes a message durable for each `(tenant, envelope)` part and
    /// returns the queue id once every part is fsync'ed. An error means
    /// nothing was acknowledged (the client must get a `4xx`).
    pub async fn accept(
        &self,
        parts: Vec<(TenantId, Envelope, Arc<Vec<u8>>)>,
    ) -> Result<String, SmtpError> {
        let qid = MessageId::generate()
            .map_err(|e| SmtpError::Archive(e.into()))?
            .to_string();
        let total: usize = parts.iter().map(|p| p.2.len()).sum();
        let units = u32::try_from(total / 1024 + 1)
            .unwrap_or(u32::MAX)
            .min(self.budget_units);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(units)
            .await
            .map_err(|_| SmtpError::Config("spool is shut down".into()))?;
        self.in_flight.fetch_add(parts.len(), Ordering::SeqCst);
        self.accept_inner(&qid, parts, permit).await.map(|()| qid)
    }

    async fn accept_inner(
        &self,
        qid: &str,
        parts: Vec<(TenantId, Envelope, Arc<Vec<u8>>)>,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), SmtpError> {
        let count = parts.len();
        let archive = self.archive.clone();
        let qid_owned = qid.to_string();
        // Sealing is CPU work: off the async threads.
        let sealed = tokio::task::spawn_blocking(move || {
            let mut files = Vec::with_capacity(parts.len());
            let mut pending = Vec::with_capacity(parts.len());
            let single = parts.len() == 1;
            let mut permit = Some(permit);
            for (k, (tenant, envelope, raw)) in parts.into_iter().enumerate() {
                let name = if single {
                    qid_owned.clone()
                } else {
                    format!("{qid_owned}-{k}")
                };
                let payload = encode_payload(&envelope, &raw);
                let sealed = archive.spool_seal(&tenant, &name, &payload)?;
                files.push((name.clone(), file_bytes(&tenant, &sealed)));
                pending.push(Pending {
                    tenant,
                    name,
                    envelope,
                    raw,
                    _permit: permit.take(),
                });
            }
            Ok::<_, SmtpError>((files, pending))
        })
        .await
        .map_err(|e| SmtpError::Config(format!("sealing task failed: {e}")));
        let (files, pending) = match sealed {
            Ok(Ok(v)) => v,
            Ok(Err(e)) | Err(e) => {
                self.in_flight.fetch_sub(count, Ordering::SeqCst);
                return Err(e);
            }
        };
        let (done, wait) = oneshot::channel();
        let sent = match self.commit_tx.lock() {
            Ok(tx) => tx.as_ref().is_some_and(|tx| {
                tx.send(CommitRequest {
                    files,
                    pending,
                    done,
                })
                .is_ok()
            }),
            Err(_) => false,
        };
        let outcome = if sent {
            match wait.await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => Err(SmtpError::SpoolEntry {
                    name: qid.to_string(),
                    reason: e,
                }),
                Err(_) => Err(SmtpError::Config("spool committer stopped".into())),
            }
        } else {
            Err(SmtpError::Config("spool is shut down".into()))
        };
        self.in_flight.fetch_sub(count, Ordering::SeqCst);
        outcome
    }

    /// Stops taking messages, waits until every accepted message is
    /// archived (or left in the spool for the next start if the archive
    /// keeps failing), and stops the threads. Blocking.
    pub fn close(&self) {
        if let Ok(mut tx) = self.commit_tx.lock() {
            tx.take();
        }
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

fn committer(dir: &Path, rx: &std_mpsc::Receiver<CommitRequest>, work: &std_mpsc::Sender<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < COMMIT_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let files: Vec<&(String, Vec<u8>)> = group.iter().flat_map(|r| r.files.iter()).collect();
        match write_group(dir, &files) {
            Ok(()) => {
                for req in group {
                    for p in req.pending {
                        let _ = work.send(p);
                    }
                    let _ = req.done.send(Ok(()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                eprintln!("ama-smtp: spool write failed: {msg}");
                for req in group {
                    let _ = req.done.send(Err(msg.clone()));
                }
            }
        }
    }
}

/// Writes every file as `.tmp-<name>`, fsyncs them all (concurrently, see
/// [`sync_files`]), renames them, fsyncs the directory once: no file is
/// renamed before every file of the group is durable, and the caller
/// answers `250` only after this returns. On error, the temporary files are
/// removed.
fn write_group(dir: &Path, files: &[&(String, Vec<u8>)]) -> Result<(), SmtpError> {
    let tmp = |name: &str| dir.join(format!(".tmp-{name}"));
    let result = (|| {
        let mut open = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            let path = tmp(name);
            let mut f = std::fs::File::create(&path).map_err(SmtpError::spool(&path))?;
            f.write_all(bytes).map_err(SmtpError::spool(&path))?;
            open.push((path, f));
        }
        sync_files(dir, &open)?;
        for (name, _) in files {
            let to = dir.join(name);
            std::fs::rename(tmp(name), &to).map_err(SmtpError::spool(&to))?;
        }
        sync_dir(dir)
    })();
    if result.is_err() {
        for (name, _) in files {
            let _ = std::fs::remove_file(tmp(name));
        }
    }
    result
}

/// fsyncs every file, from up to [`SYNC_THREADS`] threads, and returns
/// only once all of them are done (or one failed).
///
/// Why threads: one fsync at a time makes a group wait for one journal
/// commit per file; concurrent fsyncs let the file system merge them into
/// fewer commits (the engine's local store does the same). If a thread
/// cannot be started, its files are synced on the calling thread.
fn sync_files(dir: &Path, open: &[(PathBuf, std::fs::File)]) -> Result<(), SmtpError> {
    let sync = |part: &[(PathBuf, std::fs::File)]| -> Result<(), SmtpError> {
        for (path, f) in part {
            f.sync_data().map_err(SmtpError::spool(path))?;
        }
        Ok(())
    };
    let threads = SYNC_THREADS.min(open.len());
    if threads <= 1 {
        return sync(open);
    }
    let chunk = open.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut result = Ok(());
        let mut handles = Vec::with_capacity(threads);
        for part in open.chunks(chunk) {
            let spawned = std::thread::Builder::new()
                .name("ama-spool-fsync".into())
                .spawn_scoped(s, move || sync(part));
            match spawned {
                Ok(h) => handles.push(h),
                Err(_) => result = result.and_then(|()| sync(part)),
            }
        }
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(SmtpError::spool(dir)(std::io::Error::other(
                    "fsync thread panicked",
                )))
            });
            result = result.and(r);
        }
        result
    })
}

fn sync_dir(dir: &Path) -> Result<(), SmtpError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SmtpError::spool(dir))
}

fn worker(
    archive: &Archive,
    dir: &Path,
    rx: &std_mpsc::Receiver<Pending>,
    in_flight: &AtomicUsize,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut bytes = batch[0].raw.len();
        while batch.len() < INGEST_BATCH && bytes < INGEST_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.raw.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let n = batch.len();
        ingest(archive, dir, batch);
        in_flight.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Archives spooled entries, grouped by tenant, and deletes each spool file
/// after the commit that holds it returned. A failing archive is retried a
/// few times; what still fails stays in the spool for the next start.
fn ingest(archive: &Archive, dir: &Path, batch: Vec<Pending>) {
    let mut by_tenant: HashMap<TenantId, Vec<Pending>> = HashMap::new();
    for p in batch {
        by_tenant.entry(p.tenant.clone()).or_default().push(p);
    }
    for (tenant, items) in by_tenant {
        let input: Vec<(&[u8], Envelope)> = items
            .iter()
            .map(|p| (p.raw.as_slice(), p.envelope.clone()))
            .collect();
        let mut attempt = 0u32;
        loop {
            match archive.ingest_batch(&tenant, &input) {
                Ok(results) => {
                    for (p, r) in items.iter().zip(results) {
                        let path = dir.join(&p.name);
                        match r {
                            Ok(_) => {
                                let _ = std::fs::remove_file(&path);
                            }
                            Err(e) => {
                                eprintln!(
                                    "ama-smtp: archive refused spool entry {}: {e}; kept in failed/",
                                    p.name
                                );
                                quarantine(dir, &p.name);
                            }
                        }
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    eprintln!(
                        "ama-smtp: archiving {} spooled messages failed (attempt {attempt}): {e}",
                        items.len()
                    );
                    if attempt >= 5 {
                        break; // the files stay; the next start ingests them
                    }
                    std::thread::sleep(Duration::from_millis(200 << attempt));
                }
            }
        }
    }
}

fn quarantine(dir: &Path, name: &str) {
    let failed = dir.join("failed");
    let _ = std::fs::create_dir_all(&failed);
    let _ = std::fs::rename(dir.join(name), failed.join(name));
}

/// Ingests every complete entry left in the spool; removes `.tmp-*` files.
fn recover(archive: &Archive, dir: &Path) -> Result<(), SmtpError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(SmtpError::spool(dir))? {
        let entry = entry.map_err(SmtpError::spool(dir))?;
        if !entry.file_type().map_err(SmtpError::spool(dir))?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        } else {
            names.push(name);
        }
    }
    names.sort();
    if !names.is_empty() {
        eprintln!(
            "ama-smtp: archiving {} messages left in the spool",
            names.len()
        );
    }
    for chunk in names.chunks(INGEST_BATCH) {
        let mut batch = Vec::with_capacity(chunk.len());
        for name in chunk {
            match read_entry(archive, dir, name) {
                Ok(p) => batch.push(p),
                Err(e) => {
                    eprintln!("ama-smtp: {e}; moved to failed/");
                    quarantine(dir, name);
                }
            }
        }
        ingest(archive, dir, batch);
    }
    Ok(())
}

fn read_entry(archive: &Archive, dir: &Path, name: &str) -> Result<Pending, SmtpError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(SmtpError::spool(&path))?;
    let bad = |reason: &str| SmtpError::SpoolEntry {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let (tenant, sealed) = parse_file(&bytes).ok_or_else(|| bad("not a spool entry"))?;
    let tenant = TenantId::new(tenant).map_err(|_| bad("bad tenant id"))?;
    let payload = archive
        .spool_open(&tenant, name, sealed)
        .map_err(|e| bad(&e.to_string()))?;
    let (envelope, raw) = decode_payload(&payload).ok_or_else(|| bad("bad payload"))?;
    Ok(Pending {
        tenant,
        name: name.to_string(),
        envelope,
        raw: Arc::new(raw),
        _permit: None,
    })
}

fn file_bytes(tenant: &TenantId, sealed: &[u8]) -> Vec<u8> {
    let t = tenant.as_str().as_bytes();
    let mut out = Vec::with_capacity(6 + t.len() + sealed.len());
    out.extend_from_slice(FILE_MAGIC);
    out.push(FILE_VERSION);
    out.push(u8::try_from(t.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&t[..t.len().min(255)]);
    out.extend_from_slice(sealed);
    out
}

fn parse_file(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let rest = bytes.strip_prefix(FILE_MAGIC)?;
    let (&version, rest) = rest.split_first()?;
    if version != FILE_VERSION {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (tenant, sealed) = rest.split_at_checked(len as usize)?;
    Some((std::str::from_utf8(tenant).ok()?, sealed))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_payload(env: &Envelope, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.push(PAYLOAD_VERSION);
    out.extend_from_slice(&env.received_at.unix_timestamp_nanos().to_le_bytes());
    match &env.mail_from {
        Some(m) => put_str(&mut out, m),
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    out.extend_from_slice(&u32::try_from(env.rcpt_to.len()).unwrap_or(0).to_le_bytes());
    for r in &env.rcpt_to {
        put_str(&mut out, r);
    }
    out.extend_from_slice(raw);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self, len: u32) -> Option<String> {
        String::from_utf8(self.take(len as usize)?.to_vec()).ok()
    }
}

fn decode_payload(bytes: &[u8]) -> Option<(Envelope, Vec<u8>)> {
    let mut r = Reader(bytes);
    if r.take(1)? != [PAYLOAD_VERSION] {
        return None;
    }
    let ns = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
    let mut env = Envelope::new(Source::Smtp);
    env.received_at = OffsetDateTime::from_unix_timestamp_nanos(ns).ok()?;
    let len = r.u32()?;
    env.mail_from = if len == u32::MAX {
        None
    } else {
        Some(r.string(len)?)
    };
    let n = r.u32()?;
    for _ in 0..n {
        let len = r.u32()?;
        env.rcpt_to.push(r.string(len)?);
    }
    Some((env, r.0.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_garbage() {
        let env = Envelope::new(Source::Smtp)
            .mail_from("a@b.test")
            .rcpt("x@y.test")
            .rcpt("z@y.test");
        let p = encode_payload(&env, b"raw bytes\r\n");
        let (e2, raw) = decode_payload(&p).unwrap();
        assert_eq!(e2, env);
        assert_eq!(raw, b"raw bytes\r\n");
        for cut in 0..p.len().min(60) {
            let _ = decode_payload(&p[..cut]);
        }
        let mut env = env;
        env.mail_from = None;
        let (e3, _) = decode_payload(&encode_payload(&env, b"")).unwrap();
        assert_eq!(e3.mail_from, None);
        let t = TenantId::new("acme").unwrap();
        let f = file_bytes(&t, b"sealed");
        assert_eq!(parse_file(&f), Some(("acme", &b"sealed"[..])));
        assert_eq!(parse_file(b"AMAS\x01\xff"), None);
        assert_eq!(parse_file(b"nope"), None);
    }

    #[test]
    fn group_write_makes_every_file_complete_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..37)
            .map(|i| (format!("q{i}"), vec![u8::try_from(i).unwrap(); 1000 + i]))
            .collect();
        let refs: Vec<&(String, Vec<u8>)> = files.iter().collect();
        write_group(dir.path(), &refs).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
        want.sort();
        assert_eq!(names, want, "all renamed, no .tmp- left");
        for (name, bytes) in &files {
            assert_eq!(&std::fs::read(dir.path().join(name)).unwrap(), bytes);
        }
        // One file that cannot be written: the group fails, nothing is renamed
        // and no temporary file stays.
        let bad = tempfile::tempdir().unwrap();
        let mut files = files;
        files.push(("missing/dir".into(), b"x".to_vec()));
        let refs: Vec<&(String, Vec<u8>)> = files.iter().collect();
        assert!(write_group(bad.path(), &refs).is_err());
        assert_eq!(std::fs::read_dir(bad.path()).unwrap().count(), 0);
    }
}
