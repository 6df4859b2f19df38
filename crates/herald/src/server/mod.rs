//! The accept loop: our own, instead of `axum::serve`, because the server
//! must own what axum does not expose — TLS with ALPN (HTTP/2 for
//! browsers), small per-connection buffers, a kill switch per connection
//! for zombie writers, and a shutdown that ends streams before waiting for
//! connections to drain.
//!
//! Plain HTTP/1.1 stream requests are answered by [`http1_stream`], which
//! holds no per-connection buffers while a stream idles; everything else is
//! hyper's.

mod head_errors;
// Hidden, and public only so that the fuzz targets reach its head parser.
#[doc(hidden)]
pub mod http1_stream;
mod live_socket;
mod rewind;

use crate::http::request::ConnInfo;
use crate::hub::Hub;
use crate::kill::KillSwitch;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Loads a certificate chain and key into a TLS acceptor offering h2 and
/// http/1.1.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("`tls_cert`: cannot read {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`tls_cert`: {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("`tls_cert`: {} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("`tls_key`: {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("`tls_cert`: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("`tls_key`: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn connection_builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // Streams are written in whole batches; a small buffer keeps idle
        // connections cheap. It also bounds a request head, as Herald's own
        // front does for a connection's first request, with the same header
        // count: both answer a head beyond them with `431`.
        .max_buf_size(http1_stream::HEAD_MAX)
        .max_headers(http1_stream::MAX_HEADERS);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        // Per-stream window: enough for bursts, far below the 400 KiB
        // default that would let each stream buffer a lot.
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(1024 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// What one accepted connection is served with.
struct Connection {
    app: axum::Router,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    info: ConnInfo,
}

impl Connection {
    /// The router as a hyper service for this connection.
    fn hyper_service(&self) -> TowerToHyperService<Tagged> {
        TowerToHyperService::new(Tagged {
            app: self.app.clone(),
            info: self.info.clone(),
        })
    }

    /// Plain TCP: a stream request is answered by [`http1_stream`]; anything
    /// else, and whatever follows a finished stream, by hyper.
    async fn serve_plain(self, tcp: TcpStream, closing: CancellationToken) {
        // Boxed: reading and routing the first request takes far more room
        // than anything after it, and only for a moment.
        let first = Box::pin(http1_stream::first_request(self.app.clone(), tcp, self.info.clone())).await;
        match first {
            http1_stream::First::Gone => {}
            http1_stream::First::Other(tcp, prefix) => self.serve_hyper(tcp, prefix).await,
            http1_stream::First::Answered(socket, answer) => {
                // The stream gets a task of its own that carries nothing of
                // this one's first-request state; hyper takes over (boxed,
                // for the same reason) if the connection outlives it.
                let kill = self.info.kill.clone();
                let then = move |tcp, prefix| Box::pin(self.serve_hyper(tcp, prefix));
                tokio::spawn(http1_stream::pump(socket, answer, kill, closing, then));
            }
        }
    }

    /// Hands the connection to hyper, `prefix` first.
    async fn serve_hyper(self, tcp: TcpStream, prefix: Bytes) {
        self.hyper(rewind::Rewind::new(prefix, tcp)).await;
    }

    /// TLS: the handshake, then hyper (HTTP/2 or HTTP/1.1 by ALPN).
    async fn serve_tls(self, tcp: TcpStream, acceptor: TlsAcceptor) {
        let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
            return;
        };
        self.hyper(stream).await;
    }

    /// Serves `io` with hyper until it ends, the server shuts down
    /// gracefully, or the connection is cut.
    async fn hyper<IO>(self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.hyper_service();
        // hyper's own answer to an over-large head has an empty body; the
        // client gets Herald's JSON error instead.
        let io = head_errors::JsonHeadErrors::new(io, http1_stream::HEAD_MAX, http1_stream::MAX_HEADERS);
        let conn = self.watcher.watch(
            self.builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned(),
        );
        tokio::select! {
            _ = conn => {}
            _ = self.info.kill.killed() => {}
        }
    }
}

/// The router, tagging each request with its connection's address and kill
/// switch (a named type so hyper's bounds can see its future is `Send`).
#[derive(Clone)]
struct Tagged {
    app: axum::Router,
    info: ConnInfo,
}

impl tower::Service<hyper::Request<Incoming>> for Tagged {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<hyper::Request<Incoming>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut req: hyper::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        self.app.call(req)
    }
}

/// Connections the kernel may hold for the accept loop; it caps this at
/// `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds the hub's listening socket. After a deploy or a network blip every
/// client reconnects at once; with the usual backlog of 1,024 the kernel
/// drops the SYNs of the rest, and each of those clients waits a full
/// second for its retransmission before it can resume.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves `hub` on `listener` until `shutdown` resolves, then closes every
/// stream with `event: shutdown` and waits (bounded) for connections.
pub async fn serve(hub: Hub, listener: TcpListener, tls: Option<TlsAcceptor>, shutdown: impl Future<Output = ()>) {
    let app = hub.router();
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(connection_builder());
    // Tells connections served outside hyper not to stay open after their
    // stream ends.
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead
                    // of spinning; the caps keep this rare.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let kill = KillSwitch::new();
        let info = ConnInfo {
            peer,
            kill: kill.clone(),
        };
        let conn = Connection {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            info,
        };
        match tls.clone() {
            None => tokio::spawn(conn.serve_plain(tcp, closing.clone())),
            // Boxed so that plain connections, the many, do not carry room
            // for a TLS session in their task.
            Some(acceptor) => tokio::spawn(Box::pin(conn.serve_tls(tcp, acceptor))),
        };
    }
    drop(listener);
    closing.cancel();
    tracing::info!("shutting down: closing streams");
    hub.shutdown().await;
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close within 10 s");
    }
}

/// Resolves on SIGTERM or SIGINT.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a process supervisor (or a test) may send SIGTERM as soon
/// as the hub says it is listening, and a signal that arrives before the
/// handler exists kills the process with the default action instead of
/// stopping it gracefully.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Ok(mut term), Err(_)) => {
                    term.recv().await;
                }
                (Err(_), Ok(mut int)) => {
                    int.recv().await;
                }
                (Err(_), Err(_)) => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
