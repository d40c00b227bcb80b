//! Test certificates (feature `testing`): a CA, a server certificate for
//! `127.0.0.1`/`localhost`, client certificates with a chosen DNS name,
//! and a second, unrelated CA, all written as PEM files into a directory.
//! For tests and demos only.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A throwaway PKI in a directory.
pub struct TestPki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM file): trust anchor for both ends.
    pub ca_cert: PathBuf,
    /// The key service's certificate, for `127.0.0.1` and `localhost`.
    pub server: CertFiles,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA")
}

fn issue(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
    dir: &Path,
    file: &str,
) -> CertFiles {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("certificate params");
    if let Some(n) = names.first() {
        p.distinguished_name.push(DnType::CommonName, *n);
    }
    p.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("certificate");
    let files = CertFiles {
        cert: dir.join(format!("{file}.pem")),
        key: dir.join(format!("{file}.key")),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    files
}

impl TestPki {
    /// Writes a CA (`ca.pem`) and the server certificate (`server.pem`,
    /// `server.key`) into `dir`.
    pub fn generate(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("PKI directory");
        let ca = ca("ama test key service CA");
        let ca_cert = dir.join("ca.pem");
        std::fs::write(&ca_cert, ca.pem()).expect("write CA");
        let server = issue(
            &ca,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            dir,
            "server",
        );
        TestPki {
            dir: dir.to_path_buf(),
            ca,
            ca_cert,
            server,
        }
    }

    /// A client certificate from this CA naming `dns_name` (written as
    /// `<file>.pem`, `<file>.key`).
    pub fn client(&self, dns_name: &str, file: &str) -> CertFiles {
        issue(
            &self.ca,
            &[dns_name],
            ExtendedKeyUsagePurpose::ClientAuth,
            &self.dir,
            file,
        )
    }

    /// A client certificate naming `dns_name` from another, unrelated CA.
    pub fn foreign_client(&self, dns_name: &str, file: &str) -> CertFiles {
        let other = ca("some other CA");
        issue(
            &other,
            &[dns_name],
            ExtendedKeyUsagePurpose::ClientAuth,
            &self.dir,
            file,
        )
    }
}
