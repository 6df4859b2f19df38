//! A small outgoing HTTP/1.1 client over hyper's client connection, plain
//! or TLS (rustls with aws-lc-rs), one connection per request.
//!
//! The command line uses it to talk to a running hub, the hub to fetch
//! identity providers' key sets (JWKS). Both send a handful of requests, so
//! a pool would only add state; hyper and tokio-rustls are already in the
//! binary for the server, so no second HTTP stack is needed. What each
//! caller says about a failure is its own: the errors here name the cause,
//! the callers word it for their users.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// Where system trust stores usually live, tried in order when
/// `SSL_CERT_FILE` is unset (Debian/Ubuntu/Alpine/Arch, RHEL/Fedora,
/// openSUSE, macOS/BSD).
pub const TRUST_STORES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The parts of an `http://` or `https://` URL a request needs.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `https://`.
    pub tls: bool,
    /// Host to connect to, without IPv6 brackets.
    pub host: String,
    /// Port (the scheme's default when absent).
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// The path, as written (may be empty).
    pub path: String,
    /// The query, without `?`.
    pub query: Option<String>,
    /// The URL as shown in messages (without a trailing `/`).
    pub shown: String,
}

/// Why a URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not a URL at all (the parser's reason).
    Invalid(String),
    /// Neither `http://` nor `https://`.
    Scheme,
    /// No host.
    NoHost,
    /// `user:password@` in the authority: a credential that would end up
    /// in messages and logs.
    Userinfo,
}

impl Endpoint {
    /// Parses an `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Endpoint, UrlProblem> {
        let uri: Uri = url.parse().map_err(|e| UrlProblem::Invalid(format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(UrlProblem::Scheme),
        };
        let authority = uri.authority().ok_or(UrlProblem::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(UrlProblem::Userinfo);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(UrlProblem::NoHost);
        }
        Ok(Endpoint {
            tls,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            shown: url.trim_end_matches('/').to_string(),
            host,
        })
    }

    /// Whether the host names this machine: `localhost` or a loopback
    /// address (`127.0.0.0/8`, `::1`).
    pub fn is_loopback_host(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The request target: the path (at least `/`) and the query.
    pub fn target(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { &self.path };
        match &self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        }
    }
}

/// Why no TLS connector could be built.
#[derive(Debug)]
pub enum TrustError {
    /// No CA file was given and none was found at the usual system paths.
    NoSystemBundle,
    /// The CA file cannot be read.
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CA file holds no certificate rustls can use.
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// rustls refused the configuration.
    Tls(String),
}

/// A TLS connector trusting the certificates in `ca_file`, or, without
/// one, `SSL_CERT_FILE`, or else the system's CA bundle (found at its
/// usual paths). It offers HTTP/1.1 only in ALPN.
pub fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, TrustError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let file = match ca_file {
        Some(f) => f.to_path_buf(),
        None => match std::env::var_os("SSL_CERT_FILE") {
            Some(f) => PathBuf::from(f),
            None => TRUST_STORES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .ok_or(TrustError::NoSystemBundle)?,
        },
    };
    let certs = CertificateDer::pem_file_iter(&file).map_err(|e| TrustError::Read {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    // A bundle may hold a certificate rustls cannot use; skip it, as
    // OpenSSL does, rather than refusing every other.
    for cert in certs.flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TrustError::Empty { file });
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Why no connection was made.
#[derive(Debug)]
pub enum ConnectError {
    /// The host is not a valid TLS server name.
    BadHost(String),
    /// TCP, TLS or the deadline failed (the reason, ready to show).
    Failed(String),
    /// The HTTP/1.1 handshake failed.
    Handshake(String),
}

/// An open HTTP/1.1 connection.
pub struct Connection {
    /// Sends the request.
    pub sender: SendRequest<Full<Bytes>>,
    /// The task driving the connection; dropping it closes the connection.
    pub task: ConnTask,
    /// The address connected to.
    pub peer: SocketAddr,
}

/// The task driving a connection; aborted when dropped, so a response
/// nobody reads any more closes its connection at once.
pub struct ConnTask(JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens a connection to `endpoint` (TCP, then TLS through `tls` for
/// `https://`) and performs the HTTP/1.1 handshake, all within `timeout`.
pub async fn connect(
    endpoint: &Endpoint,
    tls: Option<&tokio_rustls::TlsConnector>,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let connecting = async {
        let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| ConnectError::Failed(e.to_string()))?;
        let peer = tcp.peer_addr().map_err(|e| ConnectError::Failed(e.to_string()))?;
        // Requests are small and latency matters more than packing.
        let _ = tcp.set_nodelay(true);
        let (sender, task) = match (endpoint.tls, tls) {
            (false, _) => handshake(tcp).await?,
            (true, None) => return Err(ConnectError::Failed("TLS: no trusted certificates".into())),
            (true, Some(connector)) => {
                let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                    .map_err(|e| ConnectError::BadHost(e.to_string()))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ConnectError::Failed(format!("TLS: {e}")))?;
                handshake(stream).await?
            }
        };
        Ok(Connection { sender, task, peer })
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ConnectError::Failed(format!("no connection within {} s", timeout.as_secs())))?
}

async fn handshake<T>(io: T) -> Result<(SendRequest<Full<Bytes>>, ConnTask), ConnectError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let task = tokio::spawn(async move {
        // The connection's error surfaces through the request or body.
        let _ = conn.await;
    });
    Ok((sender, ConnTask(task)))
}

/// Reads a whole body, refusing more than `max` bytes (the reason as text).
pub async fn read_body(body: Incoming, max: usize) -> Result<Bytes, String> {
    Limited::new(body, max)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_path_and_query_and_refuse_credentials() {
        let e = Endpoint::parse("https://idp.example.com/realms/a/certs?x=1").expect("parses");
        assert_eq!((e.tls, e.port, e.target().as_str()), (true, 443, "/realms/a/certs?x=1"));
        assert!(!e.is_loopback_host());
        let e = Endpoint::parse("http://[::1]:8080").expect("parses");
        assert_eq!((e.host.as_str(), e.port, e.target().as_str()), ("::1", 8080, "/"));
        assert!(e.is_loopback_host());
        assert!(Endpoint::parse("http://127.0.0.2/").expect("parses").is_loopback_host());
        assert!(Endpoint::parse("http://LOCALHOST/").expect("parses").is_loopback_host());
        assert!(!Endpoint::parse("http://127.0.0.1.example.com/")
            .expect("parses")
            .is_loopback_host());
        assert_eq!(Endpoint::parse("ftp://x").err(), Some(UrlProblem::Scheme));
        assert_eq!(Endpoint::parse("http://u:p@x").err(), Some(UrlProblem::Userinfo));
        assert_eq!(Endpoint::parse("127.0.0.1:8080").err(), Some(UrlProblem::Scheme));
        assert!(matches!(Endpoint::parse("http://a b"), Err(UrlProblem::Invalid(_))));
    }
}
