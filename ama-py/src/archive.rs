//! [`NativeArchive`]: an open archive as seen from Python (`ama._ama.Archive`).
//!
//! The engine sits in a `RwLock<Option<Arc<Archive>>>`: each call clones the
//! `Arc` under a short read lock, then releases the GIL and works on its own
//! clone, so calls from several threads run in parallel and a concurrent
//! [`NativeArchive::close`] cannot pull the archive from under a running
//! call. `close` empties the slot; the engine is dropped (its index flushed,
//! its files released) when the last running call returns.
//!
//! Every method takes the tenant id and, for reads, the principal (`None`:
//! the tenant's auditor, the operator's view; a list of addresses: an end
//! user owning them), so the Python `Tenant` objects stay plain values.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ama_core::import::{ImportEvent, ImportOptions, import_paths};
use ama_core::{
    Archive, ArchiveOptions, Envelope, KdfParams, MessageId, Principal, SearchOptions, Sort,
    Source, TenantId, TenantSpec, Unlock,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyTuple};
use time::OffsetDateTime;

use crate::convert::{self, ReceiptTuple, StatsTuple, TenantTuple};
use crate::errors;

/// Runs `f` with the GIL released and panics caught; engine errors become
/// their Python classes.
fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> ama_core::Result<T> + Send) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(errors::to_py(e)),
        Err(panic) => Err(errors::panicked(panic)),
    }
}

fn unlock(passphrase: Option<String>, key_file: Option<PathBuf>) -> PyResult<Unlock> {
    match (passphrase, key_file) {
        (Some(p), None) => Ok(Unlock::passphrase(p)),
        (None, Some(k)) => Ok(Unlock::KeyFile(k)),
        (None, None) => Err(PyTypeError::new_err(
            "give passphrase= or key_file= to unlock the archive",
        )),
        (Some(_), Some(_)) => Err(PyTypeError::new_err(
            "give either passphrase= or key_file=, not both",
        )),
    }
}

fn tenant_id(id: &str) -> PyResult<TenantId> {
    TenantId::new(id).map_err(|e| errors::to_py(e.into()))
}

fn principal(tenant: TenantId, end_user: Option<Vec<String>>) -> Principal {
    match end_user {
        None => Principal::auditor(tenant),
        Some(addresses) => Principal::end_user(tenant, addresses),
    }
}

fn message_id(id: &str) -> PyResult<MessageId> {
    id.trim()
        .parse::<MessageId>()
        .map_err(|e| errors::invalid(e.to_string()))
}

fn envelope(
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    received_at_us: Option<i64>,
) -> PyResult<Envelope> {
    let mut env = Envelope::new(Source::Python);
    env.mail_from = mail_from;
    env.rcpt_to = rcpt_to;
    if let Some(us) = received_at_us {
        env.received_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .map_err(|e| errors::invalid(format!("received_at out of range: {e}")))?;
    }
    Ok(env)
}

fn sort(name: &str) -> PyResult<Sort> {
    match name {
        "date" | "newest" => Ok(Sort::Newest),
        "oldest" => Ok(Sort::Oldest),
        "relevance" => Ok(Sort::Relevance),
        other => Err(errors::invalid(format!(
            "unknown sort {other:?}: use 'date' (newest first), 'oldest' or 'relevance'"
        ))),
    }
}

/// One item for [`NativeArchive::ingest_batch`]:
/// `(raw, mail_from, rcpt_to, received_at in µs since the epoch)`.
type BatchItem = (PyBackedBytes, Option<String>, Vec<String>, Option<i64>);

/// Per message of a batch: `(receipt, None)` or `(None, why it was refused)`.
type BatchResult = (Option<ReceiptTuple>, Option<String>);

/// `(imported, duplicates, refused, bytes, [(origin, reason)])`.
type ImportTuple = (u64, u64, u64, u64, Vec<(String, String)>);

/// An open archive (the native handle behind `ama.Archive`).
#[pyclass(frozen, name = "Archive", module = "ama._ama")]
pub struct NativeArchive {
    slot: RwLock<Option<Arc<Archive>>>,
    path: String,
}

impl NativeArchive {
    fn engine(&self) -> PyResult<Arc<Archive>> {
        let slot = self
            .slot
            .read()
            .map_err(|_| errors::new_err("Error", ("archive handle lock poisoned",)))?;
        slot.clone().ok_or_else(errors::closed)
    }

    fn new(archive: Archive) -> Self {
        NativeArchive {
            path: archive.data_dir().display().to_string(),
            slot: RwLock::new(Some(Arc::new(archive))),
        }
    }
}

#[pymethods]
impl NativeArchive {
    /// Opens the archive in `path`, unlocked by a passphrase or a key file.
    #[staticmethod]
    #[pyo3(signature = (path, *, passphrase=None, key_file=None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        passphrase: Option<String>,
        key_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let unlock = unlock(passphrase, key_file)?;
        let archive = run(py, || {
            Archive::open(&path, &unlock, ArchiveOptions::default())
        })?;
        Ok(Self::new(archive))
    }

    /// Creates a new archive in `path` (which must not hold one).
    /// `fast_kdf` uses cheap argon2 parameters: for tests only.
    #[staticmethod]
    #[pyo3(signature = (path, *, passphrase=None, key_file=None, fast_kdf=false))]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        passphrase: Option<String>,
        key_file: Option<PathBuf>,
        fast_kdf: bool,
    ) -> PyResult<Self> {
        let unlock = unlock(passphrase, key_file)?;
        let options = ArchiveOptions {
            kdf: if fast_kdf {
                KdfParams::insecure_fast()
            } else {
                KdfParams::default()
            },
            ..ArchiveOptions::default()
        };
        let archive = run(py, || Archive::create(&path, &unlock, options))?;
        Ok(Self::new(archive))
    }

    /// The data directory.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.slot.read().map(|s| s.is_none()).unwrap_or(true)
    }

    /// Closes the archive; later calls raise `ama.ArchiveClosed`. Calls
    /// running in other threads finish first. Closing twice is allowed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .slot
            .write()
            .map_err(|_| errors::new_err("Error", ("archive handle lock poisoned",)))?
            .take();
        if let Some(engine) = taken {
            // Dropping the last reference flushes the indexes: no GIL needed.
            run(py, move || {
                drop(engine);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Creates a tenant; returns its settings.
    #[pyo3(signature = (id, *, name=None, region=None, domains=Vec::new(), retention=None))]
    fn create_tenant(
        &self,
        py: Python<'_>,
        id: String,
        name: Option<String>,
        region: Option<String>,
        domains: Vec<String>,
        retention: Option<String>,
    ) -> PyResult<TenantTuple> {
        let engine = self.engine()?;
        let region = region.as_deref().unwrap_or("eu");
        let retention = retention.as_deref().unwrap_or("10y");
        let spec = TenantSpec {
            id: tenant_id(&id)?,
            name,
            region: region
                .parse()
                .map_err(|e: ama_core::TenantError| errors::to_py(e.into()))?,
            domains,
            retention: retention
                .parse()
                .map_err(|e: ama_core::TenantError| errors::to_py(e.into()))?,
        };
        run(py, move || engine.create_tenant(spec)).map(convert::tenant)
    }

    /// Every tenant's settings, by id.
    fn tenants(&self, py: Python<'_>) -> PyResult<Vec<TenantTuple>> {
        let engine = self.engine()?;
        let all = run(py, move || engine.tenants())?;
        Ok(all.into_iter().map(convert::tenant).collect())
    }

    /// One tenant's settings (`ama.UnknownTenant` if there is none).
    fn tenant(&self, py: Python<'_>, id: String) -> PyResult<TenantTuple> {
        let engine = self.engine()?;
        let id = tenant_id(&id)?;
        run(py, move || engine.tenant(&id)).map(convert::tenant)
    }

    /// `(messages, raw_bytes, stored_bytes, duplicates)` of a tenant.
    fn stats(&self, py: Python<'_>, tenant: String) -> PyResult<StatsTuple> {
        let engine = self.engine()?;
        let id = tenant_id(&tenant)?;
        run(py, move || engine.stats(&id)).map(convert::stats)
    }

    /// Rebuilds a tenant's index; returns the number of messages indexed.
    fn reindex(&self, py: Python<'_>, tenant: String) -> PyResult<u64> {
        let engine = self.engine()?;
        let id = tenant_id(&tenant)?;
        run(py, move || engine.reindex(&id))
    }

    /// Archives one message; returns `(id, sha256, duplicate)` once durable.
    #[pyo3(signature = (tenant, raw, *, mail_from=None, rcpt_to=Vec::new(), received_at_us=None))]
    fn ingest(
        &self,
        py: Python<'_>,
        tenant: String,
        raw: PyBackedBytes,
        mail_from: Option<String>,
        rcpt_to: Vec<String>,
        received_at_us: Option<i64>,
    ) -> PyResult<ReceiptTuple> {
        let engine = self.engine()?;
        let id = tenant_id(&tenant)?;
        let env = envelope(mail_from, rcpt_to, received_at_us)?;
        run(py, move || engine.ingest(&id, &raw, &env)).map(|r| convert::receipt(&r))
    }

    /// Archives a batch with one durable commit; per message, a receipt or
    /// the reason it was refused.
    fn ingest_batch(
        &self,
        py: Python<'_>,
        tenant: String,
        items: Vec<BatchItem>,
    ) -> PyResult<Vec<BatchResult>> {
        let engine = self.engine()?;
        let id = tenant_id(&tenant)?;
        let batch = items
            .into_iter()
            .map(|(raw, from, rcpt, at)| Ok((raw, envelope(from, rcpt, at)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let results = run(py, move || engine.ingest_batch(&id, &batch))?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(receipt) => (Some(convert::receipt(&receipt)), None),
                Err(e) => (None, Some(e.to_string())),
            })
            .collect())
    }

    /// Imports files, directories, mbox files and Maildirs through the
    /// engine's import pipeline. `progress(imported, duplicates, refused,
    /// bytes)` is called every `progress_every` messages and once at the
    /// end; if it raises (or Ctrl-C is pressed), the import stops after the
    /// batch in flight and the exception is raised; what was reported before
    /// is archived.
    #[pyo3(signature = (tenant, paths, *, progress=None, progress_every=1000, batch=500, limit=None))]
    #[allow(clippy::too_many_arguments)]
    fn import_paths(
        &self,
        py: Python<'_>,
        tenant: String,
        paths: Vec<PathBuf>,
        progress: Option<Py<PyAny>>,
        progress_every: u64,
        batch: usize,
        limit: Option<u64>,
    ) -> PyResult<ImportTuple> {
        let engine = self.engine()?;
        let id = tenant_id(&tenant)?;
        let every = progress_every.max(1);
        let options = ImportOptions {
            batch: batch.max(1),
            source: Source::Python,
            limit,
            ..ImportOptions::default()
        };
        let mut refusals: Vec<(String, String)> = Vec::new();
        let mut counts = (0u64, 0u64, 0u64, 0u64);
        let mut seen = 0u64;
        let mut callback_error: Option<PyErr> = None;
        run(py, || {
            import_paths(&engine, &id, &paths, &options, |event| {
                match event {
                    ImportEvent::Archived { receipt, size, .. } => {
                        if receipt.duplicate {
                            counts.1 += 1;
                        } else {
                            counts.0 += 1;
                        }
                        counts.3 += size;
                    }
                    ImportEvent::Refused { origin, error } => {
                        counts.2 += 1;
                        refusals.push((origin.to_string(), error));
                    }
                }
                seen += 1;
                if callback_error.is_none() && seen.is_multiple_of(every) {
                    Python::attach(|py| {
                        // Ctrl-C (or any signal handler raising) stops the import.
                        if let Err(e) = py.check_signals() {
                            callback_error = Some(e);
                        } else if let Some(cb) = &progress
                            && let Err(e) = cb.call1(py, counts)
                        {
                            callback_error = Some(e);
                        }
                    });
                }
                if callback_error.is_some() {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            })
        })?;
        if let Some(e) = callback_error {
            return Err(e);
        }
        if let Some(cb) = &progress
            && !seen.is_multiple_of(every)
        {
            cb.call1(py, counts)?;
        }
        Ok((counts.0, counts.1, counts.2, counts.3, refusals))
    }

    /// One page of a search: `(total, [message tuple])`. `end_user`: `None`
    /// searches as the tenant's auditor, a list of addresses as an end user
    /// owning them.
    #[pyo3(signature = (tenant, end_user, query, *, offset=0, limit=100, sort=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        tenant: String,
        end_user: Option<Vec<String>>,
        query: String,
        offset: usize,
        limit: usize,
        sort: Option<String>,
    ) -> PyResult<(usize, Vec<Bound<'py, PyTuple>>)> {
        let engine = self.engine()?;
        let who = principal(tenant_id(&tenant)?, end_user);
        let opts = SearchOptions {
            limit,
            offset,
            sort: self::sort(sort.as_deref().unwrap_or("date"))?,
        };
        let page = run(py, move || engine.search(&who, &query, &opts))?;
        let hits = page
            .hits
            .into_iter()
            .map(|info| convert::info(py, info))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((page.total, hits))
    }

    /// A message's metadata and, with `raw=True`, its exact bytes.
    #[pyo3(signature = (tenant, end_user, id, *, raw=true))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        tenant: String,
        end_user: Option<Vec<String>>,
        id: String,
        raw: bool,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyBytes>>)> {
        let engine = self.engine()?;
        let who = principal(tenant_id(&tenant)?, end_user);
        let id = message_id(&id)?;
        let (info, bytes) = run(py, move || {
            let info = engine.get(&who, id)?;
            let bytes = if raw {
                Some(engine.get_raw(&who, id)?)
            } else {
                None
            };
            Ok((info, bytes))
        })?;
        Ok((
            convert::info(py, info)?,
            bytes.map(|b| PyBytes::new(py, &b)),
        ))
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<ama._ama.Archive {:?} {state}>", self.path)
    }
}

/// `(body, attachment text)` of a raw message, as the engine extracts it for
/// the index: text/plain parts (or text/html as text), and text-like
/// attachments. `date` (Unix seconds) stands in for a missing `Date` header.
#[pyfunction]
pub fn message_text(py: Python<'_>, raw: PyBackedBytes, date: i64) -> PyResult<(String, String)> {
    run(py, move || {
        let parsed = ama_core::parse::parse(&raw, date);
        Ok((parsed.text.body, parsed.text.attachments))
    })
}
