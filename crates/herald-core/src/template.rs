//! RFC 6570 URI templates as topic selectors, as the Mercure protocol uses
//! them: a topic matches a template when some assignment of values to the
//! template's variables expands to exactly that topic.
//!
//! No crate matches (rather than expands) level-4 templates, so the
//! template is compiled here into an anchored regular expression, the way
//! Mercure's reference hub does. Compilation is bounded (template length,
//! expression count, regex size) so a hostile selector cannot exhaust
//! memory.

use regex::{Regex, RegexBuilder};

/// Longest template accepted, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 4096;
/// Most `{...}` expressions in one template.
pub const MAX_EXPRESSIONS: usize = 64;
/// Compiled regex size limit.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled URI template.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    source: String,
    regex: Regex,
}

/// Why a template was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `{` without a matching `}` (or a stray `}` is fine; a nested `{` is not).
    #[error("unclosed `{{` in URI template")]
    Unclosed,
    /// `{}`.
    #[error("empty expression `{{}}` in URI template")]
    EmptyExpression,
    /// A variable name outside RFC 6570's varname grammar.
    #[error("invalid variable name `{0}` in URI template")]
    InvalidVariable(String),
    /// An operator RFC 6570 reserves for future use (`=`, `,`, `!`, `@`, `|`).
    #[error("unsupported operator `{0}` in URI template")]
    UnsupportedOperator(char),
    /// Over the length or expression limits.
    #[error("URI template is too long or has too many expressions")]
    TooLong,
    /// The compiled form would be too large.
    #[error("URI template is too complex")]
    TooComplex,
}

/// Characters a simple (non-reserved) expansion may produce: unreserved or
/// percent-encoded.
const UNRESERVED: &str = r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})";
/// Reserved expansion (`+`, `#`) may also produce reserved characters.
const RESERVED: &str = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})";

fn valid_varname(name: &str) -> bool {
    // varname = varchar *( ["."] varchar ), varchar = ALPHA / DIGIT / "_" / pct-encoded
    !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'%')
}

/// The regex for one expression body (operator + variable list).
fn expression(body: &str) -> Result<String, TemplateError> {
    let (op, vars) = match body.chars().next() {
        Some(c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => (Some(c), &body[1..]),
        Some(c @ ('=' | ',' | '!' | '@' | '|')) => return Err(TemplateError::UnsupportedOperator(c)),
        Some(_) => (None, body),
        None => return Err(TemplateError::EmptyExpression),
    };
    if vars.is_empty() {
        return Err(TemplateError::EmptyExpression);
    }
    let chars = match op {
        Some('+' | '#') => RESERVED,
        _ => UNRESERVED,
    };
    // What joins values: the operator's separator, and `,` inside lists
    // (and `=` for named parameters of exploded maps).
    let (prefix, sep, named) = match op {
        None | Some('+') => ("", ",", false),
        Some('#') => ("#", ",", false),
        Some('.') => (r"\.", r"\.", false),
        Some('/') => ("/", "/", false),
        Some(';') => (";", ";", true),
        Some('?') => (r"\?", "&", true),
        Some('&') => ("&", "&", true),
        Some(_) => return Err(TemplateError::EmptyExpression),
    };
    let mut parts = Vec::new();
    for spec in vars.split(',') {
        let (name, explode) = match spec.strip_suffix('*') {
            Some(n) => (n, true),
            None => (spec, false),
        };
        let name = match name.split_once(':') {
            Some((n, len)) if !len.is_empty() && len.len() <= 4 && len.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return Err(TemplateError::InvalidVariable(spec.to_string())),
            None => name,
        };
        if !valid_varname(name) {
            return Err(TemplateError::InvalidVariable(spec.to_string()));
        }
        let value = if explode {
            // An exploded list or map: values joined by the separator, each
            // possibly `key=value`.
            format!(r"{chars}*(?:(?:={chars}*)?(?:{sep}|,){chars}*)*(?:={chars}*)?")
        } else {
            format!(r"(?:{chars}|,)*")
        };
        let part = if named && !explode {
            // `;x=1` / `?x=1`: the name, then `=value` (`;x` alone for an
            // empty value in path-style parameters).
            format!("{}(?:={value})?", regex::escape(name))
        } else {
            value
        };
        parts.push(part);
    }
    // Any variable may be undefined, in which case it (and its separator)
    // vanishes; an expression with no defined variable expands to nothing.
    let joined = parts
        .iter()
        .map(|p| format!("(?:{p})?"))
        .collect::<Vec<_>>()
        .join(&format!("(?:{sep})?"));
    Ok(format!("(?:{prefix}{joined})?"))
}

impl UriTemplate {
    /// Compiles a template.
    pub fn parse(template: &str) -> Result<UriTemplate, TemplateError> {
        if template.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong);
        }
        let mut pattern = String::from("^");
        let mut rest = template;
        let mut count = 0;
        while let Some(open) = rest.find('{') {
            pattern.push_str(&regex::escape(&rest[..open]));
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            let body = &after[..close];
            if body.contains('{') {
                return Err(TemplateError::Unclosed);
            }
            count += 1;
            if count > MAX_EXPRESSIONS {
                return Err(TemplateError::TooLong);
            }
            pattern.push_str(&expression(body)?);
            rest = &after[close + 1..];
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        let regex = RegexBuilder::new(&pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|_| TemplateError::TooComplex)?;
        Ok(UriTemplate {
            source: template.to_string(),
            regex,
        })
    }

    /// Whether some expansion of the template equals `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> UriTemplate {
        UriTemplate::parse(s).expect("valid template")
    }

    #[test]
    fn simple_variables_match_one_segment() {
        let b = t("https://example.com/books/{id}");
        assert!(b.matches("https://example.com/books/1"));
        assert!(b.matches("https://example.com/books/a%20b"));
        assert!(!b.matches("https://example.com/books/1/x"));
        assert!(!b.matches("https://example.com/authors/1"));
        // Literal dots and question marks are literals, not regex.
        let d = t("a.b?c/{x}");
        assert!(d.matches("a.b?c/1"));
        assert!(!d.matches("aXb?c/1"));
    }

    #[test]
    fn operators() {
        assert!(t("/users/{id}/{+rest}").matches("/users/7/a/b?c=d"));
        assert!(!t("/users/{id}/{rest}").matches("/users/7/a/b"));
        assert!(t("/search{?q,lang}").matches("/search?q=cat&lang=en"));
        assert!(t("/search{?q,lang}").matches("/search?q=cat"));
        assert!(t("/search{?q,lang}").matches("/search"));
        assert!(t("/files{/path*}").matches("/files/a/b/c"));
        assert!(t("/x{.ext}").matches("/x.json"));
        assert!(t("/m{;v}").matches("/m;v=1"));
        assert!(t("/p{#frag}").matches("/p#a/b"));
        assert!(t("/l/{a,b}").matches("/l/1,2"));
        assert!(t("/prefix/{id:3}").matches("/prefix/abc"));
    }

    #[test]
    fn invalid_templates() {
        assert_eq!(UriTemplate::parse("/a/{id").unwrap_err(), TemplateError::Unclosed);
        assert_eq!(UriTemplate::parse("/a/{}").unwrap_err(), TemplateError::EmptyExpression);
        assert!(matches!(
            UriTemplate::parse("/a/{!x}"),
            Err(TemplateError::UnsupportedOperator('!'))
        ));
        assert!(matches!(
            UriTemplate::parse("/a/{b c}"),
            Err(TemplateError::InvalidVariable(_))
        ));
        assert_eq!(
            UriTemplate::parse(&"a".repeat(5000)).unwrap_err(),
            TemplateError::TooLong
        );
        let many = "{x}".repeat(65);
        assert_eq!(UriTemplate::parse(&many).unwrap_err(), TemplateError::TooLong);
    }

    /// Naive oracle: expand by concatenation.
    fn expand(literals: &[String], values: &[String]) -> String {
        let mut out = String::new();
        for (i, lit) in literals.iter().enumerate() {
            out.push_str(lit);
            if let Some(v) = values.get(i) {
                out.push_str(v);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn expansions_match_and_literal_changes_do_not(
            literals in proptest::collection::vec("[a-z/:.?]{1,6}", 2..5),
            values in proptest::collection::vec("[A-Za-z0-9._~-]{1,8}", 4),
        ) {
            let n = literals.len() - 1;
            let mut template = String::new();
            for (i, lit) in literals.iter().enumerate() {
                template.push_str(lit);
                if i < n {
                    template.push_str(&format!("{{v{i}}}"));
                }
            }
            let tpl = t(&template);
            let topic = expand(&literals, &values[..n]);
            prop_assert!(tpl.matches(&topic), "{} should match {}", template, topic);
            // Changing the first literal character to one no expansion can
            // produce there must break the match.
            let broken = format!("#{}", &topic[1..]);
            prop_assert!(!tpl.matches(&broken));
        }
    }
}
