//! The listener: TCP accept, TLS (rustls, ALPN `h2` and `http/1.1`), then
//! hyper's automatic HTTP/1.1-or-HTTP/2 connection over the axum router.
//!
//! Why a hand-written loop rather than `axum::serve`: it adds TLS, a
//! handshake timeout, a connection limit, the peer address for rate
//! limiting, and a graceful shutdown that lets requests in flight finish.
//! Plain HTTP is allowed only when the socket is bound to a loopback
//! address, so a misconfiguration cannot expose the archive unencrypted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::HttpError;

/// How connections are secured.
#[derive(Clone)]
pub enum Transport {
    /// TLS with this configuration (its ALPN list is set to `h2`, `http/1.1`).
    Tls(Arc<rustls::ServerConfig>),
    /// Plain HTTP. Refused unless the listener is bound to a loopback address.
    InsecureLoopback,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tls(_) => "Tls",
            Transport::InsecureLoopback => "InsecureLoopback",
        })
    }
}

impl Transport {
    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

/// The client's socket address, available to handlers as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a complete HTTP/1.1 request head.
    pub header_timeout: Duration,
    /// At shutdown, longest wait for requests in flight.
    pub shutdown_grace: Duration,
}

/// Checks that `transport` is allowed on `addr`.
pub fn check_transport(addr: SocketAddr, transport: &Transport) -> Result<(), HttpError> {
    if !transport.is_tls() && !addr.ip().is_loopback() {
        return Err(HttpError::Config(format!(
            "plain HTTP is only allowed on a loopback address, not on {addr}; configure TLS"
        )));
    }
    Ok(())
}

/// Accepts connections until `shutdown` completes, then lets requests in
/// flight finish (up to `limits.shutdown_grace`).
pub(crate) async fn run(
    listener: TcpListener,
    transport: Transport,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let local = listener
        .local_addr()
        .map_err(|e| HttpError::Io(format!("listener address: {e}")))?;
    check_transport(local, &transport)?;
    let acceptor = match &transport {
        Transport::Tls(cfg) => {
            let mut cfg = (**cfg).clone();
            cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Some(TlsAcceptor::from(Arc::new(cfg)))
        }
        Transport::InsecureLoopback => None,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .keep_alive_interval(Duration::from_secs(60));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(_) => {
                    // Transient (e.g. out of file descriptors): back off.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream); // over the connection limit
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let hs = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acc) => {
                    if let Ok(Ok(tls)) = tokio::time::timeout(hs, acc.accept(stream)).await {
                        serve_io(tls, peer, router, &builder, watcher).await;
                    }
                }
                None => serve_io(stream, peer, router, &builder, watcher).await,
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            eprintln!("ama-http: shutdown grace period over; closing remaining connections");
        }
    }
    Ok(())
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        let req: Request = req.map(axum::body::Body::new);
        router.clone().oneshot(req)
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    // Errors here are the client's (reset, malformed request): nothing to do.
    let _ = watcher.watch(conn.into_owned()).await;
}
