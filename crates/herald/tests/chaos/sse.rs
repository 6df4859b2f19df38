//! A Server-Sent Events client: a byte-level parser following the WHATWG
//! rules (lines end with CRLF, LF or CR; `field: value` with one optional
//! space; several `data:` lines joined with LF; `:` comments; an event is
//! dispatched at a blank line only if it has data), and a stream opener
//! that reports refusals with their status and error code.

use futures_util::StreamExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

/// One parsed item of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A dispatched event. `id` is the `id:` of this very event (Herald's
    /// control events have none, except `overflow`).
    Event {
        /// This event's `id:` line, if it had one.
        id: Option<String>,
        /// `event:` (`message` when absent).
        event: String,
        /// The `data:` lines joined with `\n`.
        data: String,
    },
    /// A `: comment` line (`connected`, `keepalive`).
    Comment(String),
}

/// Incremental SSE parser: bytes in, frames out.
#[derive(Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    id: Option<String>,
    event: String,
    data: Vec<String>,
}

impl Parser {
    /// Parses `bytes` (any split of the stream), appending complete frames.
    pub fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<Frame>) {
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue; // the LF of a CRLF
            }
            match b {
                b'\n' => self.end_line(out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                _ => self.line.push(b),
            }
        }
    }

    fn end_line(&mut self, out: &mut VecDeque<Frame>) {
        // Decoded per line, so a UTF-8 sequence split across chunks survives.
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
        if line.is_empty() {
            let id = self.id.take();
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if !data.is_empty() {
                out.push_back(Frame::Event {
                    id,
                    event: if event.is_empty() { "message".into() } else { event },
                    data: data.join("\n"),
                });
            }
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push_back(Frame::Comment(comment.trim_start().to_string()));
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match field {
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {} // `retry:` and unknown fields
        }
    }
}

/// What reading a stream produced.
#[derive(Debug)]
pub enum Next {
    /// A frame.
    Frame(Frame),
    /// The server (or the connection) ended the stream.
    Ended,
    /// Nothing at all, not even a keepalive, arrived within the silence limit.
    Silent,
}

type Body = Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An open stream.
pub struct SseConn {
    body: Body,
    parser: Parser,
    pending: VecDeque<Frame>,
}

impl SseConn {
    fn new(resp: reqwest::Response) -> SseConn {
        SseConn {
            body: Box::pin(resp.bytes_stream()),
            parser: Parser::default(),
            pending: VecDeque::new(),
        }
    }

    /// The next frame; `Silent` when no byte arrived for `silence`.
    pub async fn next(&mut self, silence: Duration) -> Next {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Next::Frame(f);
            }
            match tokio::time::timeout(silence, self.body.next()).await {
                Err(_) => return Next::Silent,
                Ok(None) | Ok(Some(Err(_))) => return Next::Ended,
                Ok(Some(Ok(chunk))) => self.parser.feed(&chunk, &mut self.pending),
            }
        }
    }
}

/// The outcome of opening a stream.
pub enum Open {
    /// `200` and the `: connected` comment.
    Stream(SseConn),
    /// A status other than `200`, with the error code and message of its
    /// JSON body.
    Refused(u16, String, String),
    /// `200` but the first frame was not `: connected`.
    BadStart(String),
    /// No answer (connection refused or cut, timeout).
    Failed(String),
}

/// The code and message of a JSON error body
/// (`{"error": {"code": ..., "message": ...}}`).
pub async fn error_code(resp: reqwest::Response, within: Duration) -> (String, String) {
    match tokio::time::timeout(within, resp.json::<serde_json::Value>()).await {
        Ok(Ok(v)) => (
            v["error"]["code"].as_str().unwrap_or("").to_string(),
            v["error"]["message"].as_str().unwrap_or("").to_string(),
        ),
        _ => (String::new(), String::new()),
    }
}

/// `GET url` as a stream, with an optional bearer credential and
/// `Last-Event-ID`; the head (and the `: connected` comment) must arrive
/// within `within`.
pub async fn open(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    last_event_id: Option<&str>,
    within: Duration,
) -> Open {
    open_labelled(http, url, bearer, last_event_id, within, None).await
}

/// [`open`], with an `x-chaos-conn` label the proxy records the node for.
pub async fn open_labelled(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    last_event_id: Option<&str>,
    within: Duration,
    label: Option<&str>,
) -> Open {
    let mut req = http.get(url).header("accept", "text/event-stream");
    if let Some(l) = label {
        req = req.header(super::proxy::LABEL, l);
    }
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = match tokio::time::timeout(within, req.send()).await {
        Err(_) => return Open::Failed(format!("no answer within {within:?}")),
        Ok(Err(e)) => return Open::Failed(e.to_string()),
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let (code, message) = error_code(resp, within).await;
        return Open::Refused(status, code, message);
    }
    let mut conn = SseConn::new(resp);
    match conn.next(within).await {
        Next::Frame(Frame::Comment(c)) if c == "connected" => Open::Stream(conn),
        Next::Frame(f) => Open::BadStart(format!("first frame {f:?} instead of `: connected`")),
        Next::Ended => Open::Failed("ended before `: connected`".into()),
        Next::Silent => Open::Failed("silent before `: connected`".into()),
    }
}

/// A query string of `topic=` selectors (percent-encoded), plus `token=`.
pub fn query(selectors: &[String], token: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for s in selectors {
        q.append_pair("topic", s);
    }
    if let Some(t) = token {
        q.append_pair("token", t);
    }
    q.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut p = Parser::default();
        let mut out = VecDeque::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        out.into_iter().collect()
    }

    #[test]
    fn frames_split_anywhere_parse_the_same() {
        let raw = b": connected\n\nid: p1-1\nevent: chaos.tick\ndata: a\ndata:\ndata:  b: c\r\n\r\nevent: revoked\rdata: {}\r\r";
        let whole = parse(&[raw]);
        for cut in 0..raw.len() {
            assert_eq!(parse(&[&raw[..cut], &raw[cut..]]), whole, "cut at {cut}");
        }
        assert_eq!(
            whole,
            vec![
                Frame::Comment("connected".into()),
                Frame::Event {
                    id: Some("p1-1".into()),
                    event: "chaos.tick".into(),
                    data: "a\n\n b: c".into()
                },
                Frame::Event {
                    id: None,
                    event: "revoked".into(),
                    data: "{}".into()
                },
            ]
        );
    }
}
