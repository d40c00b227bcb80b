//! Shared test helpers: an archive with two tenants, a node on loopback
//! ports, and a small SMTP client (over real TLS) for the protocol checks
//! that off-the-shelf clients cannot make (malformed input).

#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ama_core::{
    Archive, ArchiveOptions, KdfParams, MessageInfo, Principal, SearchOptions, TenantId,
    TenantSpec, Unlock,
};
use ama_smtp::tls::{self, CertKey, ClientCerts};
use ama_smtp::{Config, Listeners};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub const PASS: &str = "correct horse battery staple";

pub fn create_archive(dir: &Path) -> Arc<Archive> {
    let opts = ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    };
    let a = Archive::create(dir, &Unlock::passphrase(PASS), opts).unwrap();
    for (id, domain) in [("acme", "acme.test"), ("beta", "beta.test")] {
        let mut spec = TenantSpec::new(TenantId::new(id).unwrap());
        spec.domains = vec![domain.into()];
        a.create_tenant(spec).unwrap();
    }
    Arc::new(a)
}

pub fn open_archive(dir: &Path) -> Arc<Archive> {
    let opts = ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    };
    Arc::new(Archive::open(dir, &Unlock::passphrase(PASS), opts).unwrap())
}

pub fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// Every message of a tenant.
pub fn all(a: &Archive, t: &str) -> Vec<MessageInfo> {
    let opts = SearchOptions {
        limit: 10_000,
        ..Default::default()
    };
    a.search(&Principal::auditor(tenant(t)), "", &opts)
        .unwrap()
        .hits
}

pub fn raw(a: &Archive, t: &str, m: &MessageInfo) -> Vec<u8> {
    a.get_raw(&Principal::auditor(tenant(t)), m.id).unwrap()
}

/// Waits until `t` holds `n` messages (the worker archives asynchronously).
pub async fn wait_for(a: &Archive, t: &str, n: usize) -> Vec<MessageInfo> {
    for _ in 0..200 {
        let got = all(a, t);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all(a, t)
}

/// A running node.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub archive: Arc<Archive>,
    pub starttls: SocketAddr,
    pub implicit: SocketAddr,
    /// The server certificate, PEM, for clients to trust.
    pub ca_file: PathBuf,
    pub ca: CertificateDer<'static>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ama_smtp::SmtpError>>>,
}

pub fn server_cert() -> (CertKey, String) {
    let (ck, pem, _) = CertKey::self_signed_localhost().unwrap();
    (ck, pem)
}

impl Node {
    pub async fn start() -> Node {
        Node::start_with(|_| {}).await
    }

    /// A node with default settings changed by `f`.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Node {
        Node::start_tls(ClientCerts::None, f).await
    }

    pub async fn start_tls(clients: ClientCerts, f: impl FnOnce(&mut Config)) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let archive = create_archive(&dir.path().join("data"));
        let (ck, pem) = server_cert();
        let ca = CertKey::from_pem(&pem, "").map(|c| c.chain[0].clone());
        let ca = ca.unwrap_or_else(|_| {
            use rustls::pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
        });
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &pem).unwrap();
        let mut config = Config::new(
            archive.data_dir(),
            tls::server_config(ck, &clients).unwrap(),
        );
        config.hostname = "archive.test".into();
        f(&mut config);
        let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (starttls, implicit) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let a = archive.clone();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                starttls: Some(l1),
                implicit_tls: Some(l2),
            };
            ama_smtp::serve(listeners, a, config, async {
                let _ = stopped.await;
            })
            .await
        });
        Node {
            dir,
            archive,
            starttls,
            implicit,
            ca_file,
            ca,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The shutdown trigger, for tests that keep talking during shutdown.
    pub fn stop_handle(&mut self) -> oneshot::Sender<()> {
        self.stop.take().unwrap()
    }

    /// Graceful shutdown; returns once the spool is drained.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("serve returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub fn client_config(
    ca: &CertificateDer<'static>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// A line-level SMTP client.
pub struct Client {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn plain(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut c = Client {
            io: Box::new(tcp),
            buf: Vec::new(),
        };
        let g = c.reply().await;
        assert!(g.starts_with("220 "), "{g}");
        c
    }

    /// Connects, STARTTLS, EHLO.
    pub async fn starttls(addr: SocketAddr, ca: &CertificateDer<'static>) -> Client {
        let mut c = Client::plain(addr).await;
        c.cmd("EHLO client.test").await;
        let r = c.cmd("STARTTLS").await;
        assert!(r.starts_with("220 "), "{r}");
        c = c.upgrade(client_config(ca, None)).await.unwrap();
        let r = c.cmd("EHLO client.test").await;
        assert!(r.starts_with("250"), "{r}");
        c
    }

    pub async fn upgrade(self, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Client> {
        // Only a plain TcpStream can be upgraded; rebuild from the box.
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), self.io)
            .await?;
        Ok(Client {
            io: Box::new(tls),
            buf: Vec::new(),
        })
    }

    /// Implicit TLS, then EHLO.
    pub async fn implicit(
        addr: SocketAddr,
        cfg: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let mut c = Client {
            io: Box::new(tls),
            buf: Vec::new(),
        };
        let g = c.try_reply().await?;
        if !g.starts_with("220 ") {
            return Err(std::io::Error::other(g));
        }
        let r = c.cmd("EHLO client.test").await;
        assert!(r.starts_with("250"), "{r}");
        Ok(c)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// Writes, ignoring errors (the server may have closed).
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// One complete (possibly multi-line) reply.
    pub async fn reply(&mut self) -> String {
        self.try_reply().await.unwrap()
    }

    pub async fn try_reply(&mut self) -> std::io::Result<String> {
        let mut out = String::new();
        loop {
            let line = loop {
                if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                    let l: Vec<u8> = self.buf.drain(..=i).collect();
                    break String::from_utf8(l).unwrap();
                }
                let mut tmp = [0u8; 16384];
                let n = tokio::time::timeout(Duration::from_secs(30), self.io.read(&mut tmp))
                    .await
                    .map_err(|_| std::io::Error::other("reply timeout"))??;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("closed after {out:?}"),
                    ));
                }
                self.buf.extend_from_slice(&tmp[..n]);
            };
            let last = line.as_bytes().get(3) != Some(&b'-');
            out.push_str(&line);
            if last {
                return Ok(out);
            }
        }
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Whether the server closed the connection (EOF or reset).
    pub async fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut tmp)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// A whole transaction; returns the final reply.
    pub async fn mail(&mut self, from: &str, to: &[&str], data: &[u8]) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert!(r.starts_with("250"), "{r}");
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            assert!(r.starts_with("250"), "{r}");
        }
        let r = self.cmd("DATA").await;
        assert!(r.starts_with("354"), "{r}");
        self.send(&dot_stuff(data)).await;
        self.send(b".\r\n").await;
        self.reply().await
    }
}

/// SMTP dot-stuffing of a CRLF message (ending in CRLF).
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut start = true;
    for &b in data {
        if start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        start = b == b'\n';
    }
    out
}

pub fn message(i: usize, to: &str) -> Vec<u8> {
    format!(
        "From: sender@example.org\r\nTo: {to}\r\nSubject: test message {i}\r\n\
         Message-ID: <{i}.{}@example.org>\r\n\r\nBody line {i}\r\n.starts with a dot\r\n",
        std::process::id()
    )
    .into_bytes()
}
