//! RFC 6570 URI templates, the selectors Mercure subscribers send.
//!
//! Input: a template on the first line; each further line is the value of
//! one of its variables, in order (variables past the last line are
//! undefined). The template is compiled, matched against those lines, and
//! then expanded here, independently, with those values: the expansion is
//! a topic the template names, so it must match. A template without any
//! expression must match exactly itself.
#![no_main]

use herald_core::template::UriTemplate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let source = lines.next().unwrap_or("");
    let values: Vec<&str> = lines.collect();
    let Ok(template) = UriTemplate::parse(source) else {
        return;
    };
    assert_eq!(template.as_str(), source);
    for v in &values {
        let m = template.matches(v);
        if !source.contains('{') {
            assert_eq!(m, *v == source, "{source:?} on {v:?}");
        }
    }
    if let Some(topic) = expand(source, &values) {
        assert!(
            template.matches(&topic),
            "{source:?} expanded with {values:?} is {topic:?}, which it does not match"
        );
    }
});

/// Expands `template` per RFC 6570 §3 with string values (the `n`th
/// variable gets `values[n]`, or is undefined). Literals are copied as
/// written, as a publisher writes its topic. `None` when a variable name
/// carries a `%` that is not a percent-encoded octet, which RFC 6570 does
/// not allow (Herald's matcher is more lenient there).
fn expand(template: &str, values: &[&str]) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    let mut n = 0;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let body = &after[..close];
        rest = &after[close + 1..];
        let (op, vars) = match body.chars().next() {
            Some(c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => (Some(c), &body[1..]),
            _ => (None, body),
        };
        // (first, separator, named, if-empty, reserved characters allowed)
        let (first, sep, named, if_empty, reserved) = match op {
            None => ("", ",", false, "", false),
            Some('+') => ("", ",", false, "", true),
            Some('#') => ("#", ",", false, "", true),
            Some('.') => (".", ".", false, "", false),
            Some('/') => ("/", "/", false, "", false),
            Some(';') => (";", ";", true, "", false),
            Some('?') => ("?", "&", true, "=", false),
            _ => ("&", "&", true, "=", false),
        };
        let mut parts = Vec::new();
        for spec in vars.split(',') {
            let spec = spec.strip_suffix('*').unwrap_or(spec);
            let (name, prefix) = match spec.split_once(':') {
                Some((name, len)) => (name, len.parse::<usize>().ok()),
                None => (spec, None),
            };
            if !pct_ok(name) {
                return None;
            }
            let value = values.get(n).copied();
            n += 1;
            let Some(value) = value else { continue };
            let value: String = match prefix {
                Some(len) => value.chars().take(len).collect(),
                None => value.to_string(),
            };
            let encoded = encode(&value, reserved);
            parts.push(match (named, value.is_empty()) {
                (true, true) => format!("{name}{if_empty}"),
                (true, false) => format!("{name}={encoded}"),
                (false, _) => encoded,
            });
        }
        if !parts.is_empty() {
            out.push_str(first);
            out.push_str(&parts.join(sep));
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Percent-encodes what the operator does not allow: everything but the
/// unreserved characters, and for `+`/`#` also the reserved characters and
/// percent-encoded triplets already present.
fn encode(value: &str, reserved: bool) -> String {
    let bytes = value.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        let is_reserved = b":/?#[]@!$&'()*+,;=".contains(&b);
        if unreserved || (reserved && is_reserved) {
            out.push(b as char);
        } else if reserved && b == b'%' && triplet(&bytes[i..]) {
            out.push_str(&value[i..i + 3]);
            i += 3;
            continue;
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

fn triplet(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == b'%' && b[1].is_ascii_hexdigit() && b[2].is_ascii_hexdigit()
}

/// Whether every `%` in a variable name starts a percent-encoded octet.
fn pct_ok(name: &str) -> bool {
    let b = name.as_bytes();
    (0..b.len()).all(|i| b[i] != b'%' || triplet(&b[i..]))
}
