//! The command line's HTTP client: JSON requests and one event stream to a
//! running hub, over the shared outgoing client ([`crate::http_client`]:
//! HTTP/1.1, plain or TLS, one connection per request).

use crate::http_client::{self, ConnTask, ConnectError, Endpoint, TrustError, UrlProblem};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// Longest a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a whole JSON exchange may take. The hub answers in milliseconds;
/// this only keeps a stuck peer from hanging the command forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest JSON answer read. A full connection list (10,000 streams) is a
/// few MiB; the bound keeps a wrong URL from filling memory.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest error body kept for the message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest SSE line accepted (the audit log's records are small).
const MAX_LINE: usize = 1024 * 1024;
/// A stream silent for this long is taken as dead (the hub sends a
/// keepalive comment every 15 s by default). Without it a connection whose
/// peer vanished would be followed forever.
const STREAM_IDLE: Duration = Duration::from_secs(90);

/// What went wrong talking to the hub.
#[derive(Debug)]
pub enum ClientError {
    /// The URL is unusable (a usage error).
    Url(String),
    /// No connection could be made to the hub.
    Connect {
        /// The hub's URL, as given (it never holds a credential).
        url: String,
        /// Why.
        reason: String,
    },
    /// The hub answered with an error.
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The hub's `error.code` (or the status' reason for a non-hub answer).
        code: String,
        /// The hub's `error.message`.
        message: String,
    },
    /// The exchange failed midway, or the answer was not what the hub sends.
    Protocol(String),
}

impl ClientError {
    /// The process exit code for this failure: 2 for a usage error, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Url(_) => 2,
            _ => 1,
        }
    }

    /// The HTTP status, when the hub answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The hub's error code, when the hub answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(m) | ClientError::Protocol(m) => f.write_str(m),
            ClientError::Connect { url, reason } => write!(f, "cannot connect to {url}: {reason}"),
            ClientError::Api { status, code, message } => write!(f, "{} {code}: {message}", status.as_u16()),
        }
    }
}

impl std::error::Error for ClientError {}

/// A raw answer: the status and the body as text.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body, decoded as UTF-8 (lossily).
    pub body: String,
}

/// How a stream request carries its credential.
#[derive(Clone, Copy, Debug)]
pub enum StreamAuth<'a> {
    /// The client's credential in `Authorization: Bearer`.
    Header,
    /// An SSE token in `?token=` (the only credential a URL may carry).
    Query(&'a str),
}

/// The parts of the hub's URL a request needs.
#[derive(Clone, Debug)]
struct Base {
    endpoint: Endpoint,
    /// Path prefix of a hub mounted under one (no trailing `/`).
    prefix: String,
}

impl Base {
    fn parse(url: &str) -> Result<Base, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("bad --url `{url}`: {why}"));
        let endpoint = Endpoint::parse(url).map_err(|p| match p {
            UrlProblem::Invalid(e) => bad(&e),
            UrlProblem::Scheme => bad("it must start with http:// or https://"),
            UrlProblem::NoHost => bad("no host"),
            // A credential in the URL would end up in messages and shell history.
            UrlProblem::Userinfo => bad("put the credential in --token or HERALD_TOKEN, not in the URL"),
        })?;
        if endpoint.query.is_some() {
            return Err(bad("it must not have a query"));
        }
        Ok(Base {
            prefix: endpoint.path.trim_end_matches('/').to_string(),
            endpoint,
        })
    }
}

/// A client for one hub and one credential.
///
/// Not `Debug`: it holds the credential, which must never be printed.
#[derive(Clone)]
pub struct Client {
    base: Base,
    token: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Client {
    /// A client for the hub at `url` (`http://` or `https://`, optionally
    /// with a path prefix) presenting `token` as a bearer credential.
    pub fn new(url: &str, token: &str) -> Result<Client, ClientError> {
        let base = Base::parse(url)?;
        let tls = if base.endpoint.tls {
            Some(tls_connector()?)
        } else {
            None
        };
        Ok(Client {
            base,
            token: token.to_string(),
            tls,
        })
    }

    /// The hub's URL as given (for messages).
    pub fn url(&self) -> &str {
        &self.base.endpoint.shown
    }

    /// The credential this client presents.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `GET path` and its JSON answer; an error status is an error.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, and its JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.json(Method::POST, path, Some(body)).await
    }

    /// `DELETE path` and its JSON answer.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::DELETE, path, None).await
    }

    /// Sends a request and parses a successful answer as JSON.
    async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let reply = self.send(method, path, body).await?;
        if !reply.status.is_success() {
            return Err(api_error(reply.status, reply.body.as_bytes()));
        }
        serde_json::from_str(&reply.body)
            .map_err(|e| ClientError::Protocol(format!("the hub's answer is not JSON ({e}); is --url a Herald hub?")))
    }

    /// Sends a request with an optional JSON body and returns the answer
    /// whatever its status.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, ClientError> {
        let exchange = async {
            let mut req = self.request(method, path, StreamAuth::Header);
            if body.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
            let (resp, _conn) = self.exchange(req, body).await?;
            let status = resp.status();
            let bytes = read_body(resp.into_body(), MAX_BODY).await?;
            Ok(Reply {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| {
            ClientError::Protocol(format!(
                "{} did not answer within {} s",
                self.base.endpoint.shown,
                REQUEST_TIMEOUT.as_secs()
            ))
        })?
    }

    /// Opens `GET path` as an event stream, resuming after
    /// `last_event_id` when given.
    pub async fn stream(
        &self,
        path: &str,
        auth: StreamAuth<'_>,
        last_event_id: Option<u64>,
    ) -> Result<SseStream, ClientError> {
        let path = match auth {
            StreamAuth::Header => path.to_string(),
            StreamAuth::Query(token) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", token)
                    .finish();
                format!("{path}{sep}{query}")
            }
        };
        let mut req = self
            .request(Method::GET, &path, auth)
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let opened = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(req, Bytes::new()));
        let (resp, conn) = opened.await.map_err(|_| {
            ClientError::Protocol(format!(
                "{} did not answer the stream request",
                self.base.endpoint.shown
            ))
        })??;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = read_body(resp.into_body(), MAX_ERROR_BODY).await.unwrap_or_default();
            return Err(api_error(status, &body));
        }
        let is_sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Err(ClientError::Protocol(
                "the hub did not answer with an event stream".into(),
            ));
        }
        Ok(SseStream::new(resp.into_body(), conn))
    }

    /// A request builder for `path` under the hub's prefix, with `Host`
    /// and, for [`StreamAuth::Header`], the bearer credential.
    fn request(&self, method: Method, path: &str, auth: StreamAuth<'_>) -> hyper::http::request::Builder {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base.prefix))
            .header(header::HOST, &self.base.endpoint.authority)
            .header(header::USER_AGENT, concat!("herald-cli/", env!("CARGO_PKG_VERSION")));
        if let StreamAuth::Header = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        }
        req
    }

    /// Connects, sends one request and returns the response head; the
    /// connection lives until the returned task handle is dropped.
    async fn exchange(
        &self,
        req: hyper::http::request::Builder,
        body: Bytes,
    ) -> Result<(Response<Incoming>, ConnTask), ClientError> {
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Url(format!("cannot build the request: {e}")))?;
        let (mut sender, conn) = self.connect().await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(format!("{}: {e}", self.base.endpoint.shown)))?;
        Ok((resp, conn))
    }

    /// Opens a connection (TCP, then TLS for `https://`) and performs the
    /// HTTP/1.1 handshake.
    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, ConnTask), ClientError> {
        let c = http_client::connect(&self.base.endpoint, self.tls.as_ref(), CONNECT_TIMEOUT)
            .await
            .map_err(|e| match e {
                ConnectError::BadHost(e) => ClientError::Url(format!("bad host in --url: {e}")),
                ConnectError::Failed(reason) => ClientError::Connect {
                    url: self.base.endpoint.shown.clone(),
                    reason,
                },
                ConnectError::Handshake(e) => ClientError::Protocol(format!("HTTP handshake: {e}")),
            })?;
        Ok((c.sender, c.task))
    }
}

/// A TLS connector trusting `SSL_CERT_FILE`, or else the system's CA
/// bundle (found at its usual paths).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, ClientError> {
    http_client::tls_connector(None).map_err(|e| {
        ClientError::Url(match e {
            TrustError::NoSystemBundle => "https:// needs trusted CA certificates: set SSL_CERT_FILE to a PEM bundle \
                 (none found at the usual system paths), or use http://"
                .into(),
            TrustError::Read { file, reason } => {
                format!("cannot read CA certificates from {}: {reason}", file.display())
            }
            TrustError::Empty { file } => format!("no usable CA certificate in {}", file.display()),
            TrustError::Tls(e) => format!("TLS: {e}"),
        })
    })
}

/// Reads a whole body, refusing more than `max` bytes.
async fn read_body(body: Incoming, max: usize) -> Result<Bytes, ClientError> {
    http_client::read_body(body, max)
        .await
        .map_err(|e| ClientError::Protocol(format!("reading the hub's answer: {e}")))
}

/// The hub's `{"error": {"code", "message"}}`, or, from something that is
/// not the hub (a proxy's HTML page), the status and the body's start.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    if let Some(code) = error.and_then(|e| e["code"].as_str()) {
        let message = error.and_then(|e| e["message"].as_str()).unwrap_or_default();
        return ClientError::Api {
            status,
            code: code.to_string(),
            message: message.to_string(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let first = text.lines().next().unwrap_or_default();
    let mut message: String = first.chars().filter(|c| !c.is_control()).take(200).collect();
    if message.is_empty() {
        message = "(no error body)".into();
    }
    ClientError::Api {
        status,
        code: status.canonical_reason().unwrap_or("error").to_string(),
        message,
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` in effect for this event (the last one seen on the stream).
    pub id: Option<String>,
    /// `event:`, `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An open event stream.
pub struct SseStream {
    body: Incoming,
    _conn: ConnTask,
    parser: SseParser,
}

impl SseStream {
    fn new(body: Incoming, conn: ConnTask) -> SseStream {
        SseStream {
            body,
            _conn: conn,
            parser: SseParser::default(),
        }
    }

    /// The next event; `Ok(None)` when the hub ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(e) = self.parser.pending.pop_front() {
                return Ok(Some(e));
            }
            let frame = match tokio::time::timeout(STREAM_IDLE, self.body.frame()).await {
                Err(_) => {
                    return Err(ClientError::Protocol(format!(
                        "the stream was silent for {} s",
                        STREAM_IDLE.as_secs()
                    )))
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(ClientError::Protocol(format!("the stream broke: {e}"))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.parser.feed(&data)?;
            }
        }
    }
}

/// The event-stream format, parsed as the WHATWG EventSource rules say
/// (lines end with LF, CRLF or CR; a blank line dispatches).
#[derive(Debug, Default)]
struct SseParser {
    buf: Vec<u8>,
    pending: VecDeque<SseEvent>,
    id: Option<String>,
    event: String,
    data: Vec<String>,
    /// The previous byte was CR: an LF right after it ends no second line.
    after_cr: bool,
}

impl SseParser {
    /// Splits bytes into lines and parses each; chunks may cut anywhere.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), ClientError> {
        for &b in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    self.line(&String::from_utf8_lossy(&line));
                }
                _ => {
                    if self.buf.len() >= MAX_LINE {
                        return Err(ClientError::Protocol("the stream sent an over-long line".into()));
                    }
                    self.buf.push(b);
                }
            }
        }
        Ok(())
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        self.pending.push_back(SseEvent {
            id: self.id.clone(),
            event: if event.is_empty() { "message".into() } else { event },
            data: std::mem::take(&mut self.data).join("\n"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_keeps_a_prefix_and_refuses_credentials_and_other_schemes() {
        let b = Base::parse("http://127.0.0.1:9000/realtime/").expect("parses");
        assert_eq!(
            (b.endpoint.host.as_str(), b.endpoint.port, b.prefix.as_str()),
            ("127.0.0.1", 9000, "/realtime")
        );
        let b = Base::parse("https://[::1]").expect("parses");
        assert_eq!(
            (b.endpoint.host.as_str(), b.endpoint.port, b.endpoint.tls),
            ("::1", 443, true)
        );
        assert!(matches!(Base::parse("http://x/?a=1"), Err(ClientError::Url(_))));
        assert!(matches!(Base::parse("ftp://x"), Err(ClientError::Url(_))));
        assert!(matches!(Base::parse("http://u:p@x"), Err(ClientError::Url(_))));
        assert!(matches!(Base::parse("127.0.0.1:8080"), Err(ClientError::Url(_))));
    }

    #[test]
    fn api_errors_use_the_hub_shape_or_the_status() {
        let e = api_error(
            StatusCode::FORBIDDEN,
            br#"{"error":{"code":"admin_required","message":"for admins"}}"#,
        );
        assert_eq!(e.to_string(), "403 admin_required: for admins");
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>\x1b[31mbad\n</html>");
        assert_eq!(e.to_string(), "502 Bad Gateway: <html>[31mbad");
    }

    #[test]
    fn sse_parser_handles_split_chunks_crlf_comments_and_control_events() {
        let mut p = SseParser::default();
        let input =
            b": connected\n\nid: 7\r\nevent: audit\r\ndata: {\"a\":\ndata: 1}\r\n\r\nevent: expired\rdata: x\r\r";
        for chunk in input.chunks(3) {
            p.feed(chunk).expect("feeds");
        }
        let got: Vec<SseEvent> = p.pending.drain(..).collect();
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("7".into()),
                    event: "audit".into(),
                    data: "{\"a\":\n1}".into()
                },
                SseEvent {
                    id: Some("7".into()),
                    event: "expired".into(),
                    data: "x".into()
                },
            ]
        );
    }
}
