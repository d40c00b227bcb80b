//! A real server for the integration tests: an archive in a temporary
//! directory with two tenants, users of every role and a few messages,
//! served over TLS (a fresh self-signed certificate) on a loopback port,
//! and a reqwest client that trusts exactly that certificate.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use ama_core::{
    Archive, ArchiveOptions, Envelope, IdentityOptions, KdfParams, MessageId, Principal, Role,
    Source, TenantId, TenantSpec, Unlock, UserSpec,
};
use ama_http::{HttpConfig, Transport};

pub const PW: &str = "tulip-orbit-canyon-42";

/// Ids of the seeded messages.
pub struct Seeded {
    /// acme: alice → eve, "Quarterly numbers", one attachment.
    pub quarterly: MessageId,
    pub quarterly_raw: Vec<u8>,
    /// acme: bob → carol (eve may not see it).
    pub private: MessageId,
    /// globex: a message of the other tenant.
    pub globex: MessageId,
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub archive: Arc<Archive>,
    pub seeded: Seeded,
    pub cert_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub fn quarterly_mail() -> Vec<u8> {
    concat!(
        "From: Alice <alice@acme.test>\r\n",
        "To: Eve <eve@acme.test>\r\n",
        "Subject: Quarterly numbers\r\n",
        "Date: Tue, 3 Apr 2001 10:00:00 +0000\r\n",
        "Message-ID: <q1@acme.test>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe numbers are in the sheet.\r\n",
        "--b\r\nContent-Type: application/octet-stream; name=\"numbers.bin\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "Content-Disposition: attachment; filename=\"numbers.bin\"\r\n\r\n",
        "AAEC/w==\r\n--b--\r\n"
    )
    .as_bytes()
    .to_vec()
}

pub fn simple_mail(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Wed, 4 Apr 2001 10:00:00 +0000\r\n\
         Message-ID: <{}@t>\r\n\r\nbody of {subject}\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

pub fn options(identity: IdentityOptions) -> ArchiveOptions {
    ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        identity: IdentityOptions {
            password_kdf: KdfParams::insecure_fast(),
            ..identity
        },
        ..Default::default()
    }
}

fn user(id: &str, roles: &[Role], addrs: &[&str]) -> UserSpec {
    UserSpec {
        id: id.into(),
        display_name: None,
        addresses: addrs.iter().map(|s| s.to_string()).collect(),
        roles: roles.to_vec(),
        password: Some(PW.into()),
    }
}

/// Creates and seeds an archive (synchronously).
pub fn seed(dir: &std::path::Path, identity: IdentityOptions) -> (Archive, Seeded) {
    let a = Archive::create(
        dir,
        &Unlock::passphrase("test pass phrase"),
        options(identity),
    )
    .unwrap();
    let acme = TenantId::new("acme").unwrap();
    let globex = TenantId::new("globex").unwrap();
    a.create_tenant(TenantSpec::new(acme.clone())).unwrap();
    a.create_tenant(TenantSpec::new(globex.clone())).unwrap();
    let op = Principal::operator(acme.clone());
    a.add_user(&op, user("ada", &[Role::Admin], &[])).unwrap();
    a.add_user(&op, user("aud", &[Role::Auditor], &[])).unwrap();
    a.add_user(&op, user("eve", &[Role::EndUser], &["eve@acme.test"]))
        .unwrap();
    let gop = Principal::operator(globex.clone());
    a.add_user(&gop, user("gus", &[Role::Auditor, Role::Admin], &[]))
        .unwrap();
    let env = Envelope::new(Source::Import);
    let quarterly_raw = quarterly_mail();
    let quarterly = a.ingest(&acme, &quarterly_raw, &env).unwrap().id;
    let private = a
        .ingest(
            &acme,
            &simple_mail("bob@acme.test", "carol@acme.test", "Private matter"),
            &env,
        )
        .unwrap()
        .id;
    let globex_id = a
        .ingest(
            &globex,
            &simple_mail("gina@globex.test", "gus@globex.test", "Globex plans"),
            &env,
        )
        .unwrap()
        .id;
    (
        a,
        Seeded {
            quarterly,
            quarterly_raw,
            private,
            globex: globex_id,
        },
    )
}

/// A TLS client config trusting `cert_pem` only.
pub fn client_tls(cert_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg
}

pub fn client(cert_pem: &str, http1_only: bool) -> reqwest::Client {
    let mut cfg = client_tls(cert_pem);
    if http1_only {
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    let b = reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .redirect(reqwest::redirect::Policy::none());
    let b = if http1_only { b.http1_only() } else { b };
    b.build().unwrap()
}

/// A server over TLS with default settings.
pub async fn start() -> Server {
    start_with(IdentityOptions::default(), HttpConfig::default()).await
}

/// A server over TLS with these settings.
pub async fn start_with(identity: IdentityOptions, config: HttpConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (archive, seeded) = tokio::task::spawn_blocking(move || seed(&path, identity))
        .await
        .unwrap();
    let archive = Arc::new(archive);
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    let tls = server_tls(&cert_pem, &key_pem);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let a = archive.clone();
    let task = tokio::spawn(async move {
        ama_http::serve(listener, Transport::Tls(tls), a, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        dir,
        addr,
        base: format!("https://localhost:{}", addr.port()),
        client: client(&cert_pem, false),
        archive,
        seeded,
        cert_pem,
        stop: Some(stop),
        task: Some(task),
    }
}

pub fn server_tls(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in with a bearer session; returns the token.
    pub async fn login(&self, tenant: &str, user: &str) -> String {
        let r = self
            .client
            .post(self.url("/v1/login"))
            .json(&serde_json::json!({"tenant": tenant, "user": user, "password": PW}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {user}@{tenant}");
        let v: serde_json::Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// Asserts a problem response of `status` and `slug`; returns its body.
pub async fn problem(r: reqwest::Response, status: u16, slug: &str) -> serde_json::Value {
    assert_eq!(r.status().as_u16(), status, "status of {}", r.url());
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["type"].as_str().unwrap(),
        format!("https://ama.invalid/problems/{slug}")
    );
    assert_eq!(v["status"].as_u64().unwrap(), u64::from(status));
    v
}
