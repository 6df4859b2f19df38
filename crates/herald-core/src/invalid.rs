//! The error type for input that breaks a rule of the data model.

/// A rule of the data model was broken by client input.
///
/// `code` is a stable `snake_case` identifier that clients can branch on;
/// `message` is a human sentence. The HTTP layer maps a code to its status
/// (most are `400`; `event_too_large` is `413`; the `*_forbidden` codes `403`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// Stable machine-readable code, e.g. `audience_required`.
    pub code: &'static str,
    /// Human-readable explanation naming the offending field.
    pub message: String,
}

impl Invalid {
    /// Builds an error from a code and a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            code,
            message: message.into(),
        }
    }
}

/// Rejects strings that could break out of an SSE field or a log line.
///
/// CR and LF end an SSE field, so an id or type containing them could inject
/// a forged frame; NUL is rejected by browsers and by axum's own encoder.
pub fn check_field_safe(field: &str, value: &str) -> Result<(), Invalid> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Invalid::new(
            "invalid_field",
            format!("`{field}` must not contain CR, LF or NUL"),
        ));
    }
    Ok(())
}
