//! Loading certificates and keys: bad files are typed errors, and a
//! client's identity is what its certificate names.

#![allow(clippy::unwrap_used)]

use ama_keyservice::ServiceError;
use ama_keyservice::testing::TestPki;
use ama_keyservice::tls::{self, ClientIdentity};

#[test]
fn bad_pem_files_are_typed_errors() {
    let d = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(&d.path().join("pki"));
    let garbage = d.path().join("garbage.pem");
    std::fs::write(&garbage, b"not a certificate at all").unwrap();
    let missing = d.path().join("missing.pem");
    for p in [&garbage, &missing] {
        assert!(matches!(tls::load_certs(p), Err(ServiceError::Pem { .. })));
        assert!(matches!(tls::load_key(p), Err(ServiceError::Pem { .. })));
    }
    // A certificate is not a key.
    assert!(matches!(
        tls::load_key(&pki.server.cert),
        Err(ServiceError::Pem { .. })
    ));
    // A key that does not belong to the certificate.
    let node = pki.client("node-1.test", "node-1");
    assert!(matches!(
        tls::server_config(
            tls::load_certs(&pki.server.cert).unwrap(),
            tls::load_key(&node.key).unwrap(),
            tls::load_certs(&pki.ca_cert).unwrap(),
        ),
        Err(ServiceError::Tls(_))
    ));
    assert!(matches!(
        tls::client_config(
            tls::load_certs(&pki.ca_cert).unwrap(),
            tls::load_certs(&node.cert).unwrap(),
            tls::load_key(&pki.server.key).unwrap(),
        ),
        Err(ServiceError::Tls(_))
    ));
}

#[test]
fn a_client_is_named_by_its_certificate() {
    let d = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(d.path());
    let node = pki.client("node-7.example.test", "node-7");
    let cert = tls::load_certs(&node.cert).unwrap().remove(0);
    let id = ClientIdentity::of(&cert);
    assert_eq!(id.names, vec!["node-7.example.test".to_string()]);
    assert_eq!(id.display_name(), "node-7.example.test");
    assert!(id.fingerprint.starts_with("sha256:"));
    assert_eq!(id.fingerprint.len(), "sha256:".len() + 64);
    // Not a certificate at all: no names, still a fingerprint.
    let junk = rustls_pki_types::CertificateDer::from(vec![1u8, 2, 3]);
    let id = ClientIdentity::of(&junk);
    assert!(id.names.is_empty());
    assert_eq!(id.display_name(), id.fingerprint);
}
