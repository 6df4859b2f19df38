//! What Herald's fuzz targets share: an independent SSE parser to check
//! the frames Herald builds against.
//!
//! The parser here is written from the WHATWG "interpreting an event
//! stream" algorithm, not from Herald's encoder, so that a frame Herald
//! builds is checked against what a browser's `EventSource` would make of
//! it.

/// One dispatched SSE event, as `EventSource` would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `lastEventId` at dispatch time (`None` if no `id` field was seen yet).
    pub last_event_id: Option<String>,
    /// The event type (`message` when the stream named none).
    pub event_type: String,
    /// The data, lines joined with LF.
    pub data: String,
}

/// Everything a stream told its reader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseStream {
    /// Events dispatched, in order.
    pub events: Vec<SseEvent>,
    /// The last valid `retry` field, in milliseconds.
    pub retry: Option<u64>,
    /// Bytes after the last line terminator: a partial line a reader would
    /// still be waiting on.
    pub pending: String,
}

/// Parses `stream` as a whole event stream (WHATWG HTML, "Server-sent
/// events", §9.2.6): a leading BOM is dropped; lines end at CRLF, LF or CR;
/// a blank line dispatches; data still buffered at the end is discarded.
pub fn parse_sse(stream: &str) -> SseStream {
    let mut out = SseStream::default();
    let mut rest = stream.strip_prefix('\u{feff}').unwrap_or(stream);
    // The last event ID buffer outlives each event, as in a browser.
    let mut id_buffer: Option<String> = None;
    let mut event_type = String::new();
    let mut data = String::new();
    loop {
        let Some(end) = rest.find(['\r', '\n']) else {
            out.pending = rest.to_string();
            break;
        };
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            out.events.push(SseEvent {
                last_event_id: id_buffer.clone(),
                event_type: if event_type.is_empty() {
                    "message".to_string()
                } else {
                    std::mem::take(&mut event_type)
                },
                data: std::mem::take(&mut data),
            });
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    out
}

/// What SSE does to a payload's line breaks: CRLF and CR arrive as LF.
pub fn normalize_newlines(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Checks that `frame` reads back as exactly one event carrying `data`,
/// typed `event_type` (`None`: `message`), with last event id `id` (`None`:
/// the frame must leave the id alone) and `retry`.
pub fn assert_one_event(frame: &[u8], id: Option<&str>, event_type: Option<&str>, data: &str, retry: Option<u64>) {
    let text = std::str::from_utf8(frame).expect("a frame is UTF-8");
    let parsed = parse_sse(text);
    assert_eq!(
        parsed.events.len(),
        1,
        "frame {text:?} must be exactly one event: {parsed:?}"
    );
    assert!(parsed.pending.is_empty(), "frame {text:?} leaves a partial line");
    let event = &parsed.events[0];
    assert_eq!(event.data, normalize_newlines(data), "frame {text:?} changed the data");
    assert_eq!(event.event_type, event_type.unwrap_or("message"), "frame {text:?}");
    assert_eq!(event.last_event_id.as_deref(), id, "frame {text:?}");
    assert_eq!(parsed.retry, retry, "frame {text:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_examples() {
        let s = parse_sse("data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(s.events[0].data, "YHOO\n+2\n10");
        let s =
            parse_sse(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n");
        let got: Vec<_> = s
            .events
            .iter()
            .map(|e| (e.last_event_id.as_deref(), e.data.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Some("1"), "first event"),
                (Some(""), "second event"),
                (Some(""), " third event")
            ]
        );
        let s = parse_sse("data\n\ndata\ndata\n\ndata:");
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[1].data, "\n");
        assert_eq!(s.pending, "data:");
    }

    #[test]
    fn every_line_terminator_ends_a_line() {
        let s = parse_sse("\u{feff}retry: 1500\r\nid: x\rdata: a\r\n\r\nretry: soon\n");
        assert_eq!(
            s.events,
            [SseEvent {
                last_event_id: Some("x".into()),
                event_type: "message".into(),
                data: "a".into(),
            }]
        );
        assert_eq!(s.retry, Some(1500));
        assert!(s.pending.is_empty());
    }
}
