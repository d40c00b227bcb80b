//! # ama-http: the JSON API and search page
//!
//! Integrators call HTTP and compliance staff use a search page; both go
//! through [`ama_core::Archive`] and its access rules. The API is built by
//! its own issue; this crate exists now so the workspace has its final shape.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The engine this API serves, re-exported for the API's users.
pub use ama_core as core;
