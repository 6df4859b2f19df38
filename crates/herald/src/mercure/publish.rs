//! Mercure publish: `POST /.well-known/mercure`, form-encoded.

use super::RESERVED_PREFIX;
use crate::http::error::ApiError;
use crate::http::request::client_ip;
use crate::hub::Hub;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::invalid::check_field_safe;
use herald_core::{Audience, EventDraft};

/// Longest topic accepted.
const MAX_TOPIC: usize = 1024;

/// Handler for Mercure publishes. Answers `200 text/plain` with the id.
pub async fn publish(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    if hub.is_draining() {
        return Err(ApiError::draining());
    }
    let ip = client_ip(&req, &hub.config);
    let (token, from_cookie) = super::subscribe::token(&req);
    if from_cookie {
        // A cookie is sent by the browser on its own: only listed origins may
        // use it to publish (cross-site request forgery).
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .or_else(|| req.headers().get(header::REFERER))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let allowed = &hub.config.mercure.publish_origins;
        if !allowed.iter().any(|o| o == "*" || origin.starts_with(o.as_str())) {
            return Err(ApiError::forbidden(
                "origin_forbidden",
                "publishing with the mercureAuthorization cookie is allowed only from publish_origins",
            ));
        }
    }
    let Some(token) = token else {
        hub.check_rate(ip)?;
        return Err(ApiError::missing_credential());
    };
    let mercure = hub.mercure_auth()?;
    let principal = hub.verify(ip, |now| mercure.publisher(&token, now).map(|t| t.principal))?;
    if principal.publish.is_empty() {
        return Err(ApiError::forbidden(
            "publish_forbidden",
            "the token's mercure.publish claim is empty",
        ));
    }
    let body = axum::body::to_bytes(
        req.into_body(),
        hub.config.limits.max_event_bytes.saturating_add(64 * 1024),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            "the update is too large",
        )
    })?;
    let mut topics = Vec::new();
    let (mut data, mut id, mut event_type, mut retry, mut private) = (None, None, None, None, false);
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "topic" => topics.push(v.into_owned()),
            "data" => data = Some(v.into_owned()),
            "id" => id = Some(v.into_owned()),
            "type" => event_type = Some(v.into_owned()),
            "retry" => retry = Some(v.into_owned()),
            "private" => private = true,
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
        if !principal.publish.matches(t) {
            return Err(ApiError::forbidden(
                "topic_forbidden",
                format!("the token's mercure.publish claim does not allow `{t}`"),
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
    if let Some(t) = &event_type {
        check_field_safe("type", t)?;
    }
    let retry = retry
        .map(|r| {
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request("invalid_field", "`retry` must be a number of milliseconds"))
        })
        .transpose()?;
    let data = data.unwrap_or_default();
    let size = data.len() + topics.iter().map(String::len).sum::<usize>();
    if size > hub.config.limits.max_event_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            "the update is too large",
        ));
    }
    let draft = EventDraft {
        topics,
        event_type: event_type.filter(|t| !t.is_empty()),
        data,
        id,
        audience: Audience {
            private,
            ..Audience::public()
        },
        retain: false,
        retry,
        // Mercure lets publishers reuse ids; resume then follows the newest.
        unique_id: false,
    };
    let events = hub.publish_drafts(vec![draft]).await?;
    let id = events.first().map(|e| e.id.clone()).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], id).into_response())
}
