//! Export jobs: `POST /v1/tenants/{t}/exports` starts an export in the
//! background, `GET …/exports/{job}` reports its progress and
//! `GET …/exports/{job}/download` streams the finished file.
//!
//! Why jobs beside the direct streamed `GET …/export`: a large export takes
//! longer than a client wants to hold a request open, and a job that
//! failed says why instead of cutting a download short. The price is a
//! file parked on the server, and DESIGN.md allows no plaintext mail at
//! rest. So the job's file is written through a streaming AEAD: chunks of
//! at most 64 KiB, each sealed with AES-256-GCM under a random key that
//! exists only in this process's memory (never written anywhere), the
//! associated data binding the job id, the chunk's position and whether it
//! is the last chunk. Reordering, dropping, repeating or truncating chunks
//! fails authentication; after a restart the key is gone and the leftover
//! files, unreadable by anyone, are deleted when the next server starts.
//! A file is deleted once its download completed, or when the job expires
//! (the TTL of [`crate::HttpConfig::export_ttl`], counted from the job's
//! start), whichever comes first.
//!
//! Only the principal that started a job (same tenant, same user) may see
//! it; anyone else is answered 404 exactly like a job that does not exist.
//! The engine audits the export itself, once, when the job runs.
//!
//! Job file format, version 1: the 8-byte magic `AMAEXPJ\x01`, then
//! records `last (1 byte, 0 or 1) | length (u32 big-endian) | sealed chunk`
//! where the sealed chunk is [`ama_core::crypto::seal`]'s output with the
//! associated data `ama-http/export-job/v1\0 | job id | \0 | index (u64
//! big-endian) | last`. The last record has `last = 1` (its chunk may be
//! empty) and nothing follows it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use ama_core::crypto::{self, SecretKey};
use ama_core::export::ExportSummary;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Authed;
use crate::export::{ChannelBody, ExportParams};
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::{Kind, Problem, ProblemBody};

/// Plaintext bytes per sealed chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the reading thread and the client.
const QUEUE: usize = 8;
/// Magic and format version at the start of every job file.
const MAGIC: &[u8; 8] = b"AMAEXPJ\x01";
/// Jobs one principal may have at once (running or waiting for download).
const MAX_JOBS_PER_OWNER: usize = 8;
/// Longest time between two sweeps for expired jobs.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Failures of the job file itself (not of the export).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum JobFileError {
    /// Reading or writing the file failed.
    #[error("export job file: {0}")]
    Io(#[from] io::Error),
    /// A chunk failed authentication or the file is not a job file.
    #[error("export job file: {0}")]
    Crypto(#[from] ama_core::error::CryptoError),
    /// The file ends before its last chunk, or goes on after it.
    #[error("export job file: {0}")]
    Malformed(&'static str),
}

impl From<JobFileError> for io::Error {
    fn from(e: JobFileError) -> Self {
        match e {
            JobFileError::Io(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}

/// Associated data of one chunk.
fn chunk_aad(job: &str, index: u64, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    aad.extend_from_slice(b"ama-http/export-job/v1\0");
    aad.extend_from_slice(job.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

/// Writes plaintext as sealed chunks (see the module docs for the format).
pub(crate) struct SealingWriter<W: Write> {
    out: W,
    key: Arc<SecretKey>,
    job: String,
    buf: Vec<u8>,
    index: u64,
    /// Plaintext bytes taken so far.
    pub(crate) plaintext: u64,
}

impl<W: Write> SealingWriter<W> {
    /// Starts a file: writes the magic.
    pub(crate) fn new(mut out: W, key: Arc<SecretKey>, job: &str) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(SealingWriter {
            out,
            key,
            job: job.to_string(),
            buf: Vec::with_capacity(CHUNK),
            index: 0,
            plaintext: 0,
        })
    }

    /// Seals the buffer (at most one chunk) as the next record and empties it.
    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let sealed = crypto::seal(
            &self.key,
            &chunk_aad(&self.job, self.index, last),
            &self.buf,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        self.buf.clear();
        let len = u32::try_from(sealed.len()).map_err(io::Error::other)?;
        self.out.write_all(&[u8::from(last)])?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&sealed)?;
        self.index += 1;
        Ok(())
    }

    /// Seals what is left as the last chunk and flushes; returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full chunk is sealed only when more data follows, so that the
        // last chunk can always carry the last flag at `finish`.
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.len() == CHUNK {
                self.seal_chunk(false)?;
            }
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        self.plaintext += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A chunk is sealed only when full or at `finish`: flushing early
        // would not make a partial file readable anyway.
        Ok(())
    }
}

/// Reads what [`SealingWriter`] wrote, chunk by chunk, authenticating each.
pub(crate) struct OpeningReader<R: Read> {
    inp: R,
    key: Arc<SecretKey>,
    job: String,
    index: u64,
    done: bool,
    started: bool,
}

impl<R: Read> OpeningReader<R> {
    pub(crate) fn new(inp: R, key: Arc<SecretKey>, job: &str) -> Self {
        OpeningReader {
            inp,
            key,
            job: job.to_string(),
            index: 0,
            done: false,
            started: false,
        }
    }

    /// The next plaintext chunk; `None` after the last one.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, JobFileError> {
        if !self.started {
            let mut magic = [0u8; 8];
            read_full(
                &mut self.inp,
                &mut magic,
                "the file is shorter than its header",
            )?;
            if &magic != MAGIC {
                return Err(JobFileError::Malformed(
                    "not an export job file of a known version",
                ));
            }
            self.started = true;
        }
        if self.done {
            let mut one = [0u8; 1];
            return match self.inp.read(&mut one)? {
                0 => Ok(None),
                _ => Err(JobFileError::Malformed("data after the last chunk")),
            };
        }
        let mut head = [0u8; 5];
        read_full(
            &mut self.inp,
            &mut head,
            "the file ends before its last chunk",
        )?;
        let last = match head[0] {
            0 => false,
            1 => true,
            _ => return Err(JobFileError::Malformed("a chunk has a bad last flag")),
        };
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > CHUNK + crypto::SEAL_OVERHEAD {
            return Err(JobFileError::Malformed("a chunk is longer than allowed"));
        }
        let mut sealed = vec![0u8; len];
        read_full(&mut self.inp, &mut sealed, "the file ends inside a chunk")?;
        let plain = crypto::open(
            &self.key,
            &chunk_aad(&self.job, self.index, last),
            &sealed,
            "export job chunk",
        )?;
        self.index += 1;
        self.done = last;
        Ok(Some(plain))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8], short: &'static str) -> Result<(), JobFileError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(JobFileError::Malformed(short)),
        Err(e) => Err(e.into()),
    }
}

/// How far a job is.
enum Status {
    Running,
    Done { summary: ExportSummary, size: u64 },
    Failed(Problem),
}

/// One export job. Dropping the last handle deletes its file.
pub(crate) struct Job {
    id: String,
    tenant: String,
    owner: Option<String>,
    ext: &'static str,
    mime: &'static str,
    key: Arc<SecretKey>,
    path: PathBuf,
    started: time::OffsetDateTime,
    expires: Instant,
    status: Mutex<Status>,
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!("ama-http: could not delete an export job file: {e}");
        }
    }
}

impl Job {
    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The jobs of one server and the directory of their files.
pub(crate) struct Jobs {
    dir: PathBuf,
    ttl: Duration,
    map: Mutex<HashMap<String, Arc<Job>>>,
}

impl Jobs {
    /// Jobs whose files live in `dir`. Files left there by an earlier
    /// process are deleted (their keys died with it). A thread sweeps
    /// expired jobs while the returned handle lives.
    pub(crate) fn new(dir: PathBuf, ttl: Duration) -> Arc<Self> {
        match fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    if let Err(err) = fs::remove_file(e.path()) {
                        eprintln!("ama-http: could not delete a leftover export job file: {err}");
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("ama-http: could not list the export job directory: {e}"),
        }
        let jobs = Arc::new(Jobs {
            dir,
            ttl,
            map: Mutex::new(HashMap::new()),
        });
        let weak: Weak<Jobs> = Arc::downgrade(&jobs);
        let every = (ttl / 2).clamp(Duration::from_millis(100), SWEEP_EVERY);
        let spawned = std::thread::Builder::new()
            .name("ama-http-export-jobs".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    match weak.upgrade() {
                        Some(j) => j.sweep(),
                        None => break,
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("ama-http: no export job sweeper (jobs expire on access only): {e}");
        }
        jobs
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets expired jobs (their files go when the last handle does).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<Arc<Job>> = {
            let mut m = self.map();
            let ids: Vec<String> = m
                .iter()
                .filter(|(_, j)| j.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| m.remove(k)).collect()
        };
        drop(expired); // outside the lock: dropping deletes files
    }

    /// The job `id` if `a` may see it.
    fn get(&self, a: &Authed, id: &str) -> Result<Arc<Job>, Problem> {
        self.sweep();
        let m = self.map();
        match m.get(id) {
            Some(j)
                if j.tenant == a.principal.tenant().as_str()
                    && j.owner.as_deref() == a.principal.user() =>
            {
                Ok(j.clone())
            }
            _ => Err(Problem::not_found()),
        }
    }

    fn remove(&self, id: &str) {
        let j = self.map().remove(id);
        drop(j);
    }
}

/// An export job's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportJob {
    /// The job's id.
    pub id: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// `mbox` or `zip`.
    pub format: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Seconds until the job and its file are deleted (also deleted after a completed download).
    pub expires_in: u64,
    /// Messages selected (done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<u64>,
    /// Messages in the file (done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<u64>,
    /// Selected messages deleted before they could be read (done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vanished: Option<u64>,
    /// The download's size in bytes (done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Where to download the file (done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download: Option<String>,
    /// Why it failed (failed): a problem as the direct export would have answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ProblemBody>,
}

fn job_path(tenant: &str, id: &str) -> String {
    format!("/v1/tenants/{tenant}/exports/{id}")
}

fn describe(j: &Job) -> ExportJob {
    let base = job_path(&j.tenant, &j.id);
    let mut out = ExportJob {
        id: j.id.clone(),
        status: "running".into(),
        format: j.ext.into(),
        started_at: j
            .started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        expires_in: j
            .expires
            .saturating_duration_since(Instant::now())
            .as_secs(),
        selected: None,
        exported: None,
        vanished: None,
        size: None,
        download: None,
        error: None,
    };
    match &*j.status() {
        Status::Running => {}
        Status::Done { summary, size } => {
            out.status = "done".into();
            out.selected = Some(summary.selected);
            out.exported = Some(summary.exported);
            out.vanished = Some(summary.vanished.len() as u64);
            out.size = Some(*size);
            out.download = Some(format!("{base}/download"));
        }
        Status::Failed(p) => {
            out.status = "failed".into();
            out.error = Some(p.body());
        }
    }
    out
}

fn random_id() -> Result<String, Problem> {
    let mut b = [0u8; 16];
    crypto::random_fill(&mut b).map_err(|e| Problem::internal(&e))?;
    Ok(crate::auth::hex(&b))
}

/// Start an export job (mbox or zip of the tenant, a query, listed messages
/// or a legal hold). The file is kept encrypted on the server until it is
/// downloaded or expires.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/exports", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"), ExportParams),
    responses(
        (status = 202, description = "Started; poll the job at Location", body = ExportJob,
         headers(("Location" = String, description = "The job"))),
        (status = 400, description = "Invalid ids or parameters", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "CSRF token missing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Too many export jobs waiting for download", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No space for export jobs on the server", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn start(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> Result<Response, Problem> {
    if a.principal.tenant().as_str() != tenant {
        return Err(Problem::not_found());
    }
    let selection = p.selection()?;
    let (format, mime, ext) = p.format();
    let jobs = st.jobs.clone();
    jobs.sweep();
    let owner = a.principal.user().map(str::to_string);
    let mine = jobs
        .map()
        .values()
        .filter(|j| j.tenant == tenant && j.owner == owner)
        .count();
    if mine >= MAX_JOBS_PER_OWNER {
        return Err(Problem::new(
            Kind::Conflict,
            format!(
                "{MAX_JOBS_PER_OWNER} export jobs are waiting; download or wait for one to expire"
            ),
        ));
    }
    let id = random_id()?;
    let key = Arc::new(SecretKey::generate().map_err(|e| Problem::internal(&e))?);
    let path = jobs.dir.join(format!("{id}.job"));
    let file = create_file(&jobs.dir, &path).map_err(|e| {
        eprintln!("ama-http: cannot create an export job file: {e}");
        Problem::new(Kind::Unavailable, "the server cannot hold export jobs now")
    })?;
    let job = Arc::new(Job {
        id: id.clone(),
        tenant: tenant.clone(),
        owner,
        ext,
        mime,
        key,
        path,
        started: time::OffsetDateTime::now_utc(),
        expires: Instant::now() + jobs.ttl,
        status: Mutex::new(Status::Running),
    });
    jobs.map().insert(id.clone(), job.clone());
    let destination = match a.principal.context().source.as_deref() {
        Some(s) => format!("HTTP export job {id} by {s}"),
        None => format!("HTTP export job {id}"),
    };
    let archive = st.archive.clone();
    let who = a.principal;
    let worker = job.clone();
    tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<(ExportSummary, u64), Problem> {
            let mut w = SealingWriter::new(BufWriter::new(file), worker.key.clone(), &worker.id)
                .map_err(|e| Problem::internal(&e))?;
            let summary = archive
                .export(&who, &selection, format, &destination, &mut w)
                .map_err(Problem::from)?;
            let size = w.plaintext;
            let f = w.finish().map_err(|e| Problem::internal(&e))?;
            f.into_inner()
                .map_err(|e| Problem::internal(&e.into_error()))?;
            Ok((summary, size))
        })();
        let status = match result {
            Ok((summary, size)) => Status::Done { summary, size },
            Err(p) => {
                // Nothing of a failed export is handed out: drop its file now.
                let _ = fs::remove_file(&worker.path);
                Status::Failed(p)
            }
        };
        *worker.status() = status;
    });
    let location = job_path(&tenant, &id);
    let mut r = (StatusCode::ACCEPTED, Json(describe(&job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

fn create_file(dir: &Path, path: &Path) -> io::Result<File> {
    fs::create_dir_all(dir)?;
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// An export job's state (only its creator sees it).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/exports/{job}", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"),
           ("job" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = ExportJob),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such job for the caller (another's, expired or downloaded)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn status(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<Json<ExportJob>, Problem> {
    if a.principal.tenant().as_str() != tenant {
        return Err(Problem::not_found());
    }
    let job = st.jobs.get(&a, &id)?;
    Ok(Json(describe(&job)))
}

/// Download a finished export job's file; the job ends when the download completed.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/exports/{job}/download", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"),
           ("job" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The export, streamed; an aborted transfer is an incomplete export",
         content((Vec<u8> = "application/mbox"), (Vec<u8> = "application/zip"))),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such job for the caller (another's, expired or downloaded)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The job is still running or failed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn download(
    State(st): State<AppState>,
    a: Authed,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<Response, Problem> {
    if a.principal.tenant().as_str() != tenant {
        return Err(Problem::not_found());
    }
    let job = st.jobs.get(&a, &id)?;
    let size = match &*job.status() {
        Status::Running => {
            return Err(Problem::new(
                Kind::Conflict,
                "the export job is still running",
            ));
        }
        Status::Failed(p) => {
            return Err(Problem::new(
                Kind::Conflict,
                format!("the export job failed: {}", p.detail),
            ));
        }
        Status::Done { size, .. } => *size,
    };
    let file = File::open(&job.path).map_err(|e| Problem::internal(&e))?;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(QUEUE);
    let jobs = st.jobs.clone();
    let reader_job = job.clone();
    tokio::task::spawn_blocking(move || {
        let mut r =
            OpeningReader::new(BufReader::new(file), reader_job.key.clone(), &reader_job.id);
        loop {
            match r.next_chunk() {
                Ok(Some(c)) if c.is_empty() => {}
                Ok(Some(c)) => {
                    if tx.blocking_send(Ok(Bytes::from(c))).is_err() {
                        return; // the client went away; it may try again
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("ama-http: export job download aborted: {e}");
                    let _ = tx.blocking_send(Err(e.into()));
                    return;
                }
            }
        }
        // Handed over completely: the job and its file end here, before the
        // body's end reaches the client (dropping `tx` ends it), so a client
        // that asks right after its download already finds the job gone.
        // (The other order was a race a loaded test machine lost.)
        jobs.remove(&reader_job.id);
        drop(tx);
    });
    let first = rx.recv().await;
    if let Some(Err(e)) = &first {
        return Err(Problem::internal(e));
    }
    let mut r = Body::new(ChannelBody { first, rx }).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(job.mime));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{tenant}-export.{}\"",
        job.ext
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) -> Vec<u8> {
        let key = Arc::new(SecretKey::generate().unwrap());
        let mut w = SealingWriter::new(Vec::new(), key.clone(), "j1").unwrap();
        w.write_all(data).unwrap();
        let file = w.finish().unwrap();
        let mut r = OpeningReader::new(&file[..], key, "j1");
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn writes_of_any_size_give_the_same_chunks() {
        let data: Vec<u8> = (0..3 * CHUNK + 99).map(|i| (i % 253) as u8).collect();
        let key = Arc::new(SecretKey::generate().unwrap());
        let mut w = SealingWriter::new(Vec::new(), key.clone(), "j1").unwrap();
        for piece in data.chunks(7_777) {
            w.write_all(piece).unwrap();
        }
        let file = w.finish().unwrap();
        // 4 records: three full chunks and the last one.
        assert_eq!(file.len(), 8 + 4 * (5 + crypto::SEAL_OVERHEAD) + data.len());
        assert_eq!(read_all(&file, key, "j1").unwrap(), data);
    }

    #[test]
    fn sealed_chunks_round_trip_at_every_size() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            assert_eq!(roundtrip(&data), data, "size {n}");
        }
    }

    fn sealed(data: &[u8], key: &Arc<SecretKey>) -> Vec<u8> {
        let mut w = SealingWriter::new(Vec::new(), key.clone(), "j1").unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn read_all(file: &[u8], key: Arc<SecretKey>, job: &str) -> Result<Vec<u8>, JobFileError> {
        let mut r = OpeningReader::new(file, key, job);
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk()? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    #[test]
    fn truncation_reordering_and_tampering_are_refused() {
        let key = Arc::new(SecretKey::generate().unwrap());
        let data = vec![7u8; 2 * CHUNK + 5];
        let file = sealed(&data, &key);
        let rec = 5 + CHUNK + crypto::SEAL_OVERHEAD; // one full record
        // Cut after the first record: no last chunk.
        let cut = &file[..8 + rec];
        assert!(matches!(
            read_all(cut, key.clone(), "j1"),
            Err(JobFileError::Malformed(_))
        ));
        // Swap the first two (full) records.
        let mut swapped = file[..8].to_vec();
        swapped.extend_from_slice(&file[8 + rec..8 + 2 * rec]);
        swapped.extend_from_slice(&file[8..8 + rec]);
        swapped.extend_from_slice(&file[8 + 2 * rec..]);
        assert!(matches!(
            read_all(&swapped, key.clone(), "j1"),
            Err(JobFileError::Crypto(_))
        ));
        // Mark the first record as the last one.
        let mut flagged = file.clone();
        flagged[8] = 1;
        assert!(matches!(
            read_all(&flagged, key.clone(), "j1"),
            Err(JobFileError::Crypto(_))
        ));
        // Another job's name, a flipped bit, another key, a wrong magic, trailing data.
        assert!(read_all(&file, key.clone(), "j2").is_err());
        let mut flipped = file.clone();
        flipped[8 + 5 + 20] ^= 1;
        assert!(read_all(&flipped, key.clone(), "j1").is_err());
        let other = Arc::new(SecretKey::generate().unwrap());
        assert!(read_all(&file, other, "j1").is_err());
        let mut magic = file.clone();
        magic[7] = 2;
        assert!(matches!(
            read_all(&magic, key.clone(), "j1"),
            Err(JobFileError::Malformed(_))
        ));
        let mut trailing = file.clone();
        trailing.push(0);
        assert!(matches!(
            read_all(&trailing, key.clone(), "j1"),
            Err(JobFileError::Malformed(_))
        ));
        assert_eq!(read_all(&file, key, "j1").unwrap(), data);
    }

    #[test]
    fn no_plaintext_in_the_file() {
        let key = Arc::new(SecretKey::generate().unwrap());
        let canary = b"CANARY-7f3a9-plaintext-must-not-appear";
        let mut data = Vec::new();
        for _ in 0..5000 {
            data.extend_from_slice(canary);
        }
        let file = sealed(&data, &key);
        assert!(!file.windows(canary.len()).any(|w| w == canary));
        assert!(!file.windows(12).any(|w| w == &canary[..12]));
    }

    #[test]
    fn leftovers_are_deleted_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let jobdir = dir.path().join("exports");
        fs::create_dir_all(&jobdir).unwrap();
        fs::write(jobdir.join("old.job"), b"AMAEXPJ\x01junk").unwrap();
        let _jobs = Jobs::new(jobdir.clone(), Duration::from_secs(60));
        assert_eq!(fs::read_dir(&jobdir).unwrap().count(), 0);
    }
}
