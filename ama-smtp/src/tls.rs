//! TLS material: certificates and keys from PEM files, a self-signed
//! certificate for `localhost` when none is configured, and the rustls
//! server configuration (TLS 1.2 and 1.3 only, optional or required client
//! certificates checked against a CA).
//!
//! Why a self-signed fallback: a node must never accept mail in plaintext,
//! so even a first `ama serve` without a certificate speaks TLS; the
//! operator is told, and clients that verify will refuse it until a real
//! certificate is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::error::SmtpError;

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct CertKey {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl CertKey {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, SmtpError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| SmtpError::Tls(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(SmtpError::Tls(format!(
                "{}: no certificate in the file",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| SmtpError::Tls(format!("{}: {e}", key.display())))?;
        Ok(CertKey { chain, key })
    }

    /// Parses PEM text (certificate chain, then key).
    pub fn from_pem(cert: &str, key: &str) -> Result<Self, SmtpError> {
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SmtpError::Tls(format!("certificate PEM: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| SmtpError::Tls(format!("key PEM: {e}")))?;
        Ok(CertKey { chain, key })
    }

    /// A fresh self-signed certificate for `localhost`, `127.0.0.1` and
    /// `::1`, with its PEM text (certificate, key) for clients to trust.
    pub fn self_signed_localhost() -> Result<(Self, String, String), SmtpError> {
        let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| SmtpError::Tls(format!("cannot generate a certificate: {e}")))?;
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        let me = CertKey::from_pem(&cert_pem, &key_pem)?;
        Ok((me, cert_pem, key_pem))
    }
}

/// Whether clients present certificates.
#[derive(Debug, Clone, Default)]
pub enum ClientCerts {
    /// Not asked for.
    #[default]
    None,
    /// Asked for; if presented, it must chain to one of these CAs (and be
    /// valid now), else the handshake fails.
    Optional(Vec<CertificateDer<'static>>),
    /// Required, chaining to one of these CAs.
    Required(Vec<CertificateDer<'static>>),
}

/// Reads CA certificates from a PEM file.
pub fn ca_certs_from_pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, SmtpError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SmtpError::Tls(format!("{}: {e}", path.display())))
}

/// The rustls server configuration: TLS 1.2+, ring, the given certificate,
/// client certificates as asked.
pub fn server_config(
    cert: CertKey,
    clients: &ClientCerts,
) -> Result<Arc<rustls::ServerConfig>, SmtpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SmtpError::Tls(e.to_string()))?;
    let verifier = |cas: &[CertificateDer<'static>], optional: bool| {
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            roots
                .add(ca.clone())
                .map_err(|e| SmtpError::Tls(format!("client CA: {e}")))?;
        }
        let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build()
            .map_err(|e| SmtpError::Tls(format!("client CA: {e}")))
    };
    let builder = match clients {
        ClientCerts::None => builder.with_no_client_auth(),
        ClientCerts::Optional(cas) => builder.with_client_cert_verifier(verifier(cas, true)?),
        ClientCerts::Required(cas) => builder.with_client_cert_verifier(verifier(cas, false)?),
    };
    let config = builder
        .with_single_cert(cert.chain, cert.key)
        .map_err(|e| SmtpError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}
