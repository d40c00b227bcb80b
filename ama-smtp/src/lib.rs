//! # ama-smtp: the TLS-only SMTP archive node
//!
//! Mail servers hand mail to the archive over SMTP (Postfix `always_bcc`,
//! Exchange journaling). This crate will hold the I/O-free protocol state
//! machine and the tokio + rustls listener that feeds
//! [`ama_core::Archive::ingest_batch`]; its own issue builds it. It exists now
//! so the workspace has its final shape.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The engine this node feeds, re-exported for the node's users.
pub use ama_core as core;
