//! `POST /v1/invalidate` and the admin controls under `/v1/invalidation`.

use super::error::ApiError;
use super::request::json_body;
use super::request::{client_ip, header_credential};
use crate::audit::AuditEntry;
use crate::hub::{now_ms, Hub, HubInner};
use crate::invalidation::{parse_tags, Decision, Tag, TOPIC};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::{Audience, EventDraft, Principal};
use serde_json::{json, Value};
use std::sync::Arc;

/// Publishes one `invalidate` event for `tags` to `audience`.
async fn publish_tags(hub: &Arc<HubInner>, audience: Audience, tags: Vec<Tag>) -> Result<Value, ApiError> {
    let draft = EventDraft {
        topics: vec![TOPIC.to_string()],
        event_type: Some("invalidate".into()),
        data: json!({"tags": tags}).to_string(),
        id: None,
        audience,
        retain: false,
        retry: None,
        unique_id: true,
    };
    let events = hub.publish_drafts(vec![draft]).await?;
    Ok(events
        .first()
        .map_or(Value::Null, |e| json!({"id": e.id, "seq": e.seq})))
}

/// `POST /v1/invalidate`.
pub async fn invalidate(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let ip = client_ip(&req, &hub.config);
    let p = hub.authenticate_api(header_credential(req.headers()), ip)?;
    if !p.scopes.publish {
        return Err(ApiError::forbidden(
            "publish_forbidden",
            "this credential may not publish",
        ));
    }
    // Invalidations are events on the reserved topic `$tags`: publishing
    // them is a right of its own, not implied by publishing elsewhere.
    if !p.publish.matches(TOPIC) {
        return Err(ApiError::forbidden(
            "topic_forbidden",
            format!("this credential may not publish to `{TOPIC}` (invalidations)"),
        ));
    }
    let body = json_body(req, 256 * 1024).await?;
    if let Some(k) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "tags" && *k != "audience"))
    {
        return Err(ApiError::bad_request("invalid_request", format!("unknown field `{k}`")));
    }
    let tags = parse_tags(body.get("tags"))?;
    let mut draft = EventDraft {
        topics: vec![TOPIC.into()],
        event_type: None,
        data: String::new(),
        id: None,
        audience: Audience::from_json(body.get("audience"), &hub.auth.session_key)?,
        retain: false,
        retry: None,
        unique_id: true,
    };
    draft.bind_tenant(&p)?;
    match hub.invalidation.submit(&draft.audience, tags) {
        Decision::Publish(tags) => Ok(Json(publish_tags(&hub, draft.audience, tags).await?).into_response()),
        Decision::Held => Ok((StatusCode::ACCEPTED, Json(json!({"held": true}))).into_response()),
        Decision::Dropped => Ok(Json(json!({"dropped": true})).into_response()),
        Decision::Full => Err(ApiError::too_many(
            "invalidations_held_full",
            "invalidations are paused and the held set is full; retry after they resume",
            5,
        )),
    }
}

fn hub_admin(hub: &Arc<HubInner>, req: &Request<Body>) -> Result<Principal, ApiError> {
    let ip = client_ip(req, &hub.config);
    let p = hub.authenticate_api(header_credential(req.headers()), ip)?;
    if !p.is_hub_admin() {
        return Err(ApiError::forbidden(
            "admin_required",
            "invalidation controls are for hub administrators",
        ));
    }
    Ok(p)
}

fn audit_action(hub: &HubInner, p: &Principal, action: &str, detail: Value) {
    let mut e = AuditEntry::about("admin_action", p);
    e.detail = json!({"action": action, "detail": detail});
    hub.audit.record(e, now_ms());
}

/// `POST /v1/invalidation/{pause|resume}`.
pub async fn control(
    State(hub): State<Hub>,
    Path(action): Path<String>,
    req: Request<Body>,
) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let p = hub_admin(&hub, &req)?;
    let delivered = match action.as_str() {
        "pause" => {
            hub.invalidation.pause();
            0
        }
        "resume" => {
            let held = hub.invalidation.resume();
            let n = held.len();
            for (audience, tags) in held {
                publish_tags(&hub, audience, tags).await?;
            }
            n
        }
        _ => return Err(ApiError::not_found("no such endpoint")),
    };
    audit_action(
        &hub,
        &p,
        &format!("invalidation_{action}"),
        json!({"delivered": delivered}),
    );
    let mut state = hub.invalidation.snapshot();
    state["delivered"] = delivered.into();
    Ok(Json(state))
}

/// `POST /v1/invalidation/tags/{disable|enable}` with `{"tags": [...]}`.
pub async fn tags(
    State(hub): State<Hub>,
    Path(action): Path<String>,
    req: Request<Body>,
) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let p = hub_admin(&hub, &req)?;
    if action != "disable" && action != "enable" {
        return Err(ApiError::not_found("no such endpoint"));
    }
    let body = json_body(req, 256 * 1024).await?;
    let tags = parse_tags(body.get("tags"))?;
    if action == "disable" {
        hub.invalidation.disable(tags.clone());
    } else {
        hub.invalidation.enable(&tags);
    }
    audit_action(&hub, &p, &format!("tags_{action}"), json!({"tags": tags}));
    Ok(Json(hub.invalidation.snapshot()))
}

/// `GET /v1/invalidation`.
pub async fn state(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    hub_admin(&hub, &req)?;
    Ok(Json(hub.invalidation.snapshot()))
}
