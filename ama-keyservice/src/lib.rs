//! # ama-keyservice: keys in a separate service, over mutual TLS
//!
//! A hosted archive promises that keys live only in a separate control
//! service and reach workers at processing time. This crate is that
//! service and its client:
//!
//! - [`KeyServiceServer`] (run as `ama key-service serve`) holds a local
//!   key store in **its own** directory, unlocked by its own passphrase,
//!   and answers wrap, unwrap, destroy and health requests over TLS 1.3
//!   from clients whose certificate its client CA signed — a client
//!   without one is refused in the handshake. `clients.json` can narrow
//!   which client may act on which tenant ([`ClientPolicy`]). Every request
//!   is logged (peer, client, op, tenant, outcome; never a key).
//! - [`RemoteKeyService`] is the archive node's [`ama_core::KeyService`]:
//!   the node's data directory then holds only wrapped tenant keys, no
//!   master key and no key store. Unwrapped keys stay in memory for a
//!   bounded time and are zeroized when they expire or are dropped.
//!
//! The protocol ([`proto`]) is binary, versioned and length-prefixed with
//! small limits; a malformed frame gets a typed error answer. Everything is
//! synchronous (std threads, socket timeouts), like `ama-core`.
//!
//! ```
//! use std::sync::Arc;
//! use ama_core::{KdfParams, KeyService, LocalKeyStore, TenantId, Unlock, crypto::SecretKey};
//! use ama_keyservice::{ClientPolicy, KeyServiceServer, RemoteConfig, RemoteKeyService, testing::TestPki, tls};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let pki = TestPki::generate(&dir.path().join("pki"));
//! let node = pki.client("node-1.test", "node-1");
//!
//! // The service: its own key store, its certificate, the CA of its clients.
//! let ks_dir = dir.path().join("ks");
//! let unlock = Unlock::passphrase("service passphrase");
//! KeyServiceServer::init(&ks_dir, &unlock, KdfParams::insecure_fast())?;
//! let server_tls = tls::server_config(
//!     tls::load_certs(&pki.server.cert)?,
//!     tls::load_key(&pki.server.key)?,
//!     tls::load_certs(&pki.ca_cert)?,
//! )?;
//! let running = KeyServiceServer::open(&ks_dir, &unlock, server_tls)?.spawn("127.0.0.1:0")?;
//!
//! // The node: a KeyService that asks the service.
//! let cfg = RemoteConfig::from_files(running.local_addr().to_string(), &pki.ca_cert, &node.cert, &node.key)?;
//! let keys = RemoteKeyService::connect(cfg)?;
//! let acme = TenantId::new("acme")?;
//! let wrapped = keys.wrap_tenant_key(&acme, &SecretKey::generate()?)?;
//! let _key = keys.unwrap_tenant_key(&acme, &wrapped)?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod error;
pub mod policy;
pub mod proto;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use client::{RemoteConfig, RemoteConfigFile, RemoteKeyService};
pub use error::ServiceError;
pub use policy::ClientPolicy;
pub use server::{KeyServiceServer, RequestLog, RunningServer, ServerOptions};
