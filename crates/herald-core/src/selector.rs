//! Selectors: which topics a subscription (or a credential) covers.
//!
//! Four kinds, told apart by their syntax so that a selector never changes
//! meaning silently:
//!
//! * `*` alone matches every topic;
//! * a selector containing `{` is an RFC 6570 URI template (as in Mercure);
//! * a selector whose dot-separated segments include `*` (exactly one
//!   segment) or end in `>` (one or more segments) is a NATS-style wildcard;
//! * anything else matches exactly one topic.

use crate::invalid::Invalid;
use crate::template::UriTemplate;
use std::fmt;

/// Longest selector or topic accepted, in bytes.
pub const MAX_SELECTOR_LEN: usize = 1024;

/// One compiled selector.
#[derive(Clone)]
pub enum Selector {
    /// `*`: every topic.
    All,
    /// A topic matched byte for byte.
    Exact(String),
    /// A NATS-style subject pattern such as `orders.*.status` or `orders.>`.
    Wildcard(SubjectPattern),
    /// An RFC 6570 URI template such as `https://shop.example/orders/{id}`.
    Template(UriTemplate),
}

/// A NATS-style subject pattern, already split into tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectPattern {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more tokens; only ever last.
    Rest,
}

impl Selector {
    /// Parses a selector, rejecting empty, over-long or control-character input.
    pub fn parse(s: &str) -> Result<Selector, Invalid> {
        check_common(s, "selector")?;
        if s == "*" {
            return Ok(Selector::All);
        }
        if s.contains('{') {
            return UriTemplate::parse(s)
                .map(Selector::Template)
                .map_err(|e| Invalid::new("invalid_selector", format!("selector `{s}`: {e}")));
        }
        if let Some(pattern) = SubjectPattern::parse(s)? {
            return Ok(Selector::Wildcard(pattern));
        }
        Ok(Selector::Exact(s.to_string()))
    }

    /// Whether this selector matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::Exact(t) => t == topic,
            Selector::Wildcard(p) => p.matches(topic),
            Selector::Template(t) => t.matches(topic),
        }
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        match self {
            Selector::All => "*",
            Selector::Exact(t) => t,
            Selector::Wildcard(p) => &p.source,
            Selector::Template(t) => t.as_str(),
        }
    }

    /// Whether every topic this selector matches is also matched by `self`
    /// (conservative: `false` when containment cannot be proven).
    ///
    /// Used to make sure a minted SSE token can only narrow its minter's
    /// selectors, never widen them.
    pub fn covers(&self, other: &Selector) -> bool {
        match (self, other) {
            (Selector::All, _) => true,
            (_, Selector::Exact(topic)) => self.matches(topic),
            (Selector::Wildcard(a), Selector::Wildcard(b)) => a.covers(b),
            (a, b) => a.as_str() == b.as_str(),
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({})", self.as_str())
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl SubjectPattern {
    /// Returns `Ok(None)` when `s` contains no wildcard token (an exact topic).
    fn parse(s: &str) -> Result<Option<SubjectPattern>, Invalid> {
        let parts: Vec<&str> = s.split('.').collect();
        if !parts.iter().any(|p| *p == "*" || *p == ">") {
            return Ok(None);
        }
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let token = match *part {
                "*" => Token::One,
                ">" if i + 1 == parts.len() => Token::Rest,
                ">" => {
                    return Err(Invalid::new(
                        "invalid_selector",
                        format!("selector `{s}`: `>` may only be the last segment"),
                    ))
                }
                "" => {
                    return Err(Invalid::new(
                        "invalid_selector",
                        format!("selector `{s}`: empty segment in a wildcard selector"),
                    ))
                }
                lit => Token::Literal(lit.to_string()),
            };
            tokens.push(token);
        }
        Ok(Some(SubjectPattern {
            source: s.to_string(),
            tokens,
        }))
    }

    /// NATS subject matching: `*` is one token, a final `>` one or more.
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for token in &self.tokens {
            match token {
                Token::Rest => return parts.next().is_some(),
                Token::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(lit) => {
                    if parts.next() != Some(lit.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Pattern containment: every subject `other` matches, `self` matches.
    fn covers(&self, other: &SubjectPattern) -> bool {
        let mut theirs = other.tokens.iter();
        for mine in &self.tokens {
            match (mine, theirs.next()) {
                (Token::Rest, Some(_)) => return true,
                (Token::One, Some(Token::One | Token::Literal(_))) => {}
                (Token::Literal(a), Some(Token::Literal(b))) if a == b => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }
}

/// Checks the syntax every topic and selector shares.
fn check_common(s: &str, what: &str) -> Result<(), Invalid> {
    let code = if what == "topic" {
        "invalid_topic"
    } else {
        "invalid_selector"
    };
    let problem = if s.is_empty() {
        "must not be empty".to_string()
    } else if s.len() > MAX_SELECTOR_LEN {
        format!("is longer than {MAX_SELECTOR_LEN} bytes")
    } else if s.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(Invalid::new(code, format!("{what} {problem}")))
}

/// Validates a topic an event is published to.
///
/// A topic must be something a selector can match exactly: a string that
/// would itself parse as a wildcard or template selector is refused, so a
/// publisher cannot confuse "topic" and "pattern". Topics starting with `$`
/// are reserved for the hub's own streams (`$tags`, `$audit`).
pub fn validate_topic(topic: &str) -> Result<(), Invalid> {
    check_common(topic, "topic")?;
    if topic.starts_with('$') {
        return Err(Invalid::new(
            "reserved_topic",
            format!("topic `{topic}` is reserved for the hub"),
        ));
    }
    match Selector::parse(topic) {
        Ok(Selector::Exact(_)) => Ok(()),
        _ => Err(Invalid::new(
            "invalid_topic",
            format!("topic `{topic}` is a selector (wildcard or template), not a topic"),
        )),
    }
}

/// The selectors of one subscription or one credential.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectorSet(pub Vec<Selector>);

impl SelectorSet {
    /// Parses every selector, failing on the first invalid one.
    pub fn parse<I, S>(items: I) -> Result<SelectorSet, Invalid>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = items
            .into_iter()
            .map(|s| Selector::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        // Collecting through `Result` cannot know the length up front and
        // reserves four slots; a stream keeps its sets for its whole life,
        // so the spare ones are given back.
        set.shrink_to_fit();
        Ok(SelectorSet(set))
    }

    /// The set matching every topic.
    pub fn all() -> SelectorSet {
        SelectorSet(vec![Selector::All])
    }

    /// Whether any selector matches any of `topics`.
    pub fn matches_any<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        topics.iter().any(|t| self.0.iter().any(|s| s.matches(t.as_ref())))
    }

    /// Whether any selector matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.0.iter().any(|s| s.matches(topic))
    }

    /// Whether each selector of `other` is covered by one of ours.
    pub fn covers(&self, other: &SelectorSet) -> bool {
        other.0.iter().all(|o| self.0.iter().any(|s| s.covers(o)))
    }

    /// Whether the set is empty (matches nothing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The selectors as written.
    pub fn as_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).expect("valid selector")
    }

    #[test]
    fn kinds_are_told_apart_by_syntax() {
        assert!(matches!(sel("*"), Selector::All));
        assert!(matches!(sel("orders.42"), Selector::Exact(_)));
        assert!(matches!(sel("orders.*"), Selector::Wildcard(_)));
        assert!(matches!(sel("orders.>"), Selector::Wildcard(_)));
        assert!(matches!(sel("https://x/{id}"), Selector::Template(_)));
        // A `*` inside a segment is a literal, as in NATS.
        assert!(matches!(sel("orders.4*"), Selector::Exact(_)));
    }

    #[test]
    fn nats_wildcards() {
        assert!(sel("topology.*.status").matches("topology.42.status"));
        assert!(!sel("topology.*.status").matches("topology.42.x.status"));
        assert!(!sel("topology.*.status").matches("topology.status"));
        assert!(sel("topology.42.>").matches("topology.42.a"));
        assert!(sel("topology.42.>").matches("topology.42.a.b"));
        assert!(!sel("topology.42.>").matches("topology.42"));
        assert!(Selector::parse("a.>.b").is_err());
        assert!(Selector::parse("a..*").is_err());
    }

    #[test]
    fn invalid_selectors_and_topics() {
        assert!(Selector::parse("").is_err());
        assert!(Selector::parse("a\nb").is_err());
        assert!(Selector::parse(&"x".repeat(MAX_SELECTOR_LEN + 1)).is_err());
        assert!(validate_topic("orders.*").is_err());
        assert!(validate_topic("*").is_err());
        assert!(validate_topic("https://x/{id}").is_err());
        assert!(validate_topic("$tags").is_err());
        assert!(validate_topic("orders.42").is_ok());
    }

    #[test]
    fn covers_is_conservative() {
        assert!(sel("*").covers(&sel("a.b")));
        assert!(sel("a.*").covers(&sel("a.b")));
        assert!(sel("a.>").covers(&sel("a.*")));
        assert!(sel("a.>").covers(&sel("a.b.>")));
        assert!(!sel("a.*").covers(&sel("a.>")));
        assert!(!sel("a.b").covers(&sel("*")));
        assert!(!sel("a.*").covers(&sel("*")));
    }

    /// The deliberately naive oracle: regex-free, recursive token matching.
    fn oracle(pattern: &[&str], topic: &[&str]) -> bool {
        // `*` on its own is the match-everything selector.
        pattern == ["*"] || tokens(pattern, topic)
    }

    fn tokens(pattern: &[&str], topic: &[&str]) -> bool {
        match (pattern.first(), topic.first()) {
            (None, None) => true,
            (Some(&">"), Some(_)) => true,
            (Some(&"*"), Some(_)) => tokens(&pattern[1..], &topic[1..]),
            (Some(p), Some(t)) if p == t => tokens(&pattern[1..], &topic[1..]),
            _ => false,
        }
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("c".to_string())]
    }

    proptest! {
        #[test]
        fn wildcard_matches_like_the_oracle(
            pat in proptest::collection::vec(prop_oneof![token(), Just("*".to_string())], 1..5),
            rest in any::<bool>(),
            topic in proptest::collection::vec(token(), 1..7),
        ) {
            let mut pat = pat;
            if rest { pat.push(">".into()); }
            let source = pat.join(".");
            let selector = sel(&source);
            let p: Vec<&str> = pat.iter().map(String::as_str).collect();
            let t: Vec<&str> = topic.iter().map(String::as_str).collect();
            prop_assert_eq!(selector.matches(&topic.join(".")), oracle(&p, &t), "{} vs {}", source, topic.join("."));
        }

        #[test]
        fn covers_implies_matches(
            a in proptest::collection::vec(prop_oneof![token(), Just("*".to_string())], 1..4),
            b in proptest::collection::vec(prop_oneof![token(), Just("*".to_string())], 1..4),
            topic in proptest::collection::vec(token(), 1..5),
        ) {
            let (sa, sb) = (Selector::parse(&a.join(".")).unwrap(), Selector::parse(&b.join(".")).unwrap());
            let t = topic.join(".");
            if sa.covers(&sb) && sb.matches(&t) {
                prop_assert!(sa.matches(&t));
            }
        }
    }
}
