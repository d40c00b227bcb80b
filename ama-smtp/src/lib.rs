//! # ama-smtp: the TLS-only SMTP archive node
//!
//! Mail servers hand mail to an archive over SMTP (Postfix `always_bcc`,
//! Exchange journaling). This crate is that node, built around three
//! promises: mail is only accepted over TLS (`MAIL FROM` before STARTTLS is
//! `530`), `250` is only answered once the message can no longer be lost
//! (sealed with the tenant's spool key and fsync'ed), and it keeps up with a
//! busy mail server (group commit across sessions, batched ingest).
//!
//! * [`proto`] — the I/O-free SMTP/LMTP state machine;
//! * [`spool`] — the durable, encrypted spool and the ingest worker;
//! * [`server`] — the tokio + rustls listener: [`serve`];
//! * [`tls`] — certificates (PEM files, or a self-signed one for localhost);
//! * [`journal`] — Exchange / Microsoft 365 envelope journal reports.
//!
//! ```no_run
//! # async fn run(archive: std::sync::Arc<ama_core::Archive>) -> Result<(), ama_smtp::SmtpError> {
//! use ama_smtp::{Config, Listeners, tls};
//! let (cert, _, _) = tls::CertKey::self_signed_localhost()?;
//! let tls = tls::server_config(cert, &tls::ClientCerts::None)?;
//! let config = Config::new(archive.data_dir(), tls);
//! let listeners = Listeners {
//!     starttls: Some(tokio::net::TcpListener::bind("127.0.0.1:2525").await?),
//!     implicit_tls: None,
//! };
//! ama_smtp::serve(listeners, archive, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod journal;
pub mod proto;
pub mod server;
pub mod spool;
pub mod tls;

/// The engine this node feeds, re-exported for the node's users.
pub use ama_core as core;
pub use error::SmtpError;
pub use server::{ApiKey, Config, Listeners, serve};
