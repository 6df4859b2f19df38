//! SSE wire encoding, done once per event and shared by every subscriber.
//!
//! Encoding here instead of per subscriber means a fan-out to N streams costs
//! one allocation, and every byte that reaches a socket went through the same
//! escaping rule: data is split on every SSE line terminator (CRLF, CR, LF)
//! and written as one `data:` line per line, so untrusted payloads can never
//! start a new field or a new event.

use bytes::{BufMut, Bytes, BytesMut};

/// Encodes one event. `id` and `event_type` must already be free of CR/LF/NUL
/// (checked at publish); `event_type` of `None` or `"message"` is omitted.
pub fn encode_event(id: &str, event_type: Option<&str>, data: &str, retry: Option<u64>) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + id.len() + 32);
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_u8(b'\n');
    if let Some(t) = event_type.filter(|t| *t != "message") {
        out.put_slice(b"event: ");
        out.put_slice(t.as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(ms) = retry {
        out.put_slice(format!("retry: {ms}\n").as_bytes());
    }
    put_data(&mut out, data);
    out.put_u8(b'\n');
    out.freeze()
}

/// Encodes an event that is not part of history (and so has no id to
/// resume from): the client's `Last-Event-ID` stays on its last stored
/// event. `event_type` of `None` or `"message"` is omitted.
pub fn encode_unnumbered(event_type: Option<&str>, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 32);
    if let Some(t) = event_type.filter(|t| *t != "message") {
        out.put_slice(b"event: ");
        out.put_slice(t.as_bytes());
        out.put_u8(b'\n');
    }
    put_data(&mut out, data);
    out.put_u8(b'\n');
    out.freeze()
}

/// Encodes a control event without an id (so the client's `Last-Event-ID`
/// stays on the last real event): `revoked`, `expired`, `shutdown`, `reset`…
pub fn encode_control(event_type: &str, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + event_type.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(event_type.as_bytes());
    out.put_u8(b'\n');
    put_data(&mut out, data);
    out.put_u8(b'\n');
    out.freeze()
}

/// Encodes a control event that moves the client's `Last-Event-ID` to `id`:
/// `overflow` uses it so that even a client cut before its first event
/// reconnects from the right place. `id` is hub-assigned (digits).
pub fn encode_control_at(id: &str, event_type: &str, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + event_type.len() + id.len() + 24);
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(&encode_control(event_type, data));
    out.freeze()
}

/// Encodes an SSE comment line (keepalive, connected).
pub fn encode_comment(text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 4);
    out.put_slice(b": ");
    // A comment is one line; anything after a line break is dropped rather
    // than allowed to become a field.
    out.put_slice(text.split(['\r', '\n']).next().unwrap_or("").as_bytes());
    out.put_slice(b"\n\n");
    out.freeze()
}

fn put_data(out: &mut BytesMut, data: &str) {
    for line in split_lines(data) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
}

/// Splits on CRLF, CR and LF, the three SSE line terminators, keeping empty
/// lines (so blank lines inside a payload survive the round trip).
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal SSE parser per the WHATWG algorithm, used as the oracle.
    fn parse(stream: &str) -> Vec<(Option<String>, String, String)> {
        let mut events = Vec::new();
        let (mut id, mut ty, mut data): (Option<String>, String, Vec<String>) = (None, String::new(), Vec::new());
        let normalized = stream.replace("\r\n", "\n").replace('\r', "\n");
        for line in normalized.split('\n') {
            if line.is_empty() {
                if !data.is_empty() {
                    events.push((
                        id.clone(),
                        if ty.is_empty() { "message".into() } else { ty.clone() },
                        data.join("\n"),
                    ));
                }
                ty.clear();
                data.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => (&line[..i], line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..])),
                None => (line, ""),
            };
            match field {
                "id" => id = Some(value.to_string()),
                "event" => ty = value.to_string(),
                "data" => data.push(value.to_string()),
                _ => {}
            }
        }
        events
    }

    #[test]
    fn multi_line_and_blank_lines_survive() {
        let f = encode_event("7", Some("order.updated"), "a\n\nb\r\nc\rd", None);
        assert_eq!(
            std::str::from_utf8(&f).unwrap(),
            "id: 7\nevent: order.updated\ndata: a\ndata: \ndata: b\ndata: c\ndata: d\n\n"
        );
        let f = encode_event("8", Some("message"), "x", Some(3000));
        assert_eq!(std::str::from_utf8(&f).unwrap(), "id: 8\nretry: 3000\ndata: x\n\n");
    }

    #[test]
    fn comments_cannot_inject_fields() {
        assert_eq!(&encode_comment("keepalive\ndata: evil")[..], b": keepalive\n\n");
    }

    proptest! {
        #[test]
        fn any_payload_round_trips_as_exactly_one_event(data in "\\PC*|[a-z\r\n:]{0,40}", id in "[a-z0-9]{1,8}") {
            prop_assume!(!data.is_empty());
            let frame = encode_event(&id, Some("t"), &data, None);
            let events = parse(std::str::from_utf8(&frame).unwrap());
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(events, vec![(Some(id), "t".to_string(), expected)]);
        }
    }
}
