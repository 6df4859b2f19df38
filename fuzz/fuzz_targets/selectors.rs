//! Selectors, as they arrive in `?topic=` parameters and in the
//! `herald.subscribe`/`herald.publish`/`mercure.*` claims of a credential.
//!
//! Input: lines; the last is a topic, every other line a selector.
//! Besides never panicking, checks what the hub relies on: a selector is
//! kept as written and re-parses to itself, `*` matches everything, an
//! exact selector matches only its own topic, a wildcard matches as plain
//! NATS subject matching says, and `covers` (which stops a
//! minted SSE token from widening its minter's selectors) is sound: when
//! `a` covers `b`, every topic `b` matches, `a` matches too.
#![no_main]

use herald_core::selector::validate_topic;
use herald_core::{Selector, SelectorSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<&str> = text.split('\n').collect();
    let topic = lines.pop().unwrap_or("");
    lines.truncate(8);

    let mut parsed = Vec::new();
    for line in &lines {
        let Ok(sel) = Selector::parse(line) else { continue };
        assert_eq!(sel.as_str(), *line, "a selector is kept as written");
        let again = Selector::parse(sel.as_str()).expect("a parsed selector re-parses");
        assert_eq!(again, sel);
        assert_eq!(
            std::mem::discriminant(&again),
            std::mem::discriminant(&sel),
            "re-parsing {line:?} changed its kind"
        );
        let m = sel.matches(topic);
        assert_eq!(again.matches(topic), m, "{line:?} on {topic:?}");
        match &sel {
            Selector::All => assert!(m),
            Selector::Exact(t) => assert_eq!(m, t == topic, "{line:?} on {topic:?}"),
            Selector::Wildcard(_) => {
                let naive = nats_match(
                    &line.split('.').collect::<Vec<_>>(),
                    &topic.split('.').collect::<Vec<_>>(),
                );
                assert_eq!(m, naive, "{line:?} on {topic:?}");
            }
            Selector::Template(_) => {}
        }
        assert!(sel.covers(&sel), "{line:?} must cover itself");
        parsed.push(sel);
    }

    for a in &parsed {
        for b in &parsed {
            if a.covers(b) && b.matches(topic) {
                assert!(
                    a.matches(topic),
                    "{a:?} covers {b:?}, which matches {topic:?}, but {a:?} does not"
                );
            }
        }
    }

    if let Ok(set) = SelectorSet::parse(&lines) {
        assert_eq!(set.0.len(), lines.len());
        assert_eq!(set.as_strings(), lines);
        assert_eq!(set.matches(topic), parsed.iter().any(|s| s.matches(topic)));
        assert_eq!(set.matches_any(&[topic]), set.matches(topic));
        let again = SelectorSet::parse(set.as_strings()).expect("a parsed set re-parses");
        assert_eq!(again, set);
        assert!(set.covers(&set));
    } else {
        assert!(parsed.len() < lines.len(), "a set fails only on a bad selector");
    }

    if validate_topic(topic).is_ok() {
        let sel = Selector::parse(topic).expect("a valid topic is a selector");
        assert!(
            matches!(sel, Selector::Exact(_)),
            "{topic:?} is a topic, so an exact selector"
        );
        assert!(sel.matches(topic));
    }
});

/// NATS subject matching, written the obvious way as an oracle: `*` is any
/// one token, a final `>` one or more, anything else itself.
fn nats_match(pattern: &[&str], topic: &[&str]) -> bool {
    match (pattern.split_first(), topic.split_first()) {
        (None, None) => true,
        (Some((&">", [])), Some(_)) => true,
        (Some((&p, pattern)), Some((&t, topic))) if p == "*" || p == t => nats_match(pattern, topic),
        _ => false,
    }
}
