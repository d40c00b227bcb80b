//! The key service over real TLS on loopback: round trips, refused
//! clients, malformed frames, crypto-shredding, the tenant policy, the
//! client's cache and reconnects, and an archive that lives entirely on a
//! remote key service.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ama_core::crypto::SecretKey;
use ama_core::{
    Archive, ArchiveOptions, CryptoError, Envelope, Error, KdfParams, KeyError, KeyService,
    LocalStore, Principal, SearchOptions, Source, TenantId, TenantSpec, Unlock,
};
use ama_keyservice::proto::{self, ErrorCode, Op, Response};
use ama_keyservice::testing::{CertFiles, TestPki};
use ama_keyservice::{
    KeyServiceServer, RemoteConfig, RemoteKeyService, RequestLog, RunningServer, ServerOptions, tls,
};
use rustls_pki_types::ServerName;

const PASS: &str = "service passphrase";

struct Service {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    pki: TestPki,
    node: CertFiles,
    log: Arc<Mutex<Vec<String>>>,
    running: Option<RunningServer>,
}

fn start_on(
    root: &Path,
    pki: &TestPki,
    addr: &str,
    options: ServerOptions,
    log: Arc<Mutex<Vec<String>>>,
) -> RunningServer {
    let server_tls = tls::server_config(
        tls::load_certs(&pki.server.cert).unwrap(),
        tls::load_key(&pki.server.key).unwrap(),
        tls::load_certs(&pki.ca_cert).unwrap(),
    )
    .unwrap();
    KeyServiceServer::open(&root.join("ks"), &Unlock::passphrase(PASS), server_tls)
        .unwrap()
        .with_options(options)
        .with_logger(Arc::new(move |l: &RequestLog<'_>| {
            log.lock().unwrap().push(format!(
                "client={} op={} tenant={} outcome={}",
                l.client,
                l.op,
                l.tenant.unwrap_or("-"),
                l.outcome
            ));
        }))
        .spawn(addr)
        .unwrap()
}

impl Service {
    fn start() -> Self {
        Self::start_with(None, ServerOptions::default())
    }

    fn start_with(policy: Option<&str>, options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let pki = TestPki::generate(&root.join("pki"));
        let node = pki.client("node-1.test", "node-1");
        KeyServiceServer::init(
            &root.join("ks"),
            &Unlock::passphrase(PASS),
            KdfParams::insecure_fast(),
        )
        .unwrap();
        if let Some(p) = policy {
            std::fs::write(root.join("ks").join("clients.json"), p).unwrap();
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let running = start_on(&root, &pki, "127.0.0.1:0", options, log.clone());
        Service {
            _dir: dir,
            root,
            pki,
            node,
            log,
            running: Some(running),
        }
    }

    fn addr(&self) -> String {
        self.running.as_ref().unwrap().local_addr().to_string()
    }

    fn config_for(&self, who: &CertFiles) -> RemoteConfig {
        RemoteConfig::from_files(self.addr(), &self.pki.ca_cert, &who.cert, &who.key)
            .unwrap()
            .with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
    }

    fn client(&self) -> RemoteKeyService {
        RemoteKeyService::new(self.config_for(&self.node))
    }

    fn log_lines(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits (up to 5 s) until `needle` was logged at least `n` times: a
    /// refused client may see the alert before the service logs it.
    fn wait_log(&self, needle: &str, n: usize) {
        for _ in 0..100 {
            if self.log_lines(needle) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{needle:?} not logged {n} times: {:#?}",
            self.log.lock().unwrap()
        );
    }

    /// A raw TLS connection with the node's certificate (or none).
    fn raw(&self, with_cert: bool) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let cas = tls::load_certs(&self.pki.ca_cert).unwrap();
        let cfg = if with_cert {
            tls::client_config(
                cas,
                tls::load_certs(&self.node.cert).unwrap(),
                tls::load_key(&self.node.key).unwrap(),
            )
            .unwrap()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for c in cas {
                roots.add(c).unwrap();
            }
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
            )
        };
        let tcp = TcpStream::connect(self.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let conn = rustls::ClientConnection::new(
            cfg,
            ServerName::try_from("127.0.0.1".to_string()).unwrap(),
        )
        .unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn same(a: &SecretKey, b: &SecretKey) -> bool {
    a.expose_secret() == b.expose_secret()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn wrap_and_unwrap_round_trip_and_every_request_is_logged() {
    let svc = Service::start();
    let keys = RemoteKeyService::connect(svc.config_for(&svc.node)).unwrap();
    let k = SecretKey::generate().unwrap();
    let wrapped = keys.wrap_tenant_key(&acme(), &k).unwrap();
    // Through a second client (no cache): the service really unwraps it.
    let other = svc.client();
    assert!(same(
        &other.unwrap_tenant_key(&acme(), &wrapped).unwrap(),
        &k
    ));
    // Another tenant's id does not unwrap it: the same error as locally.
    let beta = TenantId::new("beta").unwrap();
    assert!(matches!(
        other.unwrap_tenant_key(&beta, &wrapped),
        Err(Error::Crypto(CryptoError::Authentication { .. }))
    ));
    // Altered bytes neither.
    let mut bad = wrapped.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        other.unwrap_tenant_key(&acme(), &bad),
        Err(Error::Crypto(CryptoError::Authentication { .. }))
    ));
    assert_eq!(
        svc.log_lines("client=node-1.test op=health tenant=- outcome=ok"),
        1
    );
    assert_eq!(
        svc.log_lines("client=node-1.test op=wrap tenant=acme outcome=ok"),
        1
    );
    assert_eq!(
        svc.log_lines("client=node-1.test op=unwrap tenant=acme outcome=ok"),
        1
    );
    assert_eq!(
        svc.log_lines("client=node-1.test op=unwrap tenant=beta outcome=unwrap-failed"),
        1
    );
    // The log never holds a key.
    let key_hex = hex(k.expose_secret());
    assert!(
        svc.log
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.contains(&key_hex))
    );
}

#[test]
fn clients_without_a_certificate_from_the_ca_are_refused() {
    let svc = Service::start();
    // No client certificate at all: the handshake is refused by the server.
    let mut raw = svc.raw(false);
    let sent = raw
        .write_all(&proto::encode_request(Op::Health, "", &[]))
        .and_then(|()| raw.flush());
    let mut buf = [0u8; 16];
    let read = sent.and_then(|()| raw.read(&mut buf));
    match read {
        Err(e) => {
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            assert!(
                matches!(inner, Some(rustls::Error::AlertReceived(_))),
                "expected a TLS alert, got {e:?}"
            );
        }
        Ok(n) => panic!("a client without a certificate got {n} bytes of answer"),
    }

    // A certificate from another CA: a typed refusal.
    let rogue = svc.pki.foreign_client("node-1.test", "rogue");
    let keys = RemoteKeyService::new(svc.config_for(&rogue));
    let err = keys.health().unwrap_err();
    assert!(
        matches!(err, Error::Key(KeyError::ServiceRefused { .. })),
        "{err:?}"
    );
    let k = SecretKey::generate().unwrap();
    assert!(matches!(
        keys.wrap_tenant_key(&acme(), &k),
        Err(Error::Key(KeyError::ServiceRefused { .. }))
    ));
    svc.wait_log("op=handshake tenant=- outcome=refused", 3);
    assert_eq!(svc.log_lines("op=wrap"), 0);

    // A client that does not trust the service's certificate stops itself.
    let other_ca = svc.pki.foreign_client("x.test", "other-ca-leaf");
    let cfg = RemoteConfig::from_files(svc.addr(), &other_ca.cert, &svc.node.cert, &svc.node.key)
        .unwrap();
    let err = RemoteKeyService::new(cfg).health().unwrap_err();
    assert!(
        matches!(err, Error::Key(KeyError::ServiceUnreachable { ref reason, .. }) if reason.contains("not trusted")),
        "{err:?}"
    );

    // A service whose certificate does not carry the expected name neither.
    let cfg = svc
        .config_for(&svc.node)
        .with_server_name("keys.elsewhere.test")
        .unwrap();
    let err = RemoteKeyService::new(cfg).health().unwrap_err();
    assert!(
        matches!(err, Error::Key(KeyError::ServiceUnreachable { ref reason, .. }) if reason.contains("not trusted")),
        "{err:?}"
    );

    // The right client is still served.
    svc.client().health().unwrap();
}

fn ask(s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>, frame: &[u8]) -> Response {
    s.write_all(frame).unwrap();
    s.flush().unwrap();
    proto::read_response(s).unwrap()
}

fn code_of(r: Response) -> ErrorCode {
    match r {
        Response::Err { code, .. } => code.unwrap(),
        Response::Ok(_) => panic!("expected an error answer"),
    }
}

#[test]
fn malformed_frames_get_typed_errors_and_the_service_keeps_serving() {
    let svc = Service::start();
    let mut s = svc.raw(true);
    // Recoverable errors: the same connection stays usable.
    let mut f = proto::encode_request(Op::Health, "", &[]).to_vec();
    f[1] = 77;
    assert_eq!(code_of(ask(&mut s, &f)), ErrorCode::UnknownOp);
    let f = proto::encode_request(Op::Unwrap, "Not A Tenant", b"x");
    assert_eq!(code_of(ask(&mut s, &f)), ErrorCode::BadTenant);
    let f = proto::encode_request(Op::Wrap, "acme", &[7u8; 5]);
    assert_eq!(code_of(ask(&mut s, &f)), ErrorCode::Malformed);
    let f = proto::encode_request(Op::Unwrap, "acme", b"garbage that is no wrapped key");
    assert_eq!(code_of(ask(&mut s, &f)), ErrorCode::UnwrapFailed);
    assert!(matches!(
        ask(&mut s, &proto::encode_request(Op::Health, "", &[])),
        Response::Ok(b) if &b[..] == b"ok"
    ));
    // A frame of another version: answered, then the connection is closed.
    let mut f = proto::encode_request(Op::Health, "", &[]).to_vec();
    f[0] = 9;
    assert_eq!(code_of(ask(&mut s, &f)), ErrorCode::UnsupportedVersion);
    let mut buf = [0u8; 1];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));

    // Too large: answered without reading 4 GiB.
    let mut s = svc.raw(true);
    let mut f = proto::encode_request(Op::Unwrap, "acme", b"x").to_vec();
    f[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(code_of(ask(&mut s, &f)), ErrorCode::TooLarge);

    // Truncated: a header that promises more than the client sends.
    let mut s = svc.raw(true);
    let f = proto::encode_request(Op::Unwrap, "acme", &[1u8; 40]);
    s.write_all(&f[..20]).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    assert_eq!(
        code_of(proto::read_response(&mut s).unwrap()),
        ErrorCode::Malformed
    );

    // Not TLS at all.
    let mut plain = TcpStream::connect(svc.addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut junk = Vec::new();
    let _ = plain.read_to_end(&mut junk);

    // Still serving, and every bad frame was logged.
    let keys = svc.client();
    let k = SecretKey::generate().unwrap();
    let w = keys.wrap_tenant_key(&acme(), &k).unwrap();
    keys.clear_cache();
    assert!(same(&keys.unwrap_tenant_key(&acme(), &w).unwrap(), &k));
    for code in [
        "unknown-op",
        "bad-tenant",
        "malformed",
        "unsupported-version",
        "too-large",
    ] {
        assert!(
            svc.log_lines(&format!("outcome={code}")) >= 1,
            "{code} not logged"
        );
    }
}

#[test]
fn destroy_makes_every_earlier_wrapped_key_unusable_for_good() {
    let mut svc = Service::start();
    let a = svc.client();
    let k = SecretKey::generate().unwrap();
    let wrapped = a.wrap_tenant_key(&acme(), &k).unwrap();
    let globex = TenantId::new("globex").unwrap();
    let g = SecretKey::generate().unwrap();
    let g_wrapped = a.wrap_tenant_key(&globex, &g).unwrap();
    assert!(same(&a.unwrap_tenant_key(&acme(), &wrapped).unwrap(), &k));

    a.destroy_tenant(&acme()).unwrap();
    // Not from this client's cache, not through another client.
    assert_eq!(a.cached_keys(), 1);
    for c in [&a, &svc.client()] {
        let err = c.unwrap_tenant_key(&acme(), &wrapped).err().unwrap();
        assert!(
            matches!(err, Error::Key(KeyError::TenantDestroyed(ref t)) if t == "acme"),
            "{err:?}"
        );
    }
    assert!(matches!(
        a.wrap_tenant_key(&acme(), &SecretKey::generate().unwrap()),
        Err(Error::Key(KeyError::TenantDestroyed(_)))
    ));
    // Destroying again is fine; other tenants are untouched.
    a.destroy_tenant(&acme()).unwrap();
    assert!(same(
        &svc.client().unwrap_tenant_key(&globex, &g_wrapped).unwrap(),
        &g
    ));
    assert!(svc.log_lines("op=destroy tenant=acme outcome=ok") >= 1);

    // After a restart of the service (its key store read from disk) too.
    let addr = svc.addr();
    svc.running.take().unwrap().shutdown();
    svc.running = Some(start_on(
        &svc.root,
        &svc.pki,
        &addr,
        ServerOptions::default(),
        svc.log.clone(),
    ));
    assert!(matches!(
        svc.client().unwrap_tenant_key(&acme(), &wrapped),
        Err(Error::Key(KeyError::TenantDestroyed(_)))
    ));
}

#[test]
fn the_policy_limits_clients_to_their_tenants() {
    let svc = Service::start_with(
        Some(
            r#"{"format":"ama-keyservice-clients","version":1,
                "clients":{"node-1.test":["acme"],"ops.test":["*"]}}"#,
        ),
        ServerOptions::default(),
    );
    let node = svc.client();
    let k = SecretKey::generate().unwrap();
    node.wrap_tenant_key(&acme(), &k).unwrap();
    let globex = TenantId::new("globex").unwrap();
    let err = node.wrap_tenant_key(&globex, &k).unwrap_err();
    assert!(
        matches!(err, Error::Key(KeyError::ServiceRefused { ref reason, .. }) if reason.contains("globex")),
        "{err:?}"
    );
    assert!(matches!(
        node.destroy_tenant(&globex),
        Err(Error::Key(KeyError::ServiceRefused { .. }))
    ));
    let ops = svc.pki.client("ops.test", "ops");
    let ops = RemoteKeyService::new(svc.config_for(&ops));
    let w = ops.wrap_tenant_key(&globex, &k).unwrap();
    // node-1 cannot unwrap globex's key even with the wrapped bytes.
    assert!(matches!(
        node.unwrap_tenant_key(&globex, &w),
        Err(Error::Key(KeyError::ServiceRefused { .. }))
    ));
    // A client the file does not name is refused everything.
    let stranger = svc.pki.client("stranger.test", "stranger");
    assert!(matches!(
        RemoteKeyService::new(svc.config_for(&stranger)).wrap_tenant_key(&acme(), &k),
        Err(Error::Key(KeyError::ServiceRefused { .. }))
    ));
    assert_eq!(
        svc.log_lines("client=node-1.test op=wrap tenant=globex outcome=forbidden"),
        1
    );
}

#[test]
fn cached_keys_expire_and_are_fetched_again() {
    let svc = Service::start();
    let keys = RemoteKeyService::new(
        svc.config_for(&svc.node)
            .with_cache_ttl(Duration::from_millis(300)),
    );
    let k = SecretKey::generate().unwrap();
    let wrapped = keys.wrap_tenant_key(&acme(), &k).unwrap();
    assert_eq!(keys.cached_keys(), 1);
    for _ in 0..3 {
        assert!(same(
            &keys.unwrap_tenant_key(&acme(), &wrapped).unwrap(),
            &k
        ));
    }
    assert_eq!(svc.log_lines("op=unwrap"), 0, "served from the cache");
    // The sweeper drops the key once it expires, without any call.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(keys.cached_keys(), 0);
    assert!(same(
        &keys.unwrap_tenant_key(&acme(), &wrapped).unwrap(),
        &k
    ));
    assert!(same(
        &keys.unwrap_tenant_key(&acme(), &wrapped).unwrap(),
        &k
    ));
    assert_eq!(svc.log_lines("op=unwrap tenant=acme outcome=ok"), 1);

    // With the cache off, every unwrap asks the service.
    let uncached = RemoteKeyService::new(svc.config_for(&svc.node).with_cache_ttl(Duration::ZERO));
    uncached.unwrap_tenant_key(&acme(), &wrapped).unwrap();
    uncached.unwrap_tenant_key(&acme(), &wrapped).unwrap();
    assert_eq!(uncached.cached_keys(), 0);
    assert_eq!(svc.log_lines("op=unwrap tenant=acme outcome=ok"), 3);
}

#[test]
fn the_client_reconnects_and_reports_an_unreachable_service() {
    let mut options = ServerOptions::default();
    options.idle_timeout = Duration::from_millis(200);
    let svc = Service::start_with(None, options);
    let keys = RemoteKeyService::new(svc.config_for(&svc.node).with_cache_ttl(Duration::ZERO));
    keys.health().unwrap();
    // The service closes the idle connection; the next call reconnects.
    std::thread::sleep(Duration::from_millis(500));
    keys.health().unwrap();
    assert_eq!(svc.log_lines("op=health tenant=- outcome=ok"), 2);

    // A client that goes away between requests without a TLS goodbye (its
    // process ended) is not a malformed frame.
    let mut raw = svc.raw(true);
    assert!(matches!(
        ask(&mut raw, &proto::encode_request(Op::Health, "", &[])),
        Response::Ok(_)
    ));
    drop(raw);
    drop(keys);
    svc.wait_log("op=health tenant=- outcome=ok", 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        svc.log_lines("outcome=malformed"),
        0,
        "{:#?}",
        svc.log.lock().unwrap()
    );

    // Nothing listening: a typed error, quickly.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = RemoteConfig::from_files(
        format!("127.0.0.1:{port}"),
        &svc.pki.ca_cert,
        &svc.node.cert,
        &svc.node.key,
    )
    .unwrap();
    let err = RemoteKeyService::new(cfg).health().unwrap_err();
    assert!(
        matches!(err, Error::Key(KeyError::ServiceUnreachable { .. })),
        "{err:?}"
    );
}

/// Wraps a remote key service and remembers the tenant keys it wrapped,
/// so the test can look for them in the data directory.
struct Spy {
    inner: RemoteKeyService,
    seen: Mutex<Vec<[u8; 32]>>,
}

impl KeyService for Spy {
    fn wrap_tenant_key(&self, t: &TenantId, k: &SecretKey) -> ama_core::Result<Vec<u8>> {
        self.seen.lock().unwrap().push(*k.expose_secret());
        self.inner.wrap_tenant_key(t, k)
    }
    fn unwrap_tenant_key(&self, t: &TenantId, w: &[u8]) -> ama_core::Result<SecretKey> {
        self.inner.unwrap_tenant_key(t, w)
    }
    fn destroy_tenant(&self, t: &TenantId) -> ama_core::Result<()> {
        self.inner.destroy_tenant(t)
    }
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn an_archive_on_a_remote_key_service_keeps_no_key_in_its_data_directory() {
    let svc = Service::start();
    let data = tempfile::tempdir().unwrap();
    let spy = Arc::new(Spy {
        inner: svc.client(),
        seen: Mutex::new(Vec::new()),
    });
    let raw =
        b"From: alice@acme.test\r\nTo: bob@acme.test\r\nSubject: quarterly\r\n\r\nnumbers\r\n";
    {
        let archive = Archive::create_with(
            data.path(),
            spy.clone(),
            Arc::new(LocalStore::open(data.path().join("blobs")).unwrap()),
            ArchiveOptions::default(),
        )
        .unwrap();
        archive.create_tenant(TenantSpec::new(acme())).unwrap();
        archive
            .ingest(
                &acme(),
                raw,
                &Envelope::new(Source::Import).rcpt("bob@acme.test"),
            )
            .unwrap();
    }
    // Opened again by a fresh node process: the key comes from the service.
    let archive = Archive::open_with(
        data.path(),
        Arc::new(svc.client()),
        Arc::new(LocalStore::open(data.path().join("blobs")).unwrap()),
        ArchiveOptions::default(),
    )
    .unwrap();
    let found = archive
        .search(
            &Principal::auditor(acme()),
            "subject:quarterly",
            &SearchOptions::default(),
        )
        .unwrap();
    assert_eq!(found.total, 1);
    assert!(svc.log_lines("op=unwrap tenant=acme outcome=ok") >= 1);
    // A second create in the same directory is refused.
    assert!(matches!(
        Archive::create_with(
            data.path(),
            Arc::new(svc.client()),
            Arc::new(LocalStore::open(data.path().join("blobs")).unwrap()),
            ArchiveOptions::default(),
        ),
        Err(Error::DataDir { .. })
    ));
    drop(archive);

    // No key store, and no tenant key in plain form, anywhere.
    assert!(!ama_core::LocalKeyStore::path_in(data.path()).exists());
    assert!(!data.path().join("keys").exists());
    let keys = spy.seen.lock().unwrap().clone();
    assert_eq!(keys.len(), 1);
    let mut files = Vec::new();
    files_under(data.path(), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for needle in [
            &b"ama-keystore"[..],
            b"argon2id",
            &keys[0][..],
            hex(&keys[0]).as_bytes(),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds key material",
                f.display()
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            // The archive is live, as on a node being backed up: a lock or
            // temporary file of the index's background threads may be gone
            // between the listing and the copy (seen once under load).
            match std::fs::copy(e.path(), &target) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("copying {}: {err}", e.path().display()),
            }
        }
    }
}

#[test]
fn tenant_destroy_through_the_service_leaves_an_earlier_copy_unreadable() {
    let svc = Service::start();
    let data = tempfile::tempdir().unwrap();
    let blobs =
        |d: &Path| -> Arc<LocalStore> { Arc::new(LocalStore::open(d.join("blobs")).unwrap()) };
    let archive = Archive::create_with(
        data.path(),
        Arc::new(svc.client()),
        blobs(data.path()),
        ArchiveOptions::default(),
    )
    .unwrap();
    archive.create_tenant(TenantSpec::new(acme())).unwrap();
    let raw = b"From: a@acme.test\r\nTo: b@acme.test\r\nSubject: secret plans\r\n\r\nbody\r\n";
    archive
        .ingest(
            &acme(),
            raw,
            &Envelope::new(Source::Import).rcpt("b@acme.test"),
        )
        .unwrap();
    // A backup of the node's data directory, taken before.
    let backup = tempfile::tempdir().unwrap();
    copy_dir(data.path(), backup.path());

    archive
        .destroy_tenant(&acme(), ama_core::Frontend::Library)
        .unwrap();
    svc.wait_log("op=destroy tenant=acme outcome=ok", 1);
    drop(archive);

    // The backup, opened by a fresh node: the service no longer unwraps
    // acme's key, so nothing of acme can be read.
    let restored = Archive::open_with(
        backup.path(),
        Arc::new(svc.client()),
        blobs(backup.path()),
        ArchiveOptions::default(),
    );
    let err = match restored {
        Err(e) => e,
        Ok(a) => a
            .search(&Principal::auditor(acme()), "", &SearchOptions::default())
            .err()
            .unwrap(),
    };
    assert!(
        matches!(err, Error::Key(KeyError::TenantDestroyed(_))),
        "{err:?}"
    );
}

#[test]
fn connections_over_the_limit_are_closed_and_the_slot_comes_back() {
    let mut options = ServerOptions::default();
    options.max_connections = 1;
    let svc = Service::start_with(None, options);
    let mut first = svc.raw(true);
    assert!(matches!(
        ask(&mut first, &proto::encode_request(Op::Health, "", &[])),
        Response::Ok(_)
    ));
    // The only slot is taken: the next client is closed at once.
    let err = svc.client().health().unwrap_err();
    assert!(
        matches!(err, Error::Key(KeyError::ServiceUnreachable { .. })),
        "{err:?}"
    );
    svc.wait_log(
        "op=connect tenant=- outcome=refused: too many connections",
        1,
    );
    // Once the first client leaves, the next one is served.
    first.conn.send_close_notify();
    first.flush().unwrap();
    drop(first);
    let keys = svc.client();
    let mut served = false;
    for _ in 0..50 {
        if keys.health().is_ok() {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served);
}

#[test]
fn many_threads_and_clients_at_once() {
    let svc = Service::start();
    let shared = Arc::new(RemoteKeyService::new(
        svc.config_for(&svc.node).with_cache_ttl(Duration::ZERO),
    ));
    let k = SecretKey::generate().unwrap();
    let wrapped = Arc::new(shared.wrap_tenant_key(&acme(), &k).unwrap());
    let want = *k.expose_secret();
    let mut threads = Vec::new();
    for i in 0..8 {
        // Half share one client (one connection, serialised), half have their own.
        let keys = if i % 2 == 0 {
            shared.clone()
        } else {
            Arc::new(svc.client())
        };
        let wrapped = wrapped.clone();
        threads.push(std::thread::spawn(move || {
            for _ in 0..20 {
                let got = keys.unwrap_tenant_key(&acme(), &wrapped).unwrap();
                assert_eq!(got.expose_secret(), &want);
                keys.clear_cache();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(svc.log_lines("op=unwrap tenant=acme outcome=ok"), 8 * 20);
}
