//! Client certificates over real TLS: where one is required, a certificate
//! from the configured CA is accepted and names its tenant (by fingerprint);
//! an expired one and a self-signed one are refused in the handshake.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use ama_smtp::tls::ClientCerts;
use common::{Client, Node, client_config, message, raw, tenant, wait_for};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn client(issuer: Option<&CertifiedIssuer<'static, KeyPair>>, expired: bool) -> Identity {
    let mut p = CertificateParams::new(vec!["mta.beta.test".to_string()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = OffsetDateTime::now_utc();
    if expired {
        p.not_before = now - Duration::days(30);
        p.not_after = now - Duration::days(1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(i) => p.signed_by(&key, i).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (vec![cert.der().clone()], key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificate_identifies_tenant_and_bad_ones_are_refused() {
    let ca = ca();
    let good = client(Some(&ca), false);
    let fp: [u8; 32] = Sha256::digest(good.0[0].as_ref()).into();
    let mut node = Node::start_tls(ClientCerts::Required(vec![ca.der().clone()]), |c| {
        c.client_cert_tenants.insert(fp, tenant("beta"));
        c.require_auth = true;
    })
    .await;

    // A good certificate: the tenant is beta whatever the recipient domain.
    let mut c = Client::implicit(node.implicit, client_config(&node.ca, Some(good)))
        .await
        .unwrap();
    let data = message(1, "someone@acme.test");
    let r = c.mail("mta@beta.test", &["someone@acme.test"], &data).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let got = wait_for(&node.archive, "beta", 1).await;
    assert_eq!(raw(&node.archive, "beta", &got[0]), data);
    assert!(common::all(&node.archive, "acme").is_empty());

    // Expired, self-signed, or none at all: no session.
    for (what, id) in [
        ("expired", Some(client(Some(&ca), true))),
        ("self-signed", Some(client(None, false))),
        ("missing", None),
    ] {
        let refused = match Client::implicit(node.implicit, client_config(&node.ca, id)).await {
            Err(_) => true,
            // TLS 1.3: the client learns of the refusal on its first read.
            Ok(mut c) => {
                let r = c.try_send(b"MAIL FROM:<a@b.test>\r\n").await;
                r.is_err() || c.try_reply().await.is_err()
            }
        };
        assert!(refused, "{what} client certificate was accepted");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_and_older_are_refused() {
    // rustls cannot even speak TLS < 1.2; ask Python's OpenSSL.
    let mut node = Node::start().await;
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations({ca:?})
ctx.minimum_version = ssl.TLSVersion.TLSv1
ctx.maximum_version = ssl.TLSVersion.TLSv1_1
try:
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    s = smtplib.SMTP_SSL("localhost", {port}, context=ctx)
    print("CONNECTED")
except (ssl.SSLError, OSError) as e:
    print("REFUSED", e)
"#,
        ca = node.ca_file.display().to_string(),
        port = node.implicit.port()
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("REFUSED"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.shutdown().await;
}
