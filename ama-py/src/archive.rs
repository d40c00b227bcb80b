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
//! the tenant's operator; a list of addresses: an end user owning them; a
//! string: a session token from `login`, resolved by the engine on every
//! call so a revoked or expired session stops working at once), so the
//! Python `Tenant` objects stay plain values. Everything is audited with
//! the Python frontend as its source.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ama_core::import::{ImportEvent, ImportOptions, import_paths};
use ama_core::{
    AccessContext, Archive, ArchiveOptions, AuditAction, AuditFilter, Envelope, Error, Frontend,
    KdfParams, MessageId, Outcome, Principal, Role, SearchOptions, Sort, Source, TenantId,
    TenantSpec, Unlock, User, UserSpec,
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

/// Whom a read acts for: a session token or an end user's addresses
/// (`None` on the Python side is the operator).
#[derive(FromPyObject)]
enum Who {
    /// A session token from `login`.
    Token(String),
    /// An end user owning these addresses.
    Addresses(Vec<String>),
}

fn context() -> AccessContext {
    AccessContext::new(Frontend::Python)
}

/// The principal a call acts as; a token is checked by the engine (and
/// must belong to `tenant`).
fn principal(engine: &Archive, tenant: TenantId, who: Option<Who>) -> ama_core::Result<Principal> {
    match who {
        None => Ok(Principal::operator(tenant).with_context(context())),
        Some(Who::Addresses(a)) => Ok(Principal::end_user(tenant, a).with_context(context())),
        Some(Who::Token(token)) => {
            let p = engine.authenticate(&token, &context())?;
            if p.tenant() != &tenant {
                return Err(Error::Unauthenticated(
                    "the session belongs to another tenant".into(),
                ));
            }
            Ok(p)
        }
    }
}

fn operator(tenant: TenantId) -> Principal {
    Principal::operator(tenant).with_context(context())
}

fn role(name: &str) -> PyResult<Role> {
    name.parse::<Role>().map_err(errors::to_py)
}

/// `(id, display_name, addresses, roles, active, source, has_password, last_login)`.
type UserTuple = (
    String,
    String,
    Vec<String>,
    Vec<String>,
    bool,
    String,
    bool,
    Option<i64>,
);

fn user_tuple(u: User) -> UserTuple {
    (
        u.id,
        u.display_name,
        u.addresses,
        u.roles.iter().map(|r| r.as_str().to_string()).collect(),
        u.active,
        match u.source {
            ama_core::UserSource::Local => "local".into(),
            _ => "directory".into(),
        },
        u.has_password,
        u.last_login,
    )
}

/// `(name, scope, reason, placed_at, active)`.
type HoldTuple = (String, String, String, i64, bool);

/// `(deleted, held, resumed)`.
type SweepTuple = (Vec<String>, Vec<String>, usize);
/// `(status, request, deleted, [(id, why kept)])`.
type DeletionTuple = (String, Option<String>, Vec<String>, Vec<(String, String)>);

/// `(verified, [(id, reason, deleted_at)], [(id, problem)])`.
type VerifyMessagesTuple = (
    u64,
    Vec<(String, String, i64)>,
    Vec<(Option<String>, String)>,
);

/// `(entries, head_hash, [(seq, reason)])`.
type VerifyTuple = (u64, String, Vec<(u64, String)>);

/// `(seq, at_ms, user, roles, frontend, source, action, detail, messages, outcome, reason, prev_hash)`.
type AuditTuple = (
    u64,
    i64,
    Option<String>,
    Vec<String>,
    String,
    Option<String>,
    String,
    String,
    Vec<String>,
    String,
    Option<String>,
    String,
);

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
        // An archive on a key service or on configured blob stores (S3,
        // replicas) opens as `ama` opens it: from DATA/key-service.json and
        // DATA/stores.json.
        let remote = ama_keyservice::RemoteConfigFile::load_in(&path)
            .map_err(|e| errors::invalid(e.to_string()))?;
        let stores = ama_store_s3::config::StoresConfig::load_in(&path)
            .map_err(|e| errors::to_py(e.into()))?;
        // The key service needs no passphrase; a local key store does.
        let unlock = match remote {
            Some(_) => None,
            None => Some(unlock(passphrase, key_file)?),
        };
        let archive = run(py, || {
            let store = match &stores {
                Some(c) => Some(c.open(&path)?.store),
                None => None,
            };
            match (remote, unlock) {
                (Some(file), _) => {
                    let cfg = file.to_config().map_err(|e| {
                        ama_core::Error::InvalidArgument(format!("key-service.json: {e}"))
                    })?;
                    let ttl = cfg.cache_ttl.max(std::time::Duration::from_secs(60));
                    let keys = Arc::new(ama_keyservice::RemoteKeyService::connect(cfg)?);
                    let store: Arc<dyn ama_core::BlobStore> = match store {
                        Some(s) => s,
                        None => Arc::new(ama_core::LocalStore::open(path.join("blobs"))?),
                    };
                    let options = ArchiveOptions {
                        key_ttl: Some(ttl),
                        ..ArchiveOptions::default()
                    };
                    Archive::open_with(&path, keys, store, options)
                }
                (None, Some(unlock)) => match store {
                    Some(s) => {
                        Archive::open_with_store(&path, &unlock, s, ArchiveOptions::default())
                    }
                    None => Archive::open(&path, &unlock, ArchiveOptions::default()),
                },
                (None, None) => Err(ama_core::Error::InvalidArgument(
                    "give passphrase= or key_file= to unlock the archive".into(),
                )),
            }
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
        end_user: Option<Who>,
        query: String,
        offset: usize,
        limit: usize,
        sort: Option<String>,
    ) -> PyResult<(usize, Vec<Bound<'py, PyTuple>>)> {
        let engine = self.engine()?;
        let tenant = tenant_id(&tenant)?;
        let opts = SearchOptions {
            limit,
            offset,
            sort: self::sort(sort.as_deref().unwrap_or("date"))?,
        };
        let page = run(py, move || {
            let who = principal(&engine, tenant, end_user)?;
            engine.search(&who, &query, &opts)
        })?;
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
        end_user: Option<Who>,
        id: String,
        raw: bool,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyBytes>>)> {
        let engine = self.engine()?;
        let tenant = tenant_id(&tenant)?;
        let id = message_id(&id)?;
        let (info, bytes) = run(py, move || {
            let who = principal(&engine, tenant, end_user)?;
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

    // ----- identity and audit ----------------------------------------------

    /// Logs a user in: `(token, user, roles, expires_at)`.
    #[pyo3(signature = (tenant, user, password, *, source=None))]
    fn login(
        &self,
        py: Python<'_>,
        tenant: String,
        user: String,
        password: String,
        source: Option<String>,
    ) -> PyResult<(String, String, Vec<String>, i64)> {
        let engine = self.engine()?;
        let tenant = tenant_id(&tenant)?;
        let password = zeroize::Zeroizing::new(password);
        let s = run(py, move || {
            let mut ctx = context();
            if let Some(src) = source {
                ctx = ctx.with_source(src);
            }
            engine.login(&tenant, &user, &password, &ctx)
        })?;
        Ok((
            s.token,
            s.user,
            s.roles.iter().map(|r| r.as_str().to_string()).collect(),
            s.expires_at.unix_timestamp(),
        ))
    }

    /// Ends a session.
    fn logout(&self, py: Python<'_>, token: String) -> PyResult<()> {
        let engine = self.engine()?;
        run(py, move || engine.logout(&token, &context()))
    }

    /// Adds a user (as the operator).
    #[pyo3(signature = (tenant, id, *, display_name=None, addresses=Vec::new(), roles=Vec::new(), password=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_user(
        &self,
        py: Python<'_>,
        tenant: String,
        id: String,
        display_name: Option<String>,
        addresses: Vec<String>,
        roles: Vec<String>,
        password: Option<String>,
    ) -> PyResult<UserTuple> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let roles = roles
            .iter()
            .map(|r| role(r))
            .collect::<PyResult<Vec<_>>>()?;
        let spec = UserSpec {
            id,
            display_name,
            addresses,
            roles,
            password,
        };
        run(py, move || engine.add_user(&who, spec)).map(user_tuple)
    }

    /// The tenant's users.
    fn users(&self, py: Python<'_>, tenant: String) -> PyResult<Vec<UserTuple>> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        run(py, move || engine.users(&who)).map(|v| v.into_iter().map(user_tuple).collect())
    }

    /// Changes a user: `what` is one of `password`, `active`, `grant`,
    /// `revoke`, `add_address`, `remove_address`, with its value.
    fn change_user(
        &self,
        py: Python<'_>,
        tenant: String,
        id: String,
        what: String,
        value: String,
    ) -> PyResult<UserTuple> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let r = match what.as_str() {
            "grant" | "revoke" => Some(role(&value)?),
            _ => None,
        };
        run(py, move || match (what.as_str(), r) {
            ("password", _) => engine.set_password(&who, &id, &value),
            ("active", _) => engine.set_user_active(&who, &id, value == "true"),
            ("grant", Some(r)) => engine.grant_role(&who, &id, r),
            ("revoke", Some(r)) => engine.revoke_role(&who, &id, r),
            ("add_address", _) => engine.add_address(&who, &id, &value),
            ("remove_address", _) => engine.remove_address(&who, &id, &value),
            _ => Err(Error::InvalidArgument(format!(
                "unknown user change {what:?}"
            ))),
        })
        .map(user_tuple)
    }

    /// Entries of the audit log, read as `who` (operator or session).
    #[pyo3(signature = (tenant, who, *, since=None, action=None, limit=1000))]
    fn audit(
        &self,
        py: Python<'_>,
        tenant: String,
        who: Option<Who>,
        since: Option<i64>,
        action: Option<String>,
        limit: usize,
    ) -> PyResult<Vec<AuditTuple>> {
        let engine = self.engine()?;
        let tenant = tenant_id(&tenant)?;
        let action = action
            .map(|a| a.parse::<AuditAction>())
            .transpose()
            .map_err(errors::to_py)?;
        let since = since
            .map(OffsetDateTime::from_unix_timestamp)
            .transpose()
            .map_err(|e| errors::invalid(format!("since: {e}")))?;
        let entries = run(py, move || {
            let who = principal(&engine, tenant, who)?;
            engine.audit_entries(
                &who,
                &AuditFilter {
                    since,
                    action,
                    from_seq: 0,
                    limit,
                },
            )
        })?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let reason = match &e.outcome {
                    Outcome::Denied(r) | Outcome::Failed(r) => Some(r.clone()),
                    _ => None,
                };
                (
                    e.seq,
                    e.at_ms,
                    e.actor.user.clone(),
                    e.actor
                        .roles
                        .iter()
                        .map(|r| r.as_str().to_string())
                        .collect(),
                    e.actor.frontend.as_str().to_string(),
                    e.actor.source.clone(),
                    e.action.as_str().to_string(),
                    e.detail.clone(),
                    e.messages().iter().map(|m| m.to_string()).collect(),
                    e.outcome.kind().to_string(),
                    reason,
                    ama_core::crypto::hex(&e.prev_hash),
                )
            })
            .collect())
    }

    /// Verifies the audit chain: `(entries, head_hash, [(seq, reason)])`.
    #[pyo3(signature = (tenant, who=None))]
    fn verify_audit(
        &self,
        py: Python<'_>,
        tenant: String,
        who: Option<Who>,
    ) -> PyResult<VerifyTuple> {
        let engine = self.engine()?;
        let tenant = tenant_id(&tenant)?;
        let r = run(py, move || {
            let who = principal(&engine, tenant, who)?;
            engine.verify_audit(&who)
        })?;
        Ok((
            r.entries,
            ama_core::crypto::hex(&r.head_hash),
            r.problems.into_iter().map(|p| (p.seq, p.reason)).collect(),
        ))
    }

    // ----- lifecycle: holds, retention, sweep, verify, export ------------------

    /// Places a legal hold: `kind` is `query`, `custodian` or `ids`.
    fn place_hold(
        &self,
        py: Python<'_>,
        tenant: String,
        name: String,
        kind: String,
        values: Vec<String>,
        reason: String,
    ) -> PyResult<()> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let scope = match (kind.as_str(), values.as_slice()) {
            ("query", [q]) => ama_core::HoldScope::Query(q.clone()),
            ("custodian", [a]) => ama_core::HoldScope::Custodian(a.clone()),
            ("ids", ids) => ama_core::HoldScope::ids(
                ids.iter()
                    .map(|i| message_id(i))
                    .collect::<PyResult<Vec<_>>>()?,
            ),
            _ => return Err(errors::invalid("a hold needs a query, a custodian or ids")),
        };
        run(py, move || {
            engine.place_hold(&who, &name, scope, &reason).map(|_| ())
        })
    }

    /// Releases a legal hold.
    fn release_hold(
        &self,
        py: Python<'_>,
        tenant: String,
        name: String,
        reason: String,
    ) -> PyResult<()> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        run(py, move || engine.release_hold(&who, &name, &reason))
    }

    /// `[(name, scope, reason, placed_at, active)]`.
    fn holds(&self, py: Python<'_>, tenant: String) -> PyResult<Vec<HoldTuple>> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let holds = run(py, move || engine.holds(&who))?;
        Ok(holds
            .into_iter()
            .map(|h| {
                let scope = match &h.scope {
                    ama_core::HoldScope::Query(q) => format!("query:{q}"),
                    ama_core::HoldScope::Custodian(c) => format!("custodian:{c}"),
                    ama_core::HoldScope::Ids(ids) => format!("ids:{}", ids.len()),
                };
                (h.name, scope, h.reason, h.placed_at, h.released.is_none())
            })
            .collect())
    }

    /// Sets the retention policy; returns the number of messages recomputed.
    #[pyo3(signature = (tenant, default, *, year_end=false, rules=Vec::new(), minimum=None, locked=false, four_eyes=false))]
    #[allow(clippy::too_many_arguments)]
    fn set_retention(
        &self,
        py: Python<'_>,
        tenant: String,
        default: String,
        year_end: bool,
        rules: Vec<(String, String, String)>,
        minimum: Option<String>,
        locked: bool,
        four_eyes: bool,
    ) -> PyResult<u64> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let period = |s: &str| -> PyResult<ama_core::Retention> {
            s.parse()
                .map_err(|e: ama_core::TenantError| errors::invalid(e.to_string()))
        };
        let mut parsed = Vec::new();
        for (kind, value, p) in &rules {
            let matches = match kind.as_str() {
                "address" => ama_core::RuleMatch::Address(value.clone()),
                "domain" => ama_core::RuleMatch::Domain(value.clone()),
                "query" => ama_core::RuleMatch::Query(value.clone()),
                "direction" => ama_core::RuleMatch::Direction(match value.as_str() {
                    "inbound" => ama_core::Direction::Inbound,
                    "outbound" => ama_core::Direction::Outbound,
                    "internal" => ama_core::Direction::Internal,
                    _ => return Err(errors::invalid(format!("unknown direction {value:?}"))),
                }),
                _ => return Err(errors::invalid(format!("unknown rule kind {kind:?}"))),
            };
            parsed.push(ama_core::RetentionRule {
                matches,
                period: period(p)?,
            });
        }
        let policy = ama_core::RetentionPolicy {
            default: period(&default)?,
            count_from: if year_end {
                ama_core::CountFrom::YearEnd
            } else {
                ama_core::CountFrom::MessageDate
            },
            rules: parsed,
            minimum: minimum.as_deref().map(period).transpose()?,
            locked,
            four_eyes,
        };
        run(py, move || engine.set_retention_policy(&who, policy))
    }

    /// A message's retain-until (Unix seconds).
    fn retain_until(&self, py: Python<'_>, tenant: String, id: String) -> PyResult<i64> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let id = message_id(&id)?;
        run(py, move || engine.retain_until(&who, id))
    }

    /// Asks to delete `ids` or what `query` finds (exactly one), as the
    /// tenant's operator: `(status, request, deleted, [(id, why kept)])`,
    /// status `done` or `pending` (four-eyes: `request` awaits approval).
    #[pyo3(signature = (tenant, reason, *, ids=None, query=None))]
    fn request_deletion(
        &self,
        py: Python<'_>,
        tenant: String,
        reason: String,
        ids: Option<Vec<String>>,
        query: Option<String>,
    ) -> PyResult<DeletionTuple> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let o = match (ids, query) {
            (Some(ids), None) => {
                let ids = ids
                    .iter()
                    .map(|i| message_id(i))
                    .collect::<PyResult<Vec<_>>>()?;
                if ids.is_empty() {
                    return Err(errors::invalid("ids= lists no message"));
                }
                run(py, move || engine.request_deletion(&who, &ids, &reason))?
            }
            (None, Some(q)) => {
                if q.trim().is_empty() {
                    return Err(errors::invalid(
                        "an empty query would delete everything; give a query that selects",
                    ));
                }
                run(py, move || {
                    engine.request_deletion_matching(&who, &q, &reason)
                })?
            }
            _ => return Err(errors::invalid("give exactly one of ids= and query=")),
        };
        Ok(match o {
            ama_core::DeletionOutcome::Pending { request } => {
                ("pending".into(), Some(request), vec![], vec![])
            }
            ama_core::DeletionOutcome::Done { deleted, kept } => (
                "done".into(),
                None,
                deleted.iter().map(ToString::to_string).collect(),
                kept.into_iter().map(|(i, r)| (i.to_string(), r)).collect(),
            ),
        })
    }

    /// Deletes what expired: `(deleted, held, resumed)`.
    #[pyo3(signature = (tenant, at=None))]
    fn sweep(&self, py: Python<'_>, tenant: String, at: Option<i64>) -> PyResult<SweepTuple> {
        let engine = self.engine()?;
        let tenant = tenant_id(&tenant)?;
        let at = at
            .map(OffsetDateTime::from_unix_timestamp)
            .transpose()
            .map_err(|e| errors::invalid(format!("at: {e}")))?;
        let r = run(py, move || engine.sweep(&tenant, at))?;
        Ok((
            r.deleted.iter().map(|i| i.to_string()).collect(),
            r.held.iter().map(|i| i.to_string()).collect(),
            r.resumed,
        ))
    }

    /// Verifies a tenant: `(verified, [(id, reason, deleted_at)], [(id, problem)])`.
    fn verify(&self, py: Python<'_>, tenant: String) -> PyResult<VerifyMessagesTuple> {
        let engine = self.engine()?;
        let who = operator(tenant_id(&tenant)?);
        let r = run(py, move || engine.verify(&who))?;
        Ok((
            r.verified,
            r.tombstones
                .iter()
                .map(|t| {
                    (
                        MessageId::from_u128(t.id).to_string(),
                        t.reason.clone(),
                        t.deleted_at,
                    )
                })
                .collect(),
            r.problems
                .into_iter()
                .map(|(id, what)| (id.map(|i| i.to_string()), what))
                .collect(),
        ))
    }

    /// Exports to the file `path` (`zip` or `mbox`): `(exported, bytes)`.
    #[pyo3(signature = (tenant, who, path, *, query=None, ids=None, format="zip".to_string(), hold=None))]
    #[allow(clippy::too_many_arguments)]
    fn export(
        &self,
        py: Python<'_>,
        tenant: String,
        who: Option<Who>,
        path: PathBuf,
        query: Option<String>,
        ids: Option<Vec<String>>,
        format: String,
        hold: Option<String>,
    ) -> PyResult<(u64, u64)> {
        let engine = self.engine()?;
        let tenant = tenant_id(&tenant)?;
        let format = match format.as_str() {
            "zip" => ama_core::ExportFormat::Zip,
            "mbox" => ama_core::ExportFormat::Mbox,
            other => {
                return Err(errors::invalid(format!(
                    "unknown export format {other:?} (zip or mbox)"
                )));
            }
        };
        let selection = match (query, ids, hold) {
            (Some(q), None, None) => ama_core::Selection::Query(q),
            (None, Some(ids), None) => ama_core::Selection::Ids(
                ids.iter()
                    .map(|i| message_id(i))
                    .collect::<PyResult<Vec<_>>>()?,
            ),
            (None, None, Some(h)) => ama_core::Selection::Hold(h),
            (None, None, None) => ama_core::Selection::All,
            _ => {
                return Err(errors::invalid(
                    "give at most one of query=, ids= and hold=",
                ));
            }
        };
        let s = run(py, move || {
            let who = principal(&engine, tenant, who)?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::Io {
                    path: path.display().to_string(),
                    source: e,
                })?;
            let mut w = std::io::BufWriter::new(file);
            let s = engine.export(
                &who,
                &selection,
                format,
                &path.display().to_string(),
                &mut w,
            )?;
            use std::io::Write;
            w.flush().map_err(|e| Error::Io {
                path: path.display().to_string(),
                source: e,
            })?;
            Ok(s)
        })?;
        Ok((s.exported, s.bytes))
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
