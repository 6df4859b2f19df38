//! `Last-Event-ID`: what a reconnecting client says it saw last.
//!
//! One parser for every protocol (native streams, Mercure, audit streams),
//! so the same bytes mean the same thing wherever they arrive. Digits alone
//! are the hub's own ids (an event's sequence number or an audit record id;
//! client ids made of digits are refused at publish for that reason);
//! anything else is a client-chosen id, looked up within the subscriber's
//! tenant.

use crate::invalid::Invalid;

/// Longest `Last-Event-ID` accepted, in bytes.
pub const MAX_LAST_EVENT_ID: usize = 1024;

/// A parsed `Last-Event-ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastEventId {
    /// A hub-assigned id: the decimal sequence number (or audit record id).
    Seq(u64),
    /// A client-chosen event id.
    Client(String),
}

impl LastEventId {
    /// Parses the header (or query parameter) value. An empty value means
    /// "no id" (`Ok(None)`), as `EventSource` sends before its first event.
    /// Over-long values, control characters and digit strings that overflow
    /// a sequence number are `invalid_last_event_id`.
    pub fn parse(raw: &str) -> Result<Option<LastEventId>, Invalid> {
        if raw.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| Invalid::new("invalid_last_event_id", format!("Last-Event-ID {why}"));
        if raw.len() > MAX_LAST_EVENT_ID {
            return Err(bad(&format!("is longer than {MAX_LAST_EVENT_ID} bytes")));
        }
        if raw.chars().any(char::is_control) {
            return Err(bad("must not contain control characters"));
        }
        if raw.bytes().all(|b| b.is_ascii_digit()) {
            return raw
                .parse::<u64>()
                .map(|n| Some(LastEventId::Seq(n)))
                .map_err(|_| bad("is a number beyond any id this hub issues"));
        }
        Ok(Some(LastEventId::Client(raw.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms() {
        assert_eq!(LastEventId::parse(""), Ok(None));
        assert_eq!(LastEventId::parse("42"), Ok(Some(LastEventId::Seq(42))));
        assert_eq!(
            LastEventId::parse("ord-1"),
            Ok(Some(LastEventId::Client("ord-1".into())))
        );
        assert!(LastEventId::parse("99999999999999999999999").is_err());
        assert!(LastEventId::parse("a\nb").is_err());
        assert!(LastEventId::parse(&"x".repeat(1025)).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(raw in "\\PC{0,40}|[0-9]{1,25}") {
            match LastEventId::parse(&raw) {
                Ok(None) => prop_assert!(raw.is_empty()),
                Ok(Some(LastEventId::Seq(n))) => prop_assert_eq!(n.to_string().parse::<u64>().ok(), raw.parse::<u64>().ok()),
                Ok(Some(LastEventId::Client(c))) => prop_assert_eq!(c, raw),
                Err(e) => prop_assert_eq!(e.code, "invalid_last_event_id"),
            }
        }
    }
}
