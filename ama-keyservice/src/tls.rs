//! TLS set-up for both ends: PEM loading, a server configuration that
//! **requires** a client certificate from the configured CA (rustls'
//! `WebPkiClientVerifier`), a client configuration that presents one, and
//! the identity read from a client certificate. TLS 1.3 only, ring provider
//! (as the SMTP and HTTP listeners): both ends are ours, so there is no
//! older peer to accommodate.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::error::ServiceError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServiceError> {
    let pem = |reason: String| ServiceError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem("holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServiceError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| ServiceError::Pem {
        path: path.display().to_string(),
        reason: format!("no usable private key: {e}"),
    })
}

fn roots(certs: Vec<CertificateDer<'static>>, what: &str) -> Result<RootCertStore, ServiceError> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| {
            ServiceError::Tls(format!("{what} is not a usable CA certificate: {e}"))
        })?;
    }
    Ok(roots)
}

/// A server configuration: `chain`/`key` is the service's certificate;
/// a client must present a certificate signed by one of `client_cas`, or
/// the handshake fails.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: Vec<CertificateDer<'static>>,
) -> Result<Arc<rustls::ServerConfig>, ServiceError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(client_cas, "client CA")?),
        provider(),
    )
    .build()
    .map_err(|e| ServiceError::Tls(format!("client verifier: {e}")))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServiceError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServiceError::Tls(format!("server certificate and key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// A client configuration: trusts the service's certificate if `server_cas`
/// signed it, and presents `chain`/`key`.
pub fn client_config(
    server_cas: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, ServiceError> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServiceError::Tls(e.to_string()))?
        .with_root_certificates(roots(server_cas, "the key service CA")?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| ServiceError::Tls(format!("client certificate and key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// Who a verified client certificate names: its DNS subject alternative
/// names, and the SHA-256 fingerprint of the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// DNS names of the certificate, in order.
    pub names: Vec<String>,
    /// `sha256:` and the hex SHA-256 of the certificate (DER).
    pub fingerprint: String,
}

impl ClientIdentity {
    /// The identity of a client's end-entity certificate.
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        let names = webpki::EndEntityCert::try_from(cert)
            .map(|c| c.valid_dns_names().map(str::to_owned).collect())
            .unwrap_or_default();
        let digest = Sha256::digest(cert.as_ref());
        let mut fingerprint = String::from("sha256:");
        for b in digest.iter() {
            fingerprint.push_str(&format!("{b:02x}"));
        }
        ClientIdentity { names, fingerprint }
    }

    /// The name used in logs: the first DNS name, else the fingerprint.
    pub fn display_name(&self) -> &str {
        self.names.first().unwrap_or(&self.fingerprint)
    }
}
