//! HTTP/1.1 client connections from a chosen source address (so more
//! streams than one address's ephemeral ports can be opened), built on
//! hyper's connection API.

use crate::target::Req;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};

/// A connection ready to send requests.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// Resolves `http://host:port/...` to the socket address and path.
pub fn split_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("only http:// targets are supported: {url}"));
    }
    let host = uri.host().ok_or("url without host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let ip: IpAddr = if host == "localhost" {
        [127, 0, 0, 1].into()
    } else {
        host.parse().map_err(|_| format!("use an IP address, not {host}"))?
    };
    let path = uri.path_and_query().map_or("/".to_string(), |p| p.to_string());
    Ok((SocketAddr::new(ip, port), format!("{host}:{port}"), path))
}

impl Conn {
    /// Connects to `addr` from `source` (port chosen by the kernel).
    pub async fn open(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<Conn> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// Sends one request.
    pub async fn send(&mut self, req: &Req) -> Result<hyper::Response<Incoming>, String> {
        let (_, host, path) = split_url(&req.url)?;
        let mut b = hyper::Request::builder()
            .method(req.method)
            .uri(path)
            .header("host", host);
        for (k, v) in &req.headers {
            b = b.header(*k, v);
        }
        let r = b
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        self.sender.send_request(r).await.map_err(|e| e.to_string())
    }
}
