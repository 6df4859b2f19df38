//! `POST /v1/publish` bodies: JSON decoded with serde_json, then validated
//! by `EventDraft::from_json` (topics, type, id, data, audience, retry).
//!
//! An accepted event is numbered and framed as the hub does it, and the
//! frame is read back with an independent WHATWG SSE parser: it must be
//! exactly one event, with the event's id, type, retry and data (line
//! breaks as SSE delivers them), so no payload can forge a second event or
//! a field. Unnumbered events (the hub's own announcements) must not touch
//! the client's last event id.
#![no_main]

use herald_core::selector::validate_topic;
use herald_core::{EventDraft, Limits, SessionKey};
use herald_fuzz::assert_one_event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // Small limits, so the size and count refusals are within reach.
    let limits = Limits {
        max_event_bytes: 2048,
        max_topics: 4,
    };
    let key = SessionKey::new([3; 32]);
    let Ok(draft) = EventDraft::from_json(&json, &key, &limits) else {
        return;
    };
    assert_eq!(EventDraft::from_json(&json, &key, &limits).as_ref(), Ok(&draft));
    assert!(!draft.topics.is_empty() && draft.topics.len() <= limits.max_topics);
    for t in &draft.topics {
        assert!(validate_topic(t).is_ok(), "accepted topic {t:?}");
    }
    let size = draft.data.len()
        + draft.topics.iter().map(String::len).sum::<usize>()
        + draft.id.as_ref().map_or(0, String::len)
        + draft.event_type.as_ref().map_or(0, String::len);
    assert!(size <= limits.max_event_bytes);

    let unnumbered = draft.clone().into_unnumbered(1);
    assert_one_event(&unnumbered.frame, None, draft.event_type.as_deref(), &draft.data, None);

    let seq = 42;
    let event = draft.clone().into_event(seq, 1);
    let id = draft.id.clone().unwrap_or_else(|| seq.to_string());
    assert_eq!(event.id, id);
    assert_one_event(
        &event.frame,
        Some(&id),
        draft.event_type.as_deref(),
        &draft.data,
        draft.retry,
    );
});
