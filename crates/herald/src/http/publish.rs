//! `POST /v1/publish`: one event, or `{"events": [...]}`.

use super::error::ApiError;
use super::request::{client_ip, header_credential};
use crate::hub::Hub;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One event as a publisher sends it (parsed by
/// `herald_core::EventDraft::from_json`; described here for the OpenAPI
/// document). Give `topics` or `topic`, not both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EventInput {
    /// 1 to 100 exact topics (not selectors), each up to 1024 bytes without
    /// control characters; topics starting with `$` are the hub's. The
    /// first is canonical.
    #[schema(nullable = false, min_items = 1, max_items = 100, example = json!(["orders.42"]))]
    topics: Option<Vec<String>>,
    /// One topic, instead of `topics`.
    #[schema(nullable = false)]
    topic: Option<String>,
    /// The SSE `event:` type (default `message`): 1 to 256 bytes, no
    /// CR/LF/NUL, not one of the hub's own control types.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\r\\n\\u0000]+$")]
    event_type: Option<String>,
    /// Required. A string is sent as is; any other JSON value is sent
    /// serialized compactly.
    #[schema(example = json!({"status": "shipped"}))]
    data: Value,
    /// A client id, unique within the event's tenant while in history: at
    /// most 256 bytes, no CR/LF/NUL, not made only of digits.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\r\\n\\u0000]*[^0-9\\r\\n\\u0000][^\\r\\n\\u0000]*$"
    )]
    id: Option<String>,
    /// Required: `"public"`, or an object restricting by every field it
    /// sets.
    audience: AudienceInput,
    /// Make the event its topics' snapshot for its audience.
    retain: Option<bool>,
    /// SSE `retry:` in whole milliseconds (at most 86,400,000).
    #[schema(maximum = 86_400_000)]
    retry: Option<u64>,
}

/// Who may see an event: everyone allowed on its topics, or those matching
/// every field set (an empty list matches nobody; `{}` is refused).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AudienceInput {
    /// `"public"`.
    Public(PublicAudience),
    /// Restricted to those matching every field it sets.
    Restricted(AudienceFields),
}

/// The string `"public"`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublicAudience {
    /// Everyone allowed on the event's topics.
    Public,
}

/// The fields of a restricted audience: at most 64 labels per list, each 1
/// to 256 bytes. Session ids are hashed on arrival.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AudienceFields {
    /// Only this tenant's accounts (a tenant-bound publisher's own).
    #[schema(nullable = false, min_length = 1, max_length = 256)]
    tenant: Option<String>,
    /// Only these accounts (`sub`), in the event's tenant.
    #[schema(nullable = false, max_items = 64)]
    users: Option<Vec<String>>,
    /// Only these sessions (`sid`).
    #[schema(nullable = false, max_items = 64)]
    sessions: Option<Vec<String>>,
    /// Only credentials holding one of these roles.
    #[schema(nullable = false, max_items = 64)]
    roles: Option<Vec<String>>,
    /// Only credentials in one of these groups.
    #[schema(nullable = false, max_items = 64)]
    groups: Option<Vec<String>>,
}

/// Several events stored atomically (at most `limits.max_batch`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PublishBatch {
    /// The events, in order.
    #[schema(min_items = 1)]
    events: Vec<EventInput>,
}

/// The body of `POST /v1/publish`: one event, or a batch.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PublishRequest {
    /// `{"events": [...]}`.
    Batch(PublishBatch),
    /// One event.
    One(Box<EventInput>),
}

/// A stored event: its id (the client's, or the decimal `seq`) and its
/// place in the hub's order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// The event id (`Last-Event-ID` names it).
    #[schema(example = "42")]
    pub id: String,
    /// The hub's sequence number.
    #[schema(example = 42)]
    pub seq: u64,
}

/// The answer to a batch: one entry per event, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedBatch {
    /// The stored events.
    pub events: Vec<Published>,
}

/// The answer of `POST /v1/publish`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PublishAnswer {
    /// For one event.
    One(Published),
    /// For `{"events": [...]}`.
    Batch(PublishedBatch),
}

/// Publish one event or a batch
///
/// Answers once the events are durable (stored under the `fsync` policy)
/// and handed to dispatch, never after the streams' writes; a stream
/// opened afterwards with `Last-Event-ID` finds them in history. A batch
/// is stored atomically: all of its events or none.
#[utoipa::path(
    post,
    path = "/v1/publish",
    operation_id = "publish",
    tag = "publish",
    security(("bearer" = []), ("cookie" = [])),
    request_body(content = PublishRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored and dispatched.", body = PublishAnswer,
            links(
                ("resume" = (operation_id = "open_event_stream",
                    parameters(("last_event_id" = "$response.body#/id")),
                    description = "Resume a stream after this event")),
                ("resume_batch" = (operation_id = "open_event_stream",
                    parameters(("last_event_id" = "$response.body#/events/0/id")),
                    description = "Resume a stream after a batch's first event")),
            )),
    )
)]
pub async fn publish(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let inner = hub.inner.clone();
    if inner.is_draining() {
        return Err(ApiError::draining());
    }
    let ip = client_ip(&req, &inner.config);
    let principal = inner.authenticate_request(header_credential(req.headers()), ip).await?;
    if !principal.scopes.publish {
        return Err(ApiError::forbidden(
            "publish_forbidden",
            "this credential may not publish",
        ));
    }
    let body = super::request::json_body(req, super::publish_body_limit(&inner.config.limits)).await?;
    let (inputs, batch) = match body {
        Value::Object(mut o) if o.contains_key("events") => {
            if o.len() > 1 {
                return Err(ApiError::bad_request("invalid_event", "a batch holds only `events`"));
            }
            match o.remove("events") {
                Some(Value::Array(events)) if !events.is_empty() => (events, true),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_event",
                        "`events` must be a non-empty array",
                    ))
                }
            }
        }
        other @ Value::Object(_) => (vec![other], false),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_event",
                "the body must be an event object or {\"events\": [...]}",
            ))
        }
    };
    if inputs.len() > inner.config.limits.max_batch {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!("at most {} events per publish", inner.config.limits.max_batch),
        ));
    }
    let events = inner.publish_json(&principal, inputs).await?;
    let mut answers: Vec<Published> = events
        .iter()
        .map(|e| Published {
            id: e.id.clone(),
            seq: e.seq,
        })
        .collect();
    let body = match answers.pop() {
        Some(one) if !batch => PublishAnswer::One(one),
        last => {
            answers.extend(last);
            PublishAnswer::Batch(PublishedBatch { events: answers })
        }
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}
