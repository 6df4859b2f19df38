//! Herald's JSON error in place of hyper's empty `431`, `414` and `400`.
//!
//! hyper answers a request head over its limits (read buffer, header
//! count) by itself, before any service sees the request, with `431` (or
//! `414` when it is the URL that is too long) and an empty body, then
//! closes the connection. Every other error a client gets from Herald is
//! `{"error": {"code", "message"}}`, so the connection's writes are watched
//! for those answers and they are replaced by [`answer`]: one answer for a
//! head too large, whichever part of it is, as Herald's own front gives. Herald's own front ([`super::http1_stream`]) writes the same
//! answer for a connection's first head; this covers every later request
//! of a connection hyper serves, and HTTP/1.1 over TLS.
//!
//! A response head is always the start of one of hyper's writes (it is
//! encoded into a buffer of its own), and nothing else Herald writes over
//! HTTP/1 can start with a status line: bodies are JSON, HTML, SSE fields or
//! chunk-size lines, and HTTP/2 frames are binary.

use crate::http::error::ApiError;
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How hyper's own answers to an over-large head start. Herald's handlers
/// never answer either status, so only hyper's can match.
const HYPERS_ANSWERS: [&[u8]; 2] = [b"HTTP/1.1 431 ", b"HTTP/1.1 414 "];

/// Which of hyper's own answers a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HypersAnswer {
    /// `431` or `414`: the head is over the limits.
    TooLarge,
    /// An empty `400`: the head does not parse (most often a URL holding
    /// characters a URI may not, such as `>` pasted into curl).
    BadRequest,
}

/// Whether `buf` is one of hyper's own answers. Herald's handlers answer
/// `400` too, but always with a JSON body and its `content-type`; hyper's
/// has neither.
fn hypers_answer(buf: &[u8]) -> Option<HypersAnswer> {
    if HYPERS_ANSWERS.iter().any(|p| buf.starts_with(p)) {
        return Some(HypersAnswer::TooLarge);
    }
    if !buf.starts_with(b"HTTP/1.1 400 ") {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    (head.contains("\r\ncontent-length: 0") && !head.contains("\r\ncontent-type:")).then_some(HypersAnswer::BadRequest)
}

/// A whole HTTP/1.1 answer with Herald's JSON error; the connection closes.
fn json_answer(status: axum::http::StatusCode, code: &'static str, message: String) -> Bytes {
    let e = ApiError::new(status, code, message);
    let body = serde_json::json!({"error": {"code": e.code, "message": e.message}}).to_string();
    let link = crate::mercure::link_header();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nlink: {}\r\ndate: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        link.to_str().unwrap_or_default(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        body.len()
    );
    Bytes::from(head + &body)
}

/// The whole HTTP/1.1 answer to a head over the limits: `431
/// request_header_too_large` as JSON, and the connection closes.
pub fn answer(head_max: usize, max_headers: usize) -> Bytes {
    json_answer(
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_too_large",
        format!("the request line and headers must fit in {head_max} bytes and {max_headers} header lines"),
    )
}

/// The answer to a head that is not valid HTTP: `400 invalid_request`,
/// saying how to send what was probably meant.
pub fn bad_request_answer() -> Bytes {
    json_answer(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_request",
        "the request is not valid HTTP/1.1; a URL must not hold spaces or raw characters such as \
         > < { } | \\ ^ \" `: percent-encode them (`>` is %3E), e.g. with \
         curl -G --data-urlencode 'topic=orders.>' URL"
            .into(),
    )
}

/// `inner`, with hyper's empty `431` and `414` replaced by [`answer`].
pub struct JsonHeadErrors<T> {
    inner: T,
    /// The replacement, while it is being written.
    pending: Option<Bytes>,
    limits: (usize, usize),
}

impl<T> JsonHeadErrors<T> {
    /// Watches `inner`'s writes; `head_max` and `max_headers` are hyper's
    /// limits, named in the answer.
    pub fn new(inner: T, head_max: usize, max_headers: usize) -> Self {
        JsonHeadErrors {
            inner,
            pending: None,
            limits: (head_max, max_headers),
        }
    }
}

impl<T: AsyncWrite + Unpin> JsonHeadErrors<T> {
    /// Writes what is left of the replacement.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.pending.as_mut() {
            if !rest.has_remaining() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            rest.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonHeadErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonHeadErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some(which) = hypers_answer(buf) {
            // hyper's answer is taken as written; ours goes out instead,
            // finished by the flush or shutdown hyper does next.
            this.pending = Some(match which {
                HypersAnswer::TooLarge => answer(this.limits.0, this.limits.1),
                HypersAnswer::BadRequest => bad_request_answer(),
            });
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if hypers_answer(first).is_some() {
                return self.poll_write(cx, first);
            }
        }
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn hypers_431_becomes_the_json_error_and_the_rest_passes() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut w = JsonHeadErrors::new(a, 65536, 100);
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        w.write_all(b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        let mut out = String::new();
        b.read_to_string(&mut out).await.unwrap();
        let (ok, rest) = out.split_at("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".len());
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(rest.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(rest.contains("\r\ncontent-type: application/json\r\n"), "{out}");
        let (_, body) = rest.split_once("\r\n\r\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "request_header_too_large");
    }

    #[test]
    fn only_hypers_empty_400_is_replaced() {
        let hypers = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hypers_answer(hypers), Some(HypersAnswer::BadRequest));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hypers_answer(ours), None);
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 61\r\n\r\n{}";
        assert_eq!(hypers_answer(ours), None);
        let v: serde_json::Value = serde_json::from_slice(
            bad_request_answer()
                .split(|b| *b == b'\n')
                .next_back()
                .unwrap_or_default(),
        )
        .unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
    }
}
