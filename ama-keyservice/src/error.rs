//! Errors of the key service process and of loading its configuration.
//! (The client reports through [`ama_core::KeyError`], since it is a
//! [`ama_core::KeyService`].)

/// Setting up or running the key service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A file could not be read or written.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS configuration was refused (a key that does not match its
    /// certificate, a CA that is not a certificate).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The client policy file (`clients.json`) is malformed.
    #[error("client policy {path}: {reason}")]
    Policy {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A client configuration (`key-service.json`) is malformed.
    #[error("key service configuration {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The service's data directory is missing or already initialised.
    #[error("key service directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key store failed (wrong passphrase, unreadable file).
    #[error(transparent)]
    Core(#[from] ama_core::Error),
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ServiceError + '_ {
    move |source| ServiceError::Io {
        path: path.display().to_string(),
        source,
    }
}
