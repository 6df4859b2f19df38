//! `Last-Event-ID`, from a reconnecting client's header or query string.
//!
//! Checks the documented forms: empty means none, digits alone are a hub
//! sequence number (and say exactly that number), anything else is a
//! client id kept as sent, and every refusal is `invalid_last_event_id`.
#![no_main]

use herald_core::resume::MAX_LAST_EVENT_ID;
use herald_core::LastEventId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    match LastEventId::parse(&raw) {
        Ok(None) => assert!(raw.is_empty()),
        Ok(Some(LastEventId::Seq(n))) => {
            assert!(raw.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(raw.parse::<u64>(), Ok(n));
        }
        Ok(Some(LastEventId::Client(id))) => {
            assert_eq!(id, raw);
            assert!(!id.bytes().all(|b| b.is_ascii_digit()));
            assert!(id.len() <= MAX_LAST_EVENT_ID);
            assert!(!id.chars().any(char::is_control));
        }
        Err(e) => assert_eq!(e.code, "invalid_last_event_id"),
    }
});
