//! Engine errors → the Python exception hierarchy.
//!
//! The classes live in Python (`ama/_errors.py`) so they can inherit from
//! both `ama.Error` and the matching builtin (`QueryError` is also a
//! `ValueError`, `NotFound` a `LookupError`) and carry attributes
//! (`QueryError.position`). This module looks a class up by name when an
//! error is raised; if that ever fails (a broken installation), it falls
//! back to `RuntimeError` with the same message rather than panicking.

use std::error::Error as _;

use ama_core::{Error, KeyError, TenantError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The exception class `name` of `ama._errors`.
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module = ERRORS.get_or_try_init(py, || py.import("ama._errors").map(|m| m.unbind()))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// A `PyErr` of class `name` (of `ama._errors`) built from `args`.
pub(crate) fn new_err<A>(name: &str, args: A) -> PyErr
where
    A: for<'py> IntoPyObject<'py> + Send + Sync + 'static,
{
    Python::attach(|py| match class(py, name) {
        Ok(ty) => PyErr::from_type(ty, args),
        Err(e) => PyRuntimeError::new_err(format!(
            "ama: exception class {name} unavailable ({e}); is the ama package installed?"
        )),
    })
}

/// `ama.ArchiveClosed`.
pub(crate) fn closed() -> PyErr {
    new_err("ArchiveClosed", ("archive is closed",))
}

/// `ama.InvalidArgument` (also a `ValueError`).
pub(crate) fn invalid(msg: impl Into<String>) -> PyErr {
    new_err("InvalidArgument", (msg.into(),))
}

/// The error's message followed by its sources (`I/O error on X: No such
/// file or directory`).
fn message(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

/// Maps an engine error to its Python class.
pub(crate) fn to_py(e: Error) -> PyErr {
    let msg = message(&e);
    match e {
        Error::Query(q) => new_err("QueryError", (msg, q.position)),
        Error::NotFound(id) => new_err("NotFound", (msg, id.to_string())),
        Error::AccessDenied(_) => new_err("AccessDenied", (msg,)),
        Error::Unauthenticated(_) => new_err("Unauthenticated", (msg,)),
        Error::LockedOut { retry_after_secs } => new_err("LockedOut", (msg, retry_after_secs)),
        Error::Identity(ama_core::IdentityError::WeakPassword(_)) => {
            new_err("WeakPassword", (msg,))
        }
        Error::Identity(_) => new_err("IdentityError", (msg,)),
        Error::InvalidArgument(_) => new_err("InvalidArgument", (msg,)),
        Error::Key(KeyError::WrongPassphrase) => new_err("WrongPassphrase", (msg,)),
        Error::Key(_) => new_err("KeyStoreError", (msg,)),
        Error::Crypto(_) => new_err("CryptoError", (msg,)),
        Error::Store(_) => new_err("StoreError", (msg,)),
        Error::Catalog(_) => new_err("CatalogError", (msg,)),
        Error::Index(_) => new_err("SearchIndexError", (msg,)),
        Error::Ingest(_) => new_err("IngestError", (msg,)),
        Error::Tenant(TenantError::Unknown(_)) => new_err("UnknownTenant", (msg,)),
        Error::Tenant(TenantError::Exists(_)) => new_err("TenantExists", (msg,)),
        Error::Tenant(_) => new_err("TenantError", (msg,)),
        Error::DataDir { .. } | Error::Io { .. } => new_err("DataDirError", (msg,)),
        _ => new_err("Error", (msg,)),
    }
}

/// A panic caught at the boundary: reported as `ama.Error`, never a crash.
pub(crate) fn panicked(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    new_err(
        "Error",
        (format!(
            "internal error in ama (a bug, please report it): {what}"
        ),),
    )
}
