//! # ama-py: the native part of `import ama`
//!
//! Compliance scripts and notebooks need the archive from Python: ingest
//! mail, search it, read messages back byte-exact. This crate is the thin
//! pyo3 layer between the engine ([`ama_core::Archive`]) and the Python
//! package `ama` (in `python/ama`), built by maturin into one abi3 wheel for
//! CPython ≥ 3.9, with this crate as the module `ama._ama`.
//!
//! Why the split: the Rust side only moves plain values (strings, integers,
//! bytes, lists and tuples) across the boundary and releases the GIL around
//! every engine call; the Python side turns them into frozen dataclasses,
//! timezone-aware `datetime`s, iterators and context managers, which are
//! simplest to write, type (`mypy --strict`) and document in Python. Rules
//! (who may read what, what is durable when) stay in the engine.
//!
//! Guarantees this layer keeps:
//!
//! - **The GIL is released** around every call that touches the archive
//!   (open, ingest, import, search, get, close), so several Python threads
//!   search in parallel; the archive is `Send + Sync` and shared by `Arc`.
//! - **Closing is safe**: [`NativeArchive::close`] takes the engine out of
//!   its slot; a later call raises `ama.ArchiveClosed`. A call already
//!   running holds its own `Arc` and finishes normally.
//! - **No panic reaches Python**: engine calls run under
//!   [`std::panic::catch_unwind`] and a panic becomes `ama.Error`
//!   ("internal error"), never a crash or a `PanicException`.
//! - **Errors are typed**: every [`ama_core::Error`] maps to one class of the
//!   Python hierarchy in `ama/_errors.py` (see [`errors`]).
//!
//! `unsafe_code` stays forbidden (workspace lint): pyo3 0.30's macros need no
//! `unsafe` in this crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod archive;
mod convert;
mod errors;

use pyo3::prelude::*;

/// The engine the bindings wrap, re-exported.
pub use ama_core as core;

pub use archive::NativeArchive;

/// The native module `ama._ama`. Use the `ama` package, not this module.
#[pymodule(name = "_ama")]
mod native {
    #[pymodule_export]
    use super::archive::NativeArchive;

    #[pymodule_export]
    use super::archive::message_text;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("MAX_PAGE", ama_core::archive::MAX_PAGE)?;
        m.add("MAX_OFFSET", ama_core::archive::MAX_OFFSET)?;
        Ok(())
    }
}
