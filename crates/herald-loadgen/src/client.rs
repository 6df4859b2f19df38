//! Client connections from a chosen source address (so more streams than
//! one address's ephemeral ports can be opened), built on hyper's
//! connection API: HTTP/1.1 over plain TCP or TLS, and HTTP/2 over TLS with
//! many streams multiplexed on one connection.

use crate::target::Req;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{rustls, TlsConnector};

/// Trust for `https://` targets, set once from `--ca`.
static TLS: OnceLock<TlsConnector> = OnceLock::new();

/// Trusts the certificates in `pem` (the hub's own, self-signed, in a
/// benchmark) for every `https://` connection.
pub fn trust(pem: &std::path::Path) -> Result<(), String> {
    let bad = |e: &dyn std::fmt::Display| format!("--ca {}: {e}", pem.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let _ = TLS.set(TlsConnector::from(Arc::new(config)));
    Ok(())
}

/// Where a URL points.
pub struct Endpoint {
    /// Socket address of the host.
    pub addr: SocketAddr,
    /// `host:port`, for the Host header.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// `https://`.
    pub tls: bool,
}

/// Resolves `http[s]://ip:port/...`.
pub fn split_url(url: &str) -> Result<Endpoint, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("only http:// and https:// targets are supported: {url}")),
    };
    let host = uri.host().ok_or("url without host")?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let ip: IpAddr = if host == "localhost" {
        [127, 0, 0, 1].into()
    } else {
        host.parse().map_err(|_| format!("use an IP address, not {host}"))?
    };
    let path = uri.path_and_query().map_or("/".to_string(), |p| p.to_string());
    Ok(Endpoint {
        addr: SocketAddr::new(ip, port),
        host: format!("{host}:{port}"),
        path,
        tls,
    })
}

/// A connection ready to send requests.
pub enum Conn {
    /// One request at a time.
    H1(http1::SendRequest<Full<Bytes>>),
    /// Many concurrent streams; clones share the connection.
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<tokio::net::TcpStream, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| e.to_string())?;
    }
    let tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(tcp)
}

async fn h1<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: IO) -> Result<Conn, String> {
    let (sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn::H1(sender))
}

impl Conn {
    /// Connects to `url`'s host from `source` (port chosen by the kernel):
    /// HTTP/1.1, over TLS for `https://` — or HTTP/2 when `h2` is set and
    /// the server agrees to it.
    pub async fn open(url: &str, source: Option<IpAddr>, h2: bool) -> Result<Conn, String> {
        let ep = split_url(url)?;
        let tcp = tcp(ep.addr, source).await?;
        if !ep.tls {
            return h1(tcp).await;
        }
        let connector = TLS.get().ok_or("https:// targets need --ca")?;
        let name = ServerName::from(ep.addr.ip());
        let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if !(h2 && negotiated_h2) {
            return h1(tls).await;
        }
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(64 * 1024)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn::H2(sender))
    }

    /// Another handle on the same connection (HTTP/2 only).
    pub fn share(&self) -> Option<Conn> {
        match self {
            Conn::H2(s) => Some(Conn::H2(s.clone())),
            Conn::H1(_) => None,
        }
    }

    /// Sends one request.
    pub async fn send(&mut self, req: &Req) -> Result<hyper::Response<Incoming>, String> {
        let ep = split_url(&req.url)?;
        let h2 = matches!(self, Conn::H2(_));
        let mut b = hyper::Request::builder().method(req.method);
        // HTTP/2 carries the authority in the URI; HTTP/1.1 in Host.
        b = if h2 {
            let scheme = if ep.tls { "https" } else { "http" };
            b.uri(format!("{scheme}://{}{}", ep.host, ep.path))
        } else {
            b.uri(ep.path).header("host", ep.host)
        };
        for (k, v) in &req.headers {
            b = b.header(*k, v);
        }
        let r = b
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|e| e.to_string())?;
        match self {
            Conn::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(r).await.map_err(|e| e.to_string())
            }
            Conn::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(r).await.map_err(|e| e.to_string())
            }
        }
    }
}
