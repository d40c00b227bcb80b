//! [`RemoteKeyService`]: the archive node's side. It implements
//! [`ama_core::KeyService`] by asking the key service over mutually
//! authenticated TLS, so the node's disk holds no master key and no key
//! store, only the wrapped tenant keys in its catalog.
//!
//! Unwrapped tenant keys are cached in memory for a bounded time
//! ([`RemoteConfig::cache_ttl`], 5 minutes by default), keyed by tenant and
//! wrapped bytes; a background sweeper drops (and zeroizes) expired entries
//! even when no further call comes. One TLS connection is kept open and
//! re-established once, transparently, when it fails (the service
//! restarted, or closed an idle connection); every request is idempotent,
//! so retrying is safe. Failures come back as typed [`ama_core::KeyError`]s:
//! `ServiceUnreachable`, `ServiceRefused`, `ServiceFailed`, and
//! `TenantDestroyed`; an unwrap the service could not authenticate is a
//! [`ama_core::CryptoError::Authentication`], as with the local store.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use ama_core::crypto::{KEY_LEN, SecretKey};
use ama_core::{CryptoError, Error, KeyError, KeyService, Region, TenantId};
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{ServiceError, io_err};
use crate::proto::{self, ErrorCode, Op, Response, ResponseError};

/// Default lifetime of an unwrapped key in the cache.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// How to reach the key service.
#[derive(Clone)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// `host:port` of the service.
    pub address: String,
    /// The name its certificate must carry (by default the host of `address`).
    pub server_name: ServerName<'static>,
    /// Trust anchors and this client's certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// How long an unwrapped key stays in memory; zero disables the cache.
    pub cache_ttl: Duration,
    /// At most this many keys are cached (the oldest goes first).
    pub max_cached_keys: usize,
    /// Time allowed to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for the handshake and for each read and write.
    pub io_timeout: Duration,
    /// The region the service keeps its keys in (`None`: untagged). The
    /// archive refuses tenants pinned to another region.
    pub region: Option<Region>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

impl RemoteConfig {
    /// A configuration for `address` (`host:port`) with a TLS client
    /// configuration from [`crate::tls::client_config`]. The service's
    /// certificate must name the host of `address` (a DNS name or an IP
    /// address); see [`RemoteConfig::with_server_name`].
    pub fn new(
        address: impl Into<String>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ServiceError> {
        let address = address.into();
        let server_name = ServerName::try_from(host_of(&address).to_string())
            .map_err(|e| ServiceError::Tls(format!("{address:?} has no usable host name: {e}")))?;
        Ok(RemoteConfig {
            address,
            server_name,
            tls,
            cache_ttl: DEFAULT_CACHE_TTL,
            max_cached_keys: 4096,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(15),
            region: None,
        })
    }

    /// From PEM files: the CA that signed the service's certificate, and
    /// this client's certificate (chain) and private key.
    pub fn from_files(
        address: impl Into<String>,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, ServiceError> {
        let tls = crate::tls::client_config(
            crate::tls::load_certs(ca)?,
            crate::tls::load_certs(cert)?,
            crate::tls::load_key(key)?,
        )?;
        Self::new(address, tls)
    }

    /// Expects the service's certificate to carry `name` instead.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, ServiceError> {
        self.server_name = ServerName::try_from(name.to_string())
            .map_err(|e| ServiceError::Tls(format!("{name:?} is not a server name: {e}")))?;
        Ok(self)
    }

    /// Sets how long unwrapped keys stay cached (zero: not at all).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Tags the service with the region it keeps its keys in.
    pub fn with_region(mut self, region: Region) -> Self {
        self.region = Some(region);
        self
    }

    /// Sets the connect and I/O timeouts.
    pub fn with_timeouts(mut self, connect: Duration, io: Duration) -> Self {
        self.connect_timeout = connect;
        self.io_timeout = io;
        self
    }
}

/// The file an archive node keeps in its data directory to find its key
/// service (`DATA/key-service.json`). It names files, never holds a secret:
///
/// ```json
/// { "format": "ama-key-service-client", "version": 1,
///   "address": "keys.ama.internal:7443", "server_name": null,
///   "ca": "/etc/ama/ks-ca.pem", "cert": "/etc/ama/node.pem",
///   "key": "/etc/ama/node.key", "cache_ttl_secs": 300 }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfigFile {
    /// Always `ama-key-service-client`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// `host:port` of the service.
    pub address: String,
    /// The name on the service's certificate, if not the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of the CA that signed the service's certificate.
    pub ca: PathBuf,
    /// PEM file of this node's client certificate.
    pub cert: PathBuf,
    /// PEM file of this node's private key.
    pub key: PathBuf,
    /// Cache lifetime of unwrapped keys in seconds (default 300).
    #[serde(default)]
    pub cache_ttl_secs: Option<u64>,
    /// The region the service keeps its keys in (`eu`, `us`, …); absent for
    /// an untagged service. Tenants of other regions are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

const CONFIG_FORMAT: &str = "ama-key-service-client";
const CONFIG_VERSION: u32 = 1;

impl RemoteConfigFile {
    /// The file name inside a data directory.
    pub const FILE: &'static str = "key-service.json";

    /// A configuration (paths are kept as given: make them absolute).
    pub fn new(address: impl Into<String>, ca: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        RemoteConfigFile {
            format: CONFIG_FORMAT.into(),
            version: CONFIG_VERSION,
            address: address.into(),
            server_name: None,
            ca,
            cert,
            key,
            cache_ttl_secs: None,
            region: None,
        }
    }

    /// `DATA/key-service.json`.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(Self::FILE)
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ServiceError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let bad = |reason: String| ServiceError::Config {
            path: path.display().to_string(),
            reason,
        };
        let file: RemoteConfigFile =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != CONFIG_FORMAT {
            return Err(bad(format!(
                "format {:?} is not {CONFIG_FORMAT:?}",
                file.format
            )));
        }
        if file.version != CONFIG_VERSION {
            return Err(bad(format!("unsupported version {}", file.version)));
        }
        Ok(file)
    }

    /// `DATA/key-service.json`, if the archive uses a key service.
    pub fn load_in(data_dir: &Path) -> Result<Option<Self>, ServiceError> {
        let path = Self::path_in(data_dir);
        if !path.exists() {
            return Ok(None);
        }
        Self::load(&path).map(Some)
    }

    /// Writes `DATA/key-service.json` (which must not exist yet).
    pub fn save_in(&self, data_dir: &Path) -> Result<(), ServiceError> {
        let path = Self::path_in(data_dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| ServiceError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(&json).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        Ok(())
    }

    /// Loads the certificates and keys it names.
    pub fn to_config(&self) -> Result<RemoteConfig, ServiceError> {
        let mut cfg = RemoteConfig::from_files(&self.address, &self.ca, &self.cert, &self.key)?;
        if let Some(name) = &self.server_name {
            cfg = cfg.with_server_name(name)?;
        }
        if let Some(ttl) = self.cache_ttl_secs {
            cfg = cfg.with_cache_ttl(Duration::from_secs(ttl));
        }
        if let Some(r) = &self.region {
            cfg = cfg.with_region(r.clone());
        }
        Ok(cfg)
    }
}

type Conn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

struct Cached {
    key: Zeroizing<[u8; KEY_LEN]>,
    expires: Instant,
}

/// (tenant id, wrapped key) → unwrapped key.
type Cache = HashMap<(String, Vec<u8>), Cached>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn purge(cache: &mut Cache, now: Instant) {
    // Dropping an entry zeroizes its key.
    cache.retain(|_, v| v.expires > now);
}

/// A [`KeyService`] served by a remote `ama key-service` over mutually
/// authenticated TLS.
pub struct RemoteKeyService {
    cfg: RemoteConfig,
    conn: Mutex<Option<Conn>>,
    cache: Arc<Mutex<Cache>>,
}

impl std::fmt::Debug for RemoteKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeyService")
            .field("address", &self.cfg.address)
            .finish_non_exhaustive()
    }
}

impl RemoteKeyService {
    /// A client; it connects on first use.
    pub fn new(cfg: RemoteConfig) -> Self {
        let cache = Arc::new(Mutex::new(Cache::new()));
        if !cfg.cache_ttl.is_zero() {
            spawn_sweeper(Arc::downgrade(&cache), cfg.cache_ttl);
        }
        RemoteKeyService {
            cfg,
            conn: Mutex::new(None),
            cache,
        }
    }

    /// A client that has checked the service answers (see [`Self::health`]).
    pub fn connect(cfg: RemoteConfig) -> ama_core::Result<Self> {
        let s = Self::new(cfg);
        s.health()?;
        Ok(s)
    }

    /// The service's address.
    pub fn address(&self) -> &str {
        &self.cfg.address
    }

    /// Asks the service whether it is up (and accepts this client).
    pub fn health(&self) -> ama_core::Result<()> {
        self.request(Op::Health, "", &[])?;
        Ok(())
    }

    /// How many unexpired keys are cached.
    pub fn cached_keys(&self) -> usize {
        let mut c = lock(&self.cache);
        purge(&mut c, Instant::now());
        c.len()
    }

    /// Drops (and zeroizes) every cached key.
    pub fn clear_cache(&self) {
        lock(&self.cache).clear();
    }

    fn unreachable(&self, reason: String) -> Error {
        KeyError::ServiceUnreachable {
            service: self.cfg.address.clone(),
            reason,
        }
        .into()
    }

    fn classify(&self, e: &io::Error) -> Error {
        let tls = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::AlertReceived(alert)) => KeyError::ServiceRefused {
                service: self.cfg.address.clone(),
                reason: format!(
                    "the TLS handshake was refused ({alert:?}): this client's certificate \
                     is missing, expired or not signed by the service's client CA"
                ),
            }
            .into(),
            Some(rustls::Error::InvalidCertificate(c)) => {
                self.unreachable(format!("the service's certificate is not trusted: {c:?}"))
            }
            Some(other) => self.unreachable(format!("TLS failed: {other}")),
            None => self.unreachable(e.to_string()),
        }
    }

    fn open_conn(&self) -> ama_core::Result<Conn> {
        let addrs = self
            .cfg
            .address
            .to_socket_addrs()
            .map_err(|e| self.unreachable(format!("cannot resolve the address: {e}")))?;
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.cfg.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut tcp) = tcp else {
            return Err(match last {
                Some(e) => self.unreachable(e.to_string()),
                None => self.unreachable("the address resolves to nothing".into()),
            });
        };
        let t = Some(self.cfg.io_timeout);
        tcp.set_read_timeout(t)
            .and_then(|()| tcp.set_write_timeout(t))
            .map_err(|e| self.unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut conn =
            rustls::ClientConnection::new(self.cfg.tls.clone(), self.cfg.server_name.clone())
                .map_err(|e| self.unreachable(format!("TLS set-up failed: {e}")))?;
        let mut rounds = 0;
        while conn.is_handshaking() {
            rounds += 1;
            conn.complete_io(&mut tcp).map_err(|e| self.classify(&e))?;
            if rounds > 16 {
                return Err(self.unreachable("the TLS handshake does not finish".into()));
            }
        }
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    /// Sends one request and reads its answer, reconnecting once if the
    /// kept connection turns out to be dead.
    fn request(
        &self,
        op: Op,
        tenant: &str,
        payload: &[u8],
    ) -> ama_core::Result<Zeroizing<Vec<u8>>> {
        let frame = proto::encode_request(op, tenant, payload);
        let mut slot = lock(&self.conn);
        let mut fresh = false;
        loop {
            let conn = match slot.as_mut() {
                Some(c) => c,
                None => {
                    fresh = true;
                    slot.insert(self.open_conn()?)
                }
            };
            let result = conn
                .write_all(&frame)
                .and_then(|()| conn.flush())
                .map_err(ResponseError::Io)
                .and_then(|()| proto::read_response(conn));
            match result {
                Ok(resp) => {
                    return self.answer(resp, op, tenant);
                }
                Err(ResponseError::Protocol(reason)) => {
                    *slot = None;
                    return Err(KeyError::ServiceFailed {
                        service: self.cfg.address.clone(),
                        reason,
                    }
                    .into());
                }
                Err(ResponseError::Io(e)) => {
                    *slot = None;
                    if fresh {
                        return Err(self.classify(&e));
                    }
                    // A kept connection died (idle timeout, restart): retry once.
                }
            }
        }
    }

    fn answer(&self, resp: Response, op: Op, tenant: &str) -> ama_core::Result<Zeroizing<Vec<u8>>> {
        let (code, status, message) = match resp {
            Response::Ok(body) => return Ok(body),
            Response::Err {
                code,
                status,
                message,
            } => (code, status, message),
        };
        let service = self.cfg.address.clone();
        Err(match code {
            Some(ErrorCode::TenantDestroyed) => {
                KeyError::TenantDestroyed(tenant.to_string()).into()
            }
            Some(ErrorCode::Forbidden) => KeyError::ServiceRefused {
                service,
                reason: message,
            }
            .into(),
            Some(ErrorCode::UnwrapFailed) => CryptoError::Authentication {
                what: format!("key of tenant {tenant} ({message})"),
            }
            .into(),
            Some(c) => KeyError::ServiceFailed {
                service,
                reason: format!("{} {}: {message}", op.name(), c.name()),
            }
            .into(),
            None => KeyError::ServiceFailed {
                service,
                reason: format!(
                    "{} failed with unknown status {status}: {message}",
                    op.name()
                ),
            }
            .into(),
        })
    }

    fn cached(&self, tenant: &TenantId, wrapped: &[u8]) -> Option<SecretKey> {
        if self.cfg.cache_ttl.is_zero() {
            return None;
        }
        let mut c = lock(&self.cache);
        purge(&mut c, Instant::now());
        c.get(&(tenant.as_str().to_string(), wrapped.to_vec()))
            .map(|v| SecretKey::from_bytes(*v.key))
    }

    fn remember(&self, tenant: &TenantId, wrapped: &[u8], key: &[u8; KEY_LEN]) {
        if self.cfg.cache_ttl.is_zero() || self.cfg.max_cached_keys == 0 {
            return;
        }
        let now = Instant::now();
        let mut c = lock(&self.cache);
        purge(&mut c, now);
        while c.len() >= self.cfg.max_cached_keys {
            let oldest = c
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    c.remove(&k);
                }
                None => break,
            }
        }
        c.insert(
            (tenant.as_str().to_string(), wrapped.to_vec()),
            Cached {
                key: Zeroizing::new(*key),
                expires: now + self.cfg.cache_ttl,
            },
        );
    }

    fn forget(&self, tenant: &TenantId) {
        lock(&self.cache).retain(|(t, _), _| t != tenant.as_str());
    }
}

impl Drop for RemoteKeyService {
    fn drop(&mut self) {
        // Say goodbye, so the service does not log a broken connection.
        if let Some(mut c) = lock(&self.conn).take() {
            c.conn.send_close_notify();
            let _ = c.flush();
        }
    }
}

/// Drops expired keys even when the service is idle; ends when the
/// [`RemoteKeyService`] is dropped.
fn spawn_sweeper(cache: Weak<Mutex<Cache>>, ttl: Duration) {
    let period = (ttl / 2).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let _ = std::thread::Builder::new()
        .name("ama-keyservice-cache".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                let Some(c) = cache.upgrade() else { return };
                purge(&mut lock(&c), Instant::now());
            }
        });
}

impl KeyService for RemoteKeyService {
    fn wrap_tenant_key(&self, tenant: &TenantId, key: &SecretKey) -> ama_core::Result<Vec<u8>> {
        let wrapped = self.request(Op::Wrap, tenant.as_str(), key.expose_secret())?;
        let wrapped = wrapped.to_vec();
        self.remember(tenant, &wrapped, key.expose_secret());
        Ok(wrapped)
    }

    fn unwrap_tenant_key(&self, tenant: &TenantId, wrapped: &[u8]) -> ama_core::Result<SecretKey> {
        if let Some(k) = self.cached(tenant, wrapped) {
            return Ok(k);
        }
        if wrapped.is_empty() || wrapped.len() > proto::MAX_PAYLOAD {
            return Err(CryptoError::Malformed {
                what: format!("key of tenant {tenant}"),
                reason: format!("{} bytes is not a wrapped key", wrapped.len()),
            }
            .into());
        }
        let body = self.request(Op::Unwrap, tenant.as_str(), wrapped)?;
        if body.len() != KEY_LEN {
            return Err(KeyError::ServiceFailed {
                service: self.cfg.address.clone(),
                reason: format!("unwrap answered {} bytes, not a key", body.len()),
            }
            .into());
        }
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&body);
        self.remember(tenant, wrapped, &k);
        let key = SecretKey::from_bytes(k);
        k.zeroize();
        Ok(key)
    }

    fn destroy_tenant(&self, tenant: &TenantId) -> ama_core::Result<()> {
        // Forget first: whatever the service answers, this node keeps nothing.
        self.forget(tenant);
        self.request(Op::Destroy, tenant.as_str(), &[])?;
        self.forget(tenant);
        Ok(())
    }

    fn region(&self) -> Option<Region> {
        self.cfg.region.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{RemoteConfigFile, host_of};
    use crate::error::ServiceError;

    /// `key-service.json` as version 1 writes it (a fixture: later
    /// versions must keep reading it).
    const V1: &str = r#"{
  "format": "ama-key-service-client",
  "version": 1,
  "address": "keys.ama.internal:7443",
  "server_name": null,
  "ca": "/etc/ama/keys-ca.pem",
  "cert": "/etc/ama/node-1.pem",
  "key": "/etc/ama/node-1.key",
  "cache_ttl_secs": 60
}"#;

    #[test]
    fn config_file_v1_is_read_and_bad_ones_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key-service.json");
        std::fs::write(&p, V1).unwrap();
        let f = RemoteConfigFile::load(&p).unwrap();
        assert_eq!(f.address, "keys.ama.internal:7443");
        assert_eq!(f.cache_ttl_secs, Some(60));
        assert_eq!(
            RemoteConfigFile::load_in(d.path()).unwrap(),
            Some(f.clone())
        );
        // save_in writes what load reads, and never over an existing file.
        let d2 = tempfile::tempdir().unwrap();
        f.save_in(d2.path()).unwrap();
        assert_eq!(
            RemoteConfigFile::load_in(d2.path()).unwrap(),
            Some(f.clone())
        );
        assert!(matches!(f.save_in(d2.path()), Err(ServiceError::Io { .. })));
        for bad in [
            V1.replace("\"version\": 1", "\"version\": 2"),
            V1.replace("ama-key-service-client", "something-else"),
            V1.replace("\"cache_ttl_secs\"", "\"surprise\": 1, \"cache_ttl_secs\""),
            "{}".to_string(),
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(matches!(
                RemoteConfigFile::load(&p),
                Err(ServiceError::Config { .. })
            ));
        }
        assert!(
            RemoteConfigFile::load_in(&d.path().join("none"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("keys.test:7443"), "keys.test");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7443"), "::1");
        assert_eq!(host_of("keys.test"), "keys.test");
    }
}
