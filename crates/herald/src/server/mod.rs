//! The accept loop: our own, instead of `axum::serve`, because the server
//! must own what axum does not expose — TLS with ALPN (HTTP/2 for
//! browsers), small per-connection buffers, a kill switch per connection
//! for zombie writers, and a shutdown that ends streams before waiting for
//! connections to drain.
//!
//! Plain HTTP/1.1 stream requests are answered by [`http1_stream`], which
//! holds no per-connection buffers while a stream idles; everything else is
//! hyper's.

mod http1_stream;
mod rewind;

use crate::http::request::ConnInfo;
use crate::hub::Hub;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

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
        // connections cheap.
        .max_buf_size(64 * 1024);
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
        let kill = CancellationToken::new();
        let info = ConnInfo {
            peer,
            kill: kill.clone(),
        };
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app.clone().map_request({
                let info = info.clone();
                move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(info.clone());
                    req
                }
            }));
            match tls {
                None => {
                    let mut tcp = tcp;
                    let head = tokio::time::timeout(http1_stream::HEAD_TIMEOUT, http1_stream::read_head(&mut tcp));
                    let prefix = match head.await {
                        Err(_) | Ok(http1_stream::Head::Gone) => return,
                        Ok(http1_stream::Head::Other(bytes)) => bytes,
                        Ok(http1_stream::Head::Stream(req, rest)) => {
                            match http1_stream::serve(app, &mut tcp, req, info, rest, &closing).await {
                                Some(rest) => rest,
                                None => return,
                            }
                        }
                    };
                    // Boxed: hyper's connection state is large, and a task
                    // that only streams should not carry room for it.
                    let io = TokioIo::new(rewind::Rewind::new(prefix, tcp));
                    let conn = Box::pin(watcher.watch(builder.serve_connection_with_upgrades(io, service).into_owned()));
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.cancelled() => {}
                    }
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    tokio::select! {
                        _ = watcher.watch(conn) => {}
                        _ = kill.cancelled() => {}
                    }
                }
            }
        });
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
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
