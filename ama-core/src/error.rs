//! Errors. One enum per area (crypto, keys, store, catalog, index, ingest),
//! all funnelling into [`Error`], so a caller can match on the area it cares
//! about and still use `?` everywhere. Messages are written for the person
//! running the archive: they say what was wrong and with what, never a key or
//! a piece of mail content.

use crate::MessageId;

/// Anything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key could not be derived, wrapped or unwrapped, or data failed authentication.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The key store could not be opened or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog failed or holds something it should not.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The full-text index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A message was refused at ingest.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A search query could not be parsed (the error names the position).
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    /// A tenant id, name or setting is invalid, unknown or already taken.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// An export or restore could not be completed.
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    /// A backup or a restore from a backup could not be completed.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// An argument is out of range (a page offset, a limit).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The principal may not do this.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A login or token was refused. The message is the same whatever was
    /// wrong (unknown user, wrong password, expired token), so it tells an
    /// attacker nothing.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// Too many failed logins: try again after the delay.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    LockedOut {
        /// Seconds until the next attempt is considered.
        retry_after_secs: u64,
    },
    /// A user, password or directory setting was refused.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// No such message (or not visible to this principal: the two are not told apart).
    #[error("message {0} not found")]
    NotFound(MessageId),
    /// The data directory is missing, not an ama archive, or of an unsupported version.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operating-system I/O error outside a store (data directory set-up).
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Encryption and authentication failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Ciphertext failed its authentication tag: it was altered, truncated,
    /// moved to another place, or the key is wrong.
    #[error("authentication failed for {what}: the data was altered or the key is wrong")]
    Authentication {
        /// What was being decrypted.
        what: String,
    },
    /// The sealed data has an unknown format version or is too short.
    #[error("malformed sealed data for {what}: {reason}")]
    Malformed {
        /// What was being decrypted.
        what: String,
        /// Why it is malformed.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// Compression or decompression failed.
    #[error("compression failed: {0}")]
    Compression(String),
}

/// Key store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase or key file does not open the key store.
    #[error("wrong passphrase or key file: the key store could not be unlocked")]
    WrongPassphrase,
    /// No passphrase or key file was given.
    #[error("no passphrase given: set AMA_PASSPHRASE, or pass --passphrase-file or --key-file")]
    Missing,
    /// The passphrase is too short to be a credible master secret.
    #[error("passphrase too short: use at least {min} characters")]
    WeakPassphrase {
        /// Minimum length.
        min: usize,
    },
    /// A key file is not exactly 32 bytes.
    #[error("key file {path} must hold exactly 32 bytes, it holds {len}")]
    BadKeyFile {
        /// The file.
        path: String,
        /// Its length.
        len: usize,
    },
    /// The key store file is malformed or of an unknown version.
    #[error("key store {path} is unreadable: {reason}")]
    BadKeyStore {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key store is sealed with a passphrase but a key file was given, or the reverse.
    #[error("key store is sealed with a {expected}, but a {given} was given")]
    WrongKind {
        /// What the store expects.
        expected: &'static str,
        /// What was given.
        given: &'static str,
    },
    /// Argon2 failed (bad parameters or out of memory).
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// The tenant was destroyed (crypto-shredded): its keys can never be
    /// unwrapped again, and no new key is wrapped for its id.
    #[error("tenant {0:?} was destroyed: its keys no longer exist")]
    TenantDestroyed(String),
    /// A tenant pinned to one region, and a key service tagged with another:
    /// refused before a key was wrapped or unwrapped.
    #[error(
        "region violation: tenant {tenant:?} is pinned to region {tenant_region}, but the key service is in region {service_region}"
    )]
    WrongRegion {
        /// The tenant.
        tenant: String,
        /// The tenant's region.
        tenant_region: String,
        /// The key service's region.
        service_region: String,
    },
    /// A key is wrapped under a tenant key-encryption key, but the key store
    /// holds none for that tenant (another key store, or a damaged one).
    #[error("the key store holds no key-encryption key for tenant {0:?}: wrong key store?")]
    NoTenantKek(String),
    /// A remote key service could not be reached: connection refused,
    /// timed out, or the TLS handshake failed on the client's side (the
    /// service's certificate is not trusted).
    #[error("key service {service} is unreachable: {reason}")]
    ServiceUnreachable {
        /// The service address.
        service: String,
        /// What failed.
        reason: String,
    },
    /// A remote key service refused this client: its certificate was not
    /// accepted, or it may not act on this tenant.
    #[error("key service {service} refused the request: {reason}")]
    ServiceRefused {
        /// The service address.
        service: String,
        /// Why, as far as the service said.
        reason: String,
    },
    /// A remote key service answered with an error or with something this
    /// client does not understand (another protocol version, a bad frame).
    #[error("key service {service} failed: {reason}")]
    ServiceFailed {
        /// The service address.
        service: String,
        /// What it said.
        reason: String,
    },
}

/// Blob store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No blob under this key.
    #[error("blob {key} not found")]
    NotFound {
        /// The blob key.
        key: String,
    },
    /// An I/O error in the store.
    #[error("blob store I/O error on {key}")]
    Io {
        /// The blob key or path.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The blob key is not valid for this store.
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    /// The stored blob is not in a format this version can read.
    #[error("blob {key} is corrupt: {reason}")]
    Corrupt {
        /// The blob key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The store refused the credentials (wrong access key or secret) or
    /// the permission for this operation.
    #[error("blob store {store} refused access: {reason}")]
    Denied {
        /// The store (`describe()`).
        store: String,
        /// What it said, and what to check.
        reason: String,
    },
    /// The store could not be reached or failed the request (after retries).
    #[error("blob store {store} failed on {key}: {reason}")]
    Backend {
        /// The store (`describe()`).
        store: String,
        /// The blob key or operation.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// A replicated write reached fewer copies than its write quorum; the
    /// write is not acknowledged.
    #[error(
        "write quorum not reached: {acknowledged} of the {needed} required copies written; failed: {}",
        .failed.join("; ")
    )]
    Quorum {
        /// Copies required.
        needed: usize,
        /// Copies written.
        acknowledged: usize,
        /// Each failed store with its error.
        failed: Vec<String>,
    },
    /// No copy of a replicated blob could be read (and not every store said
    /// it was absent).
    #[error("no copy of blob {key} could be read: {}", .failed.join("; "))]
    Unavailable {
        /// The blob key.
        key: String,
        /// Each store with its error.
        failed: Vec<String>,
    },
    /// A store configuration is invalid.
    #[error("blob store configuration: {0}")]
    Config(String),
    /// Write-once storage refused to delete or shorten the lock of a blob:
    /// it is locked (S3 Object Lock) until `until`. Nothing was deleted.
    #[error(
        "blob {key} in {store} is write-once locked until {until} (Unix time); it cannot be deleted before then"
    )]
    Locked {
        /// The store (`describe()`).
        store: String,
        /// The blob key.
        key: String,
        /// The lock's retain-until date (Unix seconds).
        until: i64,
    },
    /// The store cannot do what was asked (e.g. lock a blob on a store
    /// without write-once support).
    #[error("blob store {store} does not support {what}")]
    Unsupported {
        /// The store (`describe()`).
        store: String,
        /// What it cannot do.
        what: String,
    },
    /// A tenant's data would go to a store of another region: refused before
    /// anything was written.
    #[error(
        "region violation: tenant {tenant:?} is pinned to region {tenant_region}, but blob store {store} is in region {store_region}; nothing was written"
    )]
    WrongRegion {
        /// The tenant.
        tenant: String,
        /// The tenant's region.
        tenant_region: String,
        /// The store.
        store: String,
        /// The store's region.
        store_region: String,
    },
}

/// Catalog failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// redb reported an error.
    #[error("catalog database error: {0}")]
    Db(String),
    /// A stored record could not be decoded.
    #[error("catalog record {what} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        reason: String,
    },
    /// The catalog was written by a newer, unknown format version.
    #[error("catalog format version {found} is not supported (this build reads up to {supported})")]
    Version {
        /// Version found on disk.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for CatalogError {
            fn from(e: $t) -> Self {
                CatalogError::Db(e.to_string())
            }
        }
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Catalog(CatalogError::Db(e.to_string()))
            }
        }
    )*};
}
redb_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Full-text index failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// tantivy reported an error.
    #[error("index error: {0}")]
    Tantivy(String),
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Index(IndexError::Tantivy(e.to_string()))
    }
}

/// Why a message was refused at ingest. Nothing is stored for a refused message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestError {
    /// Zero bytes, or only whitespace.
    #[error("empty message")]
    Empty,
    /// Over the configured size limit.
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the message.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The bytes are not an Internet message (no header fields at all, or binary data).
    #[error("not an e-mail message: {reason}")]
    NotAMessage {
        /// Why.
        reason: String,
    },
}

/// Tenant configuration errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// The tenant id does not follow the rules.
    #[error(
        "invalid tenant id {0:?}: use 1-63 characters a-z, 0-9 and '-', starting with a letter or digit"
    )]
    InvalidId(String),
    /// No such tenant.
    #[error("tenant {0:?} does not exist")]
    Unknown(String),
    /// A tenant with this id exists already.
    #[error("tenant {0:?} exists already")]
    Exists(String),
    /// A mail domain is malformed.
    #[error("invalid mail domain {0:?}")]
    InvalidDomain(String),
    /// A region name is malformed.
    #[error("invalid region {0:?}: use eu, us or a custom name of a-z, 0-9 and '-'")]
    InvalidRegion(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
}

/// Users, passwords, API keys and directory settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The password does not meet the policy; the message says why.
    #[error("password refused: {0}")]
    WeakPassword(String),
    /// A user id of the wrong form.
    #[error("invalid user id {0:?}: use 1-100 letters, digits and ._@+-")]
    InvalidUserId(String),
    /// An address that is not `local@domain`.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// The user id is taken.
    #[error("user {0} already exists")]
    UserExists(String),
    /// No such user.
    #[error("no user {0}")]
    UnknownUser(String),
    /// A user must hold at least one role.
    #[error("user {0} must hold at least one role")]
    NoRoles(String),
    /// No such API key.
    #[error("no API key {0}")]
    UnknownApiKey(String),
    /// The password hash could not be computed (bad parameters).
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// The tenant's directory is misconfigured or unreachable.
    #[error("directory: {0}")]
    Directory(String),
}
