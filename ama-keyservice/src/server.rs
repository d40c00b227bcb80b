//! The key service process: a [`KeyService`] (normally the local key store
//! of the service's own directory) behind a TLS listener that only admits
//! clients with a certificate from the configured CA.
//!
//! Plain threads, one per connection, at most
//! [`ServerOptions::max_connections`] at a time (more are closed at once);
//! every socket has a handshake timeout and an idle timeout, so a silent
//! peer cannot hold a slot. Requests are rare (an archive node unwraps a
//! tenant key when it opens the tenant), so this stays small and has no
//! async runtime. Every request and every refused handshake is logged with
//! the peer, the client's identity, the op, the tenant and the outcome —
//! never a key.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ama_core::crypto::{KEY_LEN, SecretKey};
use ama_core::{Error, KdfParams, KeyError, KeyService, LocalKeyStore, Unlock};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{ServiceError, io_err};
use crate::policy::ClientPolicy;
use crate::proto::{self, ErrorCode, Op, ReadError, Request};
use crate::tls::ClientIdentity;

/// Limits of the listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Connections served at the same time; more are closed on accept.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake (and for writing a response).
    pub handshake_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// One line of the request log. Holds no key material.
#[derive(Debug)]
pub struct RequestLog<'a> {
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The client's identity (first DNS name of its certificate, or its
    /// fingerprint); `-` when the handshake failed.
    pub client: &'a str,
    /// `wrap`, `unwrap`, `destroy`, `health`, `handshake`, `connect`, or `-`
    /// for a frame whose op could not be read.
    pub op: &'a str,
    /// The tenant, when the request named a valid one.
    pub tenant: Option<&'a str>,
    /// `ok`, or an error code name with details.
    pub outcome: &'a str,
}

/// Receives every [`RequestLog`] line.
pub type Logger = Arc<dyn Fn(&RequestLog<'_>) + Send + Sync>;

fn stderr_logger() -> Logger {
    Arc::new(|l: &RequestLog<'_>| {
        let peer = l.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        eprintln!(
            "ama key-service: peer={peer} client={} op={} tenant={} outcome={}",
            l.client,
            l.op,
            l.tenant.unwrap_or("-"),
            l.outcome
        );
    })
}

struct Shared {
    keys: Arc<dyn KeyService>,
    tls: Arc<rustls::ServerConfig>,
    policy: ClientPolicy,
    options: ServerOptions,
    log: Logger,
    active: AtomicUsize,
}

/// The key service: configure with [`KeyServiceServer::new`] or
/// [`KeyServiceServer::open`], then [`KeyServiceServer::spawn`] (a
/// background thread) or [`KeyServiceServer::serve`] (this thread).
pub struct KeyServiceServer {
    keys: Arc<dyn KeyService>,
    tls: Arc<rustls::ServerConfig>,
    policy: ClientPolicy,
    options: ServerOptions,
    log: Logger,
}

impl KeyServiceServer {
    /// A server for `keys`; `tls` must require client certificates (see
    /// [`crate::tls::server_config`]).
    pub fn new(
        keys: Arc<dyn KeyService>,
        tls: Arc<rustls::ServerConfig>,
        policy: ClientPolicy,
    ) -> Self {
        KeyServiceServer {
            keys,
            tls,
            policy,
            options: ServerOptions::default(),
            log: stderr_logger(),
        }
    }

    /// Creates the service's key store in `dir` (`DIR/keys/keystore.json`).
    /// Refuses a directory that already holds one.
    pub fn init(dir: &Path, unlock: &Unlock, kdf: KdfParams) -> Result<(), ServiceError> {
        let path = LocalKeyStore::path_in(dir);
        if path.exists() {
            return Err(ServiceError::DataDir {
                path: dir.display().to_string(),
                reason: "already holds a key store".into(),
            });
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        LocalKeyStore::create(&path, unlock, kdf)?;
        Ok(())
    }

    /// Opens the key store of `dir` with `unlock` and its `clients.json`
    /// policy (all clients allowed if there is none).
    pub fn open(
        dir: &Path,
        unlock: &Unlock,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Self, ServiceError> {
        let path = LocalKeyStore::path_in(dir);
        if !path.exists() {
            return Err(ServiceError::DataDir {
                path: dir.display().to_string(),
                reason: "holds no key store (run `ama key-service init --dir DIR` first)".into(),
            });
        }
        let policy = ClientPolicy::load_in(dir)?;
        let keys = LocalKeyStore::open(&path, unlock)?;
        Ok(Self::new(Arc::new(keys), tls, policy))
    }

    /// Sets the listener's limits.
    pub fn with_options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// Sends the request log to `log` instead of standard error.
    pub fn with_logger(mut self, log: Logger) -> Self {
        self.log = log;
        self
    }

    /// The client policy in force.
    pub fn policy(&self) -> &ClientPolicy {
        &self.policy
    }

    fn shared(self) -> Arc<Shared> {
        Arc::new(Shared {
            keys: self.keys,
            tls: self.tls,
            policy: self.policy,
            options: self.options,
            log: self.log,
            active: AtomicUsize::new(0),
        })
    }

    /// Listens on `addr` and serves on a background thread until the
    /// returned handle is shut down or dropped.
    pub fn spawn(
        self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<RunningServer, ServiceError> {
        let name = format!("{addr:?}");
        let listener = TcpListener::bind(addr).map_err(|source| ServiceError::Bind {
            addr: name.clone(),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| ServiceError::Bind {
            addr: name.clone(),
            source,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ama-keyservice-accept".into())
            .spawn(move || accept_loop(&shared, &listener, &stop2))
            .map_err(|source| ServiceError::Bind { addr: name, source })?;
        Ok(RunningServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// Serves connections from `listener` on this thread, forever.
    pub fn serve(self, listener: TcpListener) {
        let shared = self.shared();
        accept_loop(&shared, &listener, &AtomicBool::new(false));
    }
}

/// A key service running on a background thread.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for the accept thread
    /// (connections in progress finish on their own threads).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Decrements the connection count when a connection ends (or its thread
/// could not be started).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match conn {
            Ok(t) => t,
            Err(e) => {
                (shared.log)(&RequestLog {
                    peer: None,
                    client: "-",
                    op: "connect",
                    tenant: None,
                    outcome: &format!("accept failed: {e}"),
                });
                // Out of file descriptors, say: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let prev = shared.active.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(shared.clone());
        if prev >= shared.options.max_connections {
            (shared.log)(&RequestLog {
                peer: tcp.peer_addr().ok(),
                client: "-",
                op: "connect",
                tenant: None,
                outcome: "refused: too many connections",
            });
            continue;
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("ama-keyservice-conn".into())
            .spawn(move || {
                let _slot = slot;
                s.handle(tcp);
            });
        if let Err(e) = spawned {
            (shared.log)(&RequestLog {
                peer: None,
                client: "-",
                op: "connect",
                tenant: None,
                outcome: &format!("refused: cannot start a thread: {e}"),
            });
        }
    }
}

impl Shared {
    fn log(
        &self,
        peer: Option<SocketAddr>,
        client: &str,
        op: &str,
        tenant: Option<&str>,
        outcome: &str,
    ) {
        (self.log)(&RequestLog {
            peer,
            client,
            op,
            tenant,
            outcome,
        });
    }

    fn handle(&self, mut tcp: TcpStream) {
        let peer = tcp.peer_addr().ok();
        let hs = Some(self.options.handshake_timeout);
        if tcp.set_read_timeout(hs).is_err() || tcp.set_write_timeout(hs).is_err() {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let mut conn = match rustls::ServerConnection::new(self.tls.clone()) {
            Ok(c) => c,
            Err(e) => {
                self.log(peer, "-", "handshake", None, &format!("internal: {e}"));
                return;
            }
        };
        // The client's certificate is checked here: without one from the
        // CA, the handshake fails (and the client gets an alert).
        let mut rounds = 0;
        while conn.is_handshaking() {
            rounds += 1;
            if let Err(e) = conn.complete_io(&mut tcp) {
                self.log(peer, "-", "handshake", None, &format!("refused: {e}"));
                linger(&mut tcp);
                return;
            }
            if rounds > 16 {
                self.log(
                    peer,
                    "-",
                    "handshake",
                    None,
                    "refused: handshake does not finish",
                );
                return;
            }
        }
        let Some(identity) = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(ClientIdentity::of)
        else {
            self.log(
                peer,
                "-",
                "handshake",
                None,
                "refused: no client certificate",
            );
            return;
        };
        let client = identity.display_name().to_string();
        if tcp
            .set_read_timeout(Some(self.options.idle_timeout))
            .is_err()
        {
            return;
        }
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        loop {
            match proto::read_request(&mut stream) {
                Ok(req) => {
                    let tenant = req.tenant.as_ref().map(|t| t.as_str());
                    let written = match self.dispatch(&identity, &req) {
                        Ok(body) => {
                            self.log(peer, &client, req.op.name(), tenant, "ok");
                            proto::write_ok(&mut stream, &body)
                        }
                        Err((code, message, detail)) => {
                            let outcome = match detail {
                                Some(d) => format!("{}: {d}", code.name()),
                                None => code.name().to_string(),
                            };
                            self.log(peer, &client, req.op.name(), tenant, &outcome);
                            proto::write_error(&mut stream, code, &message)
                        }
                    };
                    if written.is_err() {
                        break;
                    }
                }
                Err(ReadError::Closed) | Err(ReadError::Io(_)) => break,
                Err(ReadError::Bad(b)) => {
                    let op = b.op.map(Op::name).unwrap_or("-");
                    self.log(
                        peer,
                        &client,
                        op,
                        None,
                        &format!("{}: {}", b.code.name(), b.message),
                    );
                    if proto::write_error(&mut stream, b.code, &b.message).is_err() || b.fatal {
                        break;
                    }
                }
            }
        }
        stream.conn.send_close_notify();
        let _ = stream.flush();
    }

    /// Runs one request: the body of an ok answer, or (code, message for
    /// the client, detail for the log only).
    fn dispatch(
        &self,
        who: &ClientIdentity,
        req: &Request,
    ) -> Result<Zeroizing<Vec<u8>>, (ErrorCode, String, Option<String>)> {
        let Some(tenant) = &req.tenant else {
            return Ok(Zeroizing::new(b"ok".to_vec()));
        };
        if !self.policy.allows(who, tenant) {
            return Err((
                ErrorCode::Forbidden,
                format!(
                    "client {} may not act on tenant {tenant}",
                    who.display_name()
                ),
                None,
            ));
        }
        let result = match req.op {
            Op::Wrap => {
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(&req.payload);
                let key = SecretKey::from_bytes(k);
                k.zeroize();
                self.keys.wrap_tenant_key(tenant, &key).map(Zeroizing::new)
            }
            Op::Unwrap => self
                .keys
                .unwrap_tenant_key(tenant, &req.payload)
                .map(|k| Zeroizing::new(k.expose_secret().to_vec())),
            Op::Destroy => self
                .keys
                .destroy_tenant(tenant)
                .map(|()| Zeroizing::new(Vec::new())),
            Op::Health => Ok(Zeroizing::new(b"ok".to_vec())),
        };
        result.map_err(|e| match e {
            Error::Key(KeyError::TenantDestroyed(_)) => (
                ErrorCode::TenantDestroyed,
                format!("tenant {tenant} was destroyed: its keys no longer exist"),
                None,
            ),
            Error::Key(KeyError::NoTenantKek(_)) => (
                ErrorCode::UnwrapFailed,
                format!(
                    "this key service holds no key for tenant {tenant}: \
                     the key was wrapped by another key service"
                ),
                None,
            ),
            Error::Crypto(_) => (
                ErrorCode::UnwrapFailed,
                format!("the wrapped key does not authenticate for tenant {tenant}"),
                None,
            ),
            other => (
                ErrorCode::Internal,
                "internal error of the key service (see its log)".to_string(),
                Some(other.to_string()),
            ),
        })
    }
}

/// After a refused handshake (the alert is already written): close our
/// side and read what the client still sends for a moment, so the socket
/// is not closed with unread data — which would reset the connection and
/// could destroy the alert before the client reads it.
fn linger(tcp: &mut TcpStream) {
    use std::io::Read;
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < 64 * 1024 {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}
