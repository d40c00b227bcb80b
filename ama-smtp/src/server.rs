//! The tokio + rustls listener: it only moves bytes between sockets and the
//! [`proto::Session`] state machine, and answers the machine's questions
//! (credentials, recipient tenants, making a message durable).
//!
//! Why the rules it has:
//! * TLS only: STARTTLS on the submission-style port, implicit TLS on the
//!   other; TLS 1.2+; `MAIL FROM` before TLS is `530` (in the machine).
//! * The sending tenant comes from a client certificate (its SHA-256
//!   fingerprint is mapped to a tenant) or from SMTP AUTH with an API key;
//!   otherwise each recipient's domain picks the tenant, and a message
//!   whose recipients span tenants is archived in each.
//! * Bounded: total and per-IP connection limits, a TLS handshake timeout
//!   and an idle timeout per read.
//! * Graceful shutdown: stop accepting, let sessions finish the message in
//!   flight (idle ones get `421`), then drain the spool into the archive.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ama_core::{Archive, Envelope, Source, TenantId};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::SmtpError;
use crate::journal::{self, JournalPolicy};
use crate::proto::{self, Delivery, Event, Limits, Mode, Reply, Session, SessionConfig};
use crate::spool::{Spool, SpoolOptions};

/// An API key for SMTP AUTH: the password, stored as its SHA-256.
#[derive(Clone)]
pub struct ApiKey {
    /// The tenant it authenticates.
    pub tenant: TenantId,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
}

impl ApiKey {
    /// An API key from its secret text.
    pub fn new(tenant: TenantId, secret: &str) -> Self {
        ApiKey {
            tenant,
            sha256: Sha256::digest(secret.as_bytes()).into(),
        }
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name in the greeting.
    pub hostname: String,
    /// SMTP or LMTP.
    pub mode: Mode,
    /// Protocol limits.
    pub limits: Limits,
    /// The TLS server configuration (see [`crate::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Where accepted mail waits for the archive (default `DATA/spool`).
    pub spool_dir: std::path::PathBuf,
    /// Accepted-but-not-archived bytes held in memory.
    pub spool_memory: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most concurrent connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Longest wait for the client's next bytes.
    pub idle_timeout: Duration,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// At shutdown, longest wait for sessions in flight.
    pub shutdown_grace: Duration,
    /// API keys accepted by AUTH PLAIN/LOGIN (the password is the key; the
    /// user name must be the tenant id or empty). Empty: AUTH not offered.
    pub api_keys: Vec<ApiKey>,
    /// Client certificate SHA-256 fingerprints (of the DER) → tenant.
    pub client_cert_tenants: HashMap<[u8; 32], TenantId>,
    /// `MAIL FROM` only after AUTH or an identifying client certificate.
    pub require_auth: bool,
    /// Which tenants unpack Exchange/Microsoft 365 journal reports.
    pub journal: JournalPolicy,
}

impl Config {
    /// Defaults for an archive in `data_dir` with this TLS configuration.
    pub fn new(data_dir: &std::path::Path, tls: Arc<rustls::ServerConfig>) -> Self {
        Config {
            hostname: "localhost".into(),
            mode: Mode::Smtp,
            limits: Limits::default(),
            tls,
            spool_dir: data_dir.join("spool"),
            spool_memory: 256 << 20,
            max_connections: 500,
            max_connections_per_ip: 100,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            api_keys: Vec::new(),
            client_cert_tenants: HashMap::new(),
            require_auth: false,
            journal: JournalPolicy::default(),
        }
    }
}

/// The sockets to serve: at least one.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Plain TCP where clients must STARTTLS before `MAIL FROM`.
    pub starttls: Option<TcpListener>,
    /// Implicit TLS (TLS from the first byte, like port 465).
    pub implicit_tls: Option<TcpListener>,
}

struct Shared {
    archive: Arc<Archive>,
    config: Config,
    spool: Spool,
    acceptor: TlsAcceptor,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    total: Arc<Semaphore>,
}

/// Serves SMTP on the listeners until `shutdown` completes, then stops
/// accepting, lets sessions finish (up to [`Config::shutdown_grace`]) and
/// archives everything in the spool before returning. Leftovers of an
/// earlier run are archived before the first connection is accepted.
pub async fn serve(
    listeners: Listeners,
    archive: Arc<Archive>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SmtpError> {
    if listeners.starttls.is_none() && listeners.implicit_tls.is_none() {
        return Err(SmtpError::Config("no listener".into()));
    }
    let spool_opts = SpoolOptions {
        dir: config.spool_dir.clone(),
        memory_budget: config.spool_memory,
    };
    let a = archive.clone();
    let spool = tokio::task::spawn_blocking(move || Spool::open(a, &spool_opts))
        .await
        .map_err(|e| SmtpError::Config(format!("spool recovery task failed: {e}")))??;
    let shared = Arc::new(Shared {
        acceptor: TlsAcceptor::from(config.tls.clone()),
        total: Arc::new(Semaphore::new(config.max_connections)),
        per_ip: Mutex::new(HashMap::new()),
        archive,
        config,
        spool,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = accept(listeners.starttls.as_ref()) => r.map(|s| (s, false)),
            r = accept(listeners.implicit_tls.as_ref()) => r.map(|s| (s, true)),
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let Ok(((stream, peer), implicit)) = accepted else {
            // Accept errors (e.g. out of file descriptors) are transient.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        let stop = stop_rx.clone();
        sessions.spawn(async move {
            connection(shared, stream, peer.ip(), implicit, stop).await;
        });
    }
    drop(listeners);
    let _ = stop_tx.send(true);
    let grace = shared.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        sessions.shutdown().await;
    }
    tokio::task::spawn_blocking(move || shared.spool.close())
        .await
        .map_err(|e| SmtpError::Config(format!("spool shutdown failed: {e}")))?;
    Ok(())
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Releases a per-IP connection slot when dropped.
struct IpSlot<'a>(&'a Mutex<HashMap<IpAddr, usize>>, IpAddr);

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.lock()
            && let Some(n) = m.get_mut(&self.1)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    ip: IpAddr,
    implicit: bool,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(_total) = shared.total.clone().try_acquire_owned() else {
        refuse(stream, implicit).await;
        return;
    };
    let slot = {
        let Ok(mut m) = shared.per_ip.lock() else {
            return;
        };
        let n = m.entry(ip).or_insert(0);
        if *n >= shared.config.max_connections_per_ip {
            None
        } else {
            *n += 1;
            Some(IpSlot(&shared.per_ip, ip))
        }
    };
    let Some(_slot) = slot else {
        refuse(stream, implicit).await;
        return;
    };
    let conn = if implicit {
        match handshake(&shared, stream).await {
            Some(tls) => Conn::Tls(Box::new(tls)),
            None => return,
        }
    } else {
        Conn::Plain(stream)
    };
    let _ = run_session(&shared, conn, implicit, stop).await;
}

async fn refuse(mut stream: TcpStream, implicit: bool) {
    if !implicit {
        let _ = stream
            .write_all(&Reply::too_many_connections().to_bytes())
            .await;
    }
    let _ = stream.shutdown().await;
}

async fn handshake(shared: &Shared, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
    let t = shared.config.handshake_timeout;
    match tokio::time::timeout(t, shared.acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        _ => None,
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the listener knows about the client beyond the protocol state.
struct Client {
    /// The tenant identified by AUTH or a client certificate.
    tenant: Option<TenantId>,
    /// Tenant of each accepted recipient (when no client tenant).
    rcpt_tenants: HashMap<String, TenantId>,
}

fn client_cert_tenant(shared: &Shared, tls: &TlsStream<TcpStream>) -> Option<TenantId> {
    let cert = tls.get_ref().1.peer_certificates()?.first()?;
    let fp: [u8; 32] = Sha256::digest(cert.as_ref()).into();
    shared.config.client_cert_tenants.get(&fp).cloned()
}

async fn run_session(
    shared: &Shared,
    mut conn: Conn,
    implicit: bool,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SmtpError> {
    let cfg = &shared.config;
    let session_cfg = SessionConfig {
        hostname: cfg.hostname.clone(),
        mode: cfg.mode,
        limits: cfg.limits.clone(),
        starttls: !implicit,
        auth: !cfg.api_keys.is_empty(),
        require_auth: cfg.require_auth,
    };
    let mut session = Session::new(session_cfg, implicit);
    let mut client = Client {
        tenant: None,
        rcpt_tenants: HashMap::new(),
    };
    if let Conn::Tls(tls) = &conn
        && let Some(t) = client_cert_tenant(shared, tls)
    {
        client.tenant = Some(t);
        session.set_authenticated();
    }
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; session.read_hint()];
    loop {
        while let Some(event) = session.poll() {
            match event {
                Event::Reply(r) => out.extend_from_slice(&r.to_bytes()),
                Event::StartTls => {
                    conn.write_all(&out).await?;
                    conn.flush().await?;
                    out.clear();
                    let Conn::Plain(tcp) = conn else {
                        return Ok(());
                    };
                    let Some(tls) = handshake(shared, tcp).await else {
                        return Ok(());
                    };
                    if let Some(t) = client_cert_tenant(shared, &tls) {
                        client.tenant = Some(t);
                        session.set_authenticated();
                    }
                    conn = Conn::Tls(Box::new(tls));
                }
                Event::Auth {
                    authzid,
                    user,
                    secret,
                } => {
                    let tenant = check_api_key(cfg, &authzid, &user, &secret);
                    session.auth_result(tenant.is_some());
                    if tenant.is_some() {
                        client.tenant = tenant;
                    }
                }
                Event::Rcpt(addr) => {
                    let refusal = rcpt_tenant(shared, &mut client, &addr);
                    session.rcpt_result(refusal);
                }
                Event::Message(m) => {
                    // Answer what is queued first: the client may be waiting.
                    let result = deliver(shared, &mut client, m).await;
                    session.message_result(result);
                }
                Event::Close => {
                    conn.write_all(&out).await?;
                    let _ = conn.shutdown().await;
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            conn.write_all(&out).await?;
            conn.flush().await?;
            out.clear();
        }
        let n = tokio::select! {
            r = tokio::time::timeout(cfg.idle_timeout, conn.read(&mut buf)) => match r {
                Ok(r) => r?,
                Err(_) => {
                    let _ = conn.write_all(&Reply::timeout().to_bytes()).await;
                    let _ = conn.shutdown().await;
                    return Ok(());
                }
            },
            () = stopped(&mut stop), if session.is_idle() => {
                let _ = conn.write_all(&Reply::shutting_down().to_bytes()).await;
                let _ = conn.shutdown().await;
                return Ok(());
            }
        };
        if n == 0 {
            session.disconnected();
            return Ok(());
        }
        session.feed(&buf[..n]);
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

fn check_api_key(cfg: &Config, authzid: &str, user: &str, secret: &str) -> Option<TenantId> {
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let key = cfg.api_keys.iter().find(|k| {
        // Compare every byte (no early exit on the secret's hash).
        k.sha256
            .iter()
            .zip(digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    })?;
    let t = key.tenant.as_str();
    let name_ok = |n: &str| n.is_empty() || n == t;
    (name_ok(user) && name_ok(authzid)).then(|| key.tenant.clone())
}

fn rcpt_tenant(shared: &Shared, client: &mut Client, addr: &str) -> Option<Reply> {
    if client.tenant.is_some() {
        return None;
    }
    let domain = addr.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    match shared.archive.tenant_for_domain(domain) {
        Ok(Some(t)) => {
            client.rcpt_tenants.insert(addr.to_string(), t.id);
            None
        }
        Ok(None) => Some(Reply::new(
            550,
            "5.1.1",
            format!("<{addr}>: no archive tenant receives mail for this domain"),
        )),
        Err(e) => {
            eprintln!("ama-smtp: tenant lookup failed: {e}");
            Some(Reply::new(451, "4.3.0", "Temporary lookup failure"))
        }
    }
}

async fn deliver(shared: &Shared, client: &mut Client, m: proto::Message) -> Delivery {
    let limit = shared.archive.options().max_message_size;
    if let Err(e) = ama_core::parse::check(&m.data, limit) {
        client.rcpt_tenants.clear();
        return Delivery::Reject(format!("Not archivable: {e}"));
    }
    let raw = Arc::new(m.data);
    let mail_from = (!m.mail_from.is_empty()).then_some(m.mail_from);
    let mut parts: Vec<(TenantId, Envelope, Arc<Vec<u8>>)> = Vec::new();
    let mut by_tenant: Vec<(TenantId, Vec<String>)> = Vec::new();
    for r in &m.rcpt_to {
        let t = match &client.tenant {
            Some(t) => t.clone(),
            None => match client.rcpt_tenants.get(r) {
                Some(t) => t.clone(),
                None => continue,
            },
        };
        match by_tenant.iter_mut().find(|(x, _)| *x == t) {
            Some((_, v)) => v.push(r.clone()),
            None => by_tenant.push((t, vec![r.clone()])),
        }
    }
    client.rcpt_tenants.clear();
    for (tenant, rcpts) in by_tenant {
        // A journal report is archived as the original it carries.
        if shared.config.journal.enabled_for(&tenant)
            && let Some(report) = journal::parse_report(&raw)
        {
            let mut env = Envelope::new(Source::Smtp);
            env.mail_from = report.sender.or_else(|| mail_from.clone());
            env.rcpt_to = report.recipients;
            parts.push((tenant, env, Arc::new(report.original)));
            continue;
        }
        let mut env = Envelope::new(Source::Smtp);
        env.mail_from = mail_from.clone();
        env.rcpt_to = rcpts;
        parts.push((tenant, env, raw.clone()));
    }
    if parts.is_empty() {
        return Delivery::Reject("No recipient belongs to an archive tenant".into());
    }
    match shared.spool.accept(parts).await {
        Ok(qid) => Delivery::Queued(qid),
        Err(e) => {
            eprintln!("ama-smtp: cannot spool a message: {e}");
            Delivery::TempFail("Cannot store the message now, try again later".into())
        }
    }
}
