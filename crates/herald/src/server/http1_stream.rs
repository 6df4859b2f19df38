//! HTTP/1.1 requests for event streams, written without hyper's
//! per-connection buffers.
//!
//! Why this exists: a hyper HTTP/1 connection keeps an 8 KiB read buffer
//! and an 8 KiB head-writing buffer for its whole life. An event stream
//! reads nothing after its request head and writes whole batches, so for
//! the tens of thousands of mostly idle streams a hub holds, those buffers
//! would be most of its memory. Here the head is read into a small buffer
//! that is freed once parsed, the router answers exactly as it does for
//! hyper, and the response goes out with `Transfer-Encoding: chunked`
//! straight from the body's frames, one write per batch.
//!
//! Only the plain case takes this path: one complete `GET` head, HTTP/1.1,
//! to a streaming endpoint, without a body or an upgrade. Everything else
//! (other requests, HTTP/1.0, HTTP/2 prior knowledge, heads that do not
//! parse) and whatever the client sends after the response goes to hyper
//! with the bytes already read put back in front, so hyper's own answers —
//! 400, keep-alive — apply unchanged. A first head over the limits this
//! module shares with hyper ([`HEAD_MAX`], [`MAX_HEADERS`]) is answered
//! here, with Herald's JSON error (hyper's own `431` has an empty body;
//! [`super::head_errors`] replaces it on connections hyper serves).

use super::live_socket::LiveSocket;
use crate::http::request::ConnInfo;
use crate::http::STREAM_PATHS;
use crate::kill::KillSwitch;
use crate::queue::{DirectWire, WireWriter as _};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// First allocation for a request head; a bearer JWT and a few headers fit.
const HEAD_INITIAL: usize = 2048;
/// The longest request head (request line and headers), here and in hyper
/// (its read buffer); past it the answer is `431`.
pub(super) const HEAD_MAX: usize = 64 * 1024;
/// The most header lines in a request, here and in hyper; past it the
/// answer is `431`.
pub(super) const MAX_HEADERS: usize = 100;
/// How long a refused head's connection is read (and what is read thrown
/// away) after the answer, so that closing it with unread bytes does not
/// reset the connection before the client has read the answer.
const LINGER: Duration = Duration::from_secs(2);
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a client may pipeline behind a stream request while it runs; past
/// this Herald stops reading until the stream ends.
const PIPELINED_MAX: usize = 16 * 1024;

/// What the first bytes of a connection turned out to be. Short-lived (it
/// exists between reading and routing), so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// A stream request this module serves, and the bytes read after it.
    Stream(Request<Body>, BytesMut),
    /// Anything else: every byte read so far, for hyper.
    Other(Bytes),
    /// A head over [`HEAD_MAX`] or [`MAX_HEADERS`].
    TooLarge,
    /// The client closed, failed or sent no complete head in time.
    Gone,
}

/// How a plain connection's first request went.
pub enum First {
    /// A stream request, routed, its head written.
    Answered(Arc<LiveSocket>, Answer),
    /// Anything else: the connection and every byte read so far, for hyper.
    Other(TcpStream, Bytes),
    /// The client left, or the answer could not be written.
    Gone,
}

/// Reads the first request head (within [`HEAD_TIMEOUT`]) and, when it asks
/// for a stream, routes it and writes the response head.
pub async fn first_request(app: Router, mut tcp: TcpStream, info: ConnInfo) -> First {
    match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut tcp)).await {
        Err(_) | Ok(Head::Gone) => First::Gone,
        Ok(Head::Other(bytes)) => First::Other(tcp, bytes),
        Ok(Head::TooLarge) => {
            refuse_head(&mut tcp, &info.kill).await;
            First::Gone
        }
        Ok(Head::Stream(req, rest)) => {
            let socket = Arc::new(LiveSocket::new(tcp));
            match answer_head(app, &socket, req, info, rest).await {
                Some(answer) => First::Answered(socket, answer),
                None => First::Gone,
            }
        }
    }
}

/// Reads the connection's first request head.
async fn read_head(tcp: &mut TcpStream) -> Head {
    let mut buf = BytesMut::with_capacity(HEAD_INITIAL);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        match tcp.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                return if buf.is_empty() {
                    Head::Gone
                } else {
                    Head::Other(buf.freeze())
                }
            }
            Ok(_) => {}
        }
        match classify(&buf) {
            Parsed::Partial if buf.len() < HEAD_MAX => continue,
            Parsed::Partial | Parsed::TooLarge => return Head::TooLarge,
            Parsed::Other => return Head::Other(buf.freeze()),
            Parsed::Stream(req, head_len) => {
                let rest = buf.split_off(head_len);
                // The head's bytes are no longer needed: only what follows
                // (rarely anything) is kept, in its own small allocation.
                drop(buf);
                let rest = if rest.is_empty() {
                    BytesMut::new()
                } else {
                    BytesMut::from(&rest[..])
                };
                return Head::Stream(req, rest);
            }
        }
    }
}

/// The verdict on a buffer that may hold a request head.
#[allow(clippy::large_enum_variant)] // short-lived, like `Head`
pub enum Parsed {
    Partial,
    Other,
    TooLarge,
    Stream(Request<Body>, usize),
}

/// Parses `buf` as a request head and decides whether this module serves
/// it. Kept synchronous so the header array never lives in a future.
///
/// Public (with [`Parsed`]) so that Herald's fuzz target for request heads
/// (`fuzz/fuzz_targets/http1_head.rs`) can reach it; not a supported API.
pub fn classify(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > HEAD_MAX => return Parsed::TooLarge,
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
        Err(_) => return Parsed::Other,
    };
    let (Some("GET"), Some(1), Some(path)) = (parsed.method, parsed.version, parsed.path) else {
        return Parsed::Other;
    };
    let route = path.split('?').next().unwrap_or("");
    if !STREAM_PATHS.contains(&route) {
        return Parsed::Other;
    }
    let Some(uri) = lenient_uri(path) else {
        return Parsed::Other;
    };
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parsed::Other;
        };
        // A body, an upgrade or `Expect` are hyper's to handle.
        let has_body =
            (name == header::CONTENT_LENGTH && value.as_bytes() != b"0") || name == header::TRANSFER_ENCODING;
        if has_body || name == header::UPGRADE || name == header::EXPECT {
            return Parsed::Other;
        }
        map.append(name, value);
    }
    let mut req = Request::new(Body::empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    Parsed::Stream(req, head_len)
}

/// The request target as a URI, with the characters a URI may not hold
/// raw (`>`, `{`, `|`, …) percent-encoded first, as a browser encodes
/// them: curl sends a pasted URL as is, and a selector such as `orders.>`
/// should open the stream it names rather than fail to parse.
fn lenient_uri(path: &str) -> Option<Uri> {
    if let Ok(uri) = Uri::try_from(path) {
        return Some(uri);
    }
    let mut encoded = String::with_capacity(path.len() + 16);
    for b in path.bytes() {
        match b {
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | 0x80.. => {
                let _ = std::fmt::Write::write_fmt(&mut encoded, format_args!("%{b:02X}"));
            }
            _ => encoded.push(char::from(b)),
        }
    }
    Uri::try_from(encoded).ok()
}

/// Whether the client asked to close the connection after this response.
fn wants_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// Writes a stream's body after [`answer_head`], then, when the connection
/// stays open, hands it to `then` with the bytes the client sent meanwhile.
///
/// This future is a stream's whole task and lives as long as the stream, so
/// it is kept small: it shares the connection with the dispatcher's direct
/// writes ([`LiveSocket`]), readiness is polled in place, and it has no
/// buffers of its own. It is an `async move` block rather
/// than an `async fn` because an `async fn` keeps a second copy of every
/// argument it moves into a local, which made each stream's task 640 bytes
/// instead of 456.
#[allow(clippy::manual_async_fn, reason = "an async fn doubles the arguments in the task")]
pub fn pump<F: std::future::Future<Output = ()>>(
    socket: Arc<LiveSocket>,
    mut answer: Answer,
    kill: KillSwitch,
    closing: CancellationToken,
    then: impl FnOnce(TcpStream, Bytes) -> F,
) -> impl std::future::Future<Output = ()> {
    async move {
        // One cancellation future for every wait below.
        let cut = kill.killed();
        tokio::pin!(cut);
        if let Some(body) = answer.stream.as_mut() {
            // A stream: one chunk per batch, until the body ends, the client
            // leaves or the connection is cut. Writes never wait here: what
            // the connection does not take at once is its unsent tail, and
            // the body is not polled again until the tail is out, so this
            // loop's one wait is the only state an idle stream keeps.
            let mut reading = true;
            let mut ended = false;
            loop {
                let backlogged = socket.has_pending();
                if ended && !backlogged {
                    break;
                }
                tokio::select! {
                    // An unsent tail goes before anything else.
                    flushed = std::future::poll_fn(|cx| socket.poll_flush_pending(cx)) => {
                        if flushed.is_err() {
                            return;
                        }
                    }
                    next = std::future::poll_fn(|cx| poll_data(body, cx)), if !ended && !backlogged => {
                        let written = match next {
                            Next::Data(data) => {
                                let (size, n) = chunk_size(data.len());
                                socket.write_now(&[&size[..n], &data, b"\r\n"])
                            }
                            Next::Skip => Ok(()),
                            // An aborted body must not look complete: no last chunk.
                            Next::Failed => return,
                            Next::End => {
                                ended = true;
                                socket.write_now(&[b"0\r\n\r\n"])
                            }
                        };
                        if written.is_err() {
                            return;
                        }
                    }
                    ready = std::future::poll_fn(|cx| socket.tcp().poll_read_ready(cx)), if reading => {
                        if ready.is_err() {
                            return;
                        }
                        // Noticing the client's close promptly is what releases
                        // its stream slot; anything it sends meanwhile is its
                        // next request.
                        match read_pipelined(socket.tcp(), &mut answer.pipelined) {
                            Ok(0) => return,
                            Ok(_) => reading = answer.pipelined.len() < PIPELINED_MAX,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => return,
                        }
                    }
                    _ = cut.as_mut() => return,
                }
            }
        }
        // The stream is over: its body (and with it the queue's hold on the
        // connection) goes first, so the connection is this task's alone.
        drop(answer.stream.take());
        let Ok(socket) = Arc::try_unwrap(socket) else {
            // Still shared (never expected): the connection closes.
            return;
        };
        let mut tcp = socket.into_inner();
        if answer.close || closing.is_cancelled() {
            let _ = tcp.shutdown().await;
            return;
        }
        then(tcp, answer.pipelined.freeze()).await;
    }
}

/// What the body gave next, reduced to what the writer needs (a full
/// `Frame` could hold trailers and would make the stream's state larger).
enum Next {
    Data(Bytes),
    Skip,
    Failed,
    End,
}

fn poll_data(body: &mut Body, cx: &mut std::task::Context<'_>) -> std::task::Poll<Next> {
    std::pin::Pin::new(body).poll_frame(cx).map(|frame| match frame {
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) if !data.is_empty() => Next::Data(data),
            _ => Next::Skip,
        },
        Some(Err(_)) => Next::Failed,
        None => Next::End,
    })
}

/// The `{hex length}\r\n` line that opens a chunk, and its length.
pub(super) fn chunk_size(len: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let mut cursor = std::io::Cursor::new(&mut line[..]);
    let _ = write!(cursor, "{len:x}\r\n");
    let n = cursor.position() as usize;
    (line, n)
}

/// Reads what the client sent during its stream, without waiting. The
/// scratch buffer lives on this function's stack, not in the stream's
/// future, and nothing is allocated unless the client actually sent bytes.
fn read_pipelined(tcp: &TcpStream, pipelined: &mut BytesMut) -> std::io::Result<usize> {
    let mut scratch = [0u8; 512];
    let n = tcp.try_read(&mut scratch)?;
    pipelined.extend_from_slice(&scratch[..n]);
    Ok(n)
}

/// A response whose head is written (and, when it has a length, its body).
pub struct Answer {
    /// The stream still to be written (chunked); `None` once a whole answer
    /// has been written with its head.
    stream: Option<Body>,
    /// Close the connection after the body.
    close: bool,
    /// Bytes the client sent after its request.
    pipelined: BytesMut,
}

/// Routes `req` and writes the response head.
async fn answer_head(
    app: Router,
    socket: &Arc<LiveSocket>,
    mut req: Request<Body>,
    info: ConnInfo,
    pipelined: BytesMut,
) -> Option<Answer> {
    let close = wants_close(req.headers());
    let kill = info.kill.clone();
    req.extensions_mut().insert(info);
    // The stream's events may be written to the connection directly.
    req.extensions_mut().insert(DirectWire(socket.clone()));
    let resp = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, mut body) = resp.into_parts();
    let length = body.size_hint().exact();
    let mut head = Vec::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        let _ = write!(
            head,
            "date: {}\r\n",
            httpdate::fmt_http_date(std::time::SystemTime::now())
        );
    }
    match length {
        Some(n) => {
            let _ = write!(head, "content-length: {n}\r\n");
        }
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let cut = kill.killed();
    tokio::pin!(cut);
    if !write_all(socket, &mut &head[..], cut.as_mut()).await {
        return None;
    }
    if length.is_none() {
        return Some(Answer {
            stream: Some(body),
            close,
            pipelined,
        });
    }
    // A whole answer (an error, mostly) is written here, so that the
    // long-lived stream writer only ever handles streams.
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return None };
        if let Ok(mut data) = frame.into_data() {
            if !write_all(socket, &mut data, cut.as_mut()).await {
                return None;
            }
        }
    }
    Some(Answer {
        stream: None,
        close,
        pipelined,
    })
}

/// Answers a head over the limits with `431` and the JSON error, then
/// closes the connection: what follows the head cannot be found.
async fn refuse_head(tcp: &mut TcpStream, kill: &KillSwitch) {
    let answer = super::head_errors::answer(HEAD_MAX, MAX_HEADERS);
    let cut = kill.killed();
    tokio::pin!(cut);
    let written = tokio::select! {
        r = tcp.write_all(&answer) => r.is_ok(),
        _ = cut => false,
    };
    if !written {
        return;
    }
    let _ = tcp.shutdown().await;
    // Read what the client is still sending, for a moment, so that the
    // kernel does not answer it with a reset that destroys the answer.
    let _ = tokio::time::timeout(LINGER, async {
        let mut scratch = [0u8; 4096];
        while matches!(tcp.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Writes all of `buf` (vectored when it is a chain), unless the connection
/// is cut first. Returns whether it was written.
async fn write_all(socket: &LiveSocket, buf: &mut impl Buf, cut: std::pin::Pin<&mut crate::kill::Killed<'_>>) -> bool {
    tokio::select! {
        r = std::future::poll_fn(|cx| socket.poll_write_all(cx, buf)) => r.is_ok(),
        _ = cut => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Parsed {
        classify(s.as_bytes())
    }

    #[test]
    fn stream_gets_are_served_here() {
        let head = "GET /v1/events?topic=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n";
        let Parsed::Stream(req, n) = parse(&format!("{head}GET /")) else {
            panic!("expected a stream request");
        };
        assert_eq!(n, head.len());
        assert_eq!(req.uri().query(), Some("topic=a"));
        assert_eq!(req.headers()["authorization"], "Bearer t");
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for head in [
            "POST /v1/events HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /v1/events HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET /v1/publish HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /v1/events HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /v1/events HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /v1/events\x01 HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(parse(head), Parsed::Other), "{head:?}");
        }
    }

    #[test]
    fn heads_over_the_limits_are_refused_here() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-H{i}: v\r\n")).collect();
        assert!(matches!(
            parse(&format!("GET /healthz HTTP/1.1\r\n{many}\r\n")),
            Parsed::TooLarge
        ));
        let long = format!("GET /v1/events?topic={} HTTP/1.1\r\n\r\n", "a".repeat(HEAD_MAX));
        assert!(matches!(parse(&long), Parsed::TooLarge));
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        assert!(matches!(parse("GET /v1/events HTTP/1.1\r\nHost"), Parsed::Partial));
    }

    #[test]
    fn raw_characters_curl_sends_are_encoded_not_refused() {
        let Parsed::Stream(req, _) = parse("GET /v1/events?topic=orders.>&topic={x}|y HTTP/1.1\r\nHost: h\r\n\r\n")
        else {
            panic!("a pasted selector opens a stream");
        };
        assert_eq!(req.uri().query(), Some("topic=orders.%3E&topic=%7Bx%7D%7Cy"));
    }

    #[test]
    fn chunk_sizes_are_hex_lines() {
        let (line, n) = chunk_size(0x1f40);
        assert_eq!(&line[..n], b"1f40\r\n");
        let (line, n) = chunk_size(usize::MAX);
        assert_eq!(&line[..n], b"ffffffffffffffff\r\n");
    }

    #[test]
    fn connection_close_is_honoured() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Close"));
        assert!(wants_close(&h));
    }
}
