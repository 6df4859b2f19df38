//! Mercure publish: `POST /.well-known/mercure`, form-encoded.

use super::RESERVED_PREFIX;
use crate::http::error::ApiError;
use crate::http::request::{check_cookie_write, client_ip, read_body, refuse_origin};
use crate::hub::Hub;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::event::validate_event_type;
use herald_core::invalid::check_field_safe;
use herald_core::{Audience, EventDraft, Limits};

/// Longest topic accepted.
const MAX_TOPIC: usize = 1024;

/// One Mercure update as its form gives it: checked, not yet authorized
/// for a publisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// `topic` fields, in order (the first is canonical); at least one.
    pub topics: Vec<String>,
    /// `data` (empty when absent).
    pub data: String,
    /// `id`, a client-chosen event id.
    pub id: Option<String>,
    /// `type`, the SSE event type (`None` when absent or empty).
    pub event_type: Option<String>,
    /// `retry`, milliseconds.
    pub retry: Option<u64>,
    /// Whether `private` was given (with any value).
    pub private: bool,
}

/// Parses and checks a Mercure publish form. Pure (no hub, no I/O), so it
/// can be fuzzed: any bytes give an update or a client error, never a
/// panic.
///
/// Refuses: no topic (`400 topics_required`), more than
/// `limits.max_topics` (`400 too_many_topics`), a topic empty, over 1024
/// bytes or with control characters (`400 invalid_topic`), one of the hub's
/// own (`403 topic_forbidden`), a bad id (`400`), a type with CR/LF/NUL,
/// over 256 bytes (`400 invalid_field`) or reserved for the hub's control
/// events (`400 reserved_type`), a `retry` that is not whole milliseconds
/// (`400 invalid_field`), a `target` field from older Mercure drafts
/// (`400 invalid_field`: it meant private), and data + topics + id + type over
/// `limits.max_event_bytes` (`413 event_too_large`).
pub fn parse_update(body: &[u8], limits: &Limits) -> Result<Update, ApiError> {
    let mut topics = Vec::new();
    let (mut data, mut id, mut event_type, mut retry, mut private) = (None, None, None, None, false);
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "topic" => {
                // Counted as they come, so a form of a million topics is
                // refused without holding them all.
                if topics.len() == limits.max_topics {
                    return Err(ApiError::bad_request(
                        "too_many_topics",
                        format!("an update has at most {} topics", limits.max_topics),
                    ));
                }
                topics.push(v.into_owned());
            }
            "data" => data = Some(v.into_owned()),
            "id" => id = Some(v.into_owned()),
            "type" => event_type = Some(v.into_owned()),
            "retry" => retry = Some(v.into_owned()),
            "private" => private = true,
            // Older Mercure drafts made an update private by naming its
            // `target`s; publishing such an update publicly would leak what
            // its publisher meant to restrict, so it is refused instead.
            "target" => {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    "`target` (older Mercure drafts) is not supported: send `private=on` and authorize subscribers by topic",
                ))
            }
            _ => {}
        }
    }
    if topics.is_empty() {
        return Err(ApiError::bad_request("topics_required", "missing `topic`"));
    }
    for t in &topics {
        if t.is_empty() || t.len() > MAX_TOPIC || t.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_topic",
                "a topic must be 1 to 1024 bytes without control characters",
            ));
        }
        if t.starts_with(RESERVED_PREFIX) || t.starts_with('$') {
            return Err(ApiError::forbidden(
                "topic_forbidden",
                format!("topic `{t}` is reserved for the hub"),
            ));
        }
    }
    if let Some(id) = &id {
        check_field_safe("id", id)?;
        if id.starts_with('#') {
            return Err(ApiError::bad_request(
                "invalid_id",
                "an update id must not start with `#`",
            ));
        }
        herald_core::event::validate_client_id(id)?;
    }
    // An empty `type` means the default (`message`), as in Mercure.
    let event_type = event_type.filter(|t| !t.is_empty());
    if let Some(t) = &event_type {
        // The same rule as native publishes: no control event
        // (`revoked`, `reset`, …) can be forged through Mercure.
        validate_event_type(t)?;
    }
    let retry = retry
        .map(|r| {
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request("invalid_field", "`retry` must be a number of milliseconds"))
        })
        .transpose()?;
    let data = data.unwrap_or_default();
    let size = data.len()
        + topics.iter().map(String::len).sum::<usize>()
        + id.as_ref().map_or(0, String::len)
        + event_type.as_ref().map_or(0, String::len);
    if size > limits.max_event_bytes {
        return Err(too_large());
    }
    Ok(Update {
        topics,
        data,
        id,
        event_type,
        retry,
        private,
    })
}

/// A Mercure update as a publisher's form sends it (parsed by
/// [`parse_update`]; described here for the OpenAPI document).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UpdateForm {
    /// The topics (repeat the field; the first is canonical; at most 100),
    /// each 1 to 1024 bytes without control characters; not under
    /// `/.well-known/mercure` nor starting with `$`.
    #[schema(min_items = 1, max_items = 100, example = json!(["https://example.com/books/1"]))]
    topic: Vec<String>,
    /// The update's data.
    #[schema(nullable = false)]
    data: Option<String>,
    /// Present (with any value): a private update.
    #[schema(nullable = false)]
    private: Option<String>,
    /// The update id: not starting with `#`, not only digits, at most 256
    /// bytes, no CR/LF/NUL.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = "^([^#0-9\\r\\n\\u0000][^\\r\\n\\u0000]*|[0-9][^\\r\\n\\u0000]*[^0-9\\r\\n\\u0000][^\\r\\n\\u0000]*)$"
    )]
    id: Option<String>,
    /// The SSE `event:` type (empty: `message`; not one of the hub's
    /// control types): at most 256 bytes, no CR/LF/NUL.
    #[serde(rename = "type")]
    #[schema(nullable = false, max_length = 256, pattern = "^[^\\r\\n\\u0000]*$")]
    event_type: Option<String>,
    /// SSE `retry:`, whole milliseconds.
    #[schema(nullable = false, pattern = "^[0-9]{1,19}$")]
    retry: Option<String>,
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "event_too_large",
        "the update is too large",
    )
}

/// Publish (Mercure)
///
/// A form-encoded Mercure update; answers `200 text/plain` with the
/// update's id. The token's `mercure.publish` claim must allow every topic
/// (`403 topic_forbidden` otherwise). A publish with the
/// `mercureAuthorization` cookie must come from one of
/// `mercure.publish_origins`. `404` when Mercure is disabled.
#[utoipa::path(
    post,
    path = "/.well-known/mercure",
    operation_id = "mercure_publish",
    tag = "mercure",
    security(("mercure_bearer" = []), ("mercure_query" = []), ("mercure_cookie" = [])),
    request_body(content = UpdateForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Stored and dispatched: the update id.", content_type = "text/plain", body = String),
    )
)]
pub async fn publish(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    if hub.is_draining() {
        return Err(ApiError::draining());
    }
    let ip = client_ip(&req, &hub.config);
    let (token, from_cookie) = super::subscribe::token(&req);
    if from_cookie {
        // A cookie is sent by the browser on its own: only listed origins may
        // use it to publish (cross-site request forgery). The same check as
        // the native API's, with Mercure's list.
        if let Err(refused) = check_cookie_write(req.headers(), &hub.config.mercure.publish_origins) {
            return Err(refuse_origin(
                &hub,
                ip,
                req.uri().path(),
                &refused,
                "publishing with the mercureAuthorization cookie is allowed only from publish_origins",
            ));
        }
    }
    let Some(token) = token else {
        hub.check_rate(ip)?;
        return Err(ApiError::missing_credential());
    };
    let mercure = super::verifier(&hub)?;
    hub.prepare_mercure_publisher(&token, ip).await;
    let principal = hub.verify(ip, |now| mercure.publisher(&token, now).map(|t| t.principal))?;
    if principal.publish.is_empty() {
        return Err(ApiError::forbidden(
            "publish_forbidden",
            "the token's mercure.publish claim is empty",
        ));
    }
    let limit = hub.config.limits.max_event_bytes.saturating_add(64 * 1024);
    let body = read_body(req, limit)
        .await
        // Mercure's name for an update too large to take.
        .map_err(|e| {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                e
            }
        })?;
    let update = parse_update(&body, &hub.limits)?;
    if let Some(t) = update.topics.iter().find(|t| !principal.publish.matches(t)) {
        return Err(ApiError::forbidden(
            "topic_forbidden",
            format!("the token's mercure.publish claim does not allow `{t}`"),
        ));
    }
    let draft = EventDraft {
        topics: update.topics,
        event_type: update.event_type,
        data: update.data,
        id: update.id,
        audience: Audience {
            private: update.private,
            ..Audience::public()
        },
        retain: false,
        retry: update.retry,
        // Mercure lets publishers reuse ids; a resume from one starts after
        // its earliest use (see history::MemoryState::keep).
        unique_id: false,
    };
    let events = hub.publish_drafts(vec![draft]).await?;
    let id = events.first().map(|e| e.id.clone()).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], id).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(body: &str) -> &'static str {
        parse_update(body.as_bytes(), &Limits::default()).map_or_else(|e| e.code, |_| "ok")
    }

    #[test]
    fn a_draft_target_is_refused_not_published_publicly() {
        assert_eq!(code("topic=a&data=x&target=admins"), "invalid_field");
        assert_eq!(code("topic=a&data=x&private=on"), "ok");
    }

    #[test]
    fn forms() {
        let u = parse_update(
            b"topic=a&topic=b&data=x%0Ay&id=ord-1&type=update&retry=1500&private=on",
            &Limits::default(),
        )
        .expect("valid");
        assert_eq!(u.topics, ["a", "b"]);
        assert_eq!(u.data, "x\ny");
        assert_eq!(u.id.as_deref(), Some("ord-1"));
        assert_eq!(u.event_type.as_deref(), Some("update"));
        assert_eq!(u.retry, Some(1500));
        assert!(u.private);
        assert_eq!(
            parse_update(b"topic=a&type=", &Limits::default())
                .ok()
                .map(|u| u.event_type),
            Some(None)
        );
        assert_eq!(code("data=x"), "topics_required");
        assert_eq!(code("topic=a&type=revoked"), "reserved_type");
        assert_eq!(code("topic=a&type=connected"), "reserved_type");
        assert_eq!(code("topic=a&type=a%0Db"), "invalid_field");
        assert_eq!(code("topic=a&retry=soon"), "invalid_field");
        assert_eq!(code("topic=a&id=%23x"), "invalid_id");
        assert_eq!(code("topic=%24sys"), "topic_forbidden");
        assert_eq!(code("topic=/.well-known/mercure/subscriptions/x"), "topic_forbidden");
        let many: String = (0..101).map(|i| format!("topic=t{i}&")).collect();
        assert_eq!(code(&many), "too_many_topics");
        let hundred: String = (0..100).map(|i| format!("topic=t{i}&")).collect();
        assert_eq!(code(&hundred), "ok");
        let big = format!("topic=a&data={}", "x".repeat(1024 * 1024));
        assert_eq!(code(&big), "event_too_large");
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = parse_update(&body, &Limits::default()) {
                prop_assert!(e.status.is_client_error());
            }
        }
    }
}
