//! Mercure publishes: the form body of `POST /.well-known/mercure`, parsed
//! and checked by `herald::mercure::publish::parse_update`.
//!
//! An accepted update is checked against the documented rules (topics
//! present, counted, bounded, none of the hub's own; no reserved type; the
//! size limit) and then turned into an event exactly as the publish handler
//! does; its frame must read back as exactly one SSE event carrying the
//! update's id, type, retry and data.
#![no_main]

use herald::mercure::publish::parse_update;
use herald_core::event::RESERVED_TYPES;
use herald_core::{Audience, EventDraft, Limits};
use herald_fuzz::assert_one_event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_event_bytes: 2048,
        max_topics: 4,
    };
    let update = match parse_update(data, &limits) {
        Ok(u) => u,
        Err(e) => {
            assert!(e.status.is_client_error(), "{e:?}");
            return;
        }
    };
    assert!(!update.topics.is_empty() && update.topics.len() <= limits.max_topics);
    for t in &update.topics {
        assert!(
            !t.is_empty() && t.len() <= 1024 && !t.chars().any(char::is_control),
            "{t:?}"
        );
        assert!(
            !t.starts_with('$') && !t.starts_with(herald::mercure::RESERVED_PREFIX),
            "{t:?}"
        );
    }
    if let Some(t) = &update.event_type {
        assert!(!t.is_empty() && !RESERVED_TYPES.contains(&t.as_str()), "{t:?}");
    }
    let size = update.data.len()
        + update.topics.iter().map(String::len).sum::<usize>()
        + update.id.as_ref().map_or(0, String::len)
        + update.event_type.as_ref().map_or(0, String::len);
    assert!(size <= limits.max_event_bytes);

    let draft = EventDraft {
        topics: update.topics.clone(),
        event_type: update.event_type.clone(),
        data: update.data.clone(),
        id: update.id.clone(),
        audience: Audience {
            private: update.private,
            ..Audience::public()
        },
        retain: false,
        retry: update.retry,
        unique_id: false,
    };
    let seq = 7;
    let event = draft.into_event(seq, 1);
    let id = update.id.clone().unwrap_or_else(|| seq.to_string());
    assert_one_event(
        &event.frame,
        Some(&id),
        update.event_type.as_deref(),
        &update.data,
        update.retry,
    );
});
