//! Events: what publishers send and subscribers receive.
//!
//! A publish goes through three stages, each a type:
//! [`EventInput`] (untrusted JSON) → [`EventDraft`] (validated, audience
//! hashed, authorized for its publisher) → [`Event`] (sequenced, id assigned,
//! SSE frame encoded once).

use crate::audience::Audience;
use crate::frame::encode_event;
use crate::invalid::{check_field_safe, Invalid};
use crate::principal::Principal;
use crate::selector::validate_topic;
use crate::session::SessionKey;
use bytes::Bytes;
use serde_json::Value;

/// Size and count limits applied to every publish.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest event (data + topics + id + type), in bytes. Default 1 MiB.
    pub max_event_bytes: usize,
    /// Most topics on one event. Default 100.
    pub max_topics: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1024 * 1024,
            max_topics: 100,
        }
    }
}

/// Longest client-supplied id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Event types only the hub sends. A stream's control events (`revoked`,
/// `reset`, …) tell clients to stop, refresh a credential or start over, and
/// `invalidate` drops cached data: a publisher able to send one could
/// disconnect or mislead every subscriber of a topic. They are refused on
/// every publish path, whatever the protocol (`invalidate` is sent by the
/// hub for `POST /v1/invalidate`, `audit` on audit streams).
pub const RESERVED_TYPES: [&str; 10] = [
    "revoked",
    "reset",
    "expired",
    "evicted",
    "kicked",
    "overflow",
    "shutdown",
    "invalidate",
    "audit",
    "connected",
];

/// Checks a publisher-chosen event type: CR/LF/NUL-free, 1 to
/// [`MAX_ID_LEN`] bytes, and not one of the hub's own
/// ([`RESERVED_TYPES`], `reserved_type`).
pub fn validate_event_type(t: &str) -> Result<(), Invalid> {
    check_field_safe("type", t)?;
    if t.is_empty() || t.len() > MAX_ID_LEN {
        return Err(bad("invalid_field", format!("`type` must be 1 to {MAX_ID_LEN} bytes")));
    }
    if RESERVED_TYPES.contains(&t) {
        return Err(bad(
            "reserved_type",
            format!("event type `{t}` is reserved for the hub's own control events"),
        ));
    }
    Ok(())
}

/// The raw JSON of one event, as a publisher sent it.
pub type EventInput = Value;

/// A validated event that has not yet been given a sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct EventDraft {
    /// Topics, the first being canonical.
    pub topics: Vec<String>,
    /// SSE `event:` type; `None` means `message`.
    pub event_type: Option<String>,
    /// Payload as it will appear in `data:` lines.
    pub data: String,
    /// Client-supplied id, if any.
    pub id: Option<String>,
    /// Who may see it.
    pub audience: Audience,
    /// Whether it becomes its topics' retained snapshot.
    pub retain: bool,
    /// SSE `retry:` in milliseconds.
    pub retry: Option<u64>,
    /// Whether a client id must be unique in history (`409` otherwise).
    /// Native publishes require it; Mercure allows repeated ids.
    pub unique_id: bool,
}

/// A sequenced event, ready to store and deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Strictly increasing hub sequence number (1-based).
    pub seq: u64,
    /// Event id (the client's, or the decimal `seq`).
    pub id: String,
    /// Topics, the first being canonical.
    pub topics: Vec<String>,
    /// SSE `event:` type; `None` means `message`.
    pub event_type: Option<String>,
    /// Payload.
    pub data: String,
    /// Who may see it.
    pub audience: Audience,
    /// Whether it is its topics' retained snapshot.
    pub retain: bool,
    /// SSE `retry:` in milliseconds.
    pub retry: Option<u64>,
    /// Unix time (ms) the hub accepted it.
    pub published_at_ms: u64,
    /// The encoded SSE frame, shared by every subscriber.
    pub frame: Bytes,
}

fn bad(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid::new(code, message)
}

impl EventDraft {
    /// Validates one event's JSON. Session ids in the audience are hashed.
    pub fn from_json(input: &Value, key: &SessionKey, limits: &Limits) -> Result<EventDraft, Invalid> {
        let Value::Object(fields) = input else {
            return Err(bad("invalid_event", "an event must be a JSON object"));
        };
        for name in fields.keys() {
            if !matches!(
                name.as_str(),
                "topics" | "topic" | "type" | "data" | "id" | "audience" | "retain" | "retry"
            ) {
                return Err(bad("invalid_event", format!("unknown event field `{name}`")));
            }
        }
        let topics = match (fields.get("topics"), fields.get("topic")) {
            (Some(_), Some(_)) => return Err(bad("invalid_event", "give either `topics` or `topic`, not both")),
            (Some(Value::Array(items)), None) => items
                .iter()
                .map(|t| match t {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(bad("invalid_topic", "every topic must be a string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            (None, Some(Value::String(s))) => vec![s.clone()],
            (None, None) => return Err(bad("topics_required", "an event needs at least one topic")),
            _ => return Err(bad("invalid_topic", "`topics` must be an array of strings")),
        };
        if topics.is_empty() {
            return Err(bad("topics_required", "an event needs at least one topic"));
        }
        if topics.len() > limits.max_topics {
            return Err(bad(
                "too_many_topics",
                format!("an event has at most {} topics", limits.max_topics),
            ));
        }
        for t in &topics {
            validate_topic(t)?;
        }
        let event_type = match fields.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                validate_event_type(s)?;
                Some(s.clone())
            }
            Some(_) => return Err(bad("invalid_field", "`type` must be a string")),
        };
        let id = match fields.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                check_field_safe("id", s)?;
                validate_client_id(s)?;
                Some(s.clone())
            }
            Some(_) => return Err(bad("invalid_field", "`id` must be a string")),
        };
        let data = match fields.get("data") {
            None => return Err(bad("data_required", "an event needs `data`")),
            Some(Value::String(s)) => s.clone(),
            // JSON values are written compactly: one line, so one `data:` field.
            Some(other) => other.to_string(),
        };
        let retain = match fields.get("retain") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("invalid_field", "`retain` must be a boolean")),
        };
        let retry = match fields.get("retry") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().filter(|ms| *ms <= 86_400_000).ok_or_else(|| {
                bad(
                    "invalid_field",
                    "`retry` must be a whole number of milliseconds up to 86400000",
                )
            })?),
            Some(_) => return Err(bad("invalid_field", "`retry` must be a number (milliseconds)")),
        };
        let audience = Audience::from_json(fields.get("audience"), key)?;
        let size = data.len()
            + topics.iter().map(String::len).sum::<usize>()
            + id.as_ref().map_or(0, String::len)
            + event_type.as_ref().map_or(0, String::len);
        if size > limits.max_event_bytes {
            return Err(bad(
                "event_too_large",
                format!("event is {size} bytes; the limit is {}", limits.max_event_bytes),
            ));
        }
        Ok(EventDraft {
            topics,
            event_type,
            data,
            id,
            audience,
            retain,
            retry,
            unique_id: true,
        })
    }

    /// Checks that `publisher` may publish this event and binds it to the
    /// publisher's tenant: a tenant-bound publisher's events always carry its
    /// tenant, and only a hub-wide publisher may publish hub-wide events.
    pub fn authorize(&mut self, publisher: &Principal) -> Result<(), Invalid> {
        if let Some(topic) = self.topics.iter().find(|t| !publisher.publish.matches(t)) {
            return Err(bad(
                "topic_forbidden",
                format!("this credential may not publish to topic `{topic}`"),
            ));
        }
        self.bind_tenant(publisher)
    }

    /// Binds the event to the publisher's tenant (see [`EventDraft::authorize`]).
    pub fn bind_tenant(&mut self, publisher: &Principal) -> Result<(), Invalid> {
        if let Some(own) = &publisher.tenant {
            match &self.audience.tenant {
                None => self.audience.tenant = Some(own.clone()),
                Some(t) if t == own => {}
                Some(_) => {
                    return Err(bad(
                        "tenant_forbidden",
                        "a tenant-bound publisher can only publish into its own tenant",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Gives the draft its sequence number and id, and encodes its frame.
    pub fn into_event(self, seq: u64, published_at_ms: u64) -> Event {
        let id = self.id.unwrap_or_else(|| seq.to_string());
        let frame = encode_event(&id, self.event_type.as_deref(), &self.data, self.retry);
        Event {
            seq,
            id,
            topics: self.topics,
            event_type: self.event_type,
            data: self.data,
            audience: self.audience,
            retain: self.retain,
            retry: self.retry,
            published_at_ms,
            frame,
        }
    }
}

impl EventDraft {
    /// Turns the draft into an event that is delivered live and never
    /// stored: sequence number 0 and no `id:` line, so it neither takes a
    /// place in history nor moves a client's resume point (the hub's own
    /// announcements, such as Mercure subscription events).
    pub fn into_unnumbered(self, published_at_ms: u64) -> Event {
        let frame = crate::frame::encode_unnumbered(self.event_type.as_deref(), &self.data);
        Event {
            seq: 0,
            id: String::new(),
            topics: self.topics,
            event_type: self.event_type,
            data: self.data,
            audience: self.audience,
            retain: false,
            retry: self.retry,
            published_at_ms,
            frame,
        }
    }
}

/// Client ids: non-empty, bounded, and not all digits, because all-digit ids
/// are the hub's own (the decimal `seq`) and must never collide with them.
pub fn validate_client_id(id: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(bad("invalid_id", format!("`id` must be 1 to {MAX_ID_LEN} bytes")));
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "invalid_id",
            "ids made only of digits are reserved for hub-assigned ids",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(v: Value) -> Result<EventDraft, Invalid> {
        EventDraft::from_json(&v, &SessionKey::new([1; 32]), &Limits::default())
    }

    #[test]
    fn validation_codes() {
        assert_eq!(
            draft(json!({"topics":["a"],"data":"x"})).unwrap_err().code,
            "audience_required"
        );
        assert_eq!(
            draft(json!({"topics":["a"],"data":"x","audience":{}}))
                .unwrap_err()
                .code,
            "audience_required"
        );
        assert_eq!(
            draft(json!({"topics":[],"data":"x","audience":"public"}))
                .unwrap_err()
                .code,
            "topics_required"
        );
        assert_eq!(
            draft(json!({"topics":["a.*"],"data":"x","audience":"public"}))
                .unwrap_err()
                .code,
            "invalid_topic"
        );
        assert_eq!(
            draft(json!({"topics":["a"],"data":"x","audience":"public","id":"a\nb"}))
                .unwrap_err()
                .code,
            "invalid_field"
        );
        assert_eq!(
            draft(json!({"topics":["a"],"data":"x","audience":"public","type":"a\rb"}))
                .unwrap_err()
                .code,
            "invalid_field"
        );
        assert_eq!(
            draft(json!({"topics":["a"],"data":"x","audience":"public","retry":"soon"}))
                .unwrap_err()
                .code,
            "invalid_field"
        );
        assert_eq!(
            draft(json!({"topics":["a"],"data":"x","audience":"public","id":"42"}))
                .unwrap_err()
                .code,
            "invalid_id"
        );
        let topics: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        assert_eq!(
            draft(json!({"topics":topics,"data":"x","audience":"public"}))
                .unwrap_err()
                .code,
            "too_many_topics"
        );
        for reserved in RESERVED_TYPES {
            assert_eq!(
                draft(json!({"topics":["a"],"data":"x","audience":"public","type":reserved}))
                    .unwrap_err()
                    .code,
                "reserved_type"
            );
        }
        assert!(draft(json!({"topics":["a"],"data":"x","audience":"public","type":"Revoked"})).is_ok());
        let big = "x".repeat(1024 * 1024 + 1);
        assert_eq!(
            draft(json!({"topics":["a"],"data":big,"audience":"public"}))
                .unwrap_err()
                .code,
            "event_too_large"
        );
    }

    #[test]
    fn json_data_is_compact_and_tenant_is_bound() {
        let mut d = draft(json!({"topic":"a","data":{"k":[1,2]},"audience":"public"})).unwrap();
        assert_eq!(d.data, r#"{"k":[1,2]}"#);
        let mut p = Principal::new("pub");
        p.publish = crate::SelectorSet::all();
        p.tenant = Some("acme".into());
        d.authorize(&p).unwrap();
        assert_eq!(d.audience.tenant.as_deref(), Some("acme"));
        let mut other = draft(json!({"topic":"a","data":"x","audience":{"tenant":"globex"}})).unwrap();
        assert_eq!(other.authorize(&p).unwrap_err().code, "tenant_forbidden");
        let e = d.into_event(9, 0);
        assert_eq!(e.id, "9");
    }
}
