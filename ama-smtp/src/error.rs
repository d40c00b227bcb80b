//! The node's one error enum. Protocol problems of a client are not errors
//! here: they are SMTP replies (see [`crate::proto`]). These are the node's
//! own failures: configuration, TLS setup, the spool, the archive.

/// What can go wrong running the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpError {
    /// A configuration value is unusable.
    #[error("invalid SMTP configuration: {0}")]
    Config(String),
    /// A certificate or key could not be read or used.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// A spool file or directory operation failed.
    #[error("spool {path}: {source}")]
    Spool {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A spool entry cannot be read back (damaged, or another archive's).
    #[error("spool entry {name} is unreadable: {reason}")]
    SpoolEntry {
        /// The entry's file name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A socket operation failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The archive refused an operation.
    #[error(transparent)]
    Archive(#[from] ama_core::Error),
}

impl SmtpError {
    pub(crate) fn spool(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| SmtpError::Spool {
            path: path.display().to_string(),
            source,
        }
    }
}
