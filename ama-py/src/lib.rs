//! # ama-py: `import ama`
//!
//! Python bindings (pyo3, maturin) for compliance scripts, built by their own
//! issue. This crate exists now so the workspace has its final shape.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The engine the bindings wrap, re-exported.
pub use ama_core as core;
