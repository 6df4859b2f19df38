//! Audiences: who, among the subscribers of a topic, may see an event.
//!
//! An audience is mandatory on every native publish. Forgetting it must fail
//! loudly instead of broadcasting (the fan-out leak this hub exists to end),
//! so "everyone allowed on the topic" has to be spelled out as `"public"`,
//! and an empty object `{}` is refused as ambiguous.

use crate::invalid::Invalid;
use crate::session::{SessionHash, SessionKey};
use serde_json::Value;

/// Most labels in one audience list.
pub const MAX_LABELS: usize = 64;
/// Longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// Who may see an event, in addition to the topic check.
///
/// Each field that is `Some` restricts; `None` does not. A present but empty
/// list matches nobody (deny when unsure).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audience {
    /// Only principals of this tenant; `None` = hub-wide event.
    pub tenant: Option<String>,
    /// Only these account ids (`sub`).
    pub users: Option<Vec<String>>,
    /// Only these sessions (stored hashed).
    pub sessions: Option<Vec<SessionHash>>,
    /// Only principals holding any of these roles.
    pub roles: Option<Vec<String>>,
    /// Only principals in any of these groups.
    pub groups: Option<Vec<String>>,
    /// A Mercure private update: only principals whose private-update
    /// selectors match one of the event's topics (see
    /// [`Principal::private_updates`](crate::Principal::private_updates)).
    pub private: bool,
}

impl Audience {
    /// The audience `"public"`: everyone allowed on the topic.
    pub fn public() -> Audience {
        Audience::default()
    }

    /// Whether nothing but the topic restricts this event.
    pub fn is_public(&self) -> bool {
        self == &Audience::default()
    }

    /// Parses the JSON form: the string `"public"` or an object with at least
    /// one of `tenant`, `users`, `sessions`, `roles`, `groups`. Raw session
    /// ids are hashed with `key` here, at the edge, and never kept.
    pub fn from_json(value: Option<&Value>, key: &SessionKey) -> Result<Audience, Invalid> {
        let required = || {
            Invalid::new(
                "audience_required",
                "an explicit `audience` is required: an object naming tenant, users, sessions, roles or groups, or the string \"public\"",
            )
        };
        let object = match value {
            None | Some(Value::Null) => return Err(required()),
            Some(Value::String(s)) if s == "public" => return Ok(Audience::public()),
            Some(Value::String(s)) => {
                return Err(Invalid::new(
                    "invalid_audience",
                    format!("audience string must be \"public\", not {s:?}"),
                ))
            }
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(Invalid::new(
                    "invalid_audience",
                    "audience must be an object or the string \"public\"",
                ))
            }
        };
        let mut audience = Audience::default();
        for (field, v) in object {
            match field.as_str() {
                "tenant" => audience.tenant = Some(label(field, v)?),
                "users" => audience.users = Some(labels(field, v)?),
                "sessions" => audience.sessions = Some(labels(field, v)?.iter().map(|s| key.hash(s)).collect()),
                "roles" => audience.roles = Some(labels(field, v)?),
                "groups" => audience.groups = Some(labels(field, v)?),
                other => {
                    return Err(Invalid::new(
                        "invalid_audience",
                        format!("unknown audience field `{other}` (expected tenant, users, sessions, roles, groups)"),
                    ))
                }
            }
        }
        if audience.is_public() {
            return Err(required());
        }
        Ok(audience)
    }
}

fn label(field: &str, v: &Value) -> Result<String, Invalid> {
    match v {
        Value::String(s) if s.is_empty() => Err(Invalid::new(
            "invalid_audience",
            format!("audience `{field}` must not be empty"),
        )),
        Value::String(s) if s.len() > MAX_LABEL_LEN => Err(Invalid::new(
            "audience_label_too_long",
            format!("audience `{field}` label is longer than {MAX_LABEL_LEN} bytes"),
        )),
        Value::String(s) if s.chars().any(char::is_control) => Err(Invalid::new(
            "invalid_audience",
            format!("audience `{field}` label must not contain control characters"),
        )),
        Value::String(s) => Ok(s.clone()),
        _ => Err(Invalid::new(
            "invalid_audience",
            format!("audience `{field}` must be a string"),
        )),
    }
}

fn labels(field: &str, v: &Value) -> Result<Vec<String>, Invalid> {
    let Value::Array(items) = v else {
        return Err(Invalid::new(
            "invalid_audience",
            format!("audience `{field}` must be an array of strings"),
        ));
    };
    if items.len() > MAX_LABELS {
        return Err(Invalid::new(
            "audience_too_many_labels",
            format!("audience `{field}` holds more than {MAX_LABELS} labels"),
        ));
    }
    items.iter().map(|item| label(field, item)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Audience, Invalid> {
        Audience::from_json(Some(&v), &SessionKey::new([7; 32]))
    }

    #[test]
    fn audience_must_be_explicit() {
        assert_eq!(
            Audience::from_json(None, &SessionKey::new([0; 32])).unwrap_err().code,
            "audience_required"
        );
        assert_eq!(parse(json!({})).unwrap_err().code, "audience_required");
        assert_eq!(parse(json!(null)).unwrap_err().code, "audience_required");
        assert!(parse(json!("public")).unwrap().is_public());
        assert_eq!(parse(json!("everyone")).unwrap_err().code, "invalid_audience");
    }

    #[test]
    fn labels_are_bounded_not_truncated() {
        let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
        assert_eq!(
            parse(json!({"users": many})).unwrap_err().code,
            "audience_too_many_labels"
        );
        let long = "x".repeat(257);
        assert_eq!(
            parse(json!({"roles": [long]})).unwrap_err().code,
            "audience_label_too_long"
        );
        assert_eq!(
            parse(json!({"tenant": "x".repeat(257)})).unwrap_err().code,
            "audience_label_too_long"
        );
        assert!(parse(json!({"users": (0..64).map(|i| i.to_string()).collect::<Vec<_>>()})).is_ok());
        assert_eq!(parse(json!({"user": ["a"]})).unwrap_err().code, "invalid_audience");
    }

    #[test]
    fn sessions_are_hashed() {
        let a = parse(json!({"sessions": ["s1"]})).unwrap();
        assert_eq!(a.sessions, Some(vec![SessionKey::new([7; 32]).hash("s1")]));
    }
}
