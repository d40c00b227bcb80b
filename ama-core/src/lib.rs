//! # ama-core: the archive engine
//!
//! An embeddable, multi-tenant e-mail archive: every message is parsed,
//! indexed, compressed and encrypted with its tenant's key, stored
//! byte-exact, and stays findable until its retention ends. This crate is
//! synchronous and pure Rust; the SMTP, HTTP, Python and CLI frontends are
//! thin layers over [`Archive`].
//!
//! ```
//! use ama_core::{Archive, ArchiveOptions, Envelope, KdfParams, Principal, SearchOptions,
//!                Source, TenantId, TenantSpec, Unlock};
//!
//! # fn main() -> Result<(), ama_core::Error> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let opts = ArchiveOptions { kdf: KdfParams::insecure_fast(), ..Default::default() };
//! let archive = Archive::create(dir.path(), &Unlock::passphrase("correct horse battery"), opts)?;
//!
//! let acme = TenantId::new("acme")?;
//! archive.create_tenant(TenantSpec::new(acme.clone()))?;
//!
//! let raw = b"From: alice@acme.test\r\nTo: bob@acme.test\r\nSubject: Q3 numbers\r\n\r\nSee attached.\r\n";
//! let env = Envelope::new(Source::Import).rcpt("bob@acme.test");
//! let receipt = archive.ingest(&acme, raw, &env)?;
//!
//! let auditor = Principal::auditor(acme.clone());
//! let found = archive.search(&auditor, "from:alice@acme.test subject:q3", &SearchOptions::default())?;
//! assert_eq!(found.total, 1);
//! assert_eq!(archive.get_raw(&auditor, receipt.id)?, raw.to_vec());
//!
//! // An end user sees only mail sent from or to one of his addresses.
//! let carol = Principal::end_user(acme, ["carol@acme.test"]);
//! assert_eq!(archive.search(&carol, "", &SearchOptions::default())?.total, 0);
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/ARCHITECTURE.md` for the data flow, the on-disk layout and the
//! key hierarchy, and `docs/SEARCH.md` for the query language.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod archive;
pub mod audit;
pub mod backup;
mod blob;
pub mod catalog;
pub mod crypt_dir;
pub mod crypto;
pub mod dictionary;
pub mod error;
pub mod export;
mod fsutil;
#[doc(hidden)]
pub mod fuzz_hooks;
pub mod identity;
pub mod import;
pub mod index;
pub mod keys;
pub mod mailbox;
pub mod message;
pub mod parse;
pub mod proof;
pub mod query;
pub mod retention;
pub mod rotation;
pub mod shred;
pub mod store;
pub mod tenant;
pub mod view;

pub use access::{Principal, Role};
pub use archive::{Archive, ArchiveOptions, SearchOptions, SearchResults};
pub use audit::{
    AccessContext, AuditAction, AuditActor, AuditEntry, AuditFilter, AuditProblem, AuditReport,
    Frontend, Outcome,
};
pub use catalog::TenantStats;
pub use error::{
    CatalogError, CryptoError, Error, IdentityError, IndexError, IngestError, KeyError, Result,
    StoreError, TenantError,
};
pub use export::{ExportAction, ExportError, ExportFormat, ExportSink, ExportSummary, Selection};
pub use identity::{
    ApiKey, Authenticator, DirectoryBind, DirectoryConfig, DirectoryError, DirectoryIdentity,
    IdentityOptions, Session, User, UserSource, UserSpec,
};
pub use index::Sort;
pub use keys::{KdfParams, KeyService, LocalKeyStore, TenantKeyState, Unlock};
pub use message::{
    Anomaly, AttachmentInfo, Delivery, Envelope, Mailbox, MessageId, MessageInfo, MessageMeta,
    Receipt, Source,
};
pub use proof::InclusionProof;
pub use query::QueryError;
pub use retention::{
    CountFrom, DeletionOutcome, DeletionRequest, Direction, Hold, HoldScope, RetentionPolicy,
    RetentionRule, RuleMatch, SweepReport, Tombstone, VerifyReport,
};
pub use rotation::RotationReport;
pub use shred::{DestroyedTenant, ShredReport};
pub use store::{BlobKey, BlobStore, LocalStore, MemoryStore};
pub use tenant::{Region, Retention, Tenant, TenantId, TenantSpec};
