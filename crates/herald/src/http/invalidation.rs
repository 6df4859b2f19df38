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
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// One tag: 1 to 16 segments, as TanStack Query keys are.
#[derive(Deserialize, ToSchema)]
#[schema(as = Tag)]
#[allow(dead_code)]
pub struct TagSchema(Vec<TagSegment>);

/// A tag segment: a string (up to 256 bytes) or a number.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TagSegment {
    /// A string segment.
    Text(String),
    /// A number segment.
    Number(f64),
}

/// The body of `POST /v1/invalidate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct InvalidateRequest {
    /// 1 to 100 tags; `["todos"]` covers `["todos", 7]`.
    #[schema(min_items = 1, max_items = 100, example = json!([["todos"], ["users", "42"]]))]
    tags: Vec<TagSchema>,
    /// Required, exactly as for `POST /v1/publish`.
    audience: super::publish::AudienceInput,
}

/// The body of `POST /v1/invalidation/tags/{action}`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TagsRequest {
    /// 1 to 100 tags (each covers every tag it is a prefix of).
    #[schema(min_items = 1, max_items = 100)]
    tags: Vec<TagSchema>,
}

/// The invalidation state (`crate::invalidation`), described for the
/// OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InvalidationState {
    /// Whether invalidations are held.
    paused: bool,
    /// Tags held, all audiences together.
    held: usize,
    /// Tags dropped (with every tag they are a prefix of).
    disabled_tags: Vec<TagSchema>,
    /// After a pause or resume: the held invalidations delivered (one per
    /// audience).
    delivered: Option<usize>,
}

/// Every tag of an invalidation was disabled: nothing was published.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dropped {
    /// Always `true`.
    pub dropped: bool,
}

/// Held while invalidations are paused.
#[derive(Debug, Serialize, ToSchema)]
pub struct Held {
    /// Always `true`.
    pub held: bool,
}

/// The `200` answer of `POST /v1/invalidate`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum InvalidateAnswer {
    /// Published: the `invalidate` event on `$tags`.
    Published(super::publish::Published),
    /// Every tag was disabled.
    Dropped(Dropped),
}

/// Publishes one `invalidate` event for `tags` to `audience`.
async fn publish_tags(
    hub: &Arc<HubInner>,
    audience: Audience,
    tags: Vec<Tag>,
) -> Result<super::publish::Published, ApiError> {
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
    let stored = events.first().map(|e| super::publish::Published {
        id: e.id.clone(),
        seq: e.seq,
    });
    stored.ok_or_else(|| ApiError::from(crate::hub::PublishError::Unavailable("the event was not stored".into())))
}

/// Publish an invalidation
///
/// One `invalidate` event on the reserved topic `$tags`, data
/// `{"tags": [...]}`, to the audience given; the credential must be
/// allowed to publish on `$tags`. Held (`202`) while invalidations are
/// paused; dropped when every tag was disabled.
#[utoipa::path(
    post,
    path = "/v1/invalidate",
    operation_id = "invalidate",
    tag = "invalidation",
    security(("bearer" = []), ("cookie" = [])),
    request_body(content = InvalidateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Published (`id`, `seq`), or dropped.", body = InvalidateAnswer),
        (status = 202, description = "Held while invalidations are paused.", body = Held),
    )
)]
pub async fn invalidate(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let ip = client_ip(&req, &hub.config);
    let p = hub.authenticate_request(header_credential(req.headers()), ip).await?;
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
        Decision::Publish(tags) => {
            let published = publish_tags(&hub, draft.audience, tags).await?;
            Ok(Json(InvalidateAnswer::Published(published)).into_response())
        }
        Decision::Held => Ok((StatusCode::ACCEPTED, Json(Held { held: true })).into_response()),
        Decision::Dropped => Ok(Json(InvalidateAnswer::Dropped(Dropped { dropped: true })).into_response()),
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

/// Pause or resume invalidations
///
/// `pause` holds invalidations, coalesced per audience; `resume` delivers
/// the held set, one event per audience. Hub admins only; audited.
#[utoipa::path(
    post,
    path = "/v1/invalidation/{action}",
    operation_id = "control_invalidation",
    tag = "invalidation",
    security(("bearer" = []), ("cookie" = [])),
    params(("action" = String, Path, description = "`pause` or `resume`; anything else is `404`.",
        example = "pause")),
    responses((status = 200, description = "The state after it, with `delivered`.", body = InvalidationState)),
)]
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

/// Disable or enable tags
///
/// `disable` drops invalidations of those tags (and of every tag they are
/// a prefix of); `enable` undoes it. Hub admins only; audited.
#[utoipa::path(
    post,
    path = "/v1/invalidation/tags/{action}",
    operation_id = "toggle_tags",
    tag = "invalidation",
    security(("bearer" = []), ("cookie" = [])),
    params(("action" = String, Path, description = "`disable` or `enable`; anything else is `404`.",
        example = "disable")),
    request_body(content = TagsRequest, content_type = "application/json"),
    responses((status = 200, description = "The state after it.", body = InvalidationState)),
)]
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

/// The invalidation state
///
/// Hub admins only.
#[utoipa::path(
    get,
    path = "/v1/invalidation",
    operation_id = "invalidation_state",
    tag = "invalidation",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Paused or not, tags held, tags disabled.", body = InvalidationState)),
)]
pub async fn state(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    hub_admin(&hub, &req)?;
    Ok(Json(hub.invalidation.snapshot()))
}
